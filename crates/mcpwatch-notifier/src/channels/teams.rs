//! Microsoft Teams through a Workflows webhook (the trigger "When a Teams webhook request is
//! received" that replaced the retired Office 365 connectors): one Adaptive Card per message
//! in the documented envelope, coloured by status and severity, kept under Teams' 28 KB by
//! listing fewer alerts. The workflow answers 202 Accepted; 429 and 5xx are retried (no
//! sooner than `Retry-After`), any other 4xx is a dead letter.

use std::time::Duration;

use mcpwatch_core::Secret;
use serde_json::{Value, json};

use super::{Message, SendError, Sender, Tone, http};
use crate::config::{ChannelKind, TeamsConfig};
use crate::template::{AlertContext, MessageContext, Recipient, Unlisted};

/// The attachment's content type that says its content is an Adaptive Card.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// Adaptive Cards 1.4: what Teams renders on desktop, web and mobile, container styles and
/// action sets in the body included.
const CARD_VERSION: &str = "1.4";

// Each part's bound in UTF-8 bytes (JSON at most doubles them: quotes and backslashes), so
// that a card listing no alert stays within `TEAMS_MIN_CARD_BYTES` whatever the alerts say.
const MAX_TITLE: usize = 256;
const MAX_LINE: usize = 256;
const MAX_HEADLINE: usize = 512;
const MAX_NAME: usize = 64;
const MAX_CONTACT: usize = 256;
const MAX_UNLISTED: usize = 1024;
const MAX_URL: usize = 1024;
const MAX_SUMMARY: usize = 256;
const MAX_DESCRIPTION: usize = 1024;
const MAX_LABELS: usize = 8;
const MAX_FACT_TITLE: usize = 64;
const MAX_FACT: usize = 256;

pub struct TeamsSender {
    name: String,
    url: Secret,
    max_card_bytes: usize,
    client: reqwest::Client,
}

impl TeamsSender {
    pub fn new(name: &str, config: &TeamsConfig, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            url: config.url()?,
            max_card_bytes: config.max_card_bytes,
            client: http::client(&config.tls_config, timeout)?,
        })
    }

    /// The request body: the card listing as many of the message's listed alerts as fit in
    /// `max_card_bytes`, the rest counted by name.
    fn body(&self, message: &Message<'_>) -> Vec<u8> {
        let title = message.render(ChannelKind::Teams, &self.name, "title");
        card_within(message.context, &title, self.max_card_bytes)
    }
}

/// The card for `context` with the most listed alerts that keeps its JSON within `max`
/// bytes. Listing none always fits a `max` of at least `TEAMS_MIN_CARD_BYTES`.
pub fn card_within(context: &MessageContext, title: &str, max: usize) -> Vec<u8> {
    let blocks: Vec<Value> = context.listed.iter().map(alert_block).collect();
    let mut listed = blocks.len();
    loop {
        let body = envelope(context, title, &blocks[..listed], listed);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if bytes.len() <= max || listed == 0 {
            return bytes;
        }
        listed -= 1;
    }
}

