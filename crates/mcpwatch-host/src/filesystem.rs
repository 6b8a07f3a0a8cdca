//! Filesystems (size, free and available bytes, inodes, read-only) per mount point.

use std::collections::BTreeMap;
use std::path::Path;

use mcpwatch_core::MetricSink;
use sysinfo::{DiskRefreshKind, Disks};

use crate::config::{HostConfig, passes};

/// What sysinfo refreshes: the mount list alone. Space is read with statvfs here, which
/// also gives inode counts; block device I/O is the diskstats area's.
pub(crate) fn refresh_kind() -> DiskRefreshKind {
    DiskRefreshKind::nothing()
}

struct Mount<'a> {
    device: String,
    fstype: String,
    disk: &'a sysinfo::Disk,
}

pub(crate) fn collect(disks: &mut Disks, config: &HostConfig, sink: &mut MetricSink) {
    disks.refresh_specifics(true, refresh_kind());

    // A mount point listed twice (mounted over) is reported once, as the last mount, which
    // is the one visible at that path.
    let mut mounts: BTreeMap<String, Mount<'_>> = BTreeMap::new();
    for disk in disks.iter() {
        let mountpoint = disk.mount_point().to_string_lossy().into_owned();
        let fstype = disk.file_system().to_string_lossy().into_owned();
        if !passes(
            &mountpoint,
            config.mountpoints_include.as_ref(),
            config.mountpoints_exclude.as_ref(),
        ) || !passes(
            &fstype,
            config.fstypes_include.as_ref(),
            config.fstypes_exclude.as_ref(),
        ) {
            continue;
        }
        let device = disk.name().to_string_lossy().into_owned();
        mounts.insert(
            mountpoint,
            Mount {
                device,
                fstype,
                disk,
            },
        );
    }

    let mut families = FilesystemFamilies::new();
    for (mountpoint, mount) in &mounts {
        let labels = [
            ("device", mount.device.as_str()),
            ("mountpoint", mountpoint.as_str()),
            ("fstype", mount.fstype.as_str()),
        ];
        match space(Path::new(mountpoint), mount.disk) {
            Some(space) => families.add(&labels, &space),
            None => families.device_error(&labels),
        }
    }
    families.finish(sink);
}

struct Space {
    size: f64,
    free: f64,
    avail: f64,
    files: Option<(f64, f64)>,
    readonly: bool,
}

#[cfg(unix)]
fn space(mountpoint: &Path, _disk: &sysinfo::Disk) -> Option<Space> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let st = statvfs(mountpoint).ok()?;
    let fragment = st.fragment_size() as f64;
    Some(Space {
        size: st.blocks() as f64 * fragment,
        free: st.blocks_free() as f64 * fragment,
        avail: st.blocks_available() as f64 * fragment,
        files: Some((st.files() as f64, st.files_free() as f64)),
        readonly: st.flags().contains(FsFlags::ST_RDONLY),
    })
}

#[cfg(not(unix))]
fn space(_mountpoint: &Path, disk: &sysinfo::Disk) -> Option<Space> {
    Some(Space {
        size: disk.total_space() as f64,
        free: disk.available_space() as f64,
        avail: disk.available_space() as f64,
        files: None,
        readonly: disk.is_read_only(),
    })
}

/// The filesystem families, filled mount by mount and added to the sink at the end so that
/// each is one family.
struct FilesystemFamilies {
    size: mcpwatch_core::MetricFamily,
    free: mcpwatch_core::MetricFamily,
    avail: mcpwatch_core::MetricFamily,
    files: mcpwatch_core::MetricFamily,
    files_free: mcpwatch_core::MetricFamily,
    readonly: mcpwatch_core::MetricFamily,
    device_error: mcpwatch_core::MetricFamily,
}

impl FilesystemFamilies {
    fn new() -> Self {
        use mcpwatch_core::MetricFamily as F;
        Self {
            size: F::gauge("host_filesystem_size_bytes", "Filesystem size in bytes."),
            free: F::gauge(
                "host_filesystem_free_bytes",
                "Free space in bytes, including space reserved for root.",
            ),
            avail: F::gauge(
                "host_filesystem_avail_bytes",
                "Space available to unprivileged users, in bytes.",
            ),
            files: F::gauge("host_filesystem_files", "Inodes of the filesystem."),
            files_free: F::gauge(
                "host_filesystem_files_free",
                "Free inodes of the filesystem.",
            ),
            readonly: F::gauge(
                "host_filesystem_readonly",
                "Whether the filesystem is mounted read-only.",
            ),
            device_error: F::gauge(
                "host_filesystem_device_error",
                "Whether the filesystem's statistics could not be read.",
            ),
        }
    }

    fn add(&mut self, labels: &[(&'static str, &str)], space: &Space) {
        self.size.add(labels, space.size);
        self.free.add(labels, space.free);
        self.avail.add(labels, space.avail);
        if let Some((files, free)) = space.files {
            self.files.add(labels, files);
            self.files_free.add(labels, free);
        }
        self.readonly
            .add(labels, if space.readonly { 1.0 } else { 0.0 });
        self.device_error.add(labels, 0.0);
    }

    fn device_error(&mut self, labels: &[(&'static str, &str)]) {
        self.device_error.add(labels, 1.0);
    }

    fn finish(self, sink: &mut MetricSink) {
        for family in [
            self.size,
            self.free,
            self.avail,
            self.files,
            self.files_free,
            self.readonly,
            self.device_error,
        ] {
            sink.family(family);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_root_filesystem() {
        let mut disks = Disks::new_with_refreshed_list_specifics(refresh_kind()).expect("disks");
        let mut sink = MetricSink::default();
        collect(&mut disks, &HostConfig::default(), &mut sink);
        let size = sink
            .find("host_filesystem_size_bytes")
            .and_then(|f| f.value(&[("mountpoint", "/")]))
            .expect("root filesystem size");
        let avail = sink
            .find("host_filesystem_avail_bytes")
            .and_then(|f| f.value(&[("mountpoint", "/")]))
            .expect("root filesystem avail");
        assert!(size > 0.0 && avail <= size, "size {size} avail {avail}");
        // Pseudo filesystems are left out by default.
        let mountpoints: Vec<String> = sink
            .find("host_filesystem_size_bytes")
            .expect("family")
            .samples()
            .iter()
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == "mountpoint"))
            .map(|(_, v)| v.clone())
            .collect();
        assert!(
            !mountpoints
                .iter()
                .any(|m| m.starts_with("/proc") || m.starts_with("/sys"))
        );
        let unique: std::collections::BTreeSet<_> = mountpoints.iter().collect();
        assert_eq!(unique.len(), mountpoints.len(), "duplicate mount points");
    }

    #[test]
    fn include_pattern_narrows_the_mounts() {
        let mut disks = Disks::new_with_refreshed_list_specifics(refresh_kind()).expect("disks");
        let config = HostConfig {
            mountpoints_include: mcpwatch_core::config::Pattern::new("^/nonexistent$").ok(),
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        collect(&mut disks, &config, &mut sink);
        assert!(
            sink.find("host_filesystem_size_bytes")
                .is_none_or(|f| f.is_empty())
        );
    }
}
