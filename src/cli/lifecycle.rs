//! Commands of the resuming agent's API: handoff lifecycle steps, lease
//! expiry, handoff and checkpoint listings, membership, tokens, consumer
//! positions, and filtered `replay`. Each runs on a [`Backend`], so it
//! works on the data directory and over `--server` alike.

use std::io::Write;

use chrono::{DateTime, Utc};
use mission_bus::{EventFilter, EventType};
use serde_json::Value;

use super::args::{Command, FilterArgs, Step};
use super::backend::{Backend, StepArgs, StepKind};
use super::commands::parse_uuid;
use super::{CliResult, Failure};

/// Opens the backend: `true` for writes (may create the store), `false`
/// for reads (an existing store only).
pub(crate) type Connect<'a> = &'a dyn Fn(bool) -> CliResult<Box<dyn Backend>>;

/// Run one of the commands defined for this API.
pub(crate) fn run(cmd: Command, connect: Connect, out: &mut dyn Write) -> CliResult {
    match cmd {
        Command::Accept(s) => step(connect, out, s, StepKind::Accept),
        Command::Heartbeat(s) => step(connect, out, s, StepKind::Heartbeat),
        Command::Complete(s) => step(connect, out, s, StepKind::Complete),
        Command::Decline(s) => step(connect, out, s, StepKind::Decline),
        Command::Release(s) => step(connect, out, s, StepKind::Release),
        Command::Expire { mission, at } => {
            let at = at
                .map(|t| {
                    DateTime::parse_from_rfc3339(&t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| {
                            Failure::usage(format!("invalid --at '{t}': not RFC 3339 ({e})"))
                        })
                })
                .transpose()?;
            lines(out, connect(true)?.expire(mission.as_deref(), at)?)
        }
        Command::Handoffs { mission, recipient } => lines(
            out,
            connect(false)?.handoffs(&mission, recipient.as_deref())?,
        ),
        Command::Checkpoints {
            mission,
            by,
            before,
            limit,
            id,
            latest,
        } => {
            if let Some(id) = id {
                let id = parse_uuid("--id", &id)?;
                return line(out, connect(false)?.checkpoint(&mission, id)?);
            }
            if latest {
                return line(
                    out,
                    connect(false)?.latest_checkpoint(&mission, by.as_deref())?,
                );
            }
            if limit == 0 {
                return Err(Failure::usage("--limit must be at least 1"));
            }
            lines(
                out,
                connect(false)?.checkpoints(&mission, by.as_deref(), before, limit)?,
            )
        }
        Command::Role {
            mission,
            name,
            role,
            by,
        } => line(
            out,
            connect(true)?.change_role(&mission, &name, &role, by.as_deref())?,
        ),
        Command::Remove { mission, name, by } => {
            line(out, connect(true)?.remove(&mission, &name, by.as_deref())?)
        }
        Command::Token {
            mission,
            name,
            rotate,
        } => line(out, connect(true)?.token(&mission, &name, rotate)?),
        Command::Ack {
            mission,
            actor,
            consumer,
            sequence,
        } => line(
            out,
            connect(true)?.ack(&mission, &actor.name, &consumer, sequence)?,
        ),
        Command::Consumers {
            mission,
            participant,
        } => lines(
            out,
            connect(false)?.consumers(&mission, participant.as_deref())?,
        ),
        _ => unreachable!("the other commands are dispatched in commands.rs"),
    }
}

fn line(out: &mut dyn Write, v: Value) -> CliResult {
    writeln!(out, "{v}")?;
    Ok(())
}

fn lines(out: &mut dyn Write, vs: Vec<Value>) -> CliResult {
    for v in vs {
        writeln!(out, "{v}")?;
    }
    Ok(())
}

fn step(connect: Connect, out: &mut dyn Write, s: Step, kind: StepKind) -> CliResult {
    let args = StepArgs {
        kind,
        handoff: parse_uuid("--handoff", &s.handoff)?,
        lease_ms: s.lease_ms,
        note: s.note,
    };
    line(out, connect(true)?.step(&s.mission, &s.actor.name, &args)?)
}

/// `replay` with filters: pages of filtered reads, printed as JSON Lines.
pub(crate) fn filtered_replay(
    backend: &dyn Backend,
    out: &mut dyn Write,
    mission: &str,
    reader: &str,
    range: (u64, Option<u64>),
    types: Vec<EventType>,
    f: &FilterArgs,
) -> CliResult {
    let newest_first = f.order.as_deref() == Some("desc");
    let mut left = f.limit.map_or(u64::MAX, |l| l);
    let mut filter = EventFilter {
        types,
        sender: f.sender.clone(),
        recipient: f.recipient.clone(),
        topic_prefix: f.topic_prefix.clone(),
        correlation_id: f.correlation_id.clone(),
        causation_id: f.causation_id.clone(),
        attribute: match &f.attribute {
            None => None,
            Some(a) => {
                let (k, v) = a.split_once('=').ok_or_else(|| {
                    super::Failure::usage(format!("--with-attr '{a}' is not KEY=VALUE"))
                })?;
                Some((k.to_string(), v.to_string()))
            }
        },
        from: Some(range.0),
        to: range.1,
        newest_first,
        limit: None,
    };
    let mut consumer = f.consumer.as_deref();
    while left > 0 {
        filter.limit = Some(left.min(1000) as usize);
        let (events, next) = backend.read_page(mission, reader, &filter, consumer)?;
        left -= events.len() as u64;
        for e in events {
            writeln!(out, "{e}")?;
        }
        let Some(next) = next else { break };
        if newest_first {
            filter.to = Some(next);
        } else {
            filter.from = Some(next);
            // The consumer's position only sets where the first page starts.
            consumer = None;
        }
    }
    Ok(())
}