/// The Workflows envelope around the card.
fn envelope(context: &MessageContext, title: &str, blocks: &[Value], listed: usize) -> Value {
    let tone = Tone::of(context);
    let mut body = vec![json!({
        "type": "Container",
        "style": style(tone),
        "bleed": true,
        "items": [
            {"type": "TextBlock", "text": plain(title, MAX_TITLE), "size": "Large",
                "weight": "Bolder", "wrap": true},
            {"type": "TextBlock", "text": plain(&format!(
                "{} firing, {} resolved · receiver {}",
                context.counts.firing, context.counts.resolved, context.receiver
            ), MAX_LINE), "isSubtle": true, "spacing": "None", "wrap": true},
        ],
    })];
    let event = context.event.as_ref();
    if let Some(headline) = event.map(|e| e.headline.as_str()).filter(|h| !h.is_empty()) {
        body.push(json!({"type": "TextBlock", "text": plain(headline, MAX_HEADLINE),
            "weight": "Bolder", "wrap": true}));
    }
    let mut entities = Vec::new();
    if let Some(recipient) = event.and_then(|e| e.recipient.as_ref()) {
        let (text, entity) = mention(recipient);
        body.push(json!({"type": "TextBlock", "text": format!("On call: {text}"), "wrap": true}));
        entities.extend(entity);
    }
    body.extend(blocks.iter().cloned());
    let unlisted = context.unlisted_after(listed);
    if !unlisted.is_empty() {
        body.push(json!({"type": "TextBlock", "text": plain(&more(&unlisted), MAX_UNLISTED),
            "wrap": true, "separator": true}));
    }
    if context.truncated_alerts > 0 {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true, "text": format!(
            "{} alerts were left out by Alertmanager's max_alerts.", context.truncated_alerts
        )}));
    }
    let mut actions = Vec::new();
    if let Some(url) = context.ack_url.as_deref().and_then(link) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Acknowledge", "url": url}));
    }
    if let Some(url) = link(&context.external_url) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Alertmanager", "url": url}));
    }
    let mut msteams = json!({"width": "Full"});
    if !entities.is_empty() {
        msteams["entities"] = Value::Array(entities);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "msteams": msteams,
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// Adaptive Cards' container style (and text colour) for a tone.
fn style(tone: Tone) -> &'static str {
    match tone {
        Tone::Critical => "attention",
        Tone::Firing => "warning",
        Tone::Resolved => "good",
    }
}

/// The text naming `recipient` and, when they have a contact on Teams (a user principal
/// name or Entra object id), the mention entity that turns it into an @-mention. The name
/// goes through [`plain`] in both, so that the entity's text is found in the card as it is.
fn mention(recipient: &Recipient) -> (String, Option<Value>) {
    let shown = if recipient.name.trim().is_empty() {
        &recipient.person
    } else {
        &recipient.name
    };
    let name = plain(shown, MAX_NAME);
    // A user principal name or object id: anything else could not mention anyone.
    let contact = recipient.contact.as_deref().map(str::trim).filter(|c| {
        !c.is_empty() && c.len() <= MAX_CONTACT && !c.chars().any(char::is_control)
    });
    match contact {
        Some(contact) => {
            let text = format!("<at>{name}</at>");
            let entity = json!({
                "type": "mention",
                "text": text,
                "mentioned": {"id": contact, "name": name},
            });
            (text, Some(entity))
        }
        None => (name, None),
    }
}

/// One alert: its summary in its colour, description, facts and links.
fn alert_block(alert: AlertContext<'_>) -> Value {
    let tone = Tone::of_alert(alert);
    let mut items = vec![json!({
        "type": "TextBlock",
        "text": plain(&format!("{} · {}", alert.status().as_str().to_uppercase(), alert.summary()), MAX_SUMMARY),
        "weight": "Bolder",
        "color": style(tone),
        "wrap": true,
    })];
    if !alert.description().is_empty() {
        items.push(json!({"type": "TextBlock", "text": plain(alert.description(), MAX_DESCRIPTION),
            "isSubtle": true, "wrap": true, "spacing": "Small"}));
    }
    items.push(json!({"type": "FactSet", "facts": facts(alert)}));
    let mut links = Vec::new();
    for (title, url) in [
        ("Runbook", alert.runbook_url()),
        ("Source", alert.generator_url()),
    ] {
        if let Some(url) = link(url) {
            links.push(json!({"type": "Action.OpenUrl", "title": title, "url": url}));
        }
    }
    if !links.is_empty() {
        items.push(json!({"type": "ActionSet", "actions": links}));
    }
    json!({"type": "Container", "style": style(tone), "separator": true, "items": items})
}

