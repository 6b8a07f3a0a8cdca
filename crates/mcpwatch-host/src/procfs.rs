//! Reading files under the configured procfs root (`collectors.host.procfs`) into buffers
//! kept from one scrape to the next.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mcpwatch_core::CollectError;

/// Size of the buffer that large tables (`/proc/net/tcp`) are read through, line by line.
const CHUNK: usize = 64 * 1024;

/// Most bytes read from a file read whole. The largest of them on a real host (diskstats
/// or net/dev with thousands of devices) take a few MiB; a larger one is not procfs's (a
/// wrong `--path.procfs`, a link to /dev/zero), and reading it would pin its memory in the
/// buffer kept for the next scrape.
const MAX_FILE: u64 = 16 * 1024 * 1024;

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
        read_whole(&path, &mut self.text).map_err(|e| {
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
        match read_whole(&path, &mut self.text) {
            Ok(()) => Ok(Some(&self.text)),
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
        let mut file = open(&path).map_err(failed)?;
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

/// Opens a file to read, refusing anything but a regular file (every file of procfs is
/// one): opening a FIFO nobody writes would block the area's lane, and every area after it,
/// for good, and a device such as /dev/zero never ends. The open does not block, whatever
/// the file.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", describe(kind)),
        ));
    }
    Ok(file)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Reads a whole file into `text`, at most [`MAX_FILE`] bytes.
fn read_whole(path: &Path, text: &mut String) -> std::io::Result<()> {
    text.clear();
    open(path)?.take(MAX_FILE + 1).read_to_string(text)?;
    if text.len() as u64 > MAX_FILE {
        text.clear();
        text.shrink_to(CHUNK);
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB: not a procfs file", MAX_FILE >> 20),
        ));
    }
    Ok(())
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

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A FIFO nobody writes: opening it to read would block for good.
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        std::fs::create_dir(dir.path().join("dir")).expect("mkdir");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).expect("symlink");
        let mut procfs = Procfs::new(dir.path());
        let later = Instant::now() + Duration::from_secs(60);
        for (name, kind) in [
            ("fifo", "a FIFO"),
            ("dir", "a directory"),
            ("zero", "a device"),
        ] {
            let expected = format!(
                "reading {}: not a regular file ({kind})",
                dir.path().join(name).display()
            );
            let error = procfs.read(name).expect_err(name).to_string();
            assert_eq!(error, expected);
            let error = procfs.read_if_provided(name).expect_err(name).to_string();
            assert_eq!(error, expected);
            let error = procfs
                .for_each_line(name, later, |_| {})
                .expect_err(name)
                .to_string();
            assert_eq!(error, expected);
        }
    }

    #[test]
    fn refuses_a_file_larger_than_procfs_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = std::fs::File::create(dir.path().join("big")).expect("create");
        big.set_len(MAX_FILE + 1).expect("sparse file");
        let exact = std::fs::File::create(dir.path().join("exact")).expect("create");
        exact.set_len(MAX_FILE).expect("sparse file");
        let mut procfs = Procfs::new(dir.path());
        let error = procfs.read("big").expect_err("too large").to_string();
        assert!(
            error.ends_with("big: larger than 16 MiB: not a procfs file"),
            "{error}"
        );
        assert!(procfs.text.capacity() <= CHUNK, "the buffer is given back");
        assert_eq!(
            procfs.read("exact").expect("at the limit").len() as u64,
            MAX_FILE
        );
    }
}
