//! Signed acknowledgement links:
//! `<base>/api/v1/incidents/<id>/<ack|unack>?generation=<n>&expires=<unix s>&sig=<mac>`, where
//! the MAC is HMAC-SHA256, under the notifier's ack secret, of the action, the incident, its
//! acknowledgement generation and the expiry. A link whose incident, action, generation or
//! expiry was changed, or whose time has passed, is refused; one signed under another secret
//! is too. The generation makes a link single-use: acknowledging (or taking it back) moves
//! the incident to the next generation, and the store refuses links of an earlier one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use mcpwatch_core::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge the incident.
    Ack,
    /// Take the acknowledgement back.
    Unack,
}

impl Action {
    /// `ack` or `unack`, as in the link's path.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ack => "ack",
            Action::Unack => "unack",
        }
    }
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature is not the notifier's for this incident, action and expiry.
    #[error("the link's signature does not match (altered, or not from this notifier)")]
    Forged,
    /// Its time has passed.
    #[error("the link expired")]
    Expired,
}

/// Signs and checks links under one secret.
#[derive(Clone)]
pub struct LinkSigner {
    secret: Secret,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// A signer under `secret`.
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    fn mac(&self, action: Action, incident: i64, generation: i64, expires: i64) -> Vec<u8> {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()) else {
            return Vec::new();
        };
        mac.update(
            format!(
                "mcpwatch-ack-v2\n{}\n{incident}\n{generation}\n{expires}",
                action.as_str()
            )
            .as_bytes(),
        );
        mac.finalize().into_bytes().to_vec()
    }

    /// The signature of a link.
    pub fn sign(&self, action: Action, incident: i64, generation: i64, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(action, incident, generation, expires))
    }

    /// The link, under `base` (the notifier's external URL).
    pub fn link(
        &self,
        base: &str,
        action: Action,
        incident: i64,
        generation: i64,
        expires: i64,
    ) -> String {
        format!(
            "{}/api/v1/incidents/{incident}/{}?generation={generation}&expires={expires}&sig={}",
            base.trim_end_matches('/'),
            action.as_str(),
            self.sign(action, incident, generation, expires)
        )
    }

    /// Checks a link's signature, then its expiry against `now` (Unix seconds).
    pub fn verify(
        &self,
        action: Action,
        incident: i64,
        generation: i64,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        let given = URL_SAFE_NO_PAD
            .decode(signature.trim())
            .map_err(|_| LinkError::Forged)?;
        let expected = self.mac(action, incident, generation, expires);
        if expected.is_empty() || !bool::from(given.ct_eq(&expected)) {
            return Err(LinkError::Forged);
        }
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_until_it_expires_and_not_once_altered() {
        let signer = LinkSigner::new(Secret::new("s3cret-ack-key"));
        let link = signer.link("https://notifier.example.com/", Action::Ack, 42, 3, 2_000);
        assert!(link.starts_with(
            "https://notifier.example.com/api/v1/incidents/42/ack?generation=3&expires=2000&sig="
        ));
        let sig = link.rsplit("sig=").next().expect("sig");
        assert_eq!(signer.verify(Action::Ack, 42, 3, 2_000, sig, 1_999), Ok(()));
        assert_eq!(
            signer.verify(Action::Ack, 42, 3, 2_000, sig, 2_000),
            Err(LinkError::Expired)
        );
        // Another incident, action or expiry, or another secret: forged.
        assert_eq!(
            signer.verify(Action::Ack, 43, 3, 2_000, sig, 0),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.verify(Action::Unack, 42, 3, 2_000, sig, 0),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.verify(Action::Ack, 42, 3, 9_999, sig, 0),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.verify(Action::Ack, 42, 4, 2_000, sig, 0),
            Err(LinkError::Forged)
        );
        let other = LinkSigner::new(Secret::new("another-key"));
        assert_eq!(
            other.verify(Action::Ack, 42, 3, 2_000, sig, 0),
            Err(LinkError::Forged)
        );
        assert_eq!(
            signer.verify(Action::Ack, 42, 3, 2_000, "not base64!", 0),
            Err(LinkError::Forged)
        );
        assert!(!format!("{signer:?}").contains("s3cret"));
    }
}