/// The facts of an alert: its times, then its labels (severity and instance first), at
/// most `MAX_LABELS` of them and a count of the rest.
fn facts(alert: AlertContext<'_>) -> Vec<Value> {
    let fact = |title: &str, value: &str| {
        json!({"title": plain(title, MAX_FACT_TITLE), "value": plain(value, MAX_FACT)})
    };
    let mut facts = vec![fact("Started", alert.starts_at())];
    if alert.status() == crate::payload::Status::Resolved {
        facts.push(fact("Resolved", alert.ends_at()));
    }
    let labels = alert.labels();
    let first = ["severity", "instance"];
    let shown: Vec<(&String, &String)> = first
        .iter()
        .filter_map(|k| labels.get_key_value(*k))
        .chain(
            labels
                .iter()
                .filter(|(k, _)| !first.contains(&k.as_str()) && k.as_str() != "alertname"),
        )
        .collect();
    for (name, value) in shown.iter().take(MAX_LABELS) {
        facts.push(fact(name, value));
    }
    if shown.len() > MAX_LABELS {
        facts.push(fact(
            "…",
            &format!("{} more labels", shown.len() - MAX_LABELS),
        ));
    }
    facts
}

/// "…and 12 more: DiskFull ×10 firing, ProviderDown ×2 resolved".
fn more(unlisted: &[Unlisted]) -> String {
    let count: usize = unlisted.iter().map(|u| u.count).sum();
    let names: Vec<String> = unlisted
        .iter()
        .map(|u| format!("{} ×{} {}", plain(&u.name, MAX_NAME), u.count, u.status.as_str()))
        .collect();
    format!("…and {count} more: {}", names.join(", "))
}

/// `url` when it is an absolute http(s) URL short enough to be a link; anything else (a
/// `javascript:` or relative one, one that does not parse) is left out.
fn link(url: &str) -> Option<&str> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL {
        return None;
    }
    let uri: ::http::Uri = url.parse().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()).then_some(url)
}

/// Alert text as Teams shows it literally, at most `limit` bytes. TextBlock and FactSet
/// read a Markdown subset and Teams turns `<at>…</at>` into mentions, so the characters that
/// would start either are swapped for look-alikes with no meaning: a label cannot bold,
/// link, or mention anyone. Control characters other than line breaks become spaces.
fn plain(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut previous = ' ';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        let shown = match c {
            '<' => '‹',
            '>' => '›',
            '*' => '∗',
            // An underscore inside a word is no emphasis (`node_exporter` stays as it is).
            '_' if !(previous.is_alphanumeric() && next.is_alphanumeric()) => '＿',
            // `[text](url)` is a link.
            ']' if next == '(' => '］',
            '\n' => '\n',
            c if c.is_control() => ' ',
            c => c,
        };
        out.push(shown);
        if out.len() > limit {
            let mut end = limit.saturating_sub('…'.len_utf8());
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
            break;
        }
        previous = c;
    }
    out
}


