//! The operations page's sessions (issue 29): a signed, expiring cookie instead of the admin
//! token itself. `v1.<expiry unix s>.<nonce>.<mac>` with the MAC an HMAC-SHA256 under a key drawn
//! at start (a restart signs everyone out), checked in constant time; `POST /admin/logout`
//! revokes the nonce. A leaked Cookie header is a read-only session that ends (12 h at most,
//! or at logout or restart), never the token. Failed sign-ins are throttled: past 10 in a
//! minute, sign-in answers 429 until the minute ends (the bearer token still works).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::policy::code_cache::hmac_sha256;
use crate::secret::constant_time_eq;

/// Seconds a session lasts.
pub const SESSION_S: u64 = 12 * 3600;
/// Failed sign-ins allowed per minute.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// Revoked sessions remembered (the oldest go first; they expire anyway).
const REVOKED_MAX: usize = 10_000;

/// The sessions of one gateway process.
pub struct Sessions {
    key: [u8; 32],
    revoked: Mutex<(HashSet<String>, std::collections::VecDeque<String>)>,
    failures: Mutex<(u64, u32)>,
}

/// 32 bytes from the operating system's generator (through `rand`'s thread generator, seeded
/// from it).
fn random_key() -> [u8; 32] {
    rand::random()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            key: random_key(),
            revoked: Mutex::new(Default::default()),
            failures: Mutex::new((0, 0)),
        }
    }
}

impl Sessions {
    fn mac(&self, expiry: u64, nonce: &str) -> String {
        hex(&hmac_sha256(
            &self.key,
            &[
                b"v1.",
                expiry.to_string().as_bytes(),
                b".",
                nonce.as_bytes(),
            ],
        ))
    }

    /// A new session cookie value, valid until `now + SESSION_S`.
    pub fn issue(&self, now: u64) -> String {
        let nonce = hex(&random_key()[..16]);
        let expiry = now + SESSION_S;
        format!("v1.{expiry}.{nonce}.{}", self.mac(expiry, &nonce))
    }

    /// Whether `value` is a session this process issued, not expired at `now`, not revoked.
    pub fn check(&self, value: &str, now: u64) -> bool {
        let mut parts = value.split('.');
        let (Some("v1"), Some(exp), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        let Ok(expiry) = exp.parse::<u64>() else {
            return false;
        };
        if expiry <= now || expiry > now + SESSION_S {
            return false;
        }
        if !constant_time_eq(mac.as_bytes(), self.mac(expiry, nonce).as_bytes()) {
            return false;
        }
        !self.revoked.lock().expect("session lock").0.contains(nonce)
    }

    /// Ends the session `value` (logout).
    pub fn revoke(&self, value: &str) {
        let Some(nonce) = value.split('.').nth(2) else {
            return;
        };
        let mut g = self.revoked.lock().expect("session lock");
        if g.0.insert(nonce.to_string()) {
            g.1.push_back(nonce.to_string());
            while g.1.len() > REVOKED_MAX {
                if let Some(old) = g.1.pop_front() {
                    g.0.remove(&old);
                }
            }
        }
    }

    /// A sign-in attempt at `now` (seconds): counted as a failure at once, so that concurrent
    /// attempts cannot race past the limit; the seconds to wait when the minute's are spent.
    pub fn begin_sign_in(&self, now: u64) -> Result<(), u64> {
        let mut g = self.failures.lock().expect("session lock");
        let minute = now / 60;
        if g.0 != minute {
            *g = (minute, 0);
        }
        if g.1 >= FAILURES_PER_MINUTE {
            return Err(60 - now % 60);
        }
        g.1 += 1;
        Ok(())
    }

    /// The attempt begun at `now` had the right token: it is not a failure.
    pub fn succeeded(&self, now: u64) {
        let mut g = self.failures.lock().expect("session lock");
        if g.0 == now / 60 {
            g.1 = g.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_expire_and_can_be_revoked() {
        let s = Sessions::default();
        let v = s.issue(1000);
        assert!(s.check(&v, 1000));
        assert!(s.check(&v, 1000 + SESSION_S - 1));
        assert!(!s.check(&v, 1000 + SESSION_S), "expired");
        // another process's key, a changed expiry, garbage
        assert!(!Sessions::default().check(&v, 1000));
        let parts: Vec<&str> = v.split('.').collect();
        let longer = format!("v1.{}.{}.{}", 1000 + 2 * SESSION_S, parts[2], parts[3]);
        assert!(!s.check(&longer, 1000));
        for bad in ["", "v1", "v1.x.y.z", "the-admin-token", &format!("{v}.x")] {
            assert!(!s.check(bad, 1000), "{bad}");
        }
        s.revoke(&v);
        assert!(!s.check(&v, 1001), "logged out");
        assert!(s.check(&s.issue(1000), 1001), "others stay");
    }

    #[test]
    fn failed_sign_ins_are_throttled_per_minute() {
        let s = Sessions::default();
        // a right token is not counted
        assert!(s.begin_sign_in(120).is_ok());
        s.succeeded(120);
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(s.begin_sign_in(120).is_ok());
        }
        assert_eq!(s.begin_sign_in(130), Err(50));
        assert!(s.begin_sign_in(180).is_ok(), "the next minute");
    }
}
