//! Settings of the host collector (`collectors.host`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use mcpwatch_core::config::{ConfigPath, Pattern};
use serde::Deserialize;

use crate::area::Area;

/// Mount points left out by default: kernel and container-runtime internals.
pub const DEFAULT_MOUNTPOINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

/// Filesystem types left out by default: pseudo and read-only image filesystems.
pub const DEFAULT_FSTYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|\
devpts|devtmpfs|erofs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|\
rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

/// Network interfaces left out by default: loopback and per-container veth pairs.
pub const DEFAULT_NETWORK_DEVICES_EXCLUDE: &str = "^(lo|veth.*)$";

/// Block devices left out of `host_disk_*` by default, node_exporter's default: RAM and
/// compressed-RAM disks, loop devices, floppies, and partitions (their I/O is already in
/// their disk's counters).
pub const DEFAULT_DISK_DEVICES_EXCLUDE: &str =
    r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Where procfs is mounted by default.
pub const DEFAULT_PROCFS: &str = "/proc";

/// `collectors.host`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// Only mount points matching this are reported.
    pub mountpoints_include: Option<Pattern>,
    /// Mount points matching this are left out (`null` reports all).
    pub mountpoints_exclude: Option<Pattern>,
    /// Only filesystem types matching this are reported.
    pub fstypes_include: Option<Pattern>,
    /// Filesystem types matching this are left out (`null` reports all).
    pub fstypes_exclude: Option<Pattern>,
    /// Only interfaces matching this are reported.
    pub network_devices_include: Option<Pattern>,
    /// Interfaces matching this are left out (`null` reports all).
    pub network_devices_exclude: Option<Pattern>,
    /// Only block devices matching this are reported in `host_disk_*`.
    pub disk_devices_include: Option<Pattern>,
    /// Block devices matching this are left out of `host_disk_*` (`null` reports all).
    pub disk_devices_exclude: Option<Pattern>,
    /// Processes to watch, such as the MCP server's daemon.
    pub processes: Vec<WatchedProcess>,
    /// Areas switched on (`true`) or off (`false`); an area not named keeps its default
    /// ([`Area::on_by_default`]).
    #[serde(deserialize_with = "areas")]
    pub areas: BTreeMap<Area, bool>,
    /// Where procfs is mounted, such as `/host/proc` in a container that mounts the
    /// host's.
    pub procfs: ConfigPath,
}

impl Default for HostConfig {
    fn default() -> Self {
        let pattern = |p: &str| Pattern::new(p).ok();
        Self {
            enabled: true,
            mountpoints_include: None,
            mountpoints_exclude: pattern(DEFAULT_MOUNTPOINTS_EXCLUDE),
            fstypes_include: None,
            fstypes_exclude: pattern(DEFAULT_FSTYPES_EXCLUDE),
            network_devices_include: None,
            network_devices_exclude: pattern(DEFAULT_NETWORK_DEVICES_EXCLUDE),
            disk_devices_include: None,
            disk_devices_exclude: pattern(DEFAULT_DISK_DEVICES_EXCLUDE),
            processes: Vec::new(),
            areas: BTreeMap::new(),
            procfs: ConfigPath::from(PathBuf::from(DEFAULT_PROCFS)),
        }
    }
}

/// Reads `areas`, naming an unknown area and the known ones, and refusing an area named
/// twice (which a map would take silently, the last one winning).
fn areas<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Area, bool>, D::Error> {
    struct Areas;
    impl<'de> serde::de::Visitor<'de> for Areas {
        type Value = BTreeMap<Area, bool>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of area names to true or false")
        }

        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<Self::Value, M::Error> {
            use serde::de::Error;
            let mut areas = BTreeMap::new();
            while let Some((name, on)) = map.next_entry::<String, bool>()? {
                let Some(area) = Area::ALL.into_iter().find(|a| a.name() == name) else {
                    return Err(M::Error::custom(format_args!(
                        "unknown area `{name}`, expected one of {}",
                        Area::ALL.map(Area::name).join(", ")
                    )));
                };
                if areas.insert(area, on).is_some() {
                    return Err(M::Error::custom(format_args!(
                        "area `{name}` is named twice"
                    )));
                }
            }
            Ok(areas)
        }
    }
    deserializer.deserialize_map(Areas)
}

/// A process to watch, found by exactly one of `comm`, `cmdline` or `pid_file`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedProcess {
    /// The `process` label.
    pub name: String,
    /// The exact process name (`comm`, as `ps -o comm` shows it).
    pub comm: Option<String>,
    /// A pattern matched against the full command line, arguments joined by spaces.
    pub cmdline: Option<Pattern>,
    /// A file holding the process id.
    pub pid_file: Option<ConfigPath>,
}

impl HostConfig {
    /// Whether `area` runs: as `areas` says, else as its default.
    pub fn area_enabled(&self, area: Area) -> bool {
        self.areas
            .get(&area)
            .copied()
            .unwrap_or_else(|| area.on_by_default())
    }