#[async_trait::async_trait]
impl Sender for TeamsSender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let request = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(message));
        let secrets = [self.url.expose()];
        let response = http::send(request, &secrets).await?;
        // An Office 365 connector URL (retired, still answering in places) wraps Teams'
        // refusal, a 413 too, in a 200.
        let answer = response.text().await.unwrap_or_default();
        if answer.contains("Microsoft Teams endpoint returned HTTP error") {
            return Err(SendError::permanent(
                "rejected",
                format!(
                    "Teams refused the card: {}",
                    http::excerpt(&answer, &secrets)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NotifierConfig, TEAMS_MIN_CARD_BYTES};
    use crate::payload::{Notification, Status};
    use crate::template::{EventContext, Templates};
    use std::sync::Arc;

    fn templates() -> Templates {
        let config = NotifierConfig::parse(
            "channels:\n  chat:\n    teams: {url: 'https://example.com/workflows/x?sig=s3cret'}\n",
            std::path::Path::new("notifier.yml"),
        )
        .expect("config");
        Templates::build(&config).expect("templates")
    }

    fn card(context: &MessageContext, max: usize) -> Value {
        serde_json::from_slice(&card_within(context, &context.title, max)).expect("JSON")
    }

    /// Every text of the card, depth first.
    fn texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| texts(v, out)),
            Value::Object(o) => o.values().for_each(|v| texts(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_documented_envelope_with_facts_links_and_colours() {
        let templates = templates();
        let mut notification = Notification::sample();
        notification.alerts[0]
            .labels
            .insert("severity".into(), "critical".into());
        let notification = Arc::new(notification);
        let all: Vec<usize> = (0..notification.alerts.len()).collect();
        let context =
            templates.context(&notification, &all, "chat", Some("https://n.example.com/ack?t=1"));
        let body = card(&context, 28_000);
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(body["attachments"].as_array().map(Vec::len), Some(1));
        assert_eq!(attachment["contentType"], CARD_CONTENT_TYPE);
        assert_eq!(attachment["contentUrl"], Value::Null);
        let content = &attachment["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(content["version"], "1.4");
        assert_eq!(content["body"][0]["style"], "attention");
        assert_eq!(content["body"][0]["items"][0]["text"], context.title.as_str());
        assert_eq!(content["actions"][0]["title"], "Acknowledge");
        assert_eq!(content["actions"][0]["url"], "https://n.example.com/ack?t=1");
        let alert = &content["body"][1];
        assert_eq!(alert["type"], "Container");
        let facts = alert["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["type"] == "FactSet"))
            .expect("facts");
        assert_eq!(facts["facts"][1]["title"], "severity");
        assert_eq!(facts["facts"][1]["value"], "critical");
        assert!(content["msteams"].get("entities").is_none());

        let mut resolved = (*notification).clone();
        for alert in &mut resolved.alerts {
            alert.status = Status::Resolved;
        }
        let context = templates.context(&Arc::new(resolved), &all, "chat", None);
        let body = card(&context, 28_000);
        let content = &body["attachments"][0]["content"];
        assert_eq!(content["body"][0]["style"], "good");
        assert!(
            content["body"][0]["items"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[RESOLVED]"))
        );
        assert!(
            content["actions"]
                .as_array()
                .is_some_and(|a| a.iter().all(|a| a["title"] != "Acknowledge"))
        );
    }

    #[test]
    fn the_person_on_call_is_mentioned() {
        let templates = templates();
        let notification = Arc::new(Notification::sample());
        let context = templates
            .context(&notification, &[0], "chat", None)
            .with_event(EventContext {
                kind: "escalated",
                headline: "Incident 7 escalated to level 2 (senior engineer).".into(),
                recipient: Some(Recipient {
                    person: "alice".into(),
                    name: "Alice <b>Doe</b>".into(),
                    contact: Some("alice@example.com".into()),
                }),
                ..EventContext::default()
            });
        let body = card(&context, 28_000);
        let content = &body["attachments"][0]["content"];
        assert_eq!(
            content["body"][1]["text"],
            "Incident 7 escalated to level 2 (senior engineer)."
        );
        assert_eq!(content["body"][2]["text"], "On call: <at>Alice ‹b›Doe‹/b›</at>");
        assert_eq!(
            content["msteams"]["entities"],
            json!([{"type": "mention", "text": "<at>Alice ‹b›Doe‹/b›</at>",
                "mentioned": {"id": "alice@example.com", "name": "Alice ‹b›Doe‹/b›"}}])
        );

        // Without a contact the name is shown, nobody is mentioned.
        let context = templates
            .context(&notification, &[0], "chat", None)
            .with_event(EventContext {
                recipient: Some(Recipient {
                    person: "bob".into(),
                    name: String::new(),
                    contact: None,
                }),
                ..EventContext::default()
            });
        let body = card(&context, 28_000);
        let content = &body["attachments"][0]["content"];
        assert_eq!(content["body"][1]["text"], "On call: bob");
        assert!(content["msteams"].get("entities").is_none());
    }

    #[test]
    fn alert_text_cannot_mention_link_or_format() {
        assert_eq!(plain("<at>x</at>", 100), "‹at›x‹/at›");
        assert_eq!(plain("**bold** [click](https://evil)", 100), "∗∗bold∗∗ [click］(https://evil)");
        assert_eq!(plain("node_exporter _italic_ __x", 100), "node_exporter ＿italic＿ ＿＿x");
        assert_eq!(plain("a\u{0}b\nc\td", 100), "a b\nc d");
        assert_eq!(plain("[::1]:9090 rate(x[5m]) > 2", 100), "[::1]:9090 rate(x[5m]) › 2");
        assert_eq!(plain("abcdefg", 6), "abc…");
        assert_eq!(plain("abcdef", 6), "abcdef");
        assert_eq!(plain("<<<", 6), "‹…");
    }

    #[test]
    fn only_http_links() {
        assert_eq!(link("https://example.com/runbooks#down"), Some("https://example.com/runbooks#down"));
        assert_eq!(
            link(" http://prometheus:9090/graph?g0.expr=up%3D%3D0 "),
            Some("http://prometheus:9090/graph?g0.expr=up%3D%3D0")
        );
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(link("/graph"), None);
        assert_eq!(link("ftp://example.com/x"), None);
        assert_eq!(link(""), None);
        assert_eq!(link(&format!("https://example.com/{}", "a".repeat(2000))), None);
    }

    #[test]
    fn a_card_that_does_not_fit_lists_fewer_alerts() {
        let templates = templates();
        let mut notification = Notification::sample();
        let template = notification.alerts[0].clone();
        notification.alerts = (0..500)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("instance".into(), format!("mcp-{i}:3001"));
                a.labels.insert("who".into(), "<at>x</at> **b** [l](https://e)".into());
                a.annotations.insert("description".into(), "\"\\".repeat(50_000));
                a
            })
            .collect();
        let notification = Arc::new(notification);
        let all: Vec<usize> = (0..500).collect();
        let context = templates.context(&notification, &all, "chat", None);
        let bytes = card_within(&context, &context.title, 28_000);
        assert!(bytes.len() <= 28_000, "{} bytes", bytes.len());
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        let blocks = body["attachments"][0]["content"]["body"]
            .as_array()
            .expect("body");
        let listed = blocks.iter().filter(|b| b["type"] == "Container").count() - 1;
        assert!((1..10).contains(&listed), "{listed} listed");
        let more = blocks
            .last()
            .and_then(|b| b["text"].as_str())
            .expect("more");
        assert_eq!(
            more,
            format!("…and {} more: McpwatchTestNotification ×{} firing", 500 - listed, 500 - listed)
        );
        let mut all_texts = Vec::new();
        texts(&body, &mut all_texts);
        assert!(all_texts.iter().all(|t| !t.contains("<at>")));
        // At the smallest bound nothing is listed, and it still fits.
        let bytes = card_within(&context, &context.title, TEAMS_MIN_CARD_BYTES);
        assert!(bytes.len() <= TEAMS_MIN_CARD_BYTES, "{} bytes", bytes.len());
    }

    #[test]
    fn a_card_listing_nothing_fits_the_smallest_bound_whatever_it_says() {
        let templates = templates();
        let worst = "\"".repeat(100_000);
        let mut notification = Notification::sample();
        notification.receiver.clone_from(&worst);
        notification.external_url = format!("https://example.com/{}", "a".repeat(MAX_URL - 30));
        notification.truncated_alerts = u64::MAX;
        let template = notification.alerts[0].clone();
        notification.alerts = (0..50)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("alertname".into(), format!("{i}{worst}"));
                a
            })
            .collect();
        notification
            .group_labels
            .insert("alertname".into(), worst.clone());
        let notification = Arc::new(notification);
        let all: Vec<usize> = (0..50).collect();
        let context = templates
            .context(
                &notification,
                &all,
                "chat",
                Some(&format!("https://n.example.com/{}", "b".repeat(MAX_URL - 30))),
            )
            .with_event(EventContext {
                headline: worst.clone(),
                recipient: Some(Recipient {
                    person: "p".into(),
                    name: worst.clone(),
                    contact: Some(worst.clone()),
                }),
                ..EventContext::default()
            });
        let bytes = card_within(&context, &worst, TEAMS_MIN_CARD_BYTES);
        assert!(bytes.len() <= TEAMS_MIN_CARD_BYTES, "{} bytes", bytes.len());
    }
}
