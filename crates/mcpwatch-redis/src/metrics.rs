//! `INFO ALL` and the other replies turned into `redis_*` families.

use mcpwatch_core::{MetricFamily, MetricSink};

use crate::config::RedisConfig;
use crate::info::{Info, attribute, attribute_text};

/// What a scrape learned besides INFO.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// `CONFIG GET maxmemory`, when allowed.
    pub maxmemory: Option<f64>,
    /// `CONFIG GET maxclients`, when allowed.
    pub maxclients: Option<f64>,
    /// `SLOWLOG LEN`.
    pub slowlog_length: Option<f64>,
    /// `CLUSTER INFO`, when the server runs in cluster mode.
    pub cluster_info: Option<String>,
}

/// INFO fields reported as they are: (field, metric, help).
const GAUGES: [(&str, &str, &str); 14] = [
    (
        "uptime_in_seconds",
        "redis_uptime_seconds",
        "Seconds since the server started.",
    ),
    (
        "connected_clients",
        "redis_connected_clients",
        "Client connections, replicas excluded.",
    ),
    (
        "blocked_clients",
        "redis_blocked_clients",
        "Clients blocked on a blocking call.",
    ),
    (
        "used_memory",
        "redis_memory_used_bytes",
        "Memory allocated by Redis.",
    ),
    (
        "used_memory_rss",
        "redis_memory_used_rss_bytes",
        "Resident memory of the Redis process.",
    ),
    (
        "used_memory_peak",
        "redis_memory_used_peak_bytes",
        "Peak of used memory.",
    ),
    (
        "mem_fragmentation_ratio",
        "redis_memory_fragmentation_ratio",
        "Resident memory divided by used memory.",
    ),
    (
        "rdb_changes_since_last_save",
        "redis_rdb_changes_since_last_save",
        "Changes since the last RDB save.",
    ),
    (
        "rdb_last_save_time",
        "redis_rdb_last_save_timestamp_seconds",
        "When the last RDB save succeeded, in seconds since the epoch.",
    ),
    (
        "rdb_bgsave_in_progress",
        "redis_rdb_bgsave_in_progress",
        "Whether an RDB save runs now.",
    ),
    (
        "aof_enabled",
        "redis_aof_enabled",
        "Whether AOF persistence is on.",
    ),
    (
        "aof_rewrite_in_progress",
        "redis_aof_rewrite_in_progress",
        "Whether an AOF rewrite runs now.",
    ),
    (
        "connected_slaves",
        "redis_connected_replicas",
        "Replicas connected to this server.",
    ),
    (
        "master_repl_offset",
        "redis_replication_offset_bytes",
        "This server's replication offset.",
    ),
];

/// INFO counters: (field, metric, help); names end in `_total`.
const COUNTERS: [(&str, &str, &str); 12] = [
    (
        "total_connections_received",
        "redis_connections_received_total",
        "Connections accepted.",
    ),
    (
        "rejected_connections",
        "redis_rejected_connections_total",
        "Connections refused because maxclients was reached.",
    ),
    (
        "total_commands_processed",
        "redis_commands_processed_total",
        "Commands processed.",
    ),
    (
        "keyspace_hits",
        "redis_keyspace_hits_total",
        "Key lookups that found the key.",
    ),
    (
        "keyspace_misses",
        "redis_keyspace_misses_total",
        "Key lookups that did not find the key.",
    ),
    (
        "expired_keys",
        "redis_expired_keys_total",
        "Keys removed because they expired.",
    ),
    (
        "evicted_keys",
        "redis_evicted_keys_total",
        "Keys evicted because of the maxmemory limit.",
    ),
    (
        "total_net_input_bytes",
        "redis_net_input_bytes_total",
        "Bytes read from the network.",
    ),
    (
        "total_net_output_bytes",
        "redis_net_output_bytes_total",
        "Bytes written to the network.",
    ),
    (
        "used_cpu_sys",
        "redis_cpu_sys_seconds_total",
        "System CPU time of the server.",
    ),
    (
        "used_cpu_user",
        "redis_cpu_user_seconds_total",
        "User CPU time of the server.",
    ),
    (
        "total_error_replies",
        "redis_error_replies_total",
        "Error replies sent to clients.",
    ),
];

