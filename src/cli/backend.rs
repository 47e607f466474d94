//! One interface over where the commands run: the data directory
//! ([`Local`], the library directly) or a running server
//! ([`super::remote::Remote`], over HTTP). Every method returns the JSON
//! the command prints, so a command's output is the same either way, and
//! its failures carry the same exit codes.

use std::io::Write;
use std::path::Path;

use mission_bus::document::{self, event_to_json};
use mission_bus::{Action, AppendOptions, Event, Json, MissionBus, MissionConfig, NewMission};
use serde_json::Value;
use uuid::Uuid;

use super::args::Format;
use super::progress::Progress;
use super::{CliResult, Failure, EXIT_NOT_FOUND};

/// What the commands need from a store, local or remote.
pub(crate) trait Backend {
    /// Create a mission; its events (`mission_created`, the lead's join).
    fn create(
        &self,
        mission: &str,
        title: &str,
        lead: &str,
        config: MissionConfig,
    ) -> CliResult<Vec<Value>>;
    /// Register a participant, as the operator.
    fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> CliResult<Value>;
    /// Append as the participant `sender`, checked against its role.
    fn append(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &AppendOptions,
    ) -> CliResult<Value>;
    /// The resume packet of handoff `handoff`, or of the latest one to `recipient`.
    fn resume(
        &self,
        mission: &str,
        handoff: Option<Uuid>,
        recipient: Option<&str>,
    ) -> CliResult<Value>;
    /// Call `each` on the events `from..=to` (default: the head) read as
    /// `reader`, which needs `read`.
    fn replay(
        &self,
        mission: &str,
        reader: &str,
        from: u64,
        to: Option<u64>,
        each: &mut dyn FnMut(Value) -> CliResult,
    ) -> CliResult;
    /// Write the mission's export to `out`.
    fn export(&self, out: &mut dyn Write, mission: &str, format: Format) -> CliResult;
    /// Import a whole mission log; the number of events written.
    fn import(&self, events: Vec<Event>) -> CliResult<u64>;
    /// `(mission_id, title, head_sequence, forked_from)` of every mission,
    /// sorted by id (`forked_from`: the lineage JSON of a fork, else null).
    fn missions(&self) -> CliResult<Vec<(String, String, u64, Value)>>;
    /// Verify one mission, or all; `each` gets every report as it is made.
    fn verify(&self, mission: Option<&str>, each: &mut dyn FnMut(Value) -> CliResult) -> CliResult;
    /// Copy the whole store, consistently, into `to` (on the machine that
    /// holds the store); the backup report.
    fn backup(&self, to: &Path) -> CliResult<Value>;
}

/// Environment variable: the largest store (bytes) copied aside before an
/// open, kept if the open finds damage (0: never).
const EVIDENCE_LIMIT_ENV: &str = "MISSION_BUS_EVIDENCE_LIMIT";

/// The data directory, opened by this process.
pub(crate) struct Local {
    bus: MissionBus,
}

