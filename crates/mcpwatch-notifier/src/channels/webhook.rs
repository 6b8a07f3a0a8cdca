//! A JSON POST of the notification in Alertmanager's own format (only the alerts routed to
//! the channel), so that anything that reads Alertmanager webhooks reads ours. With a key,
//! each request is signed: `X-Mcpwatch-Signature: sha256=<hex>` is the HMAC-SHA256 of
//! `<X-Mcpwatch-Timestamp>.<body>`; a receiver recomputes it and refuses old timestamps.

use std::time::Duration;

use hmac::{Hmac, Mac};
use mcpwatch_core::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use super::{Message, SendError, Sender, http};
use crate::config::WebhookConfig;
use crate::payload::hex;

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

pub struct WebhookSender {
    url: Secret,
    key: Option<Secret>,
    headers: HeaderMap,
    /// The header values, kept out of error texts (a receiver's error page may echo the
    /// request).
    header_values: Vec<Secret>,
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn new(_name: &str, config: &WebhookConfig, timeout: Duration) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
            headers.insert(name, value);
        }
        Ok(Self {
            url: config.url()?,
            key: config.hmac_secret()?,
            headers,
            header_values: config.headers.values().cloned().collect(),
            client: http::client(&config.tls_config, timeout)?,
        })
    }
}

#[async_trait::async_trait]
impl Sender for WebhookSender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let encoding =
            |e: serde_json::Error| SendError::permanent("encoding", format!("cannot encode: {e}"));
        // Alertmanager's payload, with what mcpwatch adds (an incident's step, an
        // acknowledgement, a maintenance summary) under a key of its own.
        let body = serde_json::to_vec(
            &message
                .restricted()
                .with_event(message.context.event.as_ref()),
        )
        .map_err(encoding)?;
        let mut request = self
            .client
            .post(self.url.expose())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Mcpwatch-Delivery", message.delivery_id.to_string())
            .header("X-Mcpwatch-Attempt", message.attempt.to_string())
            .header(
                "Idempotency-Key",
                format!("mcpwatch-delivery-{}", message.delivery_id),
            );
        if let Some(key) = &self.key {
            let timestamp = crate::time::now_ms() / 1000;
            request = request
                .header("X-Mcpwatch-Timestamp", timestamp.to_string())
                .header(
                    "X-Mcpwatch-Signature",
                    signature(key.expose().as_bytes(), timestamp, &body),
                );
        }
        let secrets: Vec<&str> = std::iter::once(self.url.expose())
            .chain(self.header_values.iter().map(Secret::expose))
            .collect();
        http::send(request.body(body), &secrets).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac key`
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
