//! `GET /metrics` (Prometheus text format 0.0.4) and the per-request log
//! line.
//!
//! Labels are route templates (`/v1/missions/:m/messages`), methods, status
//! codes and error codes only: never a mission id, a name or a token, so the
//! endpoint reveals nothing about any mission and is served without a token
//! (bind the server to a private address, as for everything else).
//!
//! Every request gets an id (`x-request-id` on the response) and one
//! `tracing` event at INFO when it ends: request id, method, route, mission,
//! client address, status, latency. The `Authorization` header is never logged.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use crate::Histogram;

/// Requests of one route by (method, status).
type ByStatus = HashMap<(Method, u16), u64>;

/// The server's own counters (the bus keeps the writer's).
#[derive(Default)]
pub(crate) struct Metrics {
    /// route -> (method, status) -> requests (two levels, so that counting
    /// a request allocates nothing once its route was seen).
    requests: Mutex<HashMap<String, ByStatus>>,
    /// outcome (`ok` or an error code) -> append requests.
    appends: Mutex<BTreeMap<&'static str, u64>>,
    /// Events acknowledged by append requests (a batch counts each event).
    appended_events: AtomicU64,
    next_request_id: AtomicU64,
}

impl Metrics {
    /// Count one append request (single or batch) and its outcome.
    pub(crate) fn append(&self, outcome: &'static str, events: usize) {
        *self
            .appends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_insert(0) += 1;
        self.appended_events
            .fetch_add(events as u64, Ordering::Relaxed);
    }
}

/// The response header carrying the request id.
static X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// `id` as sixteen lowercase hex digits, without allocating.
fn request_id_hex(id: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Middleware: request id, the log line, the request counter.
pub(crate) async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let began = Instant::now();
    let id = app.metrics.next_request_id.fetch_add(1, Ordering::Relaxed) + 1;
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<super::limits::Conn>>()
        .map(|c| c.0.addr);
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    let hex = request_id_hex(id);
    // Sixteen ASCII hex digits: always a valid header value and str.
    let request_id = std::str::from_utf8(&hex).unwrap_or("-");
    if let Ok(v) = HeaderValue::from_bytes(&hex) {
        resp.headers_mut().insert(&X_REQUEST_ID, v);
    }
    let route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    {
        let mut requests = app
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let by_route = match requests.get_mut(route) {
            Some(m) => m,
            None => requests.entry(route.to_string()).or_default(),
        };
        *by_route.entry((method.clone(), status)).or_insert(0) += 1;
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route,
        mission = uri
            .path()
            .strip_prefix("/v1/missions/")
            .and_then(|rest| rest.split('/').next())
            .filter(|m| !m.is_empty())
            .unwrap_or("-"),
        client = %client.map_or_else(|| "-".to_string(), |a| a.to_string()),
        status,
        latency_us = began.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let bus = app.bus.clone();
    let disk = tokio::task::spawn_blocking(move || bus.size_on_disk())
        .await
        .ok()
        .and_then(Result::ok);
    let mut out = String::with_capacity(4096);
    render(&app, disk, &mut out);
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

fn render(app: &App, disk: Option<u64>, out: &mut String) {
    let m = &app.metrics;
    head(
        out,
        "mission_bus_http_requests_total",
        "counter",
        "HTTP requests by route template, method and status.",
    );
    let requests: BTreeMap<(String, String, u16), u64> = m
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flat_map(|(route, by)| {
            by.iter().map(move |((method, status), n)| {
                ((route.clone(), method.to_string(), *status), *n)
            })
        })
        .collect();
    for ((route, method, status), n) in &requests {
        let _ = writeln!(
            out,
            "mission_bus_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            escape(&route_label(route)),
            escape(method)
        );
    }
    head(
        out,
        "mission_bus_appends_total",
        "counter",
        "Append requests (single events and batches) by outcome: ok or the error code.",
    );
    for (outcome, n) in m.appends.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            out,
            "mission_bus_appends_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    counter(
        out,
        "mission_bus_appended_events_total",
        "Events acknowledged to append requests.",
        m.appended_events.load(Ordering::Relaxed),
    );
    counter(
        out,
        "mission_bus_events_written_total",
        "Events written by the bus since it was opened (all callers).",
        app.bus.events_written(),
    );
    let stats = app.bus.stats();
    histogram(
        out,
        "mission_bus_commit_group_events",
        "Events per commit group (one transaction and one flush each).",
        &stats.group_events,
    );
    histogram(
        out,
        "mission_bus_flush_seconds",
        "Latency of each commit group's flush (fsync with Durability::Sync).",
        &stats.flush_seconds,
    );
    counter(
        out,
        "mission_bus_commit_failures_total",
        "Commit groups whose write or flush failed.",
        stats.commit_failures,
    );
    gauge(
        out,
        "mission_bus_open_connections",
        "Open HTTP connections.",
        app.connections.open() as u64,
    );
    gauge(
        out,
        "mission_bus_open_streams",
        "Open event streams.",
        app.streams.open() as u64,
    );
    if let Some(bytes) = disk {
        gauge(
            out,
            "mission_bus_disk_bytes",
            "Bytes the data directory occupies on disk.",
            bytes,
        );
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    head(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    head(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    head(out, name, "histogram", help);
    for (bound, n) in &h.buckets {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// A route template as a label value: `{m}` becomes `:m`, so that even
/// simple line-based parsers (which stop a label set at the first `}`) read
/// it.
fn route_label(route: &str) -> String {
    route.replace('{', ":").replace('}', "")
}

/// Label values: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
