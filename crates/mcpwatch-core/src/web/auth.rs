//! Basic auth against bcrypt hashes, and a token-bucket rate limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::config::{BcryptHash, RateLimit};

/// At most this many successful logins are remembered; bcrypt is slow on purpose (about
/// 70 ms at cost 10), and a scraper sends the same credentials every few seconds.
const CACHE_LIMIT: usize = 256;

/// Bcrypt checks run at once at most; the others wait without holding a thread, so that a
/// flood of wrong passwords cannot take the blocking pool from the collectors.
const CONCURRENT_CHECKS: usize = 2;

/// Checks `Authorization: Basic` headers.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, BcryptHash>,
    verified: Mutex<HashSet<[u8; 32]>>,
    checks: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// Auth for these users; `None` when there are none, so no auth is required.
    pub fn new(users: &BTreeMap<String, BcryptHash>) -> Option<Self> {
        (!users.is_empty()).then(|| Self {
            users: users.clone(),
            verified: Mutex::new(HashSet::new()),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
        })
    }

    /// Whether the `Authorization` header holds valid credentials.
    pub async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        // An unknown user's password is checked against a configured user's hash all the
        // same (and then refused), so that the answer takes as long and does not reveal
        // which users exist.
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str().to_owned(), true),
            None => match self.users.values().next() {
                Some(any) => (any.as_str().to_owned(), false),
                None => return false,
            },
        };
        let key = cache_key(&user, &password, &hash);
        if known && self.cache().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matches && known;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The cache holds digests, never passwords; the hash is part of the key so that a
/// changed hash invalidates what was verified against the old one.
fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user, password, hash] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().into()
}

fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A token bucket shared by all requests: `burst` at once, then one per `interval`.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter; `None` when the interval is zero (disabled).
    pub fn new(limit: RateLimit) -> Option<Self> {
        (!limit.interval.is_zero()).then(|| {
            let burst = f64::from(limit.burst.max(1));
            Self {
                interval: limit.interval,
                burst,
                state: Mutex::new((burst, Instant::now())),
            }
        })
    }

    /// Takes a token; false when none is left.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() / self.interval.as_secs_f64();
        state.0 = (state.0 + refill).min(self.burst);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use std::path::Path;

    fn header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn checks_bcrypt_passwords() {
        let hash = bcrypt::hash("right", 4).expect("hash");
        let users: BTreeMap<String, BcryptHash> =
            parse_yaml(&format!("alice: '{hash}'\n"), Path::new("w.yml")).expect("users");
        let auth = BasicAuth::new(&users).expect("auth");
        assert!(auth.check(Some(&header("alice", "right"))).await);
        // Alice's password under another name is no way in.
        assert!(!auth.check(Some(&header("mallory", "right"))).await);
        // Now from the cache.
        assert!(auth.check(Some(&header("alice", "right"))).await);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await);
        assert!(!auth.check(Some(&header("bob", "right"))).await);
        assert!(!auth.check(Some(b"Bearer abc")).await);
        assert!(!auth.check(Some(b"Basic !!!")).await);
        assert!(!auth.check(None).await);
        assert!(BasicAuth::new(&BTreeMap::new()).is_none());
    }

    #[test]
    fn rate_limit_allows_a_burst_then_waits() {
        let limiter = RateLimiter::new(RateLimit {
            interval: Duration::from_secs(3600),
            burst: 2,
        })
        .expect("enabled");
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
        assert!(
            RateLimiter::new(RateLimit {
                interval: Duration::ZERO,
                burst: 1
            })
            .is_none()
        );
    }
}