impl Local {
    /// Open the data directory. When a server holds it, the error says
    /// where that server listens.
    /// `create_if_missing: false` is for commands that only read: a
    /// directory without a store is "not found" (exit 4), nothing created.
    /// `MISSION_BUS_EVIDENCE_LIMIT` (bytes) sets how large a store is still
    /// copied aside before opening (`MissionBusBuilder::evidence_limit`).
    pub(crate) fn open(data: &Path, create_if_missing: bool) -> CliResult<Local> {
        if let Some(url) = super::store_override() {
            return Ok(Local {
                bus: MissionBus::builder_url(url)
                    .create_if_missing(create_if_missing)
                    .open()?,
            });
        }
        let mut builder = MissionBus::builder(data).create_if_missing(create_if_missing);
        if let Some(limit) = std::env::var_os(EVIDENCE_LIMIT_ENV) {
            let bytes = limit.to_str().and_then(|s| s.trim().parse::<u64>().ok());
            let Some(bytes) = bytes else {
                return Err(Failure::usage(format!(
                    "{EVIDENCE_LIMIT_ENV}={limit:?} is not a number of bytes"
                )));
            };
            builder = builder.evidence_limit(bytes);
        }
        match builder.open() {
            Ok(bus) => Ok(Local { bus }),
            Err(e @ mission_bus::Error::DataDirInUse { .. }) => {
                let url = std::fs::read_to_string(data.join(mission_bus::server::SERVER_URL_FILE))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| s.starts_with("http://"));
                match url {
                    Some(url) => Err(Failure::other(format!(
                        "data dir {} is in use by `mission-bus serve` at {url}: \
                         use --server {url} (with --token or MISSION_BUS_TOKEN)",
                        data.display()
                    ))),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The library handle (for `demo`).
    pub(crate) fn bus(&self) -> &MissionBus {
        &self.bus
    }
}

impl Backend for Local {
    fn create(
        &self,
        mission: &str,
        title: &str,
        lead: &str,
        config: MissionConfig,
    ) -> CliResult<Vec<Value>> {
        let events = self
            .bus
            .create_mission(NewMission::new(mission, title).config(config).lead(lead))?;
        Ok(events.iter().map(event_to_json).collect())
    }

    fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> CliResult<Value> {
        Ok(event_to_json(
            &self.bus.join(mission, name, role, metadata)?,
        ))
    }

    fn append(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &AppendOptions,
    ) -> CliResult<Value> {
        Ok(event_to_json(
            &self.bus.append(mission, sender, action, opts)?,
        ))
    }

    fn resume(
        &self,
        mission: &str,
        handoff: Option<Uuid>,
        recipient: Option<&str>,
    ) -> CliResult<Value> {
        // Name a missing mission as such, whichever way the handoff is asked for.
        self.bus.state(mission)?;
        let packet = match (handoff, recipient) {
            (Some(id), _) => {
                let packet = self.bus.resume_packet(&id)?;
                if packet.mission_id != mission {
                    return Err(Failure::new(
                        EXIT_NOT_FOUND,
                        format!(
                            "handoff not found: {id} in mission '{mission}' (it belongs to mission '{}')",
                            packet.mission_id
                        ),
                    ));
                }
                packet
            }
            (None, Some(name)) => self.bus.latest_resume_packet(mission, name)?,
            (None, None) => return Err(Failure::usage("give --handoff ID or --for NAME")),
        };
        Ok(document::resume_packet_to_json(&packet))
    }

    fn replay(
        &self,
        mission: &str,
        reader: &str,
        from: u64,
        to: Option<u64>,
        each: &mut dyn FnMut(Value) -> CliResult,
    ) -> CliResult {
        // Checks `read` before anything is printed.
        let events = self.bus.replay(mission, reader, from)?;
        let head = self.bus.state(mission)?.head;
        let last = to.unwrap_or(head).min(head);
        let progress = Progress::new("replay", (last + 1).saturating_sub(from));
        let result = (|| {
            for e in events {
                let e = e?;
                if e.sequence > last {
                    break;
                }
                progress.inc();
                each(event_to_json(&e))?;
            }
            Ok(())
        })();
        progress.finish();
        result
    }

    fn export(&self, out: &mut dyn Write, mission: &str, format: Format) -> CliResult {
        let state = self.bus.state(mission)?;
        let progress = Progress::new("export", state.head);
        let events = self
            .bus
            .events(mission, 1, state.head)?
            .inspect(|_| progress.inc());
        let result = match format {
            Format::Seed => document::seed_document(&state, events)
                .map_err(Failure::from)
                .and_then(|doc| write_pretty(out, &doc)),
            Format::Jsonl => (|| {
                for e in events {
                    writeln!(out, "{}", event_to_json(&e?))?;
                }
                Ok(())
            })(),
        };
        progress.finish();
        result
    }

    fn import(&self, events: Vec<Event>) -> CliResult<u64> {
        let progress = Progress::new("import", events.len() as u64);
        let bar = progress.clone();
        let result = self.bus.import_log(events, move |done| bar.set(done));
        progress.finish();
        Ok(result?)
    }

    fn missions(&self) -> CliResult<Vec<(String, String, u64, Value)>> {
        Ok(self
            .bus
            .missions()?
            .into_iter()
            .map(|m| {
                let lineage = m
                    .forked_from
                    .as_ref()
                    .map_or(Value::Null, mission_bus::document::lineage_to_json);
                (m.mission_id, m.title, m.head_sequence, lineage)
            })
            .collect())
    }

    fn verify(&self, mission: Option<&str>, each: &mut dyn FnMut(Value) -> CliResult) -> CliResult {
        // Missions the ledger knows but sled lost entirely are verified
        // (and reported) too.
        let missions = match mission {
            Some(m) => vec![m.to_string()],
            None => self.bus.verify_ids(),
        };
        if let Some(e) = self.bus.ledger_problem() {
            each(
                serde_json::json!({"ledger": "damaged", "intact": false, "problem": e.to_string()}),
            )?;
        }
        for m in &missions {
            // One mission the store cannot read must not hide the others.
            match self.bus.verify(m) {
                Ok(report) => each(report.to_json())?,
                Err(e) if e.kind() == mission_bus::ErrorKind::Integrity => each(
                    serde_json::json!({"mission_id": m, "intact": false, "error": e.to_string()}),
                )?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn backup(&self, to: &Path) -> CliResult<Value> {
        Ok(self.bus.backup(to)?.to_json())
    }
}

/// The seed document as `export` prints it: pretty JSON and a newline.
pub(crate) fn write_pretty(out: &mut dyn Write, doc: &Value) -> CliResult {
    serde_json::to_writer_pretty(&mut *out, doc)
        .map_err(|e| Failure::from(std::io::Error::from(e)))?;
    writeln!(out)?;
    Ok(())
}
