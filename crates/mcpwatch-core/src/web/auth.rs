//! Basic auth against bcrypt hashes, and a token-bucket rate limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::config::{BcryptHash, RateLimit};

/// At most this many successful logins are remembered; bcrypt is slow on purpose (about
/// 70 ms at cost 10), and a scraper sends the same credentials every few seconds.
const CACHE_LIMIT: usize = 256;

/// Checks `Authorization: Basic` headers.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, BcryptHash>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// A hash no password matches, checked for unknown users so that their answer takes as
/// long as a known user's and does not reveal who exists.
static UNKNOWN_USER_HASH: LazyLock<String> = LazyLock::new(|| {
    bcrypt::hash("mcpwatch: no such user", bcrypt::DEFAULT_COST).unwrap_or_default()
});

impl BasicAuth {
    /// Auth for these users; `None` when there are none, so no auth is required.
    pub fn new(users: &BTreeMap<String, BcryptHash>) -> Option<Self> {
        (!users.is_empty()).then(|| Self {
            users: users.clone(),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the `Authorization` header holds valid credentials.
    pub async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str().to_owned(), true),
            None => (UNKNOWN_USER_HASH.clone(), false),
        };
        let key = cache_key(&user, &password, &hash);
        if known && self.cache().contains(&key) {
            return true;
        }
        let ok = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known;
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
