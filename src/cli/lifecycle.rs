//! Commands of the resuming agent's API: handoff lifecycle steps, lease
//! expiry, handoff and checkpoint listings, membership, tokens, consumer
//! positions, and filtered `replay`.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use mission_bus::document::{event_to_json, handoff_info_to_json};
use mission_bus::{EventFilter, EventType, MissionBus, OPERATOR};
use serde_json::json;

use super::args::{Command, FilterArgs, Step};
use super::commands::{open, open_existing, parse_uuid, print_event};
use super::{CliResult, Failure};

/// Run one of the commands defined for this API.
pub(crate) fn run(cmd: Command, data: &Path, out: &mut dyn Write) -> CliResult {
    match cmd {
        Command::Accept(s) => step(data, out, &s, "accept"),
        Command::Heartbeat(s) => step(data, out, &s, "heartbeat"),
        Command::Complete(s) => step(data, out, &s, "complete"),
        Command::Decline(s) => step(data, out, &s, "decline"),
        Command::Release(s) => step(data, out, &s, "release"),
        Command::Expire { mission, at } => {
            let at = match at {
                None => Utc::now(),
                Some(t) => DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        Failure::usage(format!("invalid --at '{t}': not RFC 3339 ({e})"))
                    })?,
            };
            let bus = open(data)?;
            let missions = match mission {
                Some(m) => vec![m],
                None => bus.mission_ids(),
            };
            for m in missions {
                for e in bus.expire_leases(&m, at)? {
                    print_event(out, &e)?;
                }
            }
            Ok(())
        }
        Command::Handoffs { mission, recipient } => {
            let bus = open_existing(data)?;
            for h in bus.handoffs(&mission, recipient.as_deref())? {
                writeln!(out, "{}", handoff_info_to_json(&h))?;
            }
            Ok(())
        }
        Command::Checkpoints {
            mission,
            by,
            before,
            limit,
            id,
            latest,
        } => {
            let bus = open_existing(data)?;
            if let Some(id) = id {
                let id = parse_uuid("--id", &id)?;
                return print_event(out, &bus.checkpoint_in(&mission, &id)?);
            }
            if latest {
                let e = match &by {
                    Some(who) => bus.latest_checkpoint(&mission, who)?,
                    None => match bus.checkpoints(&mission, None, None, 1)?.pop() {
                        Some(e) => e,
                        None => {
                            return Err(Failure::new(
                                super::EXIT_NOT_FOUND,
                                format!("mission '{mission}' has no checkpoint"),
                            ))
                        }
                    },
                };
                return print_event(out, &e);
            }
            if limit == 0 {
                return Err(Failure::usage("--limit must be at least 1"));
            }
            for e in bus.checkpoints(&mission, by.as_deref(), before, limit)? {
                print_event(out, &e)?;
            }
            Ok(())
        }
        Command::Role {
            mission,
            name,
            role,
            by,
        } => {
            let bus = open(data)?;
            let by = by.as_deref().unwrap_or(OPERATOR);
            print_event(out, &bus.change_role(&mission, by, &name, &role)?)
        }
        Command::Remove { mission, name, by } => {
            let bus = open(data)?;
            let by = by.as_deref().unwrap_or(OPERATOR);
            print_event(out, &bus.remove_participant(&mission, by, &name)?)
        }
        Command::Token {
            mission,
            name,
            rotate,
        } => {
            let bus = open(data)?;
            let (token, revoked) = if rotate {
                bus.reissue_token(&mission, &name)?
            } else {
                (bus.issue_token(&mission, &name)?, 0)
            };
            writeln!(
                out,
                "{}",
                json!({"mission_id": mission, "name": name, "token": token, "revoked": revoked})
            )?;
            Ok(())
        }
        Command::Ack {
            mission,
            actor,
            consumer,
            sequence,
        } => {
            let bus = open(data)?;
            let position = bus.ack(&mission, &actor.name, &consumer, sequence)?;
            writeln!(
                out,
                "{}",
                json!({"participant": actor.name, "consumer": consumer, "position": position})
            )?;
            Ok(())
        }
        Command::Consumers {
            mission,
            participant,
        } => {
            let bus = open_existing(data)?;
            for c in bus.consumers(&mission, participant.as_deref())? {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "participant": c.participant,
                        "consumer": c.consumer,
                        "position": c.position,
                        "updated_at": c.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    })
                )?;
            }
            Ok(())
        }
        _ => unreachable!("the other commands are dispatched in commands.rs"),
    }
}

fn step(data: &Path, out: &mut dyn Write, s: &Step, what: &str) -> CliResult {
    let id = parse_uuid("--handoff", &s.handoff)?;
    let bus = open(data)?;
    let (m, me) = (s.mission.as_str(), s.actor.name.as_str());
    let e = match what {
        "accept" => bus.accept_handoff(m, me, id, s.lease_ms)?,
        "heartbeat" => bus.heartbeat(m, me, id, s.lease_ms)?,
        "complete" => bus.complete_handoff(m, me, id, &s.note)?,
        "decline" => bus.decline_handoff(m, me, id, &s.note)?,
        _ => bus.release_handoff(m, me, id, &s.note)?,
    };
    print_event(out, &e)
}

/// `replay` with filters: pages of filtered reads, printed as JSON Lines.
pub(crate) fn filtered_replay(
    bus: &MissionBus,
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
        let page = bus.read_events(mission, Some(reader), &filter, consumer)?;
        for e in &page.events {
            writeln!(out, "{}", event_to_json(e))?;
        }
        left -= page.events.len() as u64;
        let Some(next) = page.next else { break };
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
