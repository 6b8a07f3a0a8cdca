//! File handles allocated on the host and the kernel's limit, from `/proc/sys/fs/file-nr`.

use mcpwatch_core::{CollectError, MetricSink};

use crate::procfs::Procfs;

/// Characters of a file-nr that cannot be read that its error quotes.
const SHOWN: usize = 64;

pub(crate) fn collect(procfs: &mut Procfs, sink: &mut MetricSink) -> Result<(), CollectError> {
    // "740	0	2471052": allocated, allocated but unused (always 0 since Linux 2.6), maximum.
    let text = procfs.read("sys/fs/file-nr")?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (Some(Some(allocated)), Some(_), Some(Some(maximum))) =
        (fields.next(), fields.next(), fields.next())
    else {
        // Quoted, and cut: the text goes to the log and a wrong file may be large.
        let shown: String = text.chars().take(SHOWN).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        let read = format!("{shown:?}{more}");
        return Err(CollectError::msg(format_args!(
            "{}/sys/fs/file-nr: expected three numbers, read {read}",
            procfs.root().display()
        )));
    };
    sink.gauge(
        "host_filefd_allocated",
        "File handles allocated by the kernel, for every process.",
    )
    .add(&[], allocated as f64);
    sink.gauge(
        "host_filefd_maximum",
        "Most file handles the kernel will allocate (fs.file-max).",
    )
    .add(&[], maximum as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_allocated_and_maximum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = dir.path().join("sys/fs");
        std::fs::create_dir_all(&fs).expect("mkdir");
        std::fs::write(fs.join("file-nr"), "740\t0\t2471052\n").expect("write");
        let mut procfs = Procfs::new(dir.path());
        let mut sink = MetricSink::default();
        collect(&mut procfs, &mut sink).expect("collect");
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        assert_eq!(value("host_filefd_allocated"), Some(740.0));
        assert_eq!(value("host_filefd_maximum"), Some(2_471_052.0));
        std::fs::write(fs.join("file-nr"), "740\n").expect("write");
        let error = collect(&mut procfs, &mut MetricSink::default())
            .expect_err("short")
            .to_string();
        assert!(
            error.ends_with("expected three numbers, read \"740\\n\""),
            "{error}"
        );
        std::fs::write(fs.join("file-nr"), "x".repeat(1 << 20)).expect("write");
        let error = collect(&mut procfs, &mut MetricSink::default())
            .expect_err("garbage")
            .to_string();
        let expected = format!("expected three numbers, read \"{}\"...", "x".repeat(SHOWN));
        assert!(error.ends_with(&expected), "{}", error.len());
    }
}
