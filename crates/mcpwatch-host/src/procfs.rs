//! Reading files under the configured procfs root (`collectors.host.procfs`) into buffers
//! kept from one scrape to the next.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mcpwatch_core::CollectError;

/// Size of the buffer that large tables (`/proc/net/tcp`) are read through, line by line.
const CHUNK: usize = 64 * 1024;

/// The procfs root and the buffers files are read into.
#[derive(Debug)]
pub(crate) struct Procfs {
    root: PathBuf,
    text: String,
    chunk: Vec<u8>,
}

impl Procfs {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            text: String::new(),
            chunk: Vec::new(),
        }
    }

    /// The root, such as `/proc`.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Whether the file exists, for one the kernel leaves out when a feature is off.
    pub(crate) fn provides(&self, relative: &str) -> bool {
        self.path(relative).exists()
    }

    /// Reads a whole file.
    pub(crate) fn read(&mut self, relative: &str) -> Result<&str, CollectError> {
        let path = self.path(relative);
        self.text.clear();
        std::fs::File::open(&path)
            .and_then(|mut file| file.read_to_string(&mut self.text))
            .map_err(|e| {
                CollectError::from(e).context(format_args!("reading {}", path.display()))
            })?;
        Ok(&self.text)
    }

    /// Reads a whole file that the kernel may not provide: `None` when it does not exist or
    /// the kernel refuses to produce it (pressure files on a kernel booted with `psi=0`).
    pub(crate) fn read_if_provided(
        &mut self,
        relative: &str,
    ) -> Result<Option<&str>, CollectError> {
        let path = self.path(relative);
        self.text.clear();
        match std::fs::File::open(&path).and_then(|mut file| file.read_to_string(&mut self.text)) {
            Ok(_) => Ok(Some(&self.text)),
            Err(e) if not_provided(&e) => Ok(None),
            Err(e) => {
                Err(CollectError::from(e).context(format_args!("reading {}", path.display())))
            }
        }
    }

    /// Calls `line` with each line of a file read through a fixed buffer, so that a table
    /// of any length takes the same memory. Stops with an error at `stop`.
    pub(crate) fn for_each_line(
        &mut self,
        relative: &str,
        stop: Instant,
        mut line: impl FnMut(&[u8]),
    ) -> Result<(), CollectError> {
        let path = self.path(relative);
        let failed = |e: std::io::Error| {
            CollectError::from(e).context(format_args!("reading {}", path.display()))
        };
        let mut file = std::fs::File::open(&path).map_err(failed)?;
        self.chunk.resize(CHUNK, 0);
        let mut filled = 0;
        loop {
            if Instant::now() >= stop {
                return Err(CollectError::msg(format_args!(
                    "reading {}: cut at the scrape's deadline",
                    path.display()
                )));
            }
            let read = match file.read(&mut self.chunk[filled..]) {
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e)),
            };
            filled += read;
            let complete = if read == 0 {
                filled
            } else {
                match self.chunk[..filled].iter().rposition(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    // A line longer than the buffer: no table this is used for has one.
                    None if filled == self.chunk.len() => filled,
                    None => continue,
                }
            };
            for text in self.chunk[..complete].split(|&b| b == b'\n') {
                if !text.is_empty() {
                    line(text);
                }
            }
            self.chunk.copy_within(complete..filled, 0);
            filled -= complete;
            if read == 0 {
                return Ok(());
            }
        }
    }
}

/// Whether an error says the file is not there to read, rather than that reading failed.
pub(crate) fn not_provided(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::NotFound
        || error.kind() == std::io::ErrorKind::Unsupported
        || error.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_lines_across_chunk_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines: Vec<String> = (0..5000).map(|i| format!("line {i:06}")).collect();
        std::fs::write(dir.path().join("table"), lines.join("\n")).expect("write");
        let mut procfs = Procfs::new(dir.path());
        let mut seen = Vec::new();
        let later = Instant::now() + Duration::from_secs(60);
        procfs
            .for_each_line("table", later, |line| {
                seen.push(String::from_utf8_lossy(line).into_owned());
            })
            .expect("read");
        assert_eq!(seen, lines);
        assert_eq!(procfs.chunk.len(), CHUNK, "the buffer does not grow");
        let error = procfs
            .for_each_line("table", Instant::now(), |_| {})
            .expect_err("past the stop");
        assert!(error.to_string().contains("cut at the scrape's deadline"));
        let error = procfs.read("missing").expect_err("no file").to_string();
        assert!(
            error.starts_with("reading ") && error.contains("missing"),
            "{error}"
        );
        assert!(
            procfs
                .read_if_provided("missing")
                .expect("absent")
                .is_none()
        );
    }
}
