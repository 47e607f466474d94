//! `mission-bus mcp`: the Model Context Protocol over stdio (the official
//! Rust SDK, `rmcp`), so agents reach the bus as tools. It runs on the same
//! [`Backend`] as the other commands: a running server (`--server URL`,
//! admin token in `MISSION_BUS_TOKEN`) or the data directory (`--data`).
//!
//! Tools: `publish`, `checkpoint`, `handoff`, the handoff lifecycle
//! (`accept`, `heartbeat`, `complete`, `decline`, `release`), `handoffs`,
//! `checkpoints`, `resume`, `read` (with the store's filters), `ack`
//! (consumer positions), `verify`. Writes and reads name the
//! acting participant (`as`), checked against its role as the CLI's `--as`
//! is (with a participant token, `as` must be the token's owner). A
//! failure is a tool error (`isError: true`) whose text is the CLI's
//! `error: ...` line and whose structured content is `{error, exit_code}`,
//! never a protocol failure.

use std::path::Path;
use std::sync::Arc;

use mission_bus::{Action, AppendOptions, EventFilter, EventMeta, EventType, Json};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::backend::{Backend, Local, StepArgs, StepKind};
use super::remote::Remote;
use super::{CliResult, Failure};

/// Most events one `read` call returns.
const MAX_READ: u64 = 1000;

/// Most checkpoints one `checkpoints` call returns.
const MAX_CHECKPOINTS: u64 = 1000;

/// The lease of `accept` and `heartbeat` when none is given (as the CLI's).
const DEFAULT_LEASE_MS: u64 = 60_000;

/// Every tool's name, for the unknown-tool message.
const TOOL_NAMES: &str = "publish, checkpoint, handoff, accept, heartbeat, complete, decline, \
                          release, handoffs, checkpoints, resume, read, ack, verify";

/// Serve MCP on stdin/stdout until the client closes it.
pub(crate) fn run(server: Option<&str>, token: Option<&str>, data: &Path) -> CliResult {
    let backend: Arc<dyn Backend + Send + Sync> = match server {
        Some(url) => Arc::new(Remote::new(url, token)?),
        None => Arc::new(Local::open(data, false)?),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("starting the MCP runtime: {e}")))?;
    if let Ok(level) = std::env::var("MISSION_BUS_MCP_LOG") {
        mission_bus::server::init_logging(&level, mission_bus::server::LogFormat::Text)?;
    }
    let served = runtime.block_on(async move {
        let service = Mcp { backend }
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Failure::other(format!("MCP initialization failed: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| Failure::other(format!("MCP service failed: {e}")))?;
        Ok(())
    });
    // Queued log lines reach stderr before the process exits.
    mission_bus::server::flush_logs();
    served
}

#[derive(Clone)]
struct Mcp {
    backend: Arc<dyn Backend + Send + Sync>,
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mission-bus",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A durable, append-only log for a mission of agents: publish messages, \
                 save checkpoints, hand work over; accept work handed to you (a lease you \
                 keep with heartbeat), then complete, decline or release it; resume from a \
                 handoff or your latest checkpoint; list handoffs and checkpoints; read the \
                 log; verify its hash chain. Name yourself with `as`.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let backend = Arc::clone(&self.backend);
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        // The backend blocks (the store, or an HTTP call).
        let result = tokio::task::spawn_blocking(move || call(&*backend, &name, &args))
            .await
            .unwrap_or_else(|e| Err(Failure::other(format!("tool worker failed: {e}"))));
        Ok(match result {
            Ok(v) => {
                let mut r = CallToolResult::structured(v.clone());
                r.content = vec![ContentBlock::text(v.to_string())];
                r
            }
            Err(f) => {
                let message = f.message().replace(['\n', '\r'], " ");
                let mut r = CallToolResult::structured_error(
                    json!({"error": message, "exit_code": f.code()}),
                );
                r.content = vec![ContentBlock::text(format!("error: {message}"))];
                r
            }
        }
        .into())
    }
}

fn schema(properties: Value, required: &[&str]) -> Arc<Map<String, Value>> {
    let v = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("a JSON object literal"),
    }
}

