//! Participant tokens: issued, rotated and checked; stored only as hashes.

use super::MissionBus;

use crate::error::{Error, Result};
use crate::store::Durability;

impl MissionBus {
    /// Issue a new secret token for participant `name` of `mission`. Only a
    /// hash of it is stored (durably, before this returns); the token itself
    /// is returned once and cannot be recovered. It authenticates that
    /// participant in that mission only. Earlier tokens stay valid.
    pub fn issue_token(&self, mission: &str, name: &str) -> Result<String> {
        Ok(self.new_token(mission, name, false)?.0)
    }

    /// Like [`MissionBus::issue_token`], but every earlier token of that
    /// participant is revoked in the same atomic write (rotation after a
    /// leak, or recovery when a token was lost). Returns the new token and
    /// how many tokens were revoked.
    pub fn reissue_token(&self, mission: &str, name: &str) -> Result<(String, u64)> {
        self.new_token(mission, name, true)
    }

    fn new_token(&self, mission: &str, name: &str, revoke_others: bool) -> Result<(String, u64)> {
        let c = self.cached(mission)?;
        if !c.state.participants.contains_key(name) {
            return Err(Error::ParticipantNotFound {
                mission: mission.to_string(),
                name: name.to_string(),
            });
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::io(self.path(), std::io::Error::other(e.to_string())))?;
        let token = format!("mb_{}", crate::store::hex(&secret));
        let store = self.inner.store();
        let revoked = store.put_token(&token_hash(&token), c.no, name, revoke_others)?;
        if revoke_others {
            self.inner.shared.live.forget_tokens(c.no, name);
        }
        // A token is a credential: never acknowledge one that could be lost.
        let durability = match self.inner.durability {
            Durability::Relaxed => Durability::Flush,
            d => d,
        };
        store.flush(durability)?;
        Ok((token, revoked))
    }

    /// Revoke one token of participant `name` of `mission` (durably, before
    /// this returns): from then on it authenticates nobody. The
    /// participant's other tokens stay valid. Returns whether the token was
    /// a live token of that participant; an unknown, already revoked or
    /// someone else's token is left alone and gives `false`.
    pub fn revoke_token(&self, mission: &str, name: &str, token: &str) -> Result<bool> {
        let no = self.mission_no(mission)?;
        let hash = token_hash(token);
        let store = self.inner.store();
        let revoked = store.revoke_token(&hash, no, name)?;
        // Forget it even when the store had nothing: a stale cache entry
        // must not outlive the store's answer.
        self.inner.shared.live.forget_token(&hash);
        if revoked {
            let durability = match self.inner.durability {
                Durability::Relaxed => Durability::Flush,
                d => d,
            };
            store.flush(durability)?;
        }
        Ok(revoked)
    }

    /// Drop every token of `name` in `mission` (durably), and its consumer
    /// positions. Returns how many tokens.
    pub(crate) fn revoke_tokens(&self, mission: &str, name: &str) -> Result<u64> {
        let no = self.mission_no(mission)?;
        let store = self.inner.store();
        let n = store.revoke_tokens(no, name)?;
        self.inner.shared.live.forget_tokens(no, name);
        store.delete_consumers(no, name, None)?;
        let durability = match self.inner.durability {
            Durability::Relaxed => Durability::Flush,
            d => d,
        };
        store.flush(durability)?;
        Ok(n)
    }
}

/// BLAKE3 of a token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}
