//! Following growing text files by identity, through rotations, a line at a time.
//!
//! Files are known by device and inode, not by name, and each is read from where the last
//! poll stopped, so nothing is read twice:
//!
//! - files there when following starts are read from their end (or from their start
//!   with `read_existing`); files that appear later, such as the new file after a rotation,
//!   are read from their start;
//! - a file renamed away or deleted is read to its end through the handle still open on it,
//!   so lines written just before a rotation are counted; it is let go once it stops
//!   growing;
//! - a file truncated in place (copytruncate) is read again from its start. A file written
//!   past its old size before the next poll is still told from the same file grown: each
//!   file keeps a fingerprint of what was read of it (a hash of its first 4 KiB, and the
//!   last 1 KiB before the offset, where lines differ even when they share a long prefix);
//! - the copy copytruncate makes, when the pattern matches it (logrotate's `extension`), is
//!   read on from where the original was left: the lines written between the last poll
//!   and the rotation are counted, the rest of the copy is not read again. A copy seen before
//!   the original's truncation waits for it;
//! - a rotation is counted when a file is truncated in place, and when a new file appears
//!   under a name that a followed file left (renamed away or deleted);
//! - only complete lines are handed on: a half-written last line waits for its newline; the
//!   start of a line cut by a truncation is dropped, not counted (its end is in the copy);
//! - memory is bounded: one partial line per file (at most `max_line_bytes`), a read budget
//!   per poll, and a bounded number of files and open handles.
//!
//! What the lines mean is up to a [`Lines`]: the JSON request log of the wsdaemon collector
//! and the pattern counters of the log collector read through the same [`Follower`].

use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::Pattern;
use crate::fnv;

/// Bytes read at most per scrape; the rest waits for the next one.
const READ_BUDGET: u64 = 32 << 20;
/// Files followed at most: the most recently written ones.
const MAX_FILES: usize = 256;
/// Handles kept open at most; idle files beyond this are closed and opened again when they
/// grow.
const MAX_OPEN: usize = 32;
/// Scrapes without growth after which a file gone from the directory is let go.
const GONE_IDLE_SCANS: u32 = 2;
/// Scrapes the state of a file found truncated waits for its copy to appear.
const COPY_WAIT_SCANS: u32 = 2;
const CHUNK: usize = 64 * 1024;
/// Bytes at the start of a file hashed into its fingerprint.
const HEAD_BYTES: u64 = 4096;
/// Bytes before the offset kept in the fingerprint: the end of the last line read.
const TAIL_BYTES: usize = 1024;

/// A file, or a pattern of names (`*` and `?` as in a shell) in one directory.
#[derive(Debug, Clone)]
pub struct FilePattern {
    dir: PathBuf,
    name: Pattern,
}

impl FilePattern {
    /// Checks `path`: wildcards only in the file name.
    pub fn new(path: &Path) -> Result<Self, String> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| "give a file name or a pattern of file names".to_owned())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if dir.to_string_lossy().contains(['*', '?']) {
            return Err("wildcards are allowed in the file name only".to_owned());
        }
        let mut regex = String::from("^");
        for c in name.chars() {
            match c {
                '*' => regex.push_str("[^/]*"),
                '?' => regex.push_str("[^/]"),
                c => regex.push_str(&regex_lite::escape(&c.to_string())),
            }
        }
        regex.push('$');
        Ok(Self {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_owned()
            },
            name: Pattern::new(&regex).map_err(|e| e.to_string())?,
        })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a file name matches.
    pub fn matches(&self, name: &str) -> bool {
        self.name.is_match(name)
    }

    /// Regular files that match (symbolic links followed, as `tail -F` does), the least
    /// recently modified first; an error when the directory cannot be read.
    pub fn list(&self) -> std::io::Result<Vec<(PathBuf, Metadata)>> {
        let mut files: Vec<(PathBuf, Metadata)> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| self.matches(n)))
            .filter_map(|e| {
                let path = e.path();
                let meta = std::fs::metadata(&path).ok()?;
                meta.is_file().then_some((path, meta))
            })
            .collect();
        files.sort_by_key(|(_, m)| m.modified().ok());
        Ok(files)
    }

    /// The files to follow: the most recently modified, at most [`MAX_FILES`]; none when
    /// the directory cannot be read (it may appear later).
    fn recent(&self) -> Vec<(PathBuf, Metadata)> {
        let mut files = self.list().unwrap_or_else(|error| {
            tracing::debug!(dir = %self.dir.display(), %error, "The directory of followed files cannot be read.");
            Vec::new()
        });
        let excess = files.len().saturating_sub(MAX_FILES);
        files.drain(..excess);
        files
    }
}

