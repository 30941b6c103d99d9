//! The change feed on disk: segment files of JSON lines under
//! `<root>/.revstore/changes/`, guarded by `<root>/.revstore/changes.lock`.
//! The crate docs describe the protocol and why it is safe.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use revstore::{Change, ChangeKind, Error, Key, Result};

use crate::fs::{FileId, FileLock, Fs, LockMode};
use crate::log_line;

/// The backend's own folder under the root; its leading `.` keeps it apart
/// from collections, whose names never start with `.`.
pub const STATE_DIR: &str = ".revstore";
const SEGMENTS_DIR: &str = "changes";
const LOCK_FILE: &str = "changes.lock";
/// Digits of a segment's file name: every `u64` fits, and names sort as
/// numbers.
const NAME_DIGITS: usize = 20;
// `Segment::new` spells the name out in full.
const _: () = assert!(NAME_DIGITS == 20);
/// Most changes one segment holds: a handle's first commit (and one after
/// another handle started a segment) reads the newest segment whole, so
/// it is kept small.
pub const MAX_SEGMENT_CHANGES: u64 = 1024;

/// One handle's view of the change log.
#[derive(Debug)]
pub struct ChangeLog {
    fs: Fs,
    root: PathBuf,
    state_dir: PathBuf,
    segments_dir: PathBuf,
    lock_path: PathBuf,
    /// How many of the newest changes compaction keeps.
    retain: u64,
    /// How many changes a segment holds before the next one is started.
    segment_changes: u64,
    sync: bool,
    /// Whether this handle has made the log's folders (and, under full
    /// durability, their entries) exist; commits then skip creating them.
    dirs_ready: AtomicBool,
    /// The newest segment as this handle's last commit left it, so the
    /// next commit need not list the folder and read the segment whole.
    /// Only touched under the log's exclusive lock.
    tail: Mutex<Option<Tail>>,
}

/// The newest segment as of a commit: its file kept open, and what it
/// ended with. Trusted only after checking, under the exclusive lock, that
/// the file still has its name, is no shorter, still ends with the same
/// last line where it ended then, and has no newer segment after it.
#[derive(Debug)]
struct Tail {
    segment: Segment,
    /// Open for reading and appending.
    file: File,
    /// Its identity, read when it was opened: it never changes, so whether
    /// the segment's path still names it takes a `stat` of the path alone.
    id: FileId,
    /// The length of its complete lines.
    len: u64,
    /// The seq of its last line (`first - 1` when it has none).
    last: u64,
    /// Its last line with the newline (empty when it has none).
    last_line: Vec<u8>,
}

impl Tail {
    /// How many lines the segment holds.
    fn count(&self) -> u64 {
        self.last + 1 - self.segment.first
    }
}

/// A segment file: `first` is the seq of its first line.
#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
}

impl Segment {
    fn new(segments_dir: &Path, first: u64) -> Segment {
        // `{first:020}.log`, built without the formatting machinery: every
        // commit builds the name of the segment after its own.
        let mut name = *b"00000000000000000000.log";
        let mut rest = first;
        for digit in name[..NAME_DIGITS].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let dir = segments_dir.as_os_str();
        let mut path = std::ffi::OsString::with_capacity(dir.len() + 1 + name.len());
        path.push(dir);
        let mut path = PathBuf::from(path);
        path.push(&*String::from_utf8_lossy(&name));
        Segment { first, path }
    }

    fn corrupt(&self, line: Option<u64>, reason: impl Into<String>) -> Error {
        let location = match line {
            Some(line) => format!("{} line {line}", self.path.display()),
            None => self.path.display().to_string(),
        };
        Error::Corrupt {
            location,
            reason: reason.into(),
        }
    }
}

/// A segment's bytes; `complete` ends after its last newline, and anything
/// past it is a line torn by a crash in the middle of an append.
struct SegmentText {
    bytes: Vec<u8>,
    complete: usize,
}

