//! Where a store lives: a sled data directory or a PostgreSQL database.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a store lives, parsed from `--store URL` / `MISSION_BUS_STORE`.
///
/// - a plain path, or `sled:PATH`: the embedded sled store in that data
///   directory (the default backend);
/// - `postgres://…` or `postgresql://…` (a libpq-style URL; several hosts
///   and `target_session_attrs=read-write` are understood), or a libpq
///   key/value string starting with `postgres:` followed by one: a
///   PostgreSQL database.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// A sled data directory.
    Sled(PathBuf),
    /// A PostgreSQL connection string (as given; it may hold a password).
    Postgres(String),
}

impl StoreUrl {
    /// Parse a store location. Never fails for a path; a URL with another
    /// scheme (`mysql://…`) is refused with the schemes understood.
    pub fn parse(s: &str) -> Result<StoreUrl> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Error::invalid("store", "the store location is empty"));
        }
        if let Some(rest) = t.strip_prefix("sled:") {
            if rest.is_empty() {
                return Err(Error::invalid(
                    "store",
                    "sled: needs a path (sled:/var/lib/mission-bus)",
                ));
            }
            return Ok(StoreUrl::Sled(PathBuf::from(rest)));
        }
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(t.to_string()));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return Err(Error::invalid(
                    "store",
                    format!(
                        "unknown store scheme '{scheme}://': use a path or sled:PATH for sled, \
                         postgres:// or postgresql:// for PostgreSQL"
                    ),
                ));
            }
        }
        Ok(StoreUrl::Sled(PathBuf::from(s)))
    }

    /// The data directory of a sled store.
    pub fn sled_path(&self) -> Option<&Path> {
        match self {
            StoreUrl::Sled(p) => Some(p),
            StoreUrl::Postgres(_) => None,
        }
    }
}

impl From<&Path> for StoreUrl {
    fn from(p: &Path) -> StoreUrl {
        StoreUrl::Sled(p.to_path_buf())
    }
}

impl From<PathBuf> for StoreUrl {
    fn from(p: PathBuf) -> StoreUrl {
        StoreUrl::Sled(p)
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<StoreUrl> {
        StoreUrl::parse(s)
    }
}

/// Shows the location with any password replaced by `***`.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sled(p) => write!(f, "sled:{}", p.display()),
            StoreUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, and
/// a `password=` query parameter likewise.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(auth_start + colon + 1..auth_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_schemes() {
        assert_eq!(
            StoreUrl::parse("data").unwrap(),
            StoreUrl::Sled("data".into())
        );
        assert_eq!(
            StoreUrl::parse("sled:/x/y").unwrap(),
            StoreUrl::Sled("/x/y".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgresql://a,b/db?target_session_attrs=read-write").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("mysql://x/y").is_err());
        assert!(StoreUrl::parse("").is_err());
        assert!(StoreUrl::parse("sled:").is_err());
    }

    #[test]
    fn passwords_never_shown() {
        let u = StoreUrl::parse("postgres://me:hunter2@h:5432/db?password=hunter3&x=1").unwrap();
        let shown = u.to_string();
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("me:***@h:5432"), "{shown}");
    }
}
