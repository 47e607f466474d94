//! The commands against a running `mission-bus serve` (`--server URL`,
//! `--token TOKEN`), over HTTP with a blocking client. The admin token acts
//! as the operator, as the CLI does on the files: it uses the admin
//! endpoints (`/v1/admin/...`, see docs/api.md) so that `--as NAME` is
//! checked against NAME's role exactly as locally. The server's error
//! answers map back to the CLI's exit codes, and its messages (the
//! library's) are printed as they are.

use std::io::Write;
use std::time::Duration;

use mission_bus::document::event_to_json;
use mission_bus::{Action, AppendOptions, Event, Json, MissionConfig};
use serde_json::{json, Value};
use ureq::http::Response;
use ureq::{Agent, Body};
use uuid::Uuid;

use super::args::Format;
use super::backend::{write_pretty, Backend};
use super::{
    CliResult, Failure, EXIT_CONFLICT, EXIT_DENIED, EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_OTHER,
    EXIT_USAGE,
};

/// Events asked for per page (the server's maximum).
const PAGE: u64 = 1000;

/// A running server, reached over HTTP.
pub(crate) struct Remote {
    base: String,
    token: String,
    agent: Agent,
}

impl Remote {
    /// A client of the server at `url` (`http://HOST:PORT`), using `token`.
    pub(crate) fn new(url: &str, token: Option<&str>) -> CliResult<Remote> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "invalid --server '{url}': expected http://HOST:PORT"
            )));
        }
        let token = match token.map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Err(Failure::usage(
                    "--server needs a token: give --token TOKEN or set MISSION_BUS_TOKEN",
                ))
            }
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Remote { base, token, agent })
    }

    /// The server's address, `http://HOST:PORT`.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(super) fn get(&self, path: &str, query: &[(&str, String)]) -> CliResult<Response<Body>> {
        let mut req = self
            .agent
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        self.check(req.call())
    }

    pub(super) fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: String,
    ) -> CliResult<Response<Body>> {
        let mut req = self
            .agent
            .post(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json");
        for (k, v) in query {
            req = req.query(*k, v);
        }
        self.check(req.send(body))
    }

    /// Transport failures exit 1; error answers exit as the same failure
    /// does locally.
    fn check(&self, r: Result<Response<Body>, ureq::Error>) -> CliResult<Response<Body>> {
        let mut resp = r.map_err(|e| {
            Failure::other(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        let status = resp.status().as_u16();
        if status < 400 {
            return Ok(resp);
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let (code, message) = match serde_json::from_str::<Value>(&text) {
            Ok(v) => (
                v["error"]["code"].as_str().unwrap_or("").to_string(),
                v["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.clone()),
            ),
            Err(_) => (String::new(), format!("HTTP {status}: {}", text.trim())),
        };
        Err(Failure::new(exit_code(status, &code), message))
    }

    pub(super) fn json(&self, resp: Response<Body>) -> CliResult<Value> {
        let mut resp = resp;
        resp.body_mut()
            .read_json::<Value>()
            .map_err(|e| Failure::other(format!("reading the server's answer: {e}")))
    }

    /// `GET path` (no body) or `POST path` with a JSON body, as the admin;
    /// the JSON answer.
    pub(crate) fn admin(&self, path: &str, body: Option<Value>) -> CliResult<Value> {
        let resp = match body {
            None => self.get(path, &[])?,
            Some(b) => self.post(path, &[], b.to_string())?,
        };
        self.json(resp)
    }

    fn append_json(&self, mission: &str, body: Value) -> CliResult<Value> {
        let resp = self.post(
            &format!("/v1/admin/missions/{}/events", seg(mission)),
            &[],
            body.to_string(),
        )?;
        self.json(resp)
    }
}

/// The CLI's exit code for an HTTP error answer.
pub(crate) fn exit_code(status: u16, code: &str) -> i32 {
    match (status, code) {
        (400 | 413, _) => EXIT_USAGE,
        (401 | 403, _) => EXIT_DENIED,
        // The fallback's 404: this server does not have the endpoint.
        (404, "not_found") => EXIT_OTHER,
        (404, _) => EXIT_NOT_FOUND,
        (409, _) => EXIT_CONFLICT,
        (500, "corruption") => EXIT_INTEGRITY,
        _ => EXIT_OTHER,
    }
}

/// Percent-encode one path segment.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn guard_fields(body: &mut Value, opts: &AppendOptions) {
    if let Some(s) = opts.expected_sequence {
        body["expected_sequence"] = json!(s);
    }
    if let Some(c) = &opts.meta.correlation_id {
        body["correlation_id"] = json!(c);
    }
    if let Some(c) = &opts.meta.causation_id {
        body["causation_id"] = json!(c);
    }
    if !opts.meta.attributes.is_empty() {
        body["attributes"] = json!(opts.meta.attributes);
    }
    if let Some(id) = opts.event_id {
        body["event_id"] = json!(id.to_string());
    }
}

impl Backend for Remote {
    fn backup(&self, to: &std::path::Path) -> CliResult<Value> {
        // The path is on the server's machine; the server requires it absolute.
        let to = to
            .to_str()
            .ok_or_else(|| Failure::usage(format!("--to {}: not valid UTF-8", to.display())))?;
        self.json(self.post("/v1/admin/backup", &[], json!({ "to": to }).to_string())?)
    }

    fn create(
        &self,
        mission: &str,
        title: &str,
        lead: &str,
        config: MissionConfig,
    ) -> CliResult<Vec<Value>> {
        let body = json!({
            "mission_id": mission,
            "title": title,
            "lead": lead,
            "profiles": config.to_json(),
        });
        let created = self.json(self.post("/v1/missions", &[], body.to_string())?)?;
        let head = created["head_sequence"].as_u64().unwrap_or(0);
        let page = self.json(self.get(
            &format!("/v1/missions/{}/events", seg(mission)),
            &[("from", "1".into()), ("limit", head.max(1).to_string())],
        )?)?;
        Ok(page["events"].as_array().cloned().unwrap_or_default())
    }

    fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> CliResult<Value> {
        let metadata: Value = serde_json::from_str(metadata.as_str()).unwrap_or(Value::Null);
        self.append_json(
            mission,
            json!({"type": "join", "name": name, "role": role, "metadata": metadata}),
        )
    }

    fn append(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &AppendOptions,
    ) -> CliResult<Value> {
        let parse = |j: &Json| serde_json::from_str::<Value>(j.as_str()).unwrap_or(Value::Null);
        let mut body = match &action {
            Action::Publish { topic, payload } => json!({
                "type": "message", "sender": sender, "topic": topic, "payload": parse(payload),
            }),
            Action::Checkpoint {
                summary,
                state,
                artifacts,
            } => json!({
                "type": "checkpoint", "sender": sender, "summary": summary,
                "state": parse(state), "artifacts": artifacts,
            }),
            Action::Handoff {
                recipient,
                checkpoint_id,
                note,
            } => json!({
                "type": "handoff", "sender": sender, "recipient": recipient,
                "checkpoint_id": checkpoint_id.to_string(), "note": note,
            }),
            _ => return Err(Failure::usage("this write cannot be sent to a server")),
        };
        guard_fields(&mut body, opts);
        self.append_json(mission, body)
    }

    fn resume(
        &self,
        mission: &str,
        handoff: Option<Uuid>,
        recipient: Option<&str>,
    ) -> CliResult<Value> {
        let m = seg(mission);
        let resp = match (handoff, recipient) {
            (Some(id), _) => self.get(&format!("/v1/missions/{m}/handoffs/{id}/resume"), &[])?,
            (None, Some(name)) => {
                self.get(&format!("/v1/missions/{m}/resume"), &[("for", name.into())])?
            }
            (None, None) => return Err(Failure::usage("give --handoff ID or --for NAME")),
        };
        self.json(resp)
    }

    fn replay(
        &self,
        mission: &str,
        reader: &str,
        from: u64,
        to: Option<u64>,
        each: &mut dyn FnMut(Value) -> CliResult,
    ) -> CliResult {
        let path = format!("/v1/admin/missions/{}/replay", seg(mission));
        let mut next = from;
        let mut last: Option<u64> = None;
        loop {
            let page = self.json(self.get(
                &path,
                &[
                    ("as", reader.into()),
                    ("from", next.to_string()),
                    ("limit", PAGE.to_string()),
                ],
            )?)?;
            // The head when the first page was read bounds the replay, as
            // locally.
            let last = *last.get_or_insert_with(|| {
                let head = page["head_sequence"].as_u64().unwrap_or(0);
                to.unwrap_or(head).min(head)
            });
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return Ok(());
            }
            for e in events {
                let seq = e["sequence"].as_u64().unwrap_or(0);
                if seq > last {
                    return Ok(());
                }
                each(e)?;
            }
            next = page["next"].as_u64().unwrap_or(u64::MAX);
            if next > last {
                return Ok(());
            }
        }
    }

    fn export(&self, out: &mut dyn Write, mission: &str, format: Format) -> CliResult {
        let path = format!("/v1/admin/missions/{}/export", seg(mission));
        match format {
            Format::Seed => {
                let doc = self.json(self.get(&path, &[("format", "seed".into())])?)?;
                write_pretty(out, &doc)
            }
            Format::Jsonl => {
                let mut resp = self.get(&path, &[("format", "jsonl".into())])?;
                let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
                std::io::copy(&mut reader, out)
                    .map_err(|e| Failure::other(format!("reading the server's answer: {e}")))?;
                Ok(())
            }
        }
    }

    fn import(&self, events: Vec<Event>) -> CliResult<u64> {
        let mut text = String::new();
        for e in &events {
            text.push_str(&event_to_json(e).to_string());
            text.push('\n');
        }
        let resp = self.post("/v1/admin/import", &[("format", "jsonl".into())], text)?;
        let v = self.json(resp)?;
        Ok(v["imported"].as_u64().unwrap_or(0))
    }

    fn missions(&self) -> CliResult<Vec<(String, String, u64, Value)>> {
        let v = self.json(self.get("/v1/missions", &[])?)?;
        let mut out = Vec::new();
        for m in v["missions"].as_array().cloned().unwrap_or_default() {
            let id = m["mission_id"].as_str().unwrap_or("").to_string();
            if let Some(err) = m["error"].as_str() {
                return Err(Failure::new(
                    EXIT_INTEGRITY,
                    format!("mission '{id}': {err}"),
                ));
            }
            let title = m["title"].as_str().unwrap_or("").to_string();
            out.push((
                id,
                title,
                m["head_sequence"].as_u64().unwrap_or(0),
                m["forked_from"].clone(),
            ));
        }
        Ok(out)
    }

    fn verify(&self, mission: Option<&str>, each: &mut dyn FnMut(Value) -> CliResult) -> CliResult {
        match mission {
            Some(m) => each(self.json(self.get(&format!("/v1/missions/{}/verify", seg(m)), &[])?)?),
            None => {
                let v = self.json(self.get("/v1/admin/verify", &[])?)?;
                for r in v["reports"].as_array().cloned().unwrap_or_default() {
                    each(r)?;
                }
                Ok(())
            }
        }
    }
}
