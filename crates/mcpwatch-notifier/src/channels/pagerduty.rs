//! PagerDuty Events API v2: `trigger` while any routed alert fires, `resolve` when all have
//! resolved, under one stable `dedup_key` per alert group, with the severity mapped to
//! PagerDuty's four values. 400 is permanent (PagerDuty will never take that event);
//! 429 and 5xx are retried.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpwatch_core::Secret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Message, SendError, Sender, http};
use crate::config::{ChannelKind, PagerDutyConfig};
use crate::incident::Event;
use crate::payload::{Status, hex};

/// PagerDuty's limit on an event, in bytes; past it the custom details are dropped.
const MAX_EVENT_BYTES: usize = 512_000;

/// The key one alert group's events share in PagerDuty, the same across retries, replicas
/// and restarts: the SHA-256 of Alertmanager's group key, as Alertmanager's own PagerDuty
/// integration computes it, so that incidents it opened resolve after a switch.
pub fn pagerduty_dedup_key(group_key: &str) -> String {
    hex(&Sha256::digest(group_key.as_bytes()))
}

/// PagerDuty's severity for a label value: the configured table first, then the built-in
/// one; anything unknown is `error`, as Alertmanager's default.
pub fn pagerduty_severity(value: &str, table: &BTreeMap<String, String>) -> &'static str {
    if let Some(mapped) = table.get(value) {
        return match mapped.as_str() {
            "critical" => "critical",
            "warning" => "warning",
            "info" => "info",
            _ => "error",
        };
    }
    match value.to_ascii_lowercase().as_str() {
        "critical" | "page" | "high" | "emergency" | "fatal" => "critical",
        "warning" | "warn" | "minor" | "medium" => "warning",
        "info" | "low" | "none" | "notice" | "informational" => "info",
        _ => "error",
    }
}

fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "error" => 2,
        "warning" => 1,
        _ => 0,
    }
}

pub struct PagerDutySender {
    name: String,
    routing_key: Secret,
    config: PagerDutyConfig,
    client: reqwest::Client,
}

impl PagerDutySender {
    pub fn new(name: &str, config: &PagerDutyConfig, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            routing_key: config.routing_key()?,
            client: http::client(&config.tls_config, timeout)?,
            config: config.clone(),
        })
    }

    fn event(&self, message: &Message<'_>) -> Value {
        let context = message.context;
        let dedup_key = pagerduty_dedup_key(&context.group_key);
        // Acknowledged in mcpwatch: PagerDuty's incident of the group is acknowledged too.
        if matches!(message.event, Some(Event::Acknowledged { .. })) {
            return json!({
                "routing_key": self.routing_key.expose(),
                "event_action": "acknowledge",
                "dedup_key": dedup_key,
            });
        }
        if context.status == Status::Resolved {
            return json!({
                "routing_key": self.routing_key.expose(),
                "event_action": "resolve",
                "dedup_key": dedup_key,
            });
        }
        let severity = context
            .firing
            .iter()
            .map(|a| {
                let value = a
                    .labels()
                    .get(&self.config.severity_label)
                    .map_or("", String::as_str);
                pagerduty_severity(value, &self.config.severity_map)
            })
            .max_by_key(|s| rank(s))
            .unwrap_or("error");
        let summary: String = message
            .render(ChannelKind::PagerDuty, &self.name, "summary")
            .chars()
            .take(1024)
            .collect();
        let mut source = message.render(ChannelKind::PagerDuty, &self.name, "source");
        if source.trim().is_empty() {
            source.clone_from(&context.receiver);
        }
        let mut links = Vec::new();
        for alert in context.firing.iter().take(5) {
            if !alert.runbook_url().is_empty() {
                links.push(
                    json!({"href": alert.runbook_url(), "text": format!("Runbook: {}", alert.name())}),
                );
            }
            if !alert.generator_url().is_empty() {
                links.push(
                    json!({"href": alert.generator_url(), "text": format!("Source: {}", alert.name())}),
                );
            }
        }
        if let Some(ack) = &context.ack_url {
            links.push(json!({"href": ack, "text": "Acknowledge in mcpwatch"}));
        }
        let first = context.firing.first();
        // The details of every alert when they fit in an event; counted as they are written,
        // so that thousands of alerts are never built up only to be left out.
        let fitting = details_within(context, MAX_EVENT_BYTES);
        let custom_details = match fitting {
            Some((firing, resolved)) => json!({
                "firing": firing,
                "resolved": resolved,
                "num_firing": context.counts.firing,
                "num_resolved": context.counts.resolved,
                "group_labels": context.group_labels,
                "truncated_alerts": context.truncated_alerts,
            }),
            None => left_out(context),
        };
        let mut payload = json!({
            "summary": summary,
            "source": source,
            "severity": severity,
            "custom_details": custom_details,
        });
        if let Some(first) = first {
            payload["timestamp"] = Value::String(first.starts_at().to_owned());
            payload["class"] = Value::String(first.name().to_owned());
            if let Some(job) = context.common_labels.get("job") {
                payload["group"] = Value::String(job.clone());
            }
            if let Some(service) = context.common_labels.get("service") {
                payload["component"] = Value::String(service.clone());
            }
        }
        let mut event = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": self.config.client,
            "payload": payload,
            "links": links,
        });
        if !context.external_url.is_empty() {
            event["client_url"] = Value::String(context.external_url.clone());
        }
        if serde_json::to_vec(&event).map_or(0, |v| v.len()) > MAX_EVENT_BYTES {
            event["payload"]["custom_details"] = left_out(context);
        }
        event
    }
}