fn flag(text: Option<&str>, yes: &str) -> Option<f64> {
    text.map(|t| if t == yes { 1.0 } else { 0.0 })
}

/// Writes everything a reachable server told.
pub(crate) fn write(info: &Info<'_>, extras: &Extras, config: &RedisConfig, sink: &mut MetricSink) {
    let role = info.text("role").unwrap_or("");
    sink.info("redis_instance_info", "What the Redis server is, always 1.")
        .add(
            &[
                ("version", info.text("redis_version").unwrap_or("")),
                ("mode", info.text("redis_mode").unwrap_or("")),
                ("role", role),
                (
                    "maxmemory_policy",
                    info.text("maxmemory_policy").unwrap_or(""),
                ),
            ],
            1.0,
        );
    for (field, name, help) in GAUGES {
        if let Some(value) = info.number(field) {
            sink.gauge(name, help).add(&[], value);
        }
    }
    for (field, name, help) in COUNTERS {
        if let Some(value) = info.number(field) {
            sink.counter(name, help).add(&[], value);
        }
    }
    // INFO has had these since Redis 4 and 7; CONFIG GET is the fallback.
    if let Some(max) = info.number("maxmemory").or(extras.maxmemory) {
        sink.gauge(
            "redis_memory_max_bytes",
            "The maxmemory limit; 0 when there is none.",
        )
        .add(&[], max);
    }
    if let Some(max) = info.number("maxclients").or(extras.maxclients) {
        sink.gauge("redis_maxclients", "The maxclients limit.")
            .add(&[], max);
    }
    let statuses = [
        (
            "rdb_last_bgsave_status",
            "redis_rdb_last_bgsave_success",
            "Whether the last RDB save succeeded.",
        ),
        (
            "aof_last_write_status",
            "redis_aof_last_write_success",
            "Whether the last AOF write succeeded.",
        ),
    ];
    for (field, name, help) in statuses {
        if let Some(ok) = flag(info.text(field), "ok") {
            sink.gauge(name, help).add(&[], ok);
        }
    }
    if role == "slave" {
        if let Some(up) = flag(info.text("master_link_status"), "up") {
            sink.gauge(
                "redis_master_link_up",
                "On a replica: whether the link to its master is up.",
            )
            .add(&[], up);
        }
        if let Some(seconds) = info.number("master_last_io_seconds_ago") {
            sink.gauge(
                "redis_master_last_io_seconds",
                "On a replica: seconds since the last interaction with its master.",
            )
            .add(&[], seconds);
        }
    }
    write_replicas(info, config, sink);
    write_commands(info, config, sink);
    write_errors(info, config, sink);
    write_keyspace(info, config, sink);
    if let Some(length) = extras.slowlog_length {
        sink.gauge("redis_slowlog_length", "Entries in the slow log.")
            .add(&[], length);
    }
    let cluster_enabled = info.number("cluster_enabled");
    if let Some(enabled) = cluster_enabled {
        sink.gauge(
            "redis_cluster_enabled",
            "Whether the server runs in cluster mode.",
        )
        .add(&[], enabled);
    }
    if let Some(text) = &extras.cluster_info {
        write_cluster(text, sink);
    }
}

fn write_replicas(info: &Info<'_>, config: &RedisConfig, sink: &mut MetricSink) {
    if info.replicas.is_empty() {
        return;
    }
    let master_offset = info.number("master_repl_offset");
    let mut lag_bytes = MetricFamily::gauge(
        "redis_replica_lag_bytes",
        "Replication offset this master is ahead of each replica.",
    );
    let mut lag_seconds = MetricFamily::gauge(
        "redis_replica_lag_seconds",
        "Seconds since each replica last acknowledged.",
    );
    let mut online = MetricFamily::gauge("redis_replica_online", "Whether each replica is online.");
    // Replicas that announce one address (behind NAT, in containers with one port) are one
    // series, as the worst of them: the most lag, offline if any is.
    let mut replicas: Vec<(String, Option<f64>, Option<f64>, f64)> = Vec::new();
    for replica in info.replicas.iter().take(config.max_replicas as usize) {
        let address = format!(
            "{}:{}",
            attribute_text(replica, "ip").unwrap_or(""),
            attribute_text(replica, "port").unwrap_or("")
        );
        let bytes = master_offset
            .zip(attribute(replica, "offset"))
            .map(|(master, offset)| (master - offset).max(0.0));
        let seconds = attribute(replica, "lag");
        let up = flag(attribute_text(replica, "state"), "online").unwrap_or(0.0);
        let worse = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        match replicas.iter_mut().find(|r| r.0 == address) {
            Some(seen) => {
                seen.1 = worse(seen.1, bytes);
                seen.2 = worse(seen.2, seconds);
                seen.3 = seen.3.min(up);
            }
            None => replicas.push((address, bytes, seconds, up)),
        }
    }
    for (address, bytes, seconds, up) in &replicas {
        let labels = [("replica", address.as_str())];
        if let Some(bytes) = bytes {
            lag_bytes.add(&labels, *bytes);
        }
        if let Some(seconds) = seconds {
            lag_seconds.add(&labels, *seconds);
        }
        online.add(&labels, *up);
    }
    sink.family(lag_bytes);
    sink.family(lag_seconds);
    sink.family(online);
}

