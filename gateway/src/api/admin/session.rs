//! The operations page's sessions (issue 29): a signed, expiring cookie instead of the admin
//! token itself. `v1.<expiry unix s>.<nonce>.<mac>` with the MAC an HMAC-SHA256 under a key drawn
//! at start (a restart signs everyone out), checked in constant time; `POST /admin/logout`
//! revokes the nonce. A leaked Cookie header is a read-only session that ends (12 h at most,
//! or at logout or restart), never the token. Failed sign-ins are throttled per peer address
//! (an IPv6 peer by its /64): past 10 in a minute, that peer's sign-ins answer 429 until the
//! minute ends, so one hostile peer cannot lock an operator at another address out; past 100 in
//! a minute from all peers together, every sign-in does (the bearer token still works).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::api::peer_key;
use crate::policy::code_cache::hmac_sha256;
use crate::secret::constant_time_eq;

/// Seconds a session lasts.
pub const SESSION_S: u64 = 12 * 3600;
/// Failed sign-ins allowed per minute from one peer address.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// Failed sign-ins allowed per minute from all peers together (bounds the guessing rate of many
/// addresses, and the table of peers).
pub const FAILURES_PER_MINUTE_ALL: u32 = 100;
/// Revoked sessions remembered (the oldest go first; they expire anyway).
const REVOKED_MAX: usize = 10_000;

/// The sessions of one gateway process.
pub struct Sessions {
    key: [u8; 32],
    revoked: Mutex<(HashSet<String>, std::collections::VecDeque<String>)>,
    failures: Mutex<Failures>,
}

/// The current minute's failed sign-ins: per peer and in all.
#[derive(Default)]
struct Failures {
    minute: u64,
    by_peer: std::collections::HashMap<std::net::IpAddr, u32>,
    all: u32,
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
            failures: Mutex::new(Failures::default()),
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

    /// A sign-in attempt from `peer` at `now` (seconds): counted as a failure at once, so that
    /// concurrent attempts cannot race past the limit; the seconds to wait when the minute's are
    /// spent (the peer's own, or all peers').
    pub fn begin_sign_in(&self, peer: std::net::IpAddr, now: u64) -> Result<(), u64> {
        let mut g = self.failures.lock().expect("session lock");
        let minute = now / 60;
        if g.minute != minute {
            *g = Failures {
                minute,
                ..Default::default()
            };
        }
        let key = peer_key(peer);
        let mine = g.by_peer.get(&key).copied().unwrap_or(0);
        if mine >= FAILURES_PER_MINUTE || g.all >= FAILURES_PER_MINUTE_ALL {
            return Err(60 - now % 60);
        }
        g.by_peer.insert(key, mine + 1);
        g.all += 1;
        Ok(())
    }

    /// The attempt `peer` began at `now` had the right token: it is not a failure.
    pub fn succeeded(&self, peer: std::net::IpAddr, now: u64) {
        let mut g = self.failures.lock().expect("session lock");
        if g.minute == now / 60 {
            if let Some(n) = g.by_peer.get_mut(&peer_key(peer)) {
                *n = n.saturating_sub(1);
                g.all = g.all.saturating_sub(1);
            }
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
    fn failed_sign_ins_are_throttled_per_peer_and_in_all() {
        let s = Sessions::default();
        let (hostile, operator) = (
            "192.0.2.7".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        // a right token is not counted
        assert!(s.begin_sign_in(hostile, 120).is_ok());
        s.succeeded(hostile, 120);
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(s.begin_sign_in(hostile, 120).is_ok());
        }
        assert_eq!(s.begin_sign_in(hostile, 130), Err(50));
        assert!(
            s.begin_sign_in(operator, 130).is_ok(),
            "one peer's failures do not lock another out"
        );
        assert!(s.begin_sign_in(hostile, 180).is_ok(), "the next minute");
        // an IPv6 host counts by its /64
        let v6 = |x: &str| x.parse::<std::net::IpAddr>().unwrap();
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(s.begin_sign_in(v6("2001:db8::1"), 240).is_ok());
        }
        assert!(s.begin_sign_in(v6("2001:db8::ffff"), 240).is_err());
        assert!(s.begin_sign_in(v6("2001:db8:0:1::1"), 240).is_ok());
        // many addresses together stop at the global ceiling
        let s = Sessions::default();
        for i in 0..FAILURES_PER_MINUTE_ALL {
            let ip = std::net::IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            assert!(s.begin_sign_in(ip, 300).is_ok());
        }
        assert!(s.begin_sign_in(operator, 300).is_err());
    }
}