/// The tools and their input schemas.
fn tools() -> Vec<Tool> {
    let mission = json!({"type": "string", "description": "Mission id, e.g. mission-883."});
    let actor = json!({"type": "string", "description": "The acting participant (checked against its role)."});
    let guard_seq = json!({"type": "integer", "minimum": 0,
        "description": "Write nothing unless the mission's head sequence is this (conflict otherwise)."});
    let event_id = json!({"type": "string", "format": "uuid",
        "description": "Caller-chosen event id: a retry with the same id and content returns the stored event."});
    let corr = json!({"type": "string", "description": "Correlation id stored with the event."});
    let cause = json!({"type": "string", "description": "Causation id stored with the event (what caused it)."});
    vec![
        Tool::new(
            "publish",
            "Publish a message on a topic (capability `publish`). Returns the stored event.",
            schema(
                json!({"mission": mission, "as": actor, "topic": {"type": "string"},
                       "payload": {"description": "Any JSON value."},
                       "expected_sequence": guard_seq, "event_id": event_id,
                       "correlation_id": corr, "causation_id": cause}),
                &["mission", "as", "topic"],
            ),
        ),
        Tool::new(
            "checkpoint",
            "Save a checkpoint: a summary and the state to resume from (capability `checkpoint`). Returns the stored event, with its checkpoint_id.",
            schema(
                json!({"mission": mission, "as": actor, "summary": {"type": "string"},
                       "state": {"description": "Any JSON value."},
                       "artifacts": {"type": "array", "items": {"type": "string"}},
                       "expected_sequence": guard_seq, "event_id": event_id,
                       "correlation_id": corr, "causation_id": cause}),
                &["mission", "as", "summary"],
            ),
        ),
        Tool::new(
            "handoff",
            "Hand work to a participant, pointing at a checkpoint (capability `handoff`). Returns the stored event, with its handoff_id.",
            schema(
                json!({"mission": mission, "as": actor,
                       "to": {"type": "string", "description": "The recipient."},
                       "checkpoint_id": {"type": "string", "format": "uuid"},
                       "note": {"type": "string"},
                       "expected_sequence": guard_seq, "event_id": event_id,
                       "correlation_id": corr, "causation_id": cause}),
                &["mission", "as", "to", "checkpoint_id"],
            ),
        ),
        step_tool(
            "accept",
            "Accept a handoff addressed to you: you hold a lease on the work until it lapses (keep it with heartbeat). Returns the stored event.",
            true,
        ),
        step_tool(
            "heartbeat",
            "Extend the lease of a handoff you hold: it now ends lease_ms from now. Returns the stored event.",
            true,
        ),
        step_tool(
            "complete",
            "Finish a handoff you hold. Returns the stored event.",
            false,
        ),
        step_tool(
            "decline",
            "Refuse a handoff offered to you; the work returns to its sender. Returns the stored event.",
            false,
        ),
        step_tool(
            "release",
            "Give back a handoff you hold; the work returns to its sender. Returns the stored event.",
            false,
        ),
        Tool::new(
            "handoffs",
            "List handoffs with their lifecycle status (offered, accepted, completed, declined, released, expired), open ones first: everyone's, or those addressed to `for`. Returns {handoffs}.",
            schema(
                json!({"mission": mission,
                       "for": {"type": "string", "description": "Only handoffs addressed to this participant."}}),
                &["mission"],
            ),
        ),
        Tool::new(
            "checkpoints",
            "Checkpoints newest first (of `by`, or anyone's), or one by checkpoint_id, or only the latest. Returns {checkpoints}.",
            schema(
                json!({"mission": mission,
                       "by": {"type": "string", "description": "Only checkpoints made by this participant."},
                       "checkpoint_id": {"type": "string", "format": "uuid", "description": "Only this checkpoint."},
                       "latest": {"type": "boolean", "default": false, "description": "Only the newest one."},
                       "before": {"type": "integer", "minimum": 0, "description": "Only checkpoints with a sequence below this (paging)."},
                       "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CHECKPOINTS, "default": 100}}),
                &["mission"],
            ),
        ),
        Tool::new(
            "resume",
            "The resume packet: give handoff_id, or `for` (that participant's accepted or newest offered handoff, else its latest checkpoint).",
            schema(
                json!({"mission": mission,
                       "handoff_id": {"type": "string", "format": "uuid"},
                       "for": {"type": "string", "description": "A recipient's name."}}),
                &["mission"],
            ),
        ),
        Tool::new(
            "read",
            "Read the mission's events, as a participant with `read`, filtered in the store. Returns {events, next}; call again with from = next for more (with order desc: to = next; null at the start).",
            schema(
                json!({"mission": mission, "as": actor,
                       "from": {"type": "integer", "minimum": 1, "default": 1},
                       "to": {"type": "integer", "minimum": 0, "description": "Last sequence (inclusive)."},
                       "limit": {"type": "integer", "minimum": 1, "maximum": MAX_READ, "default": 100},
                       "types": {"type": "array", "items": {"type": "string"},
                                 "description": "Only these event types (message, checkpoint, handoff, handoff_accepted, ...)."},
                       "sender": {"type": "string", "description": "Only events by this sender."},
                       "recipient": {"type": "string", "description": "Only handoffs to this participant."},
                       "topic_prefix": {"type": "string", "description": "Only messages whose topic starts with this."},
                       "order": {"enum": ["asc", "desc"], "default": "asc",
                                 "description": "desc: newest first (with limit: the last N)."},
                       "consumer": {"type": "string", "description": "Start after what this consumer of yours acknowledged (see ack)."}}),
                &["mission", "as"],
            ),
        ),
        Tool::new(
            "ack",
            "Acknowledge the events up to `sequence` for your named consumer (created on first use; never moves back), so a later read with `consumer` starts after it, in any process. Returns {participant, consumer, position}.",
            schema(
                json!({"mission": mission, "as": actor,
                       "consumer": {"type": "string"},
                       "sequence": {"type": "integer", "minimum": 0}}),
                &["mission", "as", "consumer", "sequence"],
            ),
        ),
        Tool::new(
            "verify",
            "Verify the mission's checksums, hash chain and indexes. Returns the report; `intact` says whether it passed.",
            schema(json!({"mission": mission}), &["mission"]),
        ),
    ]
}

/// A handoff lifecycle tool: `mission`, `as`, `handoff_id`, and the lease
/// (`accept`, `heartbeat`) or a note (the others).
fn step_tool(name: &'static str, description: &'static str, lease: bool) -> Tool {
    let mut props = json!({
        "mission": {"type": "string", "description": "Mission id, e.g. mission-883."},
        "as": {"type": "string", "description": "The acting participant: the handoff's recipient or holder."},
        "handoff_id": {"type": "string", "format": "uuid"},
    });
    if lease {
        props["lease_ms"] = json!({"type": "integer", "minimum": 1, "default": DEFAULT_LEASE_MS,
            "description": "Lease length in milliseconds (at most 24 h)."});
    } else {
        props["note"] = json!({"type": "string"});
    }
    Tool::new(
        name,
        description,
        schema(props, &["mission", "as", "handoff_id"]),
    )
}

/// The arguments of one call, with errors that name the argument.
struct Args<'a>(&'a Map<String, Value>);

impl Args<'_> {
    fn str(&self, key: &str) -> CliResult<String> {
        self.opt_str(key)?
            .ok_or_else(|| Failure::usage(format!("missing argument '{key}'")))
    }

    fn opt_str(&self, key: &str) -> CliResult<Option<String>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Failure::usage(format!(
                "argument '{key}' must be a string, got {v}"
            ))),
        }
    }

    fn opt_u64(&self, key: &str) -> CliResult<Option<u64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Failure::usage(format!(
                    "argument '{key}' must be a non-negative integer, got {v}"
                ))
            }),
        }
    }

    fn json(&self, key: &str) -> Json {
        Json::from_value(self.0.get(key).unwrap_or(&Value::Null))
    }

    fn uuid(&self, key: &str) -> CliResult<Option<Uuid>> {
        self.opt_str(key)?
            .map(|s| {
                Uuid::parse_str(&s).map_err(|e| {
                    Failure::usage(format!("argument '{key}': '{s}' is not a UUID ({e})"))
                })
            })
            .transpose()
    }

    fn opts(&self) -> CliResult<AppendOptions> {
        Ok(AppendOptions {
            expected_sequence: self.opt_u64("expected_sequence")?,
            event_id: self.uuid("event_id")?,
            meta: EventMeta {
                correlation_id: self.opt_str("correlation_id")?,
                causation_id: self.opt_str("causation_id")?,
                ..EventMeta::default()
            },
        })
    }

    /// `types`: a list of event type names.
    fn types(&self) -> CliResult<Vec<EventType>> {
        let items = match self.0.get("types") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(v) => {
                return Err(Failure::usage(format!(
                    "argument 'types' must be a list of event types, got {v}"
                )))
            }
        };
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .and_then(|t| EventType::parse(t).ok())
                    .ok_or_else(|| {
                        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        Failure::usage(format!(
                            "argument 'types': {i} is not an event type ({})",
                            all.join(", ")
                        ))
                    })
            })
            .collect()
    }

    fn opt_bool(&self, key: &str) -> CliResult<bool> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(Failure::usage(format!(
                "argument '{key}' must be true or false, got {v}"
            ))),
        }
    }

    fn only(&self, allowed: &[&str]) -> CliResult {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Failure::usage(format!(
                "unknown argument '{k}' (expected: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// Run one tool.
fn call(backend: &dyn Backend, tool: &str, args: &Map<String, Value>) -> CliResult<Value> {
    let a = Args(args);
    const GUARD: [&str; 4] = [
        "expected_sequence",
        "event_id",
        "correlation_id",
        "causation_id",
    ];
    match tool {
        "publish" => {
            a.only(&[&["mission", "as", "topic", "payload"][..], &GUARD].concat())?;
            let action = Action::Publish {
                topic: a.str("topic")?,
                payload: a.json("payload"),
            };
            backend.append(&a.str("mission")?, &a.str("as")?, action, &a.opts()?)
        }
        "checkpoint" => {
            a.only(
                &[
                    &["mission", "as", "summary", "state", "artifacts"][..],
                    &GUARD,
                ]
                .concat(),
            )?;
            let artifacts = match args.get("artifacts") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            Failure::usage(format!("argument 'artifacts': {i} is not a string"))
                        })
                    })
                    .collect::<CliResult<_>>()?,
                Some(v) => {
                    return Err(Failure::usage(format!(
                        "argument 'artifacts' must be a list of strings, got {v}"
                    )))
                }
            };
            let action = Action::Checkpoint {
                summary: a.str("summary")?,
                state: a.json("state"),
                artifacts,
            };
            backend.append(&a.str("mission")?, &a.str("as")?, action, &a.opts()?)
        }
        "handoff" => {
            a.only(
                &[
                    &["mission", "as", "to", "checkpoint_id", "note"][..],
                    &GUARD,
                ]
                .concat(),
            )?;
            let checkpoint_id = a
                .uuid("checkpoint_id")?
                .ok_or_else(|| Failure::usage("missing argument 'checkpoint_id'"))?;
            let action = Action::Handoff {
                recipient: a.str("to")?,
                checkpoint_id,
                note: a.opt_str("note")?.unwrap_or_default(),
            };
            backend.append(&a.str("mission")?, &a.str("as")?, action, &a.opts()?)
        }
        "accept" | "heartbeat" | "complete" | "decline" | "release" => {
            let kind = match tool {
                "accept" => StepKind::Accept,
                "heartbeat" => StepKind::Heartbeat,
                "complete" => StepKind::Complete,
                "decline" => StepKind::Decline,
                _ => StepKind::Release,
            };
            let lease = matches!(kind, StepKind::Accept | StepKind::Heartbeat);
            a.only(&[
                "mission",
                "as",
                "handoff_id",
                if lease { "lease_ms" } else { "note" },
            ])?;
            let handoff = a
                .uuid("handoff_id")?
                .ok_or_else(|| Failure::usage("missing argument 'handoff_id'"))?;
            let step = StepArgs {
                kind,
                handoff,
                lease_ms: a.opt_u64("lease_ms")?.unwrap_or(DEFAULT_LEASE_MS),
                note: a.opt_str("note")?.unwrap_or_default(),
            };
            backend.step(&a.str("mission")?, &a.str("as")?, &step)
        }
        "handoffs" => {
            a.only(&["mission", "for"])?;
            let list = backend.handoffs(&a.str("mission")?, a.opt_str("for")?.as_deref())?;
            Ok(json!({ "handoffs": list }))
        }
        "checkpoints" => {
            a.only(&[
                "mission",
                "by",
                "checkpoint_id",
                "latest",
                "before",
                "limit",
            ])?;
            let mission = a.str("mission")?;
            let by = a.opt_str("by")?;
            let list = if let Some(id) = a.uuid("checkpoint_id")? {
                vec![backend.checkpoint(&mission, id)?]
            } else if a.opt_bool("latest")? {
                vec![backend.latest_checkpoint(&mission, by.as_deref())?]
            } else {
                let limit = a.opt_u64("limit")?.unwrap_or(100);
                if limit == 0 || limit > MAX_CHECKPOINTS {
                    return Err(Failure::usage(format!(
                        "argument 'limit' must be 1..={MAX_CHECKPOINTS}, got {limit}"
                    )));
                }
                backend.checkpoints(
                    &mission,
                    by.as_deref(),
                    a.opt_u64("before")?,
                    limit as usize,
                )?
            };
            Ok(json!({ "checkpoints": list }))
        }
        "resume" => {
            a.only(&["mission", "handoff_id", "for"])?;
            let handoff = a.uuid("handoff_id")?;
            let recipient = a.opt_str("for")?;
            if handoff.is_none() && recipient.is_none() {
                return Err(Failure::usage("give 'handoff_id' or 'for'"));
            }
            backend.resume(&a.str("mission")?, handoff, recipient.as_deref())
        }
        "read" => {
            a.only(&[
                "mission",
                "as",
                "from",
                "to",
                "limit",
                "types",
                "sender",
                "recipient",
                "topic_prefix",
                "order",
                "consumer",
            ])?;
            let limit = a.opt_u64("limit")?.unwrap_or(100);
            if limit == 0 || limit > MAX_READ {
                return Err(Failure::usage(format!(
                    "argument 'limit' must be 1..={MAX_READ}, got {limit}"
                )));
            }
            let newest_first = match a.opt_str("order")?.as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(o) => {
                    return Err(Failure::usage(format!(
                        "argument 'order' must be asc or desc, got '{o}'"
                    )))
                }
            };
            let from = a.opt_u64("from")?.map(|f| f.max(1));
            let filter = EventFilter {
                types: a.types()?,
                sender: a.opt_str("sender")?,
                recipient: a.opt_str("recipient")?,
                topic_prefix: a.opt_str("topic_prefix")?,
                from,
                to: a.opt_u64("to")?,
                newest_first,
                limit: Some(limit as usize),
                ..EventFilter::default()
            };
            let consumer = a.opt_str("consumer")?;
            let (events, next) = backend.read_page(
                &a.str("mission")?,
                &a.str("as")?,
                &filter,
                consumer.as_deref(),
            )?;
            // Oldest first, `next` is always where to go on from (the head
            // reached: after the last event); newest first, null at the start.
            let next = match (newest_first, next) {
                (true, n) => n.map_or(Value::Null, |n| json!(n)),
                (false, Some(n)) => json!(n),
                (false, None) => json!(events
                    .last()
                    .and_then(|e| e["sequence"].as_u64())
                    .map_or(from.unwrap_or(1), |s| s + 1)),
            };
            Ok(json!({"events": events, "next": next}))
        }
        "ack" => {
            a.only(&["mission", "as", "consumer", "sequence"])?;
            let sequence = a
                .opt_u64("sequence")?
                .ok_or_else(|| Failure::usage("missing argument 'sequence'"))?;
            backend.ack(
                &a.str("mission")?,
                &a.str("as")?,
                &a.str("consumer")?,
                sequence,
            )
        }
        "verify" => {
            a.only(&["mission"])?;
            let mut report = Value::Null;
            backend.verify(Some(&a.str("mission")?), &mut |r| {
                report = r;
                Ok(())
            })?;
            Ok(report)
        }
        other => Err(Failure::usage(format!(
            "unknown tool '{other}' (expected: {TOOL_NAMES})"
        ))),
    }
}
