//! Isolation cells: running an agent's command under one of the mission's
//! isolation profiles (docs/cells.md).
//!
//! - level 1, `directory_workspace`: the command runs in a private (0700)
//!   workspace directory of the mission and agent;
//! - level 2, `mount_namespace`: in a private user + mount namespace (the
//!   util-linux `unshare` and `mount` tools) where every mount but the
//!   workspace is read-only, then a nested user namespace so the command
//!   cannot remount anything read-write;
//! - level 3, `rootless_podman`: in a rootless Podman container with only
//!   the workspace mounted from the host.
//!
//! [`probe`] finds out, before anything is recorded or started, whether
//! this machine can provide a mechanism, and fails naming what is missing:
//! a cell never falls back to a weaker level. This module starts processes
//! but records nothing: `mission-bus cell run` writes the `cell_started` /
//! `cell_exited` events through the bus. No `unsafe` code: namespaces are
//! made by the util-linux tools, not by syscalls from this process.

mod manifest;
mod mounts;

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use manifest::{workspace_manifest, ManifestEntry};

use crate::error::{Error, Result};

/// The mechanisms a cell can be launched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Level 1: a private workspace directory.
    DirectoryWorkspace,
    /// Level 2: a private mount namespace, read-only but for the workspace.
    MountNamespace,
    /// Level 3: a rootless Podman container holding only the workspace.
    RootlessPodman,
}

impl Mechanism {
    /// Every mechanism this build can launch.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::DirectoryWorkspace,
        Mechanism::MountNamespace,
        Mechanism::RootlessPodman,
    ];

    /// The config spelling (`mechanism` of an isolation profile).
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::DirectoryWorkspace => "directory_workspace",
            Mechanism::MountNamespace => "mount_namespace",
            Mechanism::RootlessPodman => "rootless_podman",
        }
    }

    /// Parse the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Mechanism::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Where the workspace is mounted inside a level 3 container.
pub const CONTAINER_WORKSPACE: &str = "/workspace";

/// Environment variable naming the container image of level 3 cells (when
/// `--image` is not given).
pub const IMAGE_ENV: &str = "MISSION_BUS_CELL_IMAGE";

/// What a cell runs and where.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// The isolation profile's name (for errors).
    pub profile: String,
    /// How to isolate.
    pub mechanism: Mechanism,
    /// The workspace directory (absolute).
    pub workspace: PathBuf,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Extra environment for the command (`MISSION_BUS_URL`, ...).
    pub env: Vec<(String, String)>,
    /// The container image (level 3 only).
    pub image: Option<String>,
}

/// A mechanism this machine was found able to provide, with the tools it
/// uses resolved to absolute paths.
#[derive(Debug, Clone)]
pub struct Launcher {
    mechanism: Mechanism,
    tools: Vec<PathBuf>,
}

/// The default workspace of `agent` in `mission`: `ROOT/MISSION/AGENT`.
/// Names that are not plain path segments need an explicit `--workspace`.
pub fn default_workspace(root: &Path, mission: &str, agent: &str) -> Result<PathBuf> {
    for (what, s) in [("mission id", mission), ("participant name", agent)] {
        if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']) {
            return Err(Error::invalid(
                what,
                format!("'{s}' cannot name a workspace directory: give --workspace DIR"),
            ));
        }
    }
    Ok(root.join(mission).join(agent))
}

/// The absolute form of `path` (relative to the current directory), without
/// touching the file system.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

