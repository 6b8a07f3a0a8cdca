//! Slack incoming webhooks: one attachment coloured by status and severity, the title
//! and text templates, and Slack's answers read as its documentation gives them (200 `ok`;
//! 429 with `Retry-After`; 4xx such as `invalid_payload` permanent). A message for one person
//! (an on-call schedule's) starts with a mention of their member id.

use std::time::Duration;

use mcpwatch_core::Secret;
use serde_json::{Value, json};

use super::{Message, SendError, Sender, Tone, http};
use crate::config::{ChannelKind, SlackConfig};

/// Longest attachment text sent; Slack shows longer ones folded, and a page of alerts is
/// not read past this anyway.
const MAX_TEXT: usize = 3500;

pub struct SlackSender {
    name: String,
    url: Secret,
    config: SlackConfig,
    client: reqwest::Client,
}

impl SlackSender {
    pub fn new(name: &str, config: &SlackConfig, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            url: config.url()?,
            client: http::client(&config.tls_config, timeout)?,
            config: config.clone(),
        })
    }

    fn body(&self, message: &Message<'_>) -> Value {
        let context = message.context;
        let title = message.render(ChannelKind::Slack, &self.name, "title");
        let text = cut(
            &message.render(ChannelKind::Slack, &self.name, "text"),
            MAX_TEXT,
        );
        let color = match Tone::of(context) {
            Tone::Resolved => "good",
            Tone::Critical => "danger",
            Tone::Firing => "warning",
        };
        let mut attachment = json!({
            "color": color,
            "title": cut(&title, 1024),
            "text": text,
            "fallback": cut(&title, 1024),
            "mrkdwn_in": ["text"],
            "footer": "mcpwatch",
        });
        if !context.external_url.is_empty() {
            attachment["title_link"] = Value::String(context.external_url.clone());
        }
        // A message for one person mentions them in the message's own text, where Slack
        // notifies them (a mention inside an attachment does not).
        let mention = message
            .contact()
            .map(|member| format!("<@{member}>"))
            .unwrap_or_default();
        let mut body = json!({ "attachments": [attachment], "text": mention });
        if let Some(channel) = &self.config.channel {
            body["channel"] = Value::String(channel.clone());
        }
        if let Some(username) = &self.config.username {
            body["username"] = Value::String(username.clone());
        }
        if let Some(icon) = &self.config.icon_emoji {
            body["icon_emoji"] = Value::String(icon.clone());
        }
        body
    }
}

/// At most `limit` bytes, cut at a line (or char) boundary, marked when cut.
fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub(4);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let head = head.rfind('\n').map_or(head, |i| &head[..i]);
    format!("{head}\n…")
}

#[async_trait::async_trait]
impl Sender for SlackSender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let request = self
            .client
            .post(self.url.expose())
            .json(&self.body(message));
        let response = http::send(request, &[self.url.expose()]).await?;
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response.text().await.unwrap_or_default();
        if json {
            let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if value.get("ok") == Some(&Value::Bool(false)) {
                let error = value["error"].as_str().unwrap_or("unknown error");
                return Err(SendError::permanent(
                    "rejected",
                    format!("Slack refused the message: {error}"),
                ));
            }
            return Ok(());
        }
        if body.trim() == "ok" {
            Ok(())
        } else {
            let excerpt: String = body.chars().take(200).collect();
            Err(SendError::permanent(
                "invalid_response",
                format!("Slack answered 200 without \"ok\": {excerpt:?}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_line() {
        let text = "line one\nline two\nline three";
        assert_eq!(cut(text, 100), text);
        assert_eq!(cut(text, 20), "line one\n…");
        assert_eq!(cut("ééééé", 7), "é\n…");
    }
}
