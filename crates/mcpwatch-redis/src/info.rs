//! The text of `INFO ALL` taken apart: `key:value` fields, and the structured lines of the
//! keyspace, commandstats, errorstats and connected replicas.

use std::collections::HashMap;

/// `a=1,b=2` as pairs.
pub(crate) type Attributes<'a> = Vec<(&'a str, &'a str)>;

/// A parsed `INFO` reply.
#[derive(Debug, Default)]
pub(crate) struct Info<'a> {
    pub fields: HashMap<&'a str, &'a str>,
    /// `db0:keys=1,expires=0,avg_ttl=0`.
    pub keyspace: Vec<(&'a str, Attributes<'a>)>,
    /// `cmdstat_get:calls=2,usec=5,...`, by command name.
    pub commands: Vec<(&'a str, Attributes<'a>)>,
    /// `errorstat_ERR:count=1`, by error prefix.
    pub errors: Vec<(&'a str, Attributes<'a>)>,
    /// `slave0:ip=...,port=...,state=online,offset=...,lag=...`.
    pub replicas: Vec<Attributes<'a>>,
}

fn attributes(value: &str) -> Attributes<'_> {
    value
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// Whether `key` is `prefix` followed by digits only.
fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl<'a> Info<'a> {
    /// Parses the reply; lines it does not understand are skipped.
    pub(crate) fn parse(text: &'a str) -> Self {
        let mut info = Info::default();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if numbered(key, "db") && value.contains("keys=") {
                info.keyspace.push((key, attributes(value)));
            } else if let Some(command) = key.strip_prefix("cmdstat_") {
                info.commands.push((command, attributes(value)));
            } else if let Some(error) = key.strip_prefix("errorstat_") {
                info.errors.push((error, attributes(value)));
            } else if numbered(key, "slave") && value.contains("ip=") {
                info.replicas.push(attributes(value));
            } else {
                info.fields.insert(key, value);
            }
        }
        info
    }

    /// A field as text.
    pub(crate) fn text(&self, key: &str) -> Option<&'a str> {
        self.fields.get(key).copied()
    }

    /// A numeric field.
    pub(crate) fn number(&self, key: &str) -> Option<f64> {
        self.text(key)?.parse().ok()
    }
}

/// A numeric attribute of a structured line.
pub(crate) fn attribute(attributes: &Attributes<'_>, key: &str) -> Option<f64> {
    attributes
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// A text attribute of a structured line.
pub(crate) fn attribute_text<'a>(attributes: &Attributes<'a>, key: &str) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\
        uptime_in_seconds:42\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
        slave0:ip=10.0.0.2,port=6380,state=online,offset=900,lag=1\r\n\
        master_repl_offset:1000\r\n\r\n# Commandstats\r\n\
        cmdstat_get:calls=5,usec=10,usec_per_call=2.00,rejected_calls=0,failed_calls=1\r\n\
        cmdstat_client|list:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        # Errorstats\r\nerrorstat_WRONGTYPE:count=2\r\n\
        # Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5000\r\ndb12:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn parses_fields_and_structured_lines() {
        let info = Info::parse(SAMPLE);
        assert_eq!(info.text("redis_version"), Some("7.0.15"));
        assert_eq!(info.number("uptime_in_seconds"), Some(42.0));
        assert_eq!(info.keyspace.len(), 2);
        assert_eq!(info.keyspace[1].0, "db12");
        assert_eq!(attribute(&info.keyspace[0].1, "avg_ttl"), Some(5000.0));
        assert_eq!(info.commands[1].0, "client|list");
        assert_eq!(attribute(&info.commands[0].1, "failed_calls"), Some(1.0));
        assert_eq!(info.errors[0].0, "WRONGTYPE");
        assert_eq!(attribute_text(&info.replicas[0], "ip"), Some("10.0.0.2"));
        assert_eq!(attribute(&info.replicas[0], "offset"), Some(900.0));
        assert!(info.text("slave0").is_none());
    }
}