/// Device and inode.
type FileId = (u64, u64);

/// Size, modification and change times: a file whose stamp did not change was not written.
type Stamp = (u64, i64, i64, i64, i64);

fn stamp(meta: &Metadata) -> Stamp {
    (
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

/// What was read of a file: a hash of its first bytes and its last bytes read. A file
/// truncated in place and written again no longer has it, even when it is longer than the
/// offset again; a copy of the file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    /// FNV-1a of the first `min(offset, HEAD_BYTES)` bytes.
    head: u64,
    /// The last `min(offset, TAIL_BYTES)` bytes before the offset.
    tail: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of nothing read.
    fn empty() -> Self {
        Self {
            head: fnv::OFFSET,
            tail: Vec::new(),
        }
    }

    /// The fingerprint of the first `offset` bytes of `file`.
    fn of(file: &File, offset: u64) -> std::io::Result<Self> {
        let mut head = vec![0; usize::try_from(offset.min(HEAD_BYTES)).unwrap_or(0)];
        file.read_exact_at(&mut head, 0)?;
        let tail_len = offset.min(TAIL_BYTES as u64);
        let mut tail = vec![0; usize::try_from(tail_len).unwrap_or(0)];
        file.read_exact_at(&mut tail, offset - tail_len)?;
        Ok(Self {
            head: fnv::hash(&head),
            tail,
        })
    }

    /// Takes in `bytes`, read at `at`: the offset before them.
    fn extend(&mut self, at: u64, bytes: &[u8]) {
        if at < HEAD_BYTES {
            let n = usize::try_from(HEAD_BYTES - at).map_or(bytes.len(), |n| n.min(bytes.len()));
            self.head = fnv::extend(self.head, &bytes[..n]);
        }
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let excess = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.tail.drain(..excess);
        self.tail.extend_from_slice(bytes);
    }

    /// Whether what was read ends inside a line.
    fn mid_line(&self) -> bool {
        self.tail.last().is_some_and(|b| *b != b'\n')
    }
}

/// One file followed by identity.
#[derive(Debug)]
struct Followed {
    id: FileId,
    path: PathBuf,
    file: Option<File>,
    /// Bytes consumed (the partial line included).
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Inside a line being dropped (too long, or cut by starting at the end of the file).
    discarding: bool,
    /// What was read, to tell a truncated file written again from the file grown; `None`
    /// when the file could not be read yet.
    fingerprint: Option<Fingerprint>,
    /// The stamp of the last listing; while it stays the same the file is not checked.
    stamp: Option<Stamp>,
    /// Set on a copy of a followed file caught between logrotate's copy and truncation: it
    /// is not read until the original is found truncated (then it goes on from where the
    /// original was left) or is gone.
    copy_of: Option<FileId>,
    /// Whether the last listing showed it.
    present: bool,
    /// Scrapes since it last grew.
    idle: u32,
    /// Whether the last attempt to open it failed while it was there (its permissions): it
    /// is not counted as followed until it can be opened.
    unreadable: bool,
}

impl Followed {
    /// A file to read from `offset` on.
    fn new(id: FileId, path: PathBuf, offset: u64, fingerprint: Option<Fingerprint>) -> Self {
        Self {
            id,
            path,
            file: None,
            offset,
            partial: Vec::new(),
            discarding: false,
            fingerprint,
            stamp: None,
            copy_of: None,
            present: true,
            idle: 0,
            unreadable: false,
        }
    }

    /// Opens the file, when it is still there under its name. One that is there and
    /// cannot be opened is unreadable until it can, said once when it becomes so.
    fn open(&mut self) -> Option<File> {
        match try_open_same(&self.path, self.id) {
            Ok(file) => {
                if self.unreadable && file.is_some() {
                    self.unreadable = false;
                    tracing::info!(path = %self.path.display(), "A followed file can be read again.");
                }
                file
            }
            Err(error) => {
                if !self.unreadable {
                    self.unreadable = true;
                    tracing::warn!(path = %self.path.display(), %error, "A file to follow cannot be opened: it is not read, and not counted as followed, until it can be.");
                }
                None
            }
        }
    }

    /// Whether the file still holds what was read of it: false when it was truncated and
    /// written again.
    fn unchanged(&mut self) -> bool {
        if self.offset == 0 {
            return true;
        }
        if self.file.is_none() {
            self.file = self.open();
        }
        let Some(file) = &self.file else {
            return true;
        };
        let Some(fingerprint) = &self.fingerprint else {
            // Not readable when found: what is there now is taken as what was read.
            self.fingerprint = Fingerprint::of(file, self.offset).ok();
            return true;
        };
        match Fingerprint::of(file, self.offset) {
            Ok(now) => now == *fingerprint,
            // Shorter than the offset since it was listed.
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => false,
            Err(_) => true,
        }
    }

    /// Starts the file again from its beginning; returns where it was.
    fn restart(&mut self) -> Remnant {
        Remnant {
            offset: std::mem::take(&mut self.offset),
            partial: std::mem::take(&mut self.partial),
            discarding: std::mem::take(&mut self.discarding),
            fingerprint: self.fingerprint.replace(Fingerprint::empty()),
            waited: 0,
        }
    }

    /// Goes on from where the original of this copy was left.
    fn resume(&mut self, remnant: Remnant) {
        self.copy_of = None;
        self.offset = remnant.offset;
        self.partial = remnant.partial;
        self.discarding = remnant.discarding;
        self.fingerprint = remnant.fingerprint;
    }

    /// Takes a copy as read to its end: what it holds was read from the original.
    fn read_through(&mut self) {
        self.copy_of = None;
        self.partial.clear();
        self.offset = self.stamp.map_or(0, |s| s.0);
        self.fingerprint = open_same(&self.path, self.id)
            .and_then(|file| Fingerprint::of(&file, self.offset).ok());
        self.discarding = self.fingerprint.as_ref().is_some_and(Fingerprint::mid_line);
    }
}

/// Where a file was when it was found truncated in place, for its copy to go on from.
#[derive(Debug)]
struct Remnant {
    offset: u64,
    partial: Vec<u8>,
    discarding: bool,
    fingerprint: Option<Fingerprint>,
    /// Scrapes it has waited for its copy.
    waited: u32,
}

impl Remnant {
    /// Whether `file`, `len` bytes long, is a copy of the file this was.
    fn copied_to(&self, file: &File, len: u64) -> bool {
        self.offset > 0
            && len >= self.offset
            && self.fingerprint.as_ref().is_some_and(|fingerprint| {
                Fingerprint::of(file, self.offset).is_ok_and(|now| now == *fingerprint)
            })
    }
}
/// What a [`Follower`] hands on: the lines it read.
pub trait Lines {
    /// A complete line, without its newline.
    fn line(&mut self, line: &[u8]);
    /// A line longer than the follower's limit, dropped.
    fn too_long(&mut self);
    /// A line whose newline never came: its file was let go (renamed away or deleted, and
    /// read to its end) with the start of the line read.
    fn unfinished(&mut self);
}

/// The files of a [`FilePattern`], followed through rotations.
#[derive(Debug)]
pub struct Follower {
    pattern: FilePattern,
    max_line_bytes: usize,
    files: Vec<Followed>,
    /// Files found truncated whose copy has not appeared yet.
    remnants: Vec<Remnant>,
    /// Names that followed files left and no new file has taken yet.
    vacated: Vec<PathBuf>,
    bytes: u64,
    rotations: u64,
}

impl Follower {
    /// Starts following: the files already there are read from their end, unless
    /// `read_existing` is set. Lines longer than `max_line_bytes` are dropped.
    pub fn new(pattern: FilePattern, max_line_bytes: usize, read_existing: bool) -> Self {
        let mut follower = Self {
            pattern,
            max_line_bytes,
            files: Vec::new(),
            remnants: Vec::new(),
            vacated: Vec::new(),
            bytes: 0,
            rotations: 0,
        };
        if !read_existing {
            for (path, meta) in one_name_per_file(follower.pattern.recent(), &[]) {
                let id = (meta.dev(), meta.ino());
                let mut followed = Followed::new(id, path, meta.len(), None);
                let file = followed.open();
                followed.fingerprint = file
                    .as_ref()
                    .and_then(|file| Fingerprint::of(file, meta.len()).ok());
                // Held from the start, so that a file renamed away before it grew is
                // still read to its end.
                followed.file = file;
                // A line being written when following starts is not a line.
                followed.discarding = followed
                    .fingerprint
                    .as_ref()
                    .is_some_and(Fingerprint::mid_line);
                follower.files.push(followed);
            }
        }
        follower
    }

    /// Reads what was appended since the last call, stopping at `stop` (the rest is read
    /// by the next call).
    pub fn poll(&mut self, stop: Instant, lines: &mut impl Lines) {
        let previously: Vec<bool> = self.files.iter().map(|f| f.present).collect();
        for followed in &mut self.files {
            followed.present = false;
        }
        let mut left = Vec::new();
        let mut moved = Vec::new();
        let mut truncated = Vec::new();
        let mut fresh = Vec::new();
        for (path, meta) in one_name_per_file(self.pattern.recent(), &self.files) {
            let id = (meta.dev(), meta.ino());
            let Some(at) = self.files.iter().position(|f| f.id == id) else {
                fresh.push((path, meta));
                continue;
            };
            let followed = &mut self.files[at];
            followed.present = true;
            if followed.path != path {
                let old = std::mem::replace(&mut followed.path, path);
                if previously[at] {
                    left.push(old);
                    moved.push(id);
                }
            }
            let now = stamp(&meta);
            if followed.copy_of.is_none()
                && followed.stamp != Some(now)
                && (meta.len() < followed.offset || !followed.unchanged())
            {
                // Truncated in place: what is there now is new.
                truncated.push((id, followed.restart()));
                self.rotations += 1;
            }
            followed.stamp = Some(now);
            // Held even when nothing is new, so that a file renamed away before it grows
            // is still read to its end.
            if followed.copy_of.is_none() && followed.file.is_none() {
                followed.file = followed.open();
            }
        }
        for (followed, was) in self.files.iter().zip(previously) {
            if was && !followed.present {
                left.push(followed.path.clone());
            }
        }
        self.settle_copies(truncated);
        for name in left {
            if !self.vacated.contains(&name) {
                self.vacated.push(name);
            }
        }
        let files = &self.files;
        self.vacated
            .retain(|name| !files.iter().any(|f| f.present && f.path == *name));
        for (path, meta) in fresh {
            self.follow_new(path, &meta, &moved);
        }
        let excess = self.vacated.len().saturating_sub(MAX_FILES);
        self.vacated.drain(..excess);
        // A copy that has not appeared by now is not followed: the start of a line cut by
        // the truncation is dropped with it.
        self.remnants.retain_mut(|remnant| {
            remnant.waited += 1;
            remnant.waited < COPY_WAIT_SCANS
        });

        let mut budget = READ_BUDGET;
        let max_line_bytes = self.max_line_bytes;
        let files = &mut self.files;
        for followed in files.iter_mut() {
            let read = read_new(followed, &mut budget, stop, max_line_bytes, lines);
            followed.idle = if read > 0 { 0 } else { followed.idle + 1 };
            self.bytes += read;
        }
        files.retain(|followed| {
            let keep =
                followed.present || (followed.file.is_some() && followed.idle < GONE_IDLE_SCANS);
            if !keep && !followed.partial.is_empty() {
                // Renamed away or deleted, and read to its end, with a line never finished.
                lines.unfinished();
            }
            keep
        });
        // Bounded handles: the longest idle of the files still there are closed first.
        let open = files.iter().filter(|f| f.file.is_some()).count();
        if open > MAX_OPEN {
            let mut idle: Vec<&mut Followed> = files
                .iter_mut()
                .filter(|f| f.file.is_some() && f.present)
                .collect();
            idle.sort_by_key(|f| std::cmp::Reverse(f.idle));
            for followed in idle.into_iter().take(open - MAX_OPEN) {
                followed.file = None;
            }
        }
    }

    /// Hands what files found truncated had read to the copies seen before the truncation,
    /// and keeps the rest for copies still to appear; copies whose original is gone are
    /// taken as read.
    fn settle_copies(&mut self, truncated: Vec<(FileId, Remnant)>) {
        for (original, remnant) in truncated {
            let mut remnant = Some(remnant);
            for copy in self
                .files
                .iter_mut()
                .filter(|f| f.copy_of == Some(original))
            {
                let len = copy.stamp.map_or(0, |s| s.0);
                let file = open_same(&copy.path, copy.id);
                let copied = remnant.take_if(|remnant| {
                    file.as_ref()
                        .is_some_and(|file| remnant.copied_to(file, len))
                });
                match copied {
                    Some(remnant) => {
                        copy.resume(remnant);
                        copy.file = file;
                    }
                    // Copied before the last read of the original ended, or an older copy:
                    // all of it was read from the original.
                    None => copy.read_through(),
                }
            }
            self.remnants.extend(remnant);
        }
        let originals: Vec<FileId> = self
            .files
            .iter()
            .filter(|f| f.present && f.copy_of.is_none())
            .map(|f| f.id)
            .collect();
        for followed in &mut self.files {
            if followed
                .copy_of
                .is_some_and(|original| !originals.contains(&original))
            {
                followed.read_through();
            }
        }
    }

    /// Starts following a file that appeared: the copy of a file found truncated goes on
    /// from where that file was left, a copy of a file still followed waits for its
    /// truncation, any other file is read from its start.
    fn follow_new(&mut self, path: PathBuf, meta: &Metadata, moved: &[FileId]) {
        let id = (meta.dev(), meta.ino());
        let len = meta.len();
        let vacated = match self.vacated.iter().position(|name| *name == path) {
            Some(at) => {
                self.vacated.remove(at);
                true
            }
            None => false,
        };
        let mut followed = Followed::new(id, path, 0, Some(Fingerprint::empty()));
        let file = followed.open();
        followed.stamp = Some(stamp(meta));
        let remnant = file
            .as_ref()
            .and_then(|file| self.remnants.iter().position(|r| r.copied_to(file, len)));
        if let Some(at) = remnant {
            followed.resume(self.remnants.swap_remove(at));
        } else if let Some(original) = file
            .as_ref()
            .and_then(|file| self.copied_from(file, len, moved))
        {
            followed.copy_of = Some(original);
        } else if vacated {
            // A new file under the name a followed file left: a rotation by renaming.
            self.rotations += 1;
        }
        if followed.copy_of.is_none() {
            followed.file = file;
        }
        self.files.push(followed);
    }

    /// The followed file, still under its name, that `file` (`len` bytes) is a copy of.
    fn copied_from(&self, file: &File, len: u64, moved: &[FileId]) -> Option<FileId> {
        if len == 0 {
            return None;
        }
        let copy = Fingerprint::of(file, len).ok()?;
        self.files
            .iter()
            .filter(|f| {
                f.present
                    && f.copy_of.is_none()
                    && f.offset > 0
                    && !moved.contains(&f.id)
                    && f.stamp.is_some_and(|s| s.0 >= len)
            })
            .find(|f| {
                let opened;
                let original = match &f.file {
                    Some(original) => original,
                    None => match open_same(&f.path, f.id) {
                        Some(file) => {
                            opened = file;
                            &opened
                        }
                        None => return false,
                    },
                };
                Fingerprint::of(original, len).is_ok_and(|theirs| theirs == copy)
            })
            .map(|f| f.id)
    }

    /// Files followed: a file that is there and cannot be opened (its permissions) is not.
    pub fn files(&self) -> usize {
        self.files.iter().filter(|f| !f.unreadable).count()
    }

    /// Bytes read since following started.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Rotations seen: a file truncated in place, or a new file under a name that a
    /// followed file left.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }
}

/// The listing with one name per file (device and inode): a file under several names (a
/// symbolic or hard link, a `current` link to the newest file) is read once, under the name
/// it is followed by when that is among them, else under the first.
fn one_name_per_file(
    listing: Vec<(PathBuf, Metadata)>,
    followed: &[Followed],
) -> Vec<(PathBuf, Metadata)> {
    let mut names: Vec<(PathBuf, Metadata)> = Vec::with_capacity(listing.len());
    for (path, meta) in listing {
        let id = (meta.dev(), meta.ino());
        match names.iter().position(|(_, m)| (m.dev(), m.ino()) == id) {
            Some(at) => {
                if followed.iter().any(|f| f.id == id && f.path == path) {
                    names[at] = (path, meta);
                }
            }
            None => names.push((path, meta)),
        }
    }
    names
}

/// Opens `path` if it is still the file `id`.
fn open_same(path: &Path, id: FileId) -> Option<File> {
    try_open_same(path, id).ok().flatten()
}

/// Opens `path` if it is still the file `id`: `None` when it is gone or another file, an
/// error when it is there and cannot be opened.
fn try_open_same(path: &Path, id: FileId) -> std::io::Result<Option<File>> {
    #[cfg(test)]
    if tests::DENIED.with(|denied| denied.borrow().as_deref() == Some(path)) {
        return Err(ErrorKind::PermissionDenied.into());
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let meta = file.metadata()?;
    Ok(((meta.dev(), meta.ino()) == id).then_some(file))
}

/// Reads what `followed` has past its offset, within `budget` and until `stop`, handing its
/// lines to `lines`; returns the bytes read.
fn read_new(
    followed: &mut Followed,
    budget: &mut u64,
    stop: Instant,
    max_line_bytes: usize,
    lines: &mut impl Lines,
) -> u64 {
    let Some(mut file) = followed.file.take() else {
        return 0;
    };
    if file.seek(SeekFrom::Start(followed.offset)).is_err() {
        return 0;
    }
    let mut healthy = true;
    let mut total = 0;
    let mut chunk = vec![0u8; CHUNK];
    while *budget > 0 && Instant::now() < stop {
        let want = chunk.len().min(usize::try_from(*budget).unwrap_or(CHUNK));
        let n = match file.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(path = %followed.path.display(), %error, "Reading a followed file failed.");
                healthy = false;
                break;
            }
        };
        split(followed, &chunk[..n], max_line_bytes, lines);
        if let Some(fingerprint) = &mut followed.fingerprint {
            fingerprint.extend(followed.offset, &chunk[..n]);
        }
        followed.offset += n as u64;
        total += n as u64;
        *budget -= n as u64;
    }
    if healthy {
        followed.file = Some(file);
    }
    total
}

