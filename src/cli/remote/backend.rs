//! [`Backend`] over HTTP: each command through the admin endpoints, or
//! the ordinary ones with a participant token (see the module above).

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use mission_bus::document::event_to_json;
use mission_bus::{Action, AppendOptions, Event, EventFilter, Json, MissionConfig};
use serde_json::{json, Value};
use uuid::Uuid;

use super::super::args::Format;
use super::super::backend::{write_pretty, Backend, StepArgs, StepKind};
use super::super::{CliResult, Failure, EXIT_INTEGRITY, EXIT_NOT_FOUND};
use super::{seg, HttpResult, Method, Remote, PAGE};

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

fn array(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

/// The query parameters of a filtered read (`GET .../events`).
fn filter_query(f: &EventFilter, consumer: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for t in &f.types {
        q.push(("type", t.as_str().to_string()));
    }
    let opt = [
        ("sender", &f.sender),
        ("recipient", &f.recipient),
        ("topic_prefix", &f.topic_prefix),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if let Some(from) = f.from {
        q.push(("from", from.to_string()));
    }
    if let Some(to) = f.to {
        q.push(("to", to.to_string()));
    }
    if f.newest_first {
        q.push(("order", "desc".into()));
    }
    q.push(("limit", f.limit.unwrap_or(PAGE as usize).to_string()));
    if let Some(c) = consumer {
        q.push(("consumer", c.to_string()));
    }
    q
}

impl Remote {
    /// An operator write (`POST /v1/admin/missions/{m}/events`).
    fn admin_write(&self, mission: &str, body: &Value) -> HttpResult<Value> {
        self.call(
            Method::Post,
            &format!("/v1/admin/missions/{}/events", seg(mission)),
            &[],
            Some(body.clone()),
        )
    }

    /// An events page `{events, next, head_sequence}` read as `reader`.
    fn events_page(
        &self,
        mission: &str,
        reader: &str,
        query: Vec<(&'static str, String)>,
    ) -> CliResult<Value> {
        let m = seg(mission);
        self.admin_or(
            || {
                let mut q = query.clone();
                q.push(("as", reader.to_string()));
                self.call(
                    Method::Get,
                    &format!("/v1/admin/missions/{m}/replay"),
                    &q,
                    None,
                )
            },
            || {
                self.must_be_owner(reader)?;
                let mut page = self.get(&format!("/v1/missions/{m}/events"), &query)?;
                // Events as the CLI prints them: without the page's
                // `lifecycle` annotation of handoffs.
                if let Some(events) = page["events"].as_array_mut() {
                    for e in events {
                        if let Some(obj) = e.as_object_mut() {
                            obj.remove("lifecycle");
                        }
                    }
                }
                Ok(page)
            },
        )
    }
}

impl Backend for Remote {
    fn backup(&self, to: &std::path::Path) -> CliResult<Value> {
        // The path is on the server's machine; the server requires it absolute.
        let to = to
            .to_str()
            .ok_or_else(|| Failure::usage(format!("--to {}: not valid UTF-8", to.display())))?;
        self.post("/v1/admin/backup", json!({ "to": to }))
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
        let created = self.post("/v1/missions", body)?;
        let head = created["head_sequence"].as_u64().unwrap_or(0);
        let page = self.get(
            &format!("/v1/missions/{}/events", seg(mission)),
            &[("from", "1".into()), ("limit", head.max(1).to_string())],
        )?;
        Ok(array(&page, "events"))
    }

    fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> CliResult<Value> {
        let metadata: Value = serde_json::from_str(metadata.as_str()).unwrap_or(Value::Null);
        self.admin_or(
            || {
                self.admin_write(
                    mission,
                    &json!({"type": "join", "name": name, "role": role, "metadata": metadata}),
                )
            },
            || {
                // A lead adds the participant; the server issues its token
                // with it, which is printed with the event (once).
                let m = seg(mission);
                let added = self.post(
                    &format!("/v1/missions/{m}/participants"),
                    json!({"name": name, "role": role, "metadata": metadata}),
                )?;
                let seq = added["sequence"].as_u64().unwrap_or(0);
                let mut record = self.get(&format!("/v1/missions/{m}/events/{seq}"), &[])?;
                let mut event = record["event"].take();
                event["token"] = added["token"].clone();
                Ok(event)
            },
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
        let (kind, mut body) = match &action {
            Action::Publish { topic, payload } => (
                "message",
                json!({"sender": sender, "topic": topic, "payload": parse(payload)}),
            ),
            Action::Checkpoint {
                summary,
                state,
                artifacts,
            } => (
                "checkpoint",
                json!({"sender": sender, "summary": summary,
                       "state": parse(state), "artifacts": artifacts}),
            ),
            Action::Handoff {
                recipient,
                checkpoint_id,
                note,
            } => (
                "handoff",
                json!({"sender": sender, "recipient": recipient,
                       "checkpoint_id": checkpoint_id.to_string(), "note": note}),
            ),
            _ => return Err(Failure::usage("this write cannot be sent to a server")),
        };
        guard_fields(&mut body, opts);
        self.admin_or(
            || {
                let mut b = body.clone();
                b["type"] = json!(kind);
                self.admin_write(mission, &b)
            },
            || {
                // The server refuses a `sender` that is not the token's owner.
                let path = match kind {
                    "message" => "messages",
                    "checkpoint" => "checkpoints",
                    _ => "handoffs",
                };
                self.post(
                    &format!("/v1/missions/{}/{path}", seg(mission)),
                    body.clone(),
                )
            },
        )
    }

    fn resume(
        &self,
        mission: &str,
        handoff: Option<Uuid>,
        recipient: Option<&str>,
    ) -> CliResult<Value> {
        let m = seg(mission);
        match (handoff, recipient) {
            (Some(id), _) => self.get(&format!("/v1/missions/{m}/handoffs/{id}/resume"), &[]),
            (None, Some(name)) => {
                self.get(&format!("/v1/missions/{m}/resume"), &[("for", name.into())])
            }
            (None, None) => Err(Failure::usage("give --handoff ID or --for NAME")),
        }
    }

    fn replay(
        &self,
        mission: &str,
        reader: &str,
        from: u64,
        to: Option<u64>,
        each: &mut dyn FnMut(Value) -> CliResult,
    ) -> CliResult {
        let mut next = from;
        let mut last: Option<u64> = None;
        loop {
            let mut query = vec![("from", next.to_string()), ("limit", PAGE.to_string())];
            if let Some(last) = last {
                query.push(("to", last.to_string()));
            }
            let page = self.events_page(mission, reader, query)?;
            // The head when the first page was read bounds the replay, as
            // locally.
            let last = *last.get_or_insert_with(|| {
                let head = page["head_sequence"].as_u64().unwrap_or(0);
                to.unwrap_or(head).min(head)
            });
            let events = array(&page, "events");
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
                let doc = self.get(&path, &[("format", "seed".into())])?;
                write_pretty(out, &doc)
            }
            Format::Jsonl => {
                let mut resp =
                    self.send(Method::Get, &path, &[("format", "jsonl".into())], None)?;
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
        let mut resp = self.send(
            Method::Post,
            "/v1/admin/import",
            &[("format", "jsonl".into())],
            Some(text),
        )?;
        let v: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| Failure::other(format!("reading the server's answer: {e}")))?;
        Ok(v["imported"].as_u64().unwrap_or(0))
    }

    fn missions(&self) -> CliResult<Vec<(String, String, u64, Value)>> {
        let v = self.get("/v1/missions", &[])?;
        let mut out = Vec::new();
        for m in array(&v, "missions") {
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
        let one = |m: &str| self.get(&format!("/v1/missions/{}/verify", seg(m)), &[]);
        match mission {
            Some(m) => each(one(m)?),
            None => {
                // Every mission the token can see: all for the admin, its
                // own for a participant.
                let reports = self.admin_or(
                    || {
                        let v = self.call(Method::Get, "/v1/admin/verify", &[], None)?;
                        Ok(array(&v, "reports"))
                    },
                    || Ok(vec![one(&self.owner()?.0)?]),
                )?;
                for r in reports {
                    each(r)?;
                }
                Ok(())
            }
        }
    }

    fn step(&self, mission: &str, actor: &str, s: &StepArgs) -> CliResult<Value> {
        let mut body = json!({"sender": actor});
        match s.kind {
            StepKind::Accept | StepKind::Heartbeat => body["lease_ms"] = json!(s.lease_ms),
            _ => body["note"] = json!(s.note),
        }
        self.admin_or(
            || {
                let mut b = body.clone();
                b["type"] = json!(s.kind.as_str());
                b["handoff_id"] = json!(s.handoff.to_string());
                self.admin_write(mission, &b)
            },
            || {
                let path = format!(
                    "/v1/missions/{}/handoffs/{}/{}",
                    seg(mission),
                    s.handoff,
                    s.kind.as_str()
                );
                Ok(self.post(&path, body.clone())?["event"].take())
            },
        )
    }

    fn expire(&self, mission: Option<&str>, at: Option<DateTime<Utc>>) -> CliResult<Vec<Value>> {
        let mut body = json!({});
        if let Some(m) = mission {
            body["mission_id"] = json!(m);
        }
        if let Some(at) = at {
            body["at"] = json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
        Ok(array(&self.post("/v1/admin/expire", body)?, "events"))
    }

    fn handoffs(&self, mission: &str, recipient: Option<&str>) -> CliResult<Vec<Value>> {
        let q: Vec<(&str, String)> = recipient
            .map(|r| ("recipient", r.to_string()))
            .into_iter()
            .collect();
        let v = self.get(&format!("/v1/missions/{}/handoffs", seg(mission)), &q)?;
        Ok(array(&v, "handoffs"))
    }

    fn checkpoint(&self, mission: &str, id: Uuid) -> CliResult<Value> {
        self.get(
            &format!("/v1/missions/{}/checkpoints/{id}", seg(mission)),
            &[],
        )
    }

    fn latest_checkpoint(&self, mission: &str, by: Option<&str>) -> CliResult<Value> {
        let m = seg(mission);
        match by {
            Some(who) => self.get(
                &format!("/v1/missions/{m}/checkpoints/latest"),
                &[("sender", who.to_string())],
            ),
            None => self
                .checkpoints(mission, None, None, 1)?
                .pop()
                .ok_or_else(|| {
                    Failure::new(
                        EXIT_NOT_FOUND,
                        format!("mission '{mission}' has no checkpoint"),
                    )
                }),
        }
    }

    fn checkpoints(
        &self,
        mission: &str,
        by: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> CliResult<Vec<Value>> {
        let path = format!("/v1/missions/{}/checkpoints", seg(mission));
        let mut out = Vec::new();
        let mut before = before;
        while out.len() < limit {
            let mut q = vec![("limit", (limit - out.len()).min(PAGE as usize).to_string())];
            if let Some(b) = by {
                q.push(("sender", b.to_string()));
            }
            if let Some(b) = before {
                q.push(("before", b.to_string()));
            }
            let page = self.get(&path, &q)?;
            out.extend(array(&page, "checkpoints"));
            match page["next_before"].as_u64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        Ok(out)
    }

    fn change_role(
        &self,
        mission: &str,
        name: &str,
        role: &str,
        by: Option<&str>,
    ) -> CliResult<Value> {
        self.admin_or(
            || {
                self.admin_write(
                    mission,
                    &json!({"type": "role", "sender": by, "name": name, "role": role}),
                )
            },
            || {
                let mut body = json!({"role": role});
                if let Some(by) = by {
                    body["sender"] = json!(by);
                }
                let path = format!("/v1/missions/{}/participants/{}", seg(mission), seg(name));
                Ok(self.call(Method::Patch, &path, &[], Some(body))?)
            },
        )
    }

    fn remove(&self, mission: &str, name: &str, by: Option<&str>) -> CliResult<Value> {
        self.admin_or(
            || {
                self.admin_write(
                    mission,
                    &json!({"type": "remove", "sender": by, "name": name}),
                )
            },
            || {
                if let Some(by) = by {
                    self.must_be_owner(by)?;
                }
                let path = format!("/v1/missions/{}/participants/{}", seg(mission), seg(name));
                Ok(self.call(Method::Delete, &path, &[], None)?)
            },
        )
    }

    fn token(&self, mission: &str, name: &str, rotate: bool) -> CliResult<Value> {
        let m = seg(mission);
        // The admin's and a lead's way; a participant rotates its own.
        let issued = match self.call(
            Method::Post,
            &format!("/v1/missions/{m}/participants/{}/token", seg(name)),
            &[],
            Some(json!({"rotate": rotate})),
        ) {
            Err(super::Http::Api { code, .. })
                if code == "lead_only" && rotate && self.owner()?.1 == name =>
            {
                self.post(&format!("/v1/missions/{m}/token"), json!({}))?
            }
            r => r?,
        };
        Ok(json!({
            "mission_id": mission, "name": name,
            "token": issued["token"], "revoked": issued["revoked"],
        }))
    }

    fn ack(
        &self,
        mission: &str,
        participant: &str,
        consumer: &str,
        sequence: u64,
    ) -> CliResult<Value> {
        let m = seg(mission);
        self.admin_or(
            || {
                self.call(
                    Method::Post,
                    &format!("/v1/admin/missions/{m}/ack"),
                    &[],
                    Some(json!({"participant": participant, "consumer": consumer, "sequence": sequence})),
                )
            },
            || {
                self.post(
                    &format!("/v1/missions/{m}/consumers/{}/ack", seg(consumer)),
                    json!({"sequence": sequence, "sender": participant}),
                )
            },
        )
    }

    fn consumers(&self, mission: &str, participant: Option<&str>) -> CliResult<Vec<Value>> {
        let v = self.get(&format!("/v1/missions/{}/consumers", seg(mission)), &[])?;
        Ok(array(&v, "consumers")
            .into_iter()
            .filter(|c| participant.is_none_or(|p| c["participant"] == p))
            .collect())
    }

    fn read_page(
        &self,
        mission: &str,
        reader: &str,
        filter: &EventFilter,
        consumer: Option<&str>,
    ) -> CliResult<(Vec<Value>, Option<u64>)> {
        let page = self.events_page(mission, reader, filter_query(filter, consumer))?;
        let head = page["head_sequence"].as_u64().unwrap_or(0);
        let next = page["next"].as_u64();
        // Oldest first, the server names a `next` past the range's end too.
        let next = match next {
            Some(n) if !filter.newest_first && n > filter.to.unwrap_or(u64::MAX).min(head) => None,
            n => n,
        };
        Ok((array(&page, "events"), next))
    }
}
