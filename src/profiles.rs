//! Roles, capabilities and isolation profiles: the prototype's config.
//!
//! The config is a JSON object with two optional keys, `roles` and
//! `isolation_profiles`; a missing key (or a missing file) means the defaults
//! of the design brief. Everything malformed is an error naming the file and
//! the key, role, capability or profile at fault, never a silent deny-all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// The default config file shipped in the repository.
pub const DEFAULT_CONFIG_PATH: &str = "config/mission_bus_profiles.json";

/// What a role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Publish messages.
    Publish,
    /// Save checkpoints.
    Checkpoint,
    /// Hand work to another participant.
    Handoff,
    /// Replay the log.
    Read,
    /// Verify the log and export it whole.
    Audit,
    /// Change isolation settings.
    ConfigureIsolation,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 6] = [
        Capability::Publish,
        Capability::Checkpoint,
        Capability::Handoff,
        Capability::Read,
        Capability::Audit,
        Capability::ConfigureIsolation,
    ];

    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Publish => "publish",
            Capability::Checkpoint => "checkpoint",
            Capability::Handoff => "handoff",
            Capability::Read => "read",
            Capability::Audit => "audit",
            Capability::ConfigureIsolation => "configure_isolation",
        }
    }

    /// Parse the config-file spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An isolation profile agents can run under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationProfile {
    /// Unique name, e.g. `level2-mount-namespace`.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Isolation level (higher is stronger).
    pub level: i64,
    /// Mechanism, e.g. `mount_namespace`.
    pub mechanism: String,
    /// Free text (default empty).
    pub description: String,
    /// Whether an agent under this profile can resume from a handoff (default true).
    pub supports_resume: bool,
}

impl IsolationProfile {
    /// The profile as JSON with the prototype's field names.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "level": self.level,
            "mechanism": self.mechanism,
            "description": self.description,
            "supports_resume": self.supports_resume,
        })
    }
}

/// Roles and isolation profiles in force for a mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionConfig {
    /// Role name -> capabilities (sorted, deduplicated).
    pub roles: BTreeMap<String, Vec<Capability>>,
    /// Isolation profiles, in config order.
    pub isolation_profiles: Vec<IsolationProfile>,
}

impl Default for MissionConfig {
    fn default() -> Self {
        use Capability::*;
        let roles = [
            (
                "lead",
                vec![
                    Publish,
                    Checkpoint,
                    Handoff,
                    Read,
                    Audit,
                    ConfigureIsolation,
                ],
            ),
            ("write", vec![Publish, Checkpoint, Handoff, Read]),
            ("read", vec![Read]),
            ("audit", vec![Read, Audit]),
        ]
        .into_iter()
        .map(|(r, caps)| (r.to_string(), normalized(caps)))
        .collect();
        MissionConfig {
            roles,
            isolation_profiles: default_profiles(),
        }
    }
}

fn normalized(mut caps: Vec<Capability>) -> Vec<Capability> {
    caps.sort();
    caps.dedup();
    caps
}

fn default_profiles() -> Vec<IsolationProfile> {
    let p = |level, name: &str, label: &str, mechanism: &str, description: &str| IsolationProfile {
        name: name.to_string(),
        label: label.to_string(),
        level,
        mechanism: mechanism.to_string(),
        description: description.to_string(),
        supports_resume: true,
    };
    vec![
        p(
            1,
            "level1-directory",
            "Level 1: directory workspace",
            "directory_workspace",
            "Each agent works in its own directory.",
        ),
        p(
            2,
            "level2-mount-namespace",
            "Level 2: mount namespace",
            "mount_namespace",
            "Each agent sees only its own mounts.",
        ),
        p(
            3,
            "level3-rootless-podman",
            "Level 3: rootless Podman",
            "rootless_podman",
            "Each agent runs in a rootless container.",
        ),
    ]
}