fn write_commands(info: &Info<'_>, config: &RedisConfig, sink: &mut MetricSink) {
    let mut commands: Vec<(&str, f64, &crate::info::Attributes<'_>)> = info
        .commands
        .iter()
        .map(|(name, attrs)| (*name, attribute(attrs, "calls").unwrap_or(0.0), attrs))
        .collect();
    // The busiest first, so that the limit keeps what matters.
    commands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    commands.truncate(config.max_commands as usize);
    if commands.is_empty() {
        return;
    }
    let mut calls = MetricFamily::counter("redis_commands_total", "Calls of each command.");
    let mut seconds = MetricFamily::counter(
        "redis_commands_duration_seconds_total",
        "Time spent executing each command.",
    );
    let mut rejected = MetricFamily::counter(
        "redis_commands_rejected_calls_total",
        "Calls of each command rejected before executing (Redis 6.2 and later).",
    );
    let mut failed = MetricFamily::counter(
        "redis_commands_failed_calls_total",
        "Calls of each command that failed while executing (Redis 6.2 and later).",
    );
    for (name, count, attrs) in commands {
        let labels = [("cmd", name)];
        calls.add(&labels, count);
        if let Some(usec) = attribute(attrs, "usec") {
            seconds.add(&labels, usec / 1_000_000.0);
        }
        if let Some(n) = attribute(attrs, "rejected_calls") {
            rejected.add(&labels, n);
        }
        if let Some(n) = attribute(attrs, "failed_calls") {
            failed.add(&labels, n);
        }
    }
    for family in [calls, seconds, rejected, failed] {
        sink.family(family);
    }
}

/// `INFO errorstats` (Redis 6.2 and later): the most frequent error prefixes.
fn write_errors(info: &Info<'_>, config: &RedisConfig, sink: &mut MetricSink) {
    let mut errors: Vec<(&str, f64)> = info
        .errors
        .iter()
        .filter_map(|(prefix, attrs)| Some((*prefix, attribute(attrs, "count")?)))
        .collect();
    if errors.is_empty() {
        return;
    }
    errors.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    errors.truncate(config.max_commands as usize);
    let family = sink.counter("redis_errors_total", "Error replies, by error prefix.");
    for (prefix, count) in errors {
        family.add(&[("err", prefix)], count);
    }
}

fn write_keyspace(info: &Info<'_>, config: &RedisConfig, sink: &mut MetricSink) {
    let mut keys = MetricFamily::gauge("redis_db_keys", "Keys in each database.");
    let mut expiring = MetricFamily::gauge(
        "redis_db_keys_expiring",
        "Keys with a time to live in each database.",
    );
    let mut ttl = MetricFamily::gauge(
        "redis_db_avg_ttl_seconds",
        "Average time to live of the expiring keys of each database.",
    );
    for (db, attrs) in info.keyspace.iter().take(config.max_databases as usize) {
        let labels = [("db", *db)];
        if let Some(n) = attribute(attrs, "keys") {
            keys.add(&labels, n);
        }
        if let Some(n) = attribute(attrs, "expires") {
            expiring.add(&labels, n);
        }
        if let Some(ms) = attribute(attrs, "avg_ttl") {
            ttl.add(&labels, ms / 1000.0);
        }
    }
    for family in [keys, expiring, ttl] {
        sink.family(family);
    }
}

fn write_cluster(text: &str, sink: &mut MetricSink) {
    let info = Info::parse(text);
    if let Some(ok) = flag(info.text("cluster_state"), "ok") {
        sink.gauge("redis_cluster_state_ok", "Whether the cluster state is ok.")
            .add(&[], ok);
    }
    for (field, name, help) in [
        (
            "cluster_slots_assigned",
            "redis_cluster_slots_assigned",
            "Slots assigned to a node.",
        ),
        (
            "cluster_slots_ok",
            "redis_cluster_slots_ok",
            "Slots served by a node in good state.",
        ),
        (
            "cluster_slots_pfail",
            "redis_cluster_slots_pfail",
            "Slots of nodes possibly failing.",
        ),
        (
            "cluster_slots_fail",
            "redis_cluster_slots_fail",
            "Slots of failed nodes.",
        ),
        (
            "cluster_known_nodes",
            "redis_cluster_known_nodes",
            "Nodes known to this node.",
        ),
        (
            "cluster_size",
            "redis_cluster_size",
            "Master nodes serving slots.",
        ),
    ] {
        if let Some(value) = info.number(field) {
            sink.gauge(name, help).add(&[], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::Secret;

    #[test]
    fn commands_are_limited_to_the_busiest() {
        let text = "cmdstat_get:calls=50,usec=100\r\ncmdstat_set:calls=10,usec=40\r\n\
                    cmdstat_ping:calls=99,usec=9\r\nrole:master\r\n";
        let info = Info::parse(text);
        let mut config = RedisConfig::from_url("c".into(), Secret::new("redis://x"));
        config.max_commands = 2;
        let mut sink = MetricSink::default();
        write(&info, &Extras::default(), &config, &mut sink);
        let calls = sink.find("redis_commands_total").expect("calls");
        assert_eq!(calls.samples().len(), 2);
        assert_eq!(calls.value(&[("cmd", "ping")]), Some(99.0));
        assert_eq!(calls.value(&[("cmd", "set")]), None);
        assert_eq!(
            sink.find("redis_commands_duration_seconds_total")
                .and_then(|f| f.value(&[("cmd", "get")])),
            Some(0.0001)
        );
    }

    #[test]
    fn replicas_and_cluster() {
        let text = "role:master\r\nmaster_repl_offset:1000\r\n\
                    slave0:ip=10.0.0.2,port=6380,state=online,offset=900,lag=1\r\n\
                    slave1:ip=10.9.9.9,port=7000,state=online,offset=990,lag=0\r\n\
                    slave2:ip=10.9.9.9,port=7000,state=wait_bgsave,offset=700,lag=3\r\n";
        let info = Info::parse(text);
        let config = RedisConfig::from_url("c".into(), Secret::new("redis://x"));
        let extras = Extras {
            cluster_info: Some("cluster_state:fail\r\ncluster_slots_ok:16000\r\n".into()),
            ..Extras::default()
        };
        let mut sink = MetricSink::default();
        write(&info, &extras, &config, &mut sink);
        let lag = sink.find("redis_replica_lag_bytes").expect("lag");
        assert_eq!(lag.value(&[("replica", "10.0.0.2:6380")]), Some(100.0));
        // Two replicas behind one announced address: one series each, the worst.
        assert_eq!(lag.samples().len(), 2);
        assert_eq!(lag.value(&[("replica", "10.9.9.9:7000")]), Some(300.0));
        let online = sink.find("redis_replica_online").expect("online");
        assert_eq!(online.samples().len(), 2);
        assert_eq!(online.value(&[("replica", "10.9.9.9:7000")]), Some(0.0));
        let seconds = sink.find("redis_replica_lag_seconds").expect("seconds");
        assert_eq!(seconds.value(&[("replica", "10.9.9.9:7000")]), Some(3.0));
        assert_eq!(
            sink.find("redis_cluster_state_ok")
                .and_then(|f| f.value(&[])),
            Some(0.0)
        );
        assert_eq!(
            sink.find("redis_cluster_slots_ok")
                .and_then(|f| f.value(&[])),
            Some(16000.0)
        );
    }
}
