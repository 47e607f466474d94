//! `mission-bus cell run`: run an agent's command in an isolation cell of
//! the mission (docs/cells.md), recording `cell_started` and `cell_exited`.
//!
//! Order, so that a refusal leaves nothing behind: resolve the profile from
//! the mission's config; probe the mechanism on this machine (missing →
//! error, no event); record `cell_started` (the bus checks the profile and
//! the capability: denied → error, nothing started); issue the cell's
//! participant token; create the workspace (0700); run the command with
//! `MISSION_BUS_URL`, `MISSION_BUS_TOKEN`, `MISSION_BUS_MISSION`; record
//! `cell_exited`; optionally checkpoint the workspace's files.
//!
//! On the data directory this process holds sled's lock for the cell's
//! lifetime, so it also serves the bus on a loopback port (127.0.0.1, an
//! ephemeral port, a throwaway admin token never shown) and the command
//! publishes over HTTP with its participant token. With `--server` the
//! command gets that server's address.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use mission_bus::cell::{self, CellSpec, Mechanism};
use mission_bus::document::event_to_json;
use mission_bus::{Action, AppendOptions, Json, MissionConfig, MAX_ARTIFACTS};
use serde_json::{json, Value};
use uuid::Uuid;

use super::backend::{Backend, Local};
use super::remote::{seg, Remote};
use super::{cell_run, CliResult, Failure};