impl MissionConfig {
    /// Load the config file at `path`. A missing file means all defaults;
    /// an unreadable or malformed one is an error naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_json_str(&text, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parse config JSON text. `source` names the file in errors.
    pub fn from_json_str(text: &str, source: Option<&Path>) -> Result<Self> {
        let err = |reason: String| Error::Config {
            path: source.map(Path::to_path_buf),
            reason,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        Self::from_json(&value).map_err(err)
    }

    /// Build from a parsed JSON value; the error says what is wrong.
    pub fn from_json(value: &Value) -> std::result::Result<Self, String> {
        let obj = value
            .as_object()
            .ok_or_else(|| format!("expected a JSON object, found {}", json_kind(value)))?;
        for key in obj.keys() {
            if key != "roles" && key != "isolation_profiles" {
                return Err(format!(
                    "unknown key '{key}' (expected 'roles' and/or 'isolation_profiles')"
                ));
            }
        }
        let defaults = MissionConfig::default();
        let roles = match obj.get("roles") {
            None => defaults.roles,
            Some(v) => parse_roles(v)?,
        };
        let isolation_profiles = match obj.get("isolation_profiles") {
            None => defaults.isolation_profiles,
            Some(v) => parse_profiles(v)?,
        };
        Ok(MissionConfig {
            roles,
            isolation_profiles,
        })
    }

    /// The config as JSON (`roles` and `isolation_profiles`).
    pub fn to_json(&self) -> Value {
        let roles: Map<String, Value> = self
            .roles
            .iter()
            .map(|(r, caps)| {
                let caps: Vec<Value> = caps.iter().map(|c| json!(c.as_str())).collect();
                (r.clone(), Value::Array(caps))
            })
            .collect();
        json!({
            "roles": roles,
            "isolation_profiles": self.isolation_profiles.iter().map(IsolationProfile::to_json).collect::<Vec<_>>(),
        })
    }

    /// Whether `role` is defined.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Whether `role` grants `capability` (false for an undefined role).
    pub fn role_allows(&self, role: &str, capability: Capability) -> bool {
        self.roles
            .get(role)
            .is_some_and(|caps| caps.contains(&capability))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_roles(v: &Value) -> std::result::Result<BTreeMap<String, Vec<Capability>>, String> {
    let obj = v.as_object().ok_or_else(|| {
        format!(
            "'roles' must be an object of role -> capabilities, found {}",
            json_kind(v)
        )
    })?;
    let mut roles = BTreeMap::new();
    for (role, caps) in obj {
        if role.is_empty() {
            return Err("'roles' has a role with an empty name".to_string());
        }
        let list = caps.as_array().ok_or_else(|| {
            format!(
                "role '{role}': capabilities must be an array of strings, found {}",
                json_kind(caps)
            )
        })?;
        let mut parsed = Vec::with_capacity(list.len());
        for cap in list {
            let name = cap.as_str().ok_or_else(|| {
                format!(
                    "role '{role}': capability must be a string, found {}",
                    json_kind(cap)
                )
            })?;
            let c = Capability::parse(name).ok_or_else(|| {
                let known: Vec<_> = Capability::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "role '{role}': unknown capability '{name}' (known: {})",
                    known.join(", ")
                )
            })?;
            parsed.push(c);
        }
        roles.insert(role.clone(), normalized(parsed));
    }
    Ok(roles)
}

fn parse_profiles(v: &Value) -> std::result::Result<Vec<IsolationProfile>, String> {
    let list = v.as_array().ok_or_else(|| {
        format!(
            "'isolation_profiles' must be an array, found {}",
            json_kind(v)
        )
    })?;
    let mut profiles: Vec<IsolationProfile> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let at = format!("isolation_profiles[{i}]");
        let obj = p
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object, found {}", json_kind(p)))?;
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) => return Err(format!("{at}: 'name' is empty")),
            Some(other) => {
                return Err(format!(
                    "{at}: 'name' must be a string, found {}",
                    json_kind(other)
                ))
            }
            None => return Err(format!("{at}: missing 'name'")),
        };
        let at = format!("{at} ('{name}')");
        let string = |key: &str, default: Option<&str>| -> std::result::Result<String, String> {
            match obj.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!(
                    "{at}: '{key}' must be a string, found {}",
                    json_kind(other)
                )),
                None => default
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}: missing '{key}'")),
            }
        };
        let level = match obj.get("level") {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("{at}: 'level' must be an integer, found {n}"))?,
            Some(other) => {
                return Err(format!(
                    "{at}: 'level' must be an integer, found {}",
                    json_kind(other)
                ))
            }
            None => return Err(format!("{at}: missing 'level'")),
        };
        let supports_resume = match obj.get("supports_resume") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "{at}: 'supports_resume' must be a boolean, found {}",
                    json_kind(other)
                ))
            }
        };
        let profile = IsolationProfile {
            label: string("label", None)?,
            mechanism: string("mechanism", None)?,
            description: string("description", Some(""))?,
            name,
            level,
            supports_resume,
        };
        if profiles.iter().any(|q| q.name == profile.name) {
            return Err(format!("{at}: duplicate profile name"));
        }
        profiles.push(profile);
    }
    Ok(profiles)
}