impl SegmentText {
    /// A segment removed since it was listed reads as empty; the caller's
    /// checks on seqs catch a gap that leaves.
    fn read(fs: &Fs, segment: &Segment) -> Result<SegmentText> {
        let bytes = fs.read(&segment.path)?.unwrap_or_default();
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        Ok(SegmentText { bytes, complete })
    }

    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes[..self.complete]
            .split_inclusive(|&b| b == b'\n')
            .map(|line| &line[..line.len() - 1])
    }

    fn count(&self) -> u64 {
        self.bytes[..self.complete]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
    }

    fn is_torn(&self) -> bool {
        self.complete < self.bytes.len()
    }
}

/// Decodes line `index` (0-based) of a segment and checks that it holds
/// the seq its position says.
fn decode_at(segment: &Segment, index: u64, line: &[u8]) -> Result<Change> {
    let number = index + 1;
    let change = log_line::decode(line).map_err(|reason| segment.corrupt(Some(number), reason))?;
    let expected = segment.first.checked_add(index);
    if Some(change.seq) != expected {
        return Err(segment.corrupt(
            Some(number),
            format!(
                "holds seq {}, but line {number} of a segment starting at seq {} must hold seq {}",
                change.seq,
                segment.first,
                segment.first.saturating_add(index)
            ),
        ));
    }
    Ok(change)
}

/// The seq of a segment's last complete line (`first - 1` when it has
/// none), checked against what that line holds.
fn last_seq_of(segment: &Segment, text: &SegmentText) -> Result<u64> {
    let count = text.count();
    match text.lines().last() {
        Some(line) => decode_at(segment, count - 1, line).map(|change| change.seq),
        None => Ok(segment.first - 1),
    }
}

impl ChangeLog {
    /// The log of the store at `root`; nothing is touched until the first
    /// commit. `retain` must be at least 1.
    pub fn new(fs: Fs, root: &Path, retain: u64, sync: bool) -> ChangeLog {
        let state_dir = root.join(STATE_DIR);
        ChangeLog {
            fs,
            root: root.to_owned(),
            segments_dir: state_dir.join(SEGMENTS_DIR),
            lock_path: state_dir.join(LOCK_FILE),
            state_dir,
            retain,
            segment_changes: segment_changes(retain),
            sync,
            dirs_ready: AtomicBool::new(false),
            tail: Mutex::new(None),
        }
    }

    /// How many of the newest changes compaction keeps.
    pub fn retain(&self) -> u64 {
        self.retain
    }