    /// Checks what the types cannot: one selector per watched process, unique names.
    /// Returns the offending key and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, process) in self.processes.iter().enumerate() {
            let key = format!("processes[{i}]");
            let selectors = [
                process.comm.is_some(),
                process.cmdline.is_some(),
                process.pid_file.is_some(),
            ]
            .iter()
            .filter(|set| **set)
            .count();
            if selectors != 1 {
                return Err((
                    key,
                    "set exactly one of comm, cmdline or pid_file".to_owned(),
                ));
            }
            if process.name.is_empty() {
                return Err((format!("{key}.name"), "must not be empty".to_owned()));
            }
            if self.processes[..i].iter().any(|p| p.name == process.name) {
                return Err((
                    format!("{key}.name"),
                    format!("{:?} is used twice", process.name),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `text` passes an include and an exclude pattern; an empty pattern is no pattern.
pub(crate) fn passes(text: &str, include: Option<&Pattern>, exclude: Option<&Pattern>) -> bool {
    fn set(p: Option<&Pattern>) -> Option<&Pattern> {
        p.filter(|p| !p.as_str().is_empty())
    }
    set(include).is_none_or(|p| p.is_match(text)) && !set(exclude).is_some_and(|p| p.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> HostConfig {
        parse_yaml(text, Path::new("c.yml")).expect("valid")
    }

    #[test]
    fn defaults_exclude_pseudo_filesystems() {
        let c = parse("enabled: true\n");
        assert!(c.enabled);
        let ok = |mp: &str, fs: &str| {
            passes(
                mp,
                c.mountpoints_include.as_ref(),
                c.mountpoints_exclude.as_ref(),
            ) && passes(fs, c.fstypes_include.as_ref(), c.fstypes_exclude.as_ref())
        };
        assert!(ok("/", "ext4"));
        assert!(ok("/srv/data", "xfs"));
        assert!(!ok("/proc", "proc"));
        assert!(!ok("/sys/fs/cgroup", "cgroup2"));
        assert!(!ok("/var/lib/docker/overlay2/abc/merged", "overlay"));
        assert!(!ok("/snap/core/1", "squashfs"));
        assert!(ok("/devices", "ext4"));
    }

    #[test]
    fn null_and_empty_patterns_disable_filtering() {
        let c = parse("mountpoints_exclude: null\nnetwork_devices_exclude: ''\n");
        assert!(c.mountpoints_exclude.is_none());
        assert!(passes("lo", None, c.network_devices_exclude.as_ref()));
        assert!(passes("/proc", None, None));
    }

    #[test]
    fn areas_keep_their_default_unless_named() {
        let c = parse("areas: { diskstats: false, timex: true }\nprocfs: /host/proc\n");
        assert!(!c.area_enabled(Area::Diskstats));
        assert!(c.area_enabled(Area::Timex));
        assert!(c.area_enabled(Area::Cpu));
        assert!(!c.area_enabled(Area::Tcpstat), "off by default");
        assert_eq!(c.procfs.path(), Path::new("/host/proc"));
        assert!(parse("areas: { tcpstat: true }\n").area_enabled(Area::Tcpstat));
        assert_eq!(HostConfig::default().procfs.path(), Path::new("/proc"));
        let error =
            parse_yaml::<HostConfig>("areas:\n  cpu: false\n  cpu: true\n", Path::new("c.yml"))
                .expect_err("named twice")
                .to_string();
        assert!(error.contains("area `cpu` is named twice"), "{error}");
        let error = parse_yaml::<HostConfig>("areas: { diskstat: false }\n", Path::new("c.yml"))
            .expect_err("unknown area")
            .to_string();
        assert!(
            error.contains("unknown area `diskstat`, expected one of cpu, memory, system"),
            "{error}"
        );
    }

    #[test]
    fn default_disk_exclude_keeps_whole_disks() {
        let c = HostConfig::default();
        let kept = |device: &str| {
            passes(
                device,
                c.disk_devices_include.as_ref(),
                c.disk_devices_exclude.as_ref(),
            )
        };
        for device in ["vda", "sda", "nvme0n1", "dm-0", "md0", "mmcblk0", "xvdb"] {
            assert!(kept(device), "{device}");
        }
        for device in [
            "loop0",
            "ram1",
            "zram0",
            "fd0",
            "sda1",
            "vda15",
            "nvme0n1p2",
        ] {
            assert!(!kept(device), "{device}");
        }
    }

    #[test]
    fn watched_processes_need_one_selector() {
        let c =
            parse("processes:\n  - name: daemon\n    comm: python3\n    pid_file: /run/x.pid\n");
        assert_eq!(c.validate().expect_err("two selectors").0, "processes[0]");
        let c =
            parse("processes:\n  - name: d\n    comm: a\n  - name: d\n    cmdline: 'ws_daemon'\n");
        assert_eq!(c.validate().expect_err("same name").0, "processes[1].name");
        let c = parse("processes:\n  - name: d\n    cmdline: 'python.*ws_daemon'\n");
        assert!(c.validate().is_ok());
    }
}