/// `mission-bus cell ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum CellCommand {
    /// Run COMMAND as participant NAME in an isolation cell of PROFILE;
    /// records cell_started and cell_exited, and exits with the command's
    /// status (128 + N when signal N ended it).
    Run {
        /// Mission id.
        mission: String,
        /// The participant the command acts as (it gets a token of its own).
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// Isolation profile (one of the mission's; a profile other than its
        /// first needs `configure_isolation`).
        #[arg(long, value_name = "PROFILE")]
        profile: String,
        /// Workspace directory (default: mission-bus-cells/MISSION/NAME).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Container image for level 3 (rootless_podman) cells.
        #[arg(long, value_name = "IMAGE", env = cell::IMAGE_ENV)]
        image: Option<String>,
        /// After the command ends, save a checkpoint as NAME with this
        /// summary whose artifacts are the workspace's files and content
        /// hashes (needs `checkpoint`).
        #[arg(long, value_name = "SUMMARY")]
        checkpoint_on_exit: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// Default parent of workspaces, relative to the current directory.
const DEFAULT_CELLS_DIR: &str = "mission-bus-cells";

/// Run a `cell` subcommand.
pub(crate) fn run(
    command: CellCommand,
    data: &Path,
    server: Option<&str>,
    token: Option<&str>,
    out: &mut dyn Write,
) -> CliResult {
    let CellCommand::Run {
        mission,
        name,
        profile,
        workspace,
        image,
        checkpoint_on_exit,
        command,
    } = command;
    let host: Box<dyn Host> = match server {
        Some(url) => Box::new(Remote::new(url, token)?),
        None => Box::new(LocalHost {
            local: Local::open(data, false)?,
            loopback: std::cell::RefCell::new(None),
        }),
    };
    // 1. The profile, from the mission's config.
    let config = host.config(&mission)?;
    let Some(p) = config.isolation_profiles.iter().find(|p| p.name == profile) else {
        let known: Vec<&str> = config
            .isolation_profiles
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        return Err(mission_bus::Error::ProfileNotFound {
            mission,
            profile,
            known: known.join(", "),
        }
        .into());
    };
    let mechanism = Mechanism::parse(&p.mechanism).ok_or_else(|| {
        Failure::from(mission_bus::Error::CellUnavailable {
            profile: profile.clone(),
            mechanism: p.mechanism.clone(),
            missing: "this build of mission-bus cannot launch that mechanism (it knows \
                      directory_workspace, mount_namespace, rootless_podman)"
                .to_string(),
        })
    })?;
    // 2. Can this machine do it? Nothing recorded or started yet.
    let launcher = cell::probe(&profile, mechanism, image.as_deref())?;
    let workspace = cell::absolute(&match workspace {
        Some(w) => w,
        None => cell::default_workspace(Path::new(DEFAULT_CELLS_DIR), &mission, &name)?,
    })?;
    let Some(ws_text) = workspace.to_str().map(str::to_string) else {
        return Err(Failure::usage(format!(
            "workspace {} is not a UTF-8 path",
            workspace.display()
        )));
    };
    if workspace.exists() && !workspace.is_dir() {
        return Err(Failure::usage(format!(
            "workspace {} exists and is not a directory",
            workspace.display()
        )));
    }
    // 3. Record the start: the bus checks profile and capability here.
    let started = host.start(&mission, &name, &profile, mechanism, &ws_text, &command)?;
    let cell_id = started.cell_id;
    writeln!(out, "{}", started.event)?;
    out.flush()?;
    let began = Instant::now();
    let exit = |code: Option<i32>, signal: Option<i32>, error: String| Action::EndCell {
        cell_id,
        exit_code: code,
        signal,
        duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        error,
    };
    // 4. Workspace, then the command.
    let outcome = cell::prepare_workspace(&workspace)
        .map_err(Failure::from)
        .and_then(|()| {
            let spec = CellSpec {
                profile: profile.clone(),
                mechanism,
                workspace: workspace.clone(),
                command: command.clone(),
                env: vec![
                    ("MISSION_BUS_URL".into(), started.url.clone()),
                    ("MISSION_BUS_TOKEN".into(), started.token.clone()),
                    ("MISSION_BUS_MISSION".into(), mission.clone()),
                    ("MISSION_BUS_PARTICIPANT".into(), name.clone()),
                    ("MISSION_BUS_CELL".into(), cell_id.to_string()),
                ],
                image: image.clone(),
            };
            let mut cmd = launcher.command(&spec)?;
            cmd.env_remove("MISSION_BUS_DATA");
            let forwarding = cell_run::Forwarding::install();
            let mut child = cmd
                .spawn()
                .map_err(|e| Failure::other(format!("cannot start '{}': {e}", command[0])))?;
            forwarding.target(child.id());
            let status = child
                .wait()
                .map_err(|e| Failure::other(format!("waiting for '{}': {e}", command[0])));
            drop(forwarding);
            status
        });
    let (action, result) = match outcome {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            let result = match (status.code(), status.signal()) {
                (Some(0), _) => Ok(()),
                (Some(c), _) => Err(Failure::new(
                    c,
                    format!("the cell's command exited with status {c}"),
                )),
                (None, Some(s)) => Err(Failure::new(
                    128 + s,
                    format!("the cell's command was ended by signal {s}"),
                )),
                (None, None) => Err(Failure::other("the cell's command ended without a status")),
            };
            (exit(status.code(), status.signal(), String::new()), result)
        }
        Err(f) => (exit(None, None, f.message().to_string()), Err(f)),
    };
    // 5. Revoke the cell's token and record the end, whatever happened.
    let exited = host.end(&mission, &name, action, &started.token)?;
    writeln!(out, "{exited}")?;
    // 6. The workspace as the agent's checkpoint.
    if let Some(summary) = checkpoint_on_exit {
        let files = cell::workspace_manifest(&workspace, MAX_ARTIFACTS)?;
        let artifacts = files.iter().map(|f| f.artifact(&workspace)).collect();
        let state = json!({
            "cell_id": cell_id.to_string(),
            "profile": profile,
            "workspace": ws_text,
            "exit": {"exit_code": exited["exit_code"], "signal": exited["signal"]},
            "files": files.iter().map(|f| json!({
                "path": f.path, "bytes": f.bytes, "blake3": f.blake3,
            })).collect::<Vec<_>>(),
        });
        let checkpoint = host.append(
            &mission,
            &name,
            Action::Checkpoint {
                summary,
                state: Json::from_value(&state),
                artifacts,
            },
        )?;
        writeln!(out, "{checkpoint}")?;
    }
    out.flush()?;
    host.finish()?;
    result
}

/// A recorded `cell_started`: the event, and what the command needs.
struct Started {
    event: Value,
    cell_id: Uuid,
    url: String,
    token: String,
}

/// Where the cell's events go: the data directory or a server.
trait Host {
    /// The mission's roles and profiles.
    fn config(&self, mission: &str) -> CliResult<MissionConfig>;
    /// Record `cell_started` as `name` and issue the cell's token.
    fn start(
        &self,
        mission: &str,
        name: &str,
        profile: &str,
        mechanism: Mechanism,
        workspace: &str,
        command: &[String],
    ) -> CliResult<Started>;
    /// Revoke the cell's `token`, then append `cell_exited` as `name`.
    fn end(&self, mission: &str, name: &str, action: Action, token: &str) -> CliResult<Value>;
    /// Append as `name` (the checkpoint).
    fn append(&self, mission: &str, name: &str, action: Action) -> CliResult<Value>;
    /// Stop what `start` started (the loopback server).
    fn finish(&self) -> CliResult;
}