    /// The segments, oldest first; none when the folder does not exist.
    /// Files not named like a segment are not the log's and are skipped.
    fn segments(&self) -> Result<Vec<Segment>> {
        let Some(files) = self.fs.list_dir(&self.segments_dir)? else {
            return Ok(Vec::new());
        };
        let mut segments = Vec::new();
        for file in files {
            let Some(stem) = file
                .file_name
                .to_str()
                .and_then(|name| name.strip_suffix(".log"))
            else {
                continue;
            };
            if file.is_dir || stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit())
            {
                continue;
            }
            let first = match stem.parse::<u64>() {
                Ok(first) if first > 0 => first,
                _ => {
                    return Err(Error::Corrupt {
                        location: file.path.display().to_string(),
                        reason: "a segment's name is the seq of its first change, \
                                 from 1 to 18446744073709551615"
                            .to_owned(),
                    })
                }
            };
            segments.push(Segment {
                first,
                path: file.path,
            });
        }
        segments.sort_by_key(|segment| segment.first);
        Ok(segments)
    }

    /// Creates the log's folders and takes its lock exclusively (creating
    /// the lock file); then makes the folders and the lock file durable.
    /// Both once per handle (even when another handle created them), and
    /// again should the folder have been removed since. Readers take a
    /// missing lock file for an empty feed, so its entry must be on disk
    /// before any segment's: a power loss could otherwise keep the
    /// segments and lose the lock file, hiding the whole feed.
    fn lock_exclusive(&self) -> Result<FileLock> {
        if self.dirs_ready.load(Ordering::Acquire) {
            match self.fs.lock(&self.lock_path, LockMode::Exclusive) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    // The folder was removed since: make it again.
                    self.dirs_ready.store(false, Ordering::Release);
                }
                locked => return locked,
            }
        }
        self.fs.create_dir(&self.state_dir)?;
        self.fs.create_dir(&self.segments_dir)?;
        let lock = self.fs.lock(&self.lock_path, LockMode::Exclusive)?;
        if self.sync {
            // Even when another handle created them: it may not have made
            // them durable yet.
            self.fs.sync_dir(&self.root)?;
            self.fs.sync_dir(&self.state_dir)?;
        }
        self.dirs_ready.store(true, Ordering::Release);
        Ok(lock)
    }

    /// Takes the log's lock exclusively and prepares the next seq: waits
    /// for every other writer and reader of the log. A line torn by a
    /// crash mid-append is cut off first; its commit never happened.
    ///
    /// The caller must already hold every document lock it needs: the log
    /// lock is always taken last.
    pub fn begin(&self) -> Result<PendingChange<'_>> {
        let lock = self.lock_exclusive()?;
        let known = self
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let tail = match known {
            Some(tail) => match self.check_tail(tail)? {
                Some(tail) => Some(tail),
                None => self.scan_tail()?,
            },
            None => self.scan_tail()?,
        };
        let last = tail.as_ref().map_or(0, |tail| tail.last);
        let seq = last.checked_add(1).ok_or_else(|| Error::Corrupt {
            location: self.segments_dir.display().to_string(),
            reason: "the feed's seq is at its maximum".to_owned(),
        })?;
        let rolled = tail
            .as_ref()
            .is_none_or(|tail| tail.count() >= self.segment_changes);
        let (target, older) = if rolled {
            // Starting a segment: compaction after the commit needs the
            // list of those before it.
            let older = self.segments()?;
            (Target::New(Segment::new(&self.segments_dir, seq)), older)
        } else {
            match tail {
                Some(tail) => (Target::Tail(tail), Vec::new()),
                None => unreachable!("a missing tail always rolls"),
            }
        };
        Ok(PendingChange {
            log: self,
            _lock: lock,
            target,
            older,
            seq,
            appended: Vec::new(),
        })
    }

    /// Checks what this handle knew of the newest segment against the
    /// file, taking in lines other handles appended since: `None` when it
    /// no longer holds (the file was removed, cut, rewritten, or a newer
    /// segment was started), so the caller looks afresh.
    fn check_tail(&self, mut tail: Tail) -> Result<Option<Tail>> {
        let path = tail.segment.path.clone();
        // When the path names the open file, its length is the file's.
        let len = match self.fs.stat_path(&path)? {
            Some(stat) if stat.id == tail.id && stat.len >= tail.len => stat.len,
            _ => return Ok(None),
        };
        // The last line known, and whatever follows it.
        let from = tail.len - tail.last_line.len() as u64;
        let bytes = self.fs.read_range(&tail.file, &path, from, len)?;
        let Some(added) = bytes.strip_prefix(tail.last_line.as_slice()) else {
            return Ok(None);
        };
        let complete = added
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        if complete > 0 {
            let lines = &added[..complete];
            let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
            let last_line = lines[..complete - 1]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            let index = tail.count() + count - 1;
            let change = decode_at(&tail.segment, index, last_line)?;
            tail.last = change.seq;
            tail.len += complete as u64;
            tail.last_line = lines[lines.len() - last_line.len() - 1..].to_vec();
        }
        if complete < added.len() {
            // A line torn by a crash mid-append: its commit never happened.
            self.fs.truncate(&path, tail.len)?;
        }
        let next = Segment::new(&self.segments_dir, tail.last.saturating_add(1));
        if self.fs.is_dir(&next.path)?.is_some() {
            return Ok(None);
        }
        Ok(Some(tail))
    }

    /// Finds the newest segment by listing the folder and reads it whole,
    /// cutting off a torn last line; `None` when there is no segment yet.
    fn scan_tail(&self) -> Result<Option<Tail>> {
        let Some(newest) = self.segments()?.pop() else {
            // The folder may have been removed since this handle made it.
            if self.fs.create_dir(&self.segments_dir)? && self.sync {
                self.fs.sync_dir(&self.state_dir)?;
            }
            return Ok(None);
        };
        let text = SegmentText::read(&self.fs, &newest)?;
        let last = last_seq_of(&newest, &text)?;
        if text.is_torn() {
            self.fs.truncate(&newest.path, text.complete as u64)?;
        }
        let last_line = match text.lines().last() {
            Some(line) => {
                let mut bytes = line.to_vec();
                bytes.push(b'\n');
                bytes
            }
            None => Vec::new(),
        };
        let file = self.fs.open_append(&newest.path)?;
        let id = self.fs.file_id(&file, &newest.path)?;
        Ok(Some(Tail {
            segment: newest,
            file,
            id,
            len: text.complete as u64,
            last,
            last_line,
        }))
    }

    /// The seq of the newest change, 0 when none was ever recorded.
    pub fn last_seq(&self) -> Result<u64> {
        let Some(_lock) = self.fs.lock_existing(&self.lock_path, LockMode::Shared)? else {
            return Ok(0);
        };
        match self.segments()?.last() {
            None => Ok(0),
            Some(newest) => last_seq_of(newest, &SegmentText::read(&self.fs, newest)?),
        }
    }

    /// Up to `limit` changes after `after`, oldest first.
    ///
    /// Only lines returned are decoded; lines before the cursor are counted
    /// (a segment's lines hold consecutive seqs, which every decoded line
    /// and every segment boundary crossed confirms).
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let Some(_lock) = self.fs.lock_existing(&self.lock_path, LockMode::Shared)? else {
            return Ok(Vec::new());
        };
        let segments = self.segments()?;
        let Some(oldest) = segments.first() else {
            return Ok(Vec::new());
        };
        let retained_after = oldest.first - 1;
        if after < retained_after {
            return Err(Error::Compacted {
                requested: after,
                retained_after,
            });
        }
        let wanted = after.saturating_add(1);
        // The last segment starting at or before the first wanted seq.
        let start = segments
            .partition_point(|segment| segment.first <= wanted)
            .saturating_sub(1);
        let mut changes = Vec::new();
        for (i, segment) in segments.iter().enumerate().skip(start) {
            if changes.len() >= limit {
                break;
            }
            let text = SegmentText::read(&self.fs, segment)?;
            if let Some(next) = segments.get(i + 1) {
                check_full(segment, &text, next)?;
            }
            let skip = wanted.saturating_sub(segment.first);
            for (index, line) in (0u64..).zip(text.lines()).skip_while(|(i, _)| *i < skip) {
                if changes.len() >= limit {
                    break;
                }
                changes.push(decode_at(segment, index, line)?);
            }
        }
        Ok(changes)
    }
}

