//! The commands against a running `mission-bus serve` (`--server URL`,
//! `--token TOKEN`), over HTTP with a blocking client.
//!
//! Either token works:
//! - the **admin token** acts as the operator, as the CLI does on the
//!   files: the admin endpoints (`/v1/admin/...`, see docs/api.md) check
//!   `--as NAME` against NAME's role exactly as locally;
//! - a **participant token** acts as its owner through the ordinary
//!   endpoints: `--as` must name the token's owner (else exit 3, as a
//!   forged sender is refused), and what its role allows works.
//!
//! A command first tries the admin endpoint; the server's `admin_only`
//! answer (given before anything is read or written) switches this client
//! to the participant endpoints for the rest of its life. The server's
//! error answers map back to the CLI's exit codes, and its messages (the
//! library's) are printed as they are.

mod backend;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use ureq::http::Response;
use ureq::{Agent, Body};

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
    /// Set once the server answered `admin_only`: a participant token.
    participant: AtomicBool,
    /// The participant token's owner: `(mission, name)`.
    owner: OnceLock<(String, String)>,
}

/// A failed request: the server's error answer, or no answer at all.
enum Http {
    Api {
        status: u16,
        code: String,
        message: String,
    },
    Other(Failure),
}

impl From<Http> for Failure {
    fn from(e: Http) -> Failure {
        match e {
            Http::Api {
                status,
                code,
                message,
            } => Failure::new(exit_code(status, &code), message),
            Http::Other(f) => f,
        }
    }
}

type HttpResult<T> = Result<T, Http>;

/// An HTTP method the client uses.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
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
        Ok(Remote {
            base,
            token,
            agent,
            participant: AtomicBool::new(false),
            owner: OnceLock::new(),
        })
    }

    /// One request; `body` is sent as JSON.
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> HttpResult<Response<Body>> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        fn prepare<B>(
            mut req: ureq::RequestBuilder<B>,
            auth: &str,
            query: &[(&str, String)],
        ) -> ureq::RequestBuilder<B> {
            req = req.header("Authorization", auth);
            for (k, v) in query {
                req = req.query(*k, v);
            }
            req
        }
        let result = match method {
            Method::Get => prepare(self.agent.get(&url), &auth, query).call(),
            Method::Delete => prepare(self.agent.delete(&url), &auth, query).call(),
            Method::Post => prepare(self.agent.post(&url), &auth, query)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_default()),
            Method::Patch => prepare(self.agent.patch(&url), &auth, query)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_default()),
        };
        self.check(result)
    }

    /// Transport failures exit 1; error answers exit as the same failure
    /// does locally.
    fn check(&self, r: Result<Response<Body>, ureq::Error>) -> HttpResult<Response<Body>> {
        let mut resp = r.map_err(|e| {
            Http::Other(Failure::other(format!(
                "cannot reach the server at {}: {e}",
                self.base
            )))
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
        Err(Http::Api {
            status,
            code,
            message,
        })
    }

    /// A request whose answer is JSON.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> HttpResult<Value> {
        let mut resp = self.send(method, path, query, body.map(|b| b.to_string()))?;
        if resp.status().as_u16() == 204 {
            return Ok(Value::Null);
        }
        resp.body_mut()
            .read_json::<Value>()
            .map_err(|e| Http::Other(Failure::other(format!("reading the server's answer: {e}"))))
    }

    /// The server's address, `http://HOST:PORT`.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path?query`: the JSON answer.
    pub(super) fn get(&self, path: &str, query: &[(&str, String)]) -> CliResult<Value> {
        Ok(self.call(Method::Get, path, query, None)?)
    }

    /// `POST path` with a JSON body: the JSON answer.
    pub(super) fn post(&self, path: &str, body: Value) -> CliResult<Value> {
        Ok(self.call(Method::Post, path, &[], Some(body))?)
    }

    /// `GET path` (no body) or `POST path` with a JSON body, as the admin
    /// (the history commands, which have no participant form); the JSON
    /// answer.
    pub(crate) fn admin(&self, path: &str, body: Option<Value>) -> CliResult<Value> {
        match body {
            None => self.get(path, &[]),
            Some(b) => self.post(path, b),
        }
    }

    /// `admin()` with the admin token; with a participant token (the
    /// server answers `admin_only` before doing anything), `participant()`.
    fn admin_or<T>(
        &self,
        admin: impl FnOnce() -> HttpResult<T>,
        participant: impl FnOnce() -> CliResult<T>,
    ) -> CliResult<T> {
        if self.participant.load(Ordering::Relaxed) {
            return participant();
        }
        match admin() {
            Err(Http::Api { code, .. }) if code == "admin_only" => {
                self.participant.store(true, Ordering::Relaxed);
                participant()
            }
            r => Ok(r?),
        }
    }

    /// The participant token's owner, `(mission, name)` (asked once).
    fn owner(&self) -> CliResult<&(String, String)> {
        if let Some(o) = self.owner.get() {
            return Ok(o);
        }
        let v = self.get("/v1/missions", &[])?;
        let caller = &v["caller"];
        let owner = match (caller["mission_id"].as_str(), caller["name"].as_str()) {
            (Some(m), Some(n)) => (m.to_string(), n.to_string()),
            _ => {
                return Err(Failure::other(format!(
                    "the server did not say whose token this is: {caller}"
                )))
            }
        };
        Ok(self.owner.get_or_init(|| owner))
    }

    /// With a participant token, `--as NAME` must be its owner.
    fn must_be_owner(&self, name: &str) -> CliResult {
        let (_, me) = self.owner()?;
        if me != name {
            return Err(Failure::new(
                EXIT_DENIED,
                format!("--as names '{name}' but the token belongs to '{me}'"),
            ));
        }
        Ok(())
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