/// Splits `bytes` into lines, keeping an unfinished one for later.
fn split(followed: &mut Followed, bytes: &[u8], max: usize, lines: &mut impl Lines) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (piece, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        rest = &rest[(piece.len() + usize::from(complete))..];
        if followed.discarding {
            followed.discarding = !complete;
            continue;
        }
        if followed.partial.len() + piece.len() > max {
            lines.too_long();
            followed.partial.clear();
            followed.discarding = !complete;
            continue;
        }
        if !complete {
            followed.partial.extend_from_slice(piece);
            continue;
        }
        if followed.partial.is_empty() {
            lines.line(piece);
        } else {
            followed.partial.extend_from_slice(piece);
            let line = std::mem::take(&mut followed.partial);
            lines.line(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    thread_local! {
        /// A path whose opening fails as for a file of mode 0600 owned by another user: the
        /// tests run as root, whom permissions do not stop.
        pub(super) static DENIED: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    }

    /// A stop no test reaches.
    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }

    /// Lines as they come, and the counts of the others.
    #[derive(Debug, Default)]
    struct Seen {
        lines: Vec<String>,
        too_long: u64,
        unfinished: u64,
    }

    impl Lines for Seen {
        fn line(&mut self, line: &[u8]) {
            self.lines.push(String::from_utf8_lossy(line).into_owned());
        }
        fn too_long(&mut self) {
            self.too_long += 1;
        }
        fn unfinished(&mut self) {
            self.unfinished += 1;
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn numbered(from: u32, to: u32) -> String {
        (from..to).map(|n| format!("line {n}\n")).collect()
    }

    fn follower(dir: &Path, max: usize, read_existing: bool) -> Follower {
        let pattern = FilePattern::new(&dir.join("app.log*")).expect("pattern");
        Follower::new(pattern, max, read_existing)
    }

    #[test]
    fn patterns() {
        let p = FilePattern::new(Path::new("/srv/exai/.logs/*.jsonl")).expect("glob");
        assert_eq!(p.dir(), Path::new("/srv/exai/.logs"));
        assert!(p.matches("requests-2026-11-22.jsonl"));
        assert!(!p.matches("requests.jsonl.1"));
        assert!(FilePattern::new(Path::new("/srv/*/x.jsonl")).is_err());
        let p = FilePattern::new(Path::new("metrics.jsonl")).expect("plain name");
        assert_eq!(p.dir(), Path::new("."));
        let missing = FilePattern::new(Path::new("/nonexistent-dir/*.log")).expect("glob");
        assert!(missing.list().is_err(), "a missing directory is an error");
        // Backups: `?` is one character, regular expression characters stand for themselves.
        let p = FilePattern::new(Path::new("/var/backups/pg/backup-????????.sql.gz")).expect("?");
        assert!(p.matches("backup-20240117.sql.gz"));
        assert!(!p.matches("backup-2024011.sql.gz"));
        let p = FilePattern::new(Path::new("/backups/sql_app_backup_*.db")).expect("glob");
        assert!(!p.matches("sql_app_backup_20261206.db.tmp"));
        assert!(!p.matches("sql_app_backup_1xdb"), "the dot is no wildcard");
        let p = FilePattern::new(Path::new("/b/a+b[1](x)^$.db")).expect("regex characters");
        assert!(p.matches("a+b[1](x)^$.db"));
        assert!(!p.matches("aab1x.db"));
        assert!(FilePattern::new(Path::new("/")).is_err());
    }

    #[test]
    fn every_line_once_across_rename_and_copytruncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "before the start\nhalf");
        let mut f = follower(dir.path(), 1024, false);
        let mut seen = Seen::default();
        append(&path, " written\n");
        append(&path, &numbered(0, 10));
        f.poll(later(), &mut seen);
        assert_eq!(seen.lines, numbered(0, 10).lines().collect::<Vec<_>>());

        // Renamed away, written through the old handle, and a new file created.
        append(&path, &numbered(10, 12));
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rename");
        append(&dir.path().join("app.log.1"), &numbered(12, 13));
        append(&path, &numbered(13, 20));
        f.poll(later(), &mut seen);
        assert_eq!(seen.lines.len(), 20);
        assert_eq!(f.rotations(), 1);

        // Copied, then truncated in place (logrotate's copytruncate), the copy matching.
        append(&path, &numbered(20, 25));
        std::fs::copy(&path, dir.path().join("app.log.2")).expect("copy");
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        append(&path, &numbered(25, 27));
        for _ in 0..4 {
            f.poll(later(), &mut seen);
        }
        // The new file is read before the copy, which goes on where the original was left.
        seen.lines.sort_by_key(|l| l[5..].parse::<u32>().ok());
        assert_eq!(seen.lines, numbered(0, 27).lines().collect::<Vec<_>>());
        assert_eq!(f.rotations(), 2);
        assert_eq!(f.files(), 3, "the pattern matches the rotated files too");
        // The end of the line cut by the start, then every line once: the copy is read
        // from where the original was left.
        assert_eq!(
            f.bytes_read(),
            (" written\n".len() + numbered(0, 27).len()) as u64
        );
    }

    /// What was logged, as text.
    #[derive(Clone, Default)]
    struct Logged(Arc<Mutex<Vec<u8>>>);

    impl Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_not_followed_and_said_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "one\n");
        let logged = Logged::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            DENIED.with(|denied| *denied.borrow_mut() = Some(path.clone()));
            let mut f = follower(dir.path(), 1024, true);
            let mut seen = Seen::default();
            for _ in 0..3 {
                f.poll(later(), &mut seen);
            }
            assert_eq!((f.files(), seen.lines.len(), f.bytes_read()), (0, 0, 0));
            // Another file of the pattern that can be read is followed.
            append(&dir.path().join("app.log.1"), "two\n");
            f.poll(later(), &mut seen);
            assert_eq!((f.files(), &seen.lines[..]), (1, &["two".to_owned()][..]));
            // Readable again: read from its start, as a file that appeared.
            DENIED.with(|denied| *denied.borrow_mut() = None);
            append(&path, "three\n");
            f.poll(later(), &mut seen);
            f.poll(later(), &mut seen);
            assert_eq!(f.files(), 2);
            assert_eq!(seen.lines, ["two", "one", "three"]);
        });
        let text = String::from_utf8(logged.0.lock().expect("log").clone()).expect("text");
        let warning = format!("path={}", path.display());
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("WARN") && l.contains(&warning))
                .count(),
            1,
            "one warning naming the path, not one per poll:\n{text}"
        );
        assert!(text.contains("permission denied"), "{text}");
        assert_eq!(text.matches("can be read again").count(), 1, "{text}");

        // A file there when following starts, from its end: read from where it ended then.
        let path = dir.path().join("app.log.1");
        DENIED.with(|denied| *denied.borrow_mut() = Some(path.clone()));
        let mut f = Follower::new(FilePattern::new(&path).expect("path"), 1024, false);
        let mut seen = Seen::default();
        append(&path, "four\n");
        f.poll(later(), &mut seen);
        assert_eq!((f.files(), seen.lines.len()), (0, 0));
        DENIED.with(|denied| *denied.borrow_mut() = None);
        append(&path, "five\n");
        f.poll(later(), &mut seen);
        assert_eq!(
            (f.files(), &seen.lines[..]),
            (1, &["four".to_owned(), "five".to_owned()][..])
        );
    }

    #[test]
    fn long_and_unfinished_lines_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let mut f = follower(dir.path(), 16, true);
        let mut seen = Seen::default();
        append(&path, &format!("short\n{}\nalso short\n", "x".repeat(100)));
        append(&path, &"y".repeat(40));
        f.poll(later(), &mut seen);
        assert_eq!(seen.lines, ["short", "also short"]);
        assert_eq!(seen.too_long, 2, "each long line once it passes the limit");
        // The rest of the long line, then a line whose newline never comes before the
        // file is deleted.
        append(&path, "y\nunfinished");
        f.poll(later(), &mut seen);
        assert_eq!(seen.too_long, 2);
        std::fs::remove_file(&path).expect("rm");
        for _ in 0..3 {
            f.poll(later(), &mut seen);
        }
        assert_eq!((seen.lines.len(), seen.unfinished), (2, 1));
        assert_eq!(f.files(), 0);
    }
}