/// Checks that an older segment ends right before the next one starts: no
/// torn line, no missing or extra change.
fn check_full(segment: &Segment, text: &SegmentText, next: &Segment) -> Result<()> {
    if text.is_torn() {
        return Err(segment.corrupt(
            Some(text.count() + 1),
            "the line is cut short, yet a newer segment follows",
        ));
    }
    let expected = next.first - segment.first;
    let count = text.count();
    if count != expected {
        return Err(segment.corrupt(
            None,
            format!(
                "holds {count} changes, but the next segment starts at seq {}, \
                 so it must hold {expected}",
                next.first
            ),
        ));
    }
    Ok(())
}

/// Changes per segment for a retention: a quarter of it, so compaction
/// keeps at most about 1.5 times `retain`, within 1..=[`MAX_SEGMENT_CHANGES`].
fn segment_changes(retain: u64) -> u64 {
    (retain / 4).clamp(1, MAX_SEGMENT_CHANGES)
}

/// Where a change goes: the newest segment, or a new one it starts.
#[derive(Debug)]
enum Target {
    Tail(Tail),
    New(Segment),
}

/// The next seqs, reserved under the log's exclusive lock until this is
/// dropped, undone or finished. One commit appends one change; a group
/// commit appends the changes of several at once.
#[derive(Debug)]
pub struct PendingChange<'a> {
    log: &'a ChangeLog,
    _lock: FileLock,
    target: Target,
    /// When starting a segment: the segments before it, oldest first.
    older: Vec<Segment>,
    /// The seq of the first change appended.
    seq: u64,
    /// The lines appended, once they are (possibly only in part), each
    /// with its newline.
    appended: Vec<Vec<u8>>,
}

