//! The `log` channel: every delivery written as a line to standard output or appended to a
//! file, as text (the `text` template) or JSON. It needs no account anywhere, so a new
//! user sees deliveries at once.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{Message, SendError, Sender};
use crate::config::{ChannelKind, LogConfig, LogFormat};
use crate::payload::{Alert, LabelSet, Status};

/// A delivery as one line of JSON.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    channel: &'a str,
    title: &'a str,
    status: Status,
    receiver: &'a str,
    #[serde(rename = "groupKey")]
    group_key: &'a str,
    #[serde(rename = "groupLabels")]
    group_labels: &'a LabelSet,
    alerts: Vec<&'a Alert>,
    delivery: i64,
}

enum Target {
    Stdout,
    File(std::path::PathBuf),
}

pub struct LogSender {
    name: String,
    format: LogFormat,
    target: Target,
    lock: Arc<Mutex<()>>,
}

impl LogSender {
    pub fn new(name: &str, config: &LogConfig) -> Result<Self, String> {
        let target = match &config.path {
            None => Target::Stdout,
            Some(path) => {
                let path = path.path().to_owned();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && !dir.is_dir()
                {
                    return Err(format!("path: directory {} does not exist", dir.display()));
                }
                Target::File(path)
            }
        };
        Ok(Self {
            name: name.to_owned(),
            format: config.format,
            target,
            lock: Arc::new(Mutex::new(())),
        })
    }

    fn line(&self, message: &Message<'_>) -> String {
        let time = crate::time::now_rfc3339();
        match self.format {
            LogFormat::Text => {
                let text = message.render(ChannelKind::Log, &self.name, "text");
                // One delivery, one line, whatever the template wrote.
                let text = text.trim().replace('\n', " ");
                format!("{time} {}: {text}\n", self.name)
            }
            LogFormat::Json => {
                let restricted = message.restricted();
                let notification = message.notification;
                // Written from borrowed parts: a large notification is not copied for it.
                let mut line = serde_json::to_string(&JsonLine {
                    time: &time,
                    channel: &self.name,
                    title: &message.context.title,
                    status: restricted.status(),
                    receiver: &notification.receiver,
                    group_key: &notification.group_key,
                    group_labels: &notification.group_labels,
                    alerts: restricted.alerts().collect(),
                    delivery: message.delivery_id,
                })
                .unwrap_or_default();
                line.push('\n');
                line
            }
        }
    }
}

#[async_trait::async_trait]
impl Sender for LogSender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let line = self.line(message);
        let lock = self.lock.clone();
        let path = match &self.target {
            Target::Stdout => None,
            Target::File(p) => Some(p.clone()),
        };
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().map_err(|_| "log lock poisoned".to_owned())?;
            match path {
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| format!("standard output: {e}"))
                }
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .map_err(|e| format!("{}: {e}", path.display())),
            }
        })
        .await
        .map_err(|e| SendError::transient("io", format!("log task: {e}")))?
        .map_err(|e| SendError::transient("io", e))
    }
}