/// Find out whether this machine can provide `mechanism`, starting nothing
/// of the agent's. Level 2 runs the namespace set-up once with `true` as the
/// command; level 3 asks Podman for its state and the image.
pub fn probe(profile: &str, mechanism: Mechanism, image: Option<&str>) -> Result<Launcher> {
    let missing = |what: String| Error::CellUnavailable {
        profile: profile.to_string(),
        mechanism: mechanism.as_str().to_string(),
        missing: what,
    };
    match mechanism {
        Mechanism::DirectoryWorkspace => Ok(Launcher {
            mechanism,
            tools: Vec::new(),
        }),
        Mechanism::MountNamespace => {
            let mut tools = Vec::new();
            for tool in ["unshare", "mount", "sh"] {
                tools.push(which(tool).ok_or_else(|| {
                    missing(format!(
                        "`{tool}` (util-linux / a POSIX shell) is not on PATH"
                    ))
                })?);
            }
            let launcher = Launcher { mechanism, tools };
            // The whole set-up, on an empty directory of our own, running `true`.
            let scratch = std::env::temp_dir().join(format!(
                "mission-bus-probe-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            prepare_workspace(&scratch)?;
            let out = launcher
                .namespace_command(&scratch, &["true".to_string()])
                .and_then(|mut cmd| {
                    cmd.stdin(Stdio::null())
                        .output()
                        .map_err(|e| missing(format!("running `unshare` failed: {e}")))
                });
            let _ = std::fs::remove_dir(&scratch);
            let out = out?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                return Err(missing(format!(
                    "unprivileged user and mount namespaces do not work here (`unshare --user \
                     --map-root-user --mount` said: {})",
                    why.trim().replace('\n', " ")
                )));
            }
            Ok(launcher)
        }
        Mechanism::RootlessPodman => {
            let podman =
                which("podman").ok_or_else(|| missing("`podman` is not on PATH".to_string()))?;
            if is_root() {
                return Err(missing(
                    "running as root (uid 0): rootless Podman needs a non-root user with \
                     subordinate ids (/etc/subuid, /etc/subgid)"
                        .to_string(),
                ));
            }
            let image = image.filter(|i| !i.is_empty()).ok_or_else(|| {
                missing(format!(
                    "no container image: give --image IMAGE or set {IMAGE_ENV} \
                     (see docs/cells.md for building one without a registry)"
                ))
            })?;
            let info = Command::new(&podman)
                .args(["info", "--format", "{{.Host.Security.Rootless}}"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| missing(format!("running `podman info` failed: {e}")))?;
            let said = String::from_utf8_lossy(&info.stdout);
            if !info.status.success() || said.trim() != "true" {
                return Err(missing(format!(
                    "`podman info` does not report a working rootless Podman: {}",
                    String::from_utf8_lossy(&info.stderr)
                        .trim()
                        .replace('\n', " ")
                )));
            }
            let exists = Command::new(&podman)
                .args(["image", "exists", image])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| missing(format!("running `podman image exists` failed: {e}")))?;
            if !exists.success() {
                return Err(missing(format!(
                    "image '{image}' is not in Podman's local store (no registry is used: \
                     `podman import` one)"
                )));
            }
            Ok(Launcher {
                mechanism,
                tools: vec![podman],
            })
        }
    }
}

/// Create the workspace (and missing parents) with mode 0700, or make an
/// existing one 0700. It must be a directory.
pub fn prepare_workspace(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(Error::invalid(
            "workspace",
            format!("{} exists and is not a directory", path.display()),
        )),
        Ok(_) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(path, e)),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(path, e)),
    }
}

impl Launcher {
    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The process that runs `spec.command` in its cell; stdin, stdout and
    /// stderr are inherited.
    pub fn command(&self, spec: &CellSpec) -> Result<Command> {
        let ws = &spec.workspace;
        let mut cmd = match self.mechanism {
            Mechanism::DirectoryWorkspace => {
                let mut c = Command::new(&spec.command[0]);
                c.args(&spec.command[1..]).current_dir(ws);
                c
            }
            Mechanism::MountNamespace => {
                let mut c = self.namespace_command(ws, &spec.command)?;
                // Everything else is read-only: give temporary files and a
                // home the one writable place.
                c.env("HOME", ws).env("TMPDIR", ws);
                c
            }
            Mechanism::RootlessPodman => {
                let mut c = Command::new(&self.tools[0]);
                let mut volume = OsString::from(ws.as_os_str());
                volume.push(format!(":{CONTAINER_WORKSPACE}:rw"));
                c.args(["run", "--rm", "--interactive", "--userns=keep-id"])
                    // The bus is reached on the host's loopback address.
                    .args(["--network", "host"])
                    .arg("--volume")
                    .arg(volume)
                    .args(["--workdir", CONTAINER_WORKSPACE])
                    .args(["--env", &format!("HOME={CONTAINER_WORKSPACE}")]);
                for (k, v) in &spec.env {
                    c.args(["--env", &format!("{k}={v}")]);
                }
                let image = spec.image.as_deref().unwrap_or_default();
                c.arg("--").arg(image).args(&spec.command);
                c
            }
        };
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// `unshare` running the level 2 set-up script, then `command` in `ws`.
    fn namespace_command(&self, ws: &Path, command: &[String]) -> Result<Command> {
        let [unshare, mount, sh] = &self.tools[..] else {
            return Err(Error::invalid(
                "mechanism",
                "level 2 tools were not resolved",
            ));
        };
        let points = mounts::mount_points()?;
        let mut c = Command::new(unshare);
        c.args([
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(sh)
        .args(["-c", mounts::SETUP_SCRIPT, "mission-bus-cell"])
        .arg(mount)
        .arg(unshare)
        .arg(ws)
        .arg(points.len().to_string())
        .args(&points)
        .args(command);
        Ok(c)
    }
}

/// A program on PATH, as an absolute path.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process runs as root (uid 0), read from /proc.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