impl PendingChange<'_> {
    fn path(&self) -> &Path {
        match &self.target {
            Target::Tail(tail) => &tail.segment.path,
            Target::New(segment) => &segment.path,
        }
    }

    /// The length of the target segment before this change.
    fn len_before(&self) -> u64 {
        match &self.target {
            Target::Tail(tail) => tail.len,
            Target::New(_) => 0,
        }
    }

    /// How many changes may be appended: what the target segment has room
    /// for, and the seqs left (at least 1: `begin` made sure of the first).
    pub fn room(&self) -> usize {
        let used = match &self.target {
            Target::Tail(tail) => tail.count(),
            Target::New(_) => 0,
        };
        let seqs_left = (u64::MAX - self.seq).saturating_add(1);
        let room = self
            .log
            .segment_changes
            .saturating_sub(used)
            .min(seqs_left)
            .max(1);
        usize::try_from(room).unwrap_or(1)
    }

    /// Appends the change (and makes it durable under full durability)
    /// before the document it describes is renamed into place. On failure
    /// the segment is cut back to where it was.
    pub fn append(&mut self, key: &Key, revision: u64, kind: ChangeKind) -> Result<()> {
        self.append_all(&[(key, revision, kind)])
    }

    /// Appends several changes, with consecutive seqs, in one write (and
    /// one fsync under full durability); see [`append`](Self::append).
    /// Nothing may have been appended before.
    pub fn append_all(&mut self, changes: &[(&Key, u64, ChangeKind)]) -> Result<()> {
        let mut lines = Vec::with_capacity(changes.len());
        for (offset, &(key, revision, kind)) in (0u64..).zip(changes) {
            // More changes than seqs are left (a hand-named segment): as
            // `begin` reports the first seq past the maximum.
            let seq = self.seq.checked_add(offset).ok_or_else(|| Error::Corrupt {
                location: self.log.segments_dir.display().to_string(),
                reason: "the feed's seq is at its maximum".to_owned(),
            })?;
            let change = Change {
                seq,
                key: key.clone(),
                revision,
                kind,
            };
            let line = log_line::encode(&change).map_err(|e| Error::Backend {
                backend: "yaml",
                context: format!("encoding the change of {key} for the feed"),
                source: Box::new(e),
            })?;
            lines.push(line);
        }
        let bytes = lines.concat();
        let log = self.log;
        let mut started = None;
        let written = match &mut self.target {
            Target::Tail(tail) => {
                let written = log
                    .fs
                    .append(&mut tail.file, &tail.segment.path, &bytes, log.sync);
                self.appended = lines;
                written
            }
            Target::New(segment) => {
                let mut file = log.fs.open_append(&segment.path)?;
                let id = log.fs.file_id(&file, &segment.path)?;
                let mut written = log.fs.append(&mut file, &segment.path, &bytes, log.sync);
                self.appended = lines;
                if written.is_ok() && log.sync {
                    written = log.fs.sync_dir(&log.segments_dir);
                }
                if written.is_ok() {
                    started = Some(Tail {
                        segment: segment.clone(),
                        file,
                        id,
                        len: 0,
                        last: self.seq - 1,
                        last_line: Vec::new(),
                    });
                }
                written
            }
        };
        if let Some(tail) = started {
            self.target = Target::Tail(tail);
        }
        if written.is_err() {
            self.keep_first(0);
        }
        written
    }

    /// Removes every appended change after the first `kept`, whose
    /// commits failed before their renames. If even that fails the lines
    /// stay, as after a crash (the at-least-once exception in the crate
    /// docs).
    pub fn keep_first(&mut self, kept: usize) {
        if kept >= self.appended.len() {
            return;
        }
        self.appended.truncate(kept);
        let len = self.len_before()
            + self
                .appended
                .iter()
                .map(|line| line.len() as u64)
                .sum::<u64>();
        // Best effort; see above.
        let _ = self.log.fs.truncate(self.path(), len);
    }

    /// Removes the appended changes after their commits failed before the
    /// renames, and releases the lock; see [`keep_first`](Self::keep_first).
    pub fn undo(mut self) {
        self.keep_first(0);
    }

    /// Gives up a change before anything was appended (the commit was
    /// refused under the lock): releases the lock, keeping what this
    /// handle knows of the newest segment, which is unchanged.
    pub fn abandon(self) {
        let PendingChange {
            log,
            _lock,
            target,
            appended,
            ..
        } = self;
        if let (Target::Tail(tail), true) = (target, appended.is_empty()) {
            *log.tail.lock().unwrap_or_else(PoisonError::into_inner) = Some(tail);
        }
    }

    /// Ends the committed changes (those appended and kept): remembers the
    /// segment's new end for the next commit; after starting a new
    /// segment, removes the oldest segments whose every change is older
    /// than the newest `retain`; then releases the lock. Removal failures
    /// leave segments for the next compaction: the commits are already
    /// done, and keeping more history than asked is harmless.
    pub fn finish(self) {
        let PendingChange {
            log,
            _lock,
            target,
            older,
            seq,
            appended,
        } = self;
        let (Target::Tail(mut tail), Some(last_line)) = (target, appended.last()) else {
            return;
        };
        // `append_all` gave every kept line a seq that fits.
        let last = seq.saturating_add(appended.len() as u64 - 1);
        tail.len += appended.iter().map(|line| line.len() as u64).sum::<u64>();
        tail.last = last;
        tail.last_line = last_line.clone();
        let first = tail.segment.first;
        *log.tail.lock().unwrap_or_else(PoisonError::into_inner) = Some(tail);
        let keep_after = last.saturating_sub(log.retain);
        let mut next_firsts = older.iter().skip(1).map(|s| s.first).chain([first]);
        for segment in &older {
            let next_first = next_firsts.next().unwrap_or(first);
            if next_first - 1 > keep_after || log.fs.remove_file(&segment.path).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("c", "k").unwrap()
    }

    #[test]
    fn a_segment_is_named_by_its_first_seq_in_twenty_digits() {
        let dir = Path::new("/store/.revstore/changes");
        for first in [0, 1, 42, 1_000_000_007, u64::MAX] {
            assert_eq!(
                Segment::new(dir, first).path,
                dir.join(format!("{first:020}.log"))
            );
        }
    }

    #[test]
    fn segments_hold_a_quarter_of_the_retention_within_bounds() {
        assert_eq!(segment_changes(1), 1);
        assert_eq!(segment_changes(7), 1);
        assert_eq!(segment_changes(10), 2);
        assert_eq!(segment_changes(4096), 1024);
        assert_eq!(segment_changes(u64::MAX), MAX_SEGMENT_CHANGES);
    }

    #[test]
    fn an_undone_change_leaves_no_trace_and_its_seq_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        for sync in [true, false] {
            let log = ChangeLog::new(
                Fs::new(std::sync::Arc::new(crate::fs::RealFs)),
                dir.path(),
                3,
                sync,
            );
            let mut pending = log.begin().unwrap();
            let seq = pending.seq;
            pending.append(&key(), 1, ChangeKind::Created).unwrap();
            pending.undo();
            assert_eq!(log.last_seq().unwrap(), seq - 1);
            assert!(log.changes_since(seq - 1, 10).unwrap().is_empty());
            let mut pending = log.begin().unwrap();
            assert_eq!(pending.seq, seq);
            pending.append(&key(), 1, ChangeKind::Created).unwrap();
            pending.finish();
            assert_eq!(log.last_seq().unwrap(), seq);
        }
    }

    #[test]
    fn a_dropped_change_that_was_never_appended_reserves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::new(
            Fs::new(std::sync::Arc::new(crate::fs::RealFs)),
            dir.path(),
            3,
            true,
        );
        drop(log.begin().unwrap());
        assert_eq!(log.last_seq().unwrap(), 0);
        let mut pending = log.begin().unwrap();
        assert_eq!(pending.seq, 1);
        pending.append(&key(), 1, ChangeKind::Created).unwrap();
        pending.finish();
        assert_eq!(log.changes_since(0, 10).unwrap().len(), 1);
    }
}
