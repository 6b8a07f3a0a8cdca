//! What the HTTP channels (Slack, Teams, PagerDuty, webhook) share: a client with the channel's
//! TLS settings, and the reading of an answer as success, transient or permanent failure.

use std::time::{Duration, SystemTime};

use mcpwatch_core::web::{ServerCheck, client_config};

use super::SendError;
use crate::config::ClientTlsConfig;

/// A client for one channel.
pub fn client(tls: &ClientTlsConfig, timeout: Duration) -> Result<reqwest::Client, String> {
    let check = if tls.insecure_skip_verify {
        ServerCheck::None
    } else {
        ServerCheck::Full
    };
    let config = client_config(check, tls.ca_file.as_ref().map(|p| p.path()))?;
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("mcpwatch-notifier/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| format!("HTTP client: {}", e.without_url()))
}

/// A request that did not get an answer. reqwest names the URL in its errors; a Slack or
/// webhook URL is a credential, so it is taken out.
pub fn request_error(error: reqwest::Error) -> SendError {
    let kind = if error.is_timeout() {
        "timeout"
    } else {
        "connection"
    };
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    SendError::transient(kind, text)
}

/// Sends a request; a success answer is returned, anything else is the failure it means.
/// `secrets` are what the request carried that error texts must not show (its URL, a key,
/// header values; see [`failure`]).
pub async fn send(
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<reqwest::Response, SendError> {
    let response = request.send().await.map_err(request_error)?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(failure(response, secrets).await)
    }
}

/// The longest part of a response body kept in an error.
const BODY_EXCERPT: usize = 300;

/// An answer that is not a success, read by its status: 429 and 5xx (and 408) are
/// transient, with the receiver's `Retry-After`; any other 4xx is permanent. `secrets` (the
/// URL, key and header values the request carried) are taken out of the body excerpt kept
/// in the error: an error page often echoes the request's path, or the whole request.
pub async fn failure(response: reqwest::Response, secrets: &[&str]) -> SendError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = response.text().await.unwrap_or_default();
    let excerpt = excerpt(&body, secrets);
    let reason = if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    };
    let code = status.as_u16();
    if code == 429 {
        SendError::Transient {
            kind: "rate_limited",
            reason,
            retry_after,
        }
    } else if code == 408 || status.is_server_error() {
        SendError::Transient {
            kind: "server_error",
            reason,
            retry_after,
        }
    } else {
        SendError::permanent("rejected", reason)
    }
}

/// The start of an answer's body, kept in an error: without `secrets` (see [`failure`]).
pub fn excerpt(body: &str, secrets: &[&str]) -> String {
    redact(body.trim(), secrets)
        .chars()
        .take(BODY_EXCERPT)
        .collect()
}

/// `text` without any of `secrets`, nor the path (and query) of one that is a URL.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, mcpwatch_core::secret::REDACTED);
        if let Ok(uri) = secret.parse::<http::Uri>()
            && uri.scheme().is_some()
            && let Some(path) = uri.path_and_query().map(|p| p.as_str())
            && path.len() > 1
        {
            out = out.replace(path, mcpwatch_core::secret::REDACTED);
            if uri.path().len() > 1 {
                out = out.replace(uri.path(), mcpwatch_core::secret::REDACTED);
            }
        }
    }
    out
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = humantime::parse_rfc3339_weak(value)
        .ok()
        .or_else(|| parse_http_date(value))?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?;
    let text = format!("{year}-{:02}-{:0>2}T{time}Z", month + 1, day);
    let nanos = crate::payload::parse_rfc3339(&text)?;
    let seconds = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_cut_out_of_error_pages() {
        let url = "https://hooks.example.com/services/T0/B0/s3cret";
        assert_eq!(
            redact("Cannot POST /services/T0/B0/s3cret", &[url]),
            "Cannot POST <secret>"
        );
        assert_eq!(redact("bad key R0UT1NG", &["R0UT1NG"]), "bad key <secret>");
        assert_eq!(redact("invalid_payload", &[url]), "invalid_payload");
        // A receiver that echoes the request's headers.
        assert_eq!(
            redact(
                "500: POST /hook X-Api-Key: k3y-value Authorization: Bearer t0ken",
                &["https://example.com/hook", "k3y-value", "Bearer t0ken", ""]
            ),
            "500: POST <secret> X-Api-Key: <secret> Authorization: <secret>"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert!(parse_retry_after("soon").is_none());
        let later = SystemTime::now() + Duration::from_secs(120);
        let secs = later
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("epoch")
            .as_millis();
        let text = crate::time::format_rfc3339(i64::try_from(secs).expect("fits"));
        let parsed = parse_retry_after(&text).expect("date");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
    }
}