/// The details that say they were left out.
fn left_out(context: &crate::template::MessageContext) -> Value {
    json!({
        "error": "The details were left out: the event was larger than PagerDuty accepts.",
        "num_firing": context.counts.firing,
        "num_resolved": context.counts.resolved,
    })
}

/// The details of the firing and of the resolved alerts, or `None` once they pass `limit`
/// bytes of JSON.
fn details_within(
    context: &crate::template::MessageContext,
    limit: usize,
) -> Option<(Vec<Value>, Vec<Value>)> {
    let mut bytes = 0;
    let mut within = |alerts: &crate::template::AlertList| -> Option<Vec<Value>> {
        let mut out = Vec::new();
        for alert in alerts.iter() {
            let value = details(alert);
            bytes += serde_json::to_vec(&value).map_or(limit, |v| v.len() + 1);
            if bytes > limit {
                return None;
            }
            out.push(value);
        }
        Some(out)
    };
    let firing = within(&context.firing)?;
    let resolved = within(&context.resolved)?;
    Some((firing, resolved))
}

fn details(alert: crate::template::AlertContext<'_>) -> Value {
    json!({
        "labels": alert.labels(),
        "annotations": alert.annotations(),
        "startsAt": alert.starts_at(),
        "endsAt": alert.ends_at(),
    })
}

#[async_trait::async_trait]
impl Sender for PagerDutySender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let request = self
            .client
            .post(&self.config.url)
            .json(&self.event(message));
        http::send(request, &[self.routing_key.expose()])
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_pagerdutys_four() {
        let mut table = BTreeMap::new();
        table.insert("p1".to_owned(), "critical".to_owned());
        assert_eq!(pagerduty_severity("critical", &table), "critical");
        assert_eq!(pagerduty_severity("page", &table), "critical");
        assert_eq!(pagerduty_severity("p1", &table), "critical");
        assert_eq!(pagerduty_severity("Warning", &table), "warning");
        assert_eq!(pagerduty_severity("info", &table), "info");
        assert_eq!(pagerduty_severity("none", &table), "info");
        assert_eq!(pagerduty_severity("", &table), "error");
        assert_eq!(pagerduty_severity("whatever", &table), "error");
    }

    #[test]
    fn dedup_key_is_alertmanagers() {
        // `printf '%s' '{}:{alertname="X"}' | sha256sum`
        let a = pagerduty_dedup_key("{}:{alertname=\"X\"}");
        assert_eq!(
            a,
            "25fb0bff77cf7f8850f1cb3aeea9e63be0fbd3e78a8c0ef038392ade26e7d3a6"
        );
        assert_ne!(a, pagerduty_dedup_key("{}:{alertname=\"Y\"}"));
    }
}