fn start_action(
    profile: &str,
    mechanism: Mechanism,
    workspace: &str,
    command: &[String],
) -> Action {
    Action::StartCell {
        profile: profile.to_string(),
        mechanism: mechanism.as_str().to_string(),
        workspace: workspace.to_string(),
        command: command.to_vec(),
    }
}

fn cell_id_of(event: &Value) -> CliResult<Uuid> {
    event["cell_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| Failure::other(format!("cell_started without a cell_id: {event}")))
}

/// The data directory, with the loopback server running while the cell does.
struct LocalHost {
    local: Local,
    loopback: std::cell::RefCell<Option<cell_run::Loopback>>,
}

impl Host for LocalHost {
    fn config(&self, mission: &str) -> CliResult<MissionConfig> {
        Ok(self.local.bus().state(mission)?.config.clone())
    }

    fn start(
        &self,
        mission: &str,
        name: &str,
        profile: &str,
        mechanism: Mechanism,
        workspace: &str,
        command: &[String],
    ) -> CliResult<Started> {
        let bus = self.local.bus();
        let action = start_action(profile, mechanism, workspace, command);
        let event = event_to_json(&bus.append(mission, name, action, &AppendOptions::default())?);
        let cell_id = cell_id_of(&event)?;
        let mut begun_token = None;
        let begun = bus
            .issue_token(mission, name)
            .map_err(Failure::from)
            .and_then(|token| {
                begun_token = Some(token.clone());
                Ok((token, cell_run::Loopback::serve(bus.clone())?))
            });
        match begun {
            Ok((token, loopback)) => {
                let url = loopback.url().to_string();
                *self.loopback.borrow_mut() = Some(loopback);
                Ok(Started {
                    event,
                    cell_id,
                    url,
                    token,
                })
            }
            Err(f) => {
                if let Some(token) = begun_token.take() {
                    bus.revoke_token(mission, name, &token)?;
                }
                let end = Action::EndCell {
                    cell_id,
                    exit_code: None,
                    signal: None,
                    duration_ms: 0,
                    error: f.message().to_string(),
                };
                bus.append(mission, name, end, &AppendOptions::default())?;
                Err(f)
            }
        }
    }

    fn end(&self, mission: &str, name: &str, action: Action, token: &str) -> CliResult<Value> {
        let revoked = self.local.bus().revoke_token(mission, name, token);
        let exited = self.append(mission, name, action);
        revoked?;
        exited
    }

    fn append(&self, mission: &str, name: &str, action: Action) -> CliResult<Value> {
        self.local
            .append(mission, name, action, &AppendOptions::default())
    }

    fn finish(&self) -> CliResult {
        match self.loopback.borrow_mut().take() {
            Some(l) => l.stop(),
            None => Ok(()),
        }
    }
}

impl Host for Remote {
    fn config(&self, mission: &str) -> CliResult<MissionConfig> {
        let record = self.get(&format!("/v1/missions/{}/events/1", seg(mission)), &[])?;
        MissionConfig::from_json(&record["event"]["config"]).map_err(|reason| {
            Failure::other(format!(
                "the server's mission_created of '{mission}' has no usable config: {reason}"
            ))
        })
    }

    fn start(
        &self,
        mission: &str,
        name: &str,
        profile: &str,
        mechanism: Mechanism,
        workspace: &str,
        command: &[String],
    ) -> CliResult<Started> {
        let body = json!({
            "sender": name, "profile": profile, "mechanism": mechanism.as_str(),
            "workspace": workspace, "command": command,
        });
        let answer = self.post(&format!("/v1/missions/{}/cells", seg(mission)), body)?;
        let event = answer["event"].clone();
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| Failure::other("the server's answer has no token"))?
            .to_string();
        Ok(Started {
            cell_id: cell_id_of(&event)?,
            event,
            url: self.base().to_string(),
            token,
        })
    }

    fn end(&self, mission: &str, name: &str, action: Action, token: &str) -> CliResult<Value> {
        let Action::EndCell {
            cell_id,
            exit_code,
            signal,
            duration_ms,
            error,
        } = action
        else {
            return Err(Failure::other(
                "cell: the end of a cell must be cell_exited",
            ));
        };
        let body = json!({
            "sender": name, "exit_code": exit_code, "signal": signal,
            "duration_ms": duration_ms, "error": error, "token": token,
        });
        self.post(
            &format!("/v1/missions/{}/cells/{cell_id}/exit", seg(mission)),
            body,
        )
    }

    fn append(&self, mission: &str, name: &str, action: Action) -> CliResult<Value> {
        Backend::append(self, mission, name, action, &AppendOptions::default())
    }

    fn finish(&self) -> CliResult {
        Ok(())
    }
}
