//! Who is calling: the admin token, participant tokens, bearer headers.
//!
//! The admin token lives in a file (mode 0600) next to the data by default.
//! Participant tokens are issued by the library, which stores only their
//! BLAKE3 hashes; a request's token is looked up by its hash. The admin
//! token is compared in constant time, also through hashes, so neither its
//! bytes nor its length leak through timing.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::bus::TokenOwner;
use crate::error::{Error, Result};
use crate::event::OPERATOR;
use crate::MissionBus;

/// Shortest admin token accepted from a file someone wrote by hand.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The holder of the admin token: acts as the mission operator.
    Admin,
    /// A participant of exactly one mission.
    Participant(TokenOwner),
}

/// The caller acting inside one mission.
#[derive(Debug, Clone)]
pub(crate) enum Actor {
    /// The admin, acting as [`OPERATOR`].
    Operator,
    /// A participant of this mission, by name.
    Participant(String),
}

impl Actor {
    /// The sender name the library sees.
    pub(crate) fn sender(&self) -> &str {
        match self {
            Actor::Operator => OPERATOR,
            Actor::Participant(name) => name,
        }
    }

    /// The participant's name, or 403 for the admin (who is nobody's sender
    /// for messages, checkpoints and handoffs).
    pub(crate) fn participant(&self) -> std::result::Result<&str, ApiError> {
        match self {
            Actor::Participant(name) => Ok(name),
            Actor::Operator => Err(ApiError::forbidden(
                "participant_only",
                "the admin token cannot act as a participant; use a participant token",
            )),
        }
    }

    /// Refuse a body whose `sender` is not the token's owner.
    pub(crate) fn check_claimed_sender(
        &self,
        claimed: Option<&str>,
    ) -> std::result::Result<(), ApiError> {
        match claimed {
            Some(c) if c != self.sender() => Err(ApiError::forbidden(
                "sender_mismatch",
                format!(
                    "body names sender '{c}' but the token belongs to '{}'",
                    self.sender()
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Caller {
    /// Only the admin may do this.
    pub(crate) fn require_admin(&self) -> std::result::Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Participant(_) => Err(ApiError::forbidden(
                "admin_only",
                "this needs the admin token",
            )),
        }
    }

    /// The caller acting in `mission`; a participant token of another
    /// mission is refused (403) before anything about `mission` is revealed.
    pub(crate) fn in_mission(&self, mission: &str) -> std::result::Result<Actor, ApiError> {
        match self {
            Caller::Admin => Ok(Actor::Operator),
            Caller::Participant(owner) if owner.mission_id == mission => {
                Ok(Actor::Participant(owner.name.clone()))
            }
            Caller::Participant(_) => Err(ApiError::forbidden(
                "wrong_mission",
                format!("this token is not valid for mission '{mission}'"),
            )),
        }
    }
}

/// Checks tokens: the admin's in constant time, participants' by hash lookup.
pub(crate) struct Authenticator {
    admin_hash: [u8; 32],
}

impl Authenticator {
    pub(crate) fn new(admin_token: &str) -> Self {
        Authenticator {
            admin_hash: crate::token_hash(admin_token),
        }
    }

    /// Who `token` belongs to. Blocks on a store lookup: call from a
    /// blocking thread.
    pub(crate) fn identify(
        &self,
        bus: &MissionBus,
        token: &str,
    ) -> std::result::Result<Caller, ApiError> {
        let hash = crate::token_hash(token);
        if bool::from(hash.ct_eq(&self.admin_hash)) {
            return Ok(Caller::Admin);
        }
        match bus.authenticate(token)? {
            Some(owner) => Ok(Caller::Participant(owner)),
            None => Err(ApiError::unauthorized(
                "unknown_token",
                "the bearer token is not known to this server",
            )),
        }
    }
}

/// The token of `Authorization: Bearer TOKEN`.
pub(crate) fn bearer(headers: &HeaderMap) -> std::result::Result<String, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing_token",
            "send 'Authorization: Bearer TOKEN'",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "missing_token",
            "the Authorization header must be 'Bearer TOKEN'",
        ));
    }
    Ok(token.to_string())
}

/// Read the admin token from `path`, or create the file (mode 0600) with a
/// new random token (32 bytes, hex) if it does not exist.
pub fn load_or_create_admin_token(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => return admin_token_from_file(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::io(path, io::Error::other(e.to_string())))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(path, e))?;
            Ok(token)
        }
        // Another process created it between our read and our create.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            admin_token_from_file(path, &text)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn admin_token_from_file(path: &Path, text: &str) -> Result<String> {
    let token = text.trim();
    if token.len() < MIN_ADMIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace()) {
        return Err(Error::Config {
            path: Some(path.to_path_buf()),
            reason: format!(
                "the admin token file must hold one token of at least {MIN_ADMIN_TOKEN_LEN} \
                 characters without spaces"
            ),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                // On stderr too: the server may run without a log subscriber.
                eprintln!(
                    "mission-bus: warning: admin token file {} is readable by group or \
                     others; chmod 600 it",
                    path.display()
                );
                tracing::warn!(
                    path = %path.display(),
                    "admin token file is readable by group or others; chmod 600 it"
                );
            }
        }
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_file_is_created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let token = load_or_create_admin_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_create_admin_token(&path).unwrap(), token);
        let other = load_or_create_admin_token(&dir.path().join("other.token")).unwrap();
        assert_ne!(other, token, "tokens are random");
    }

    #[test]
    fn hand_written_admin_token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        fs::write(&path, "  my-own-long-admin-secret\n").unwrap();
        assert_eq!(
            load_or_create_admin_token(&path).unwrap(),
            "my-own-long-admin-secret"
        );
        for bad in ["", "short", "two words here, long enough"] {
            fs::write(&path, bad).unwrap();
            let err = load_or_create_admin_token(&path).unwrap_err();
            assert!(err.to_string().contains("admin token"), "{err}");
        }
        let missing_dir = dir.path().join("nope").join("admin.token");
        assert!(load_or_create_admin_token(&missing_dir).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap_err().code, "missing_token");
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "abc");
        h.insert(header::AUTHORIZATION, "bearer   abc ".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "abc");
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer".parse().unwrap());
        assert!(bearer(&h).is_err());
    }
}
