//! The change feed on disk: segment files of JSON lines under
//! `<root>/.revstore/changes/`, guarded by `<root>/.revstore/changes.lock`.
//! The crate docs describe the protocol and why it is safe.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use revstore::{Change, ChangeKind, Error, Key, Result};

use crate::fs::{FileLock, Fs, LockMode};
use crate::log_line;

/// The backend's own folder under the root; its leading `.` keeps it apart
/// from collections, whose names never start with `.`.
pub const STATE_DIR: &str = ".revstore";
const SEGMENTS_DIR: &str = "changes";
const LOCK_FILE: &str = "changes.lock";
/// Digits of a segment's file name: every `u64` fits, and names sort as
/// numbers.
const NAME_DIGITS: usize = 20;
/// Most changes one segment holds: every commit reads the newest segment
/// whole, so it is kept small.
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
    /// Whether this handle has made the log's folders durable.
    dirs_synced: AtomicBool,
}

/// A segment file: `first` is the seq of its first line.
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
}

impl Segment {
    fn new(segments_dir: &Path, first: u64) -> Segment {
        Segment {
            first,
            path: segments_dir.join(format!("{first:0width$}.log", width = NAME_DIGITS)),
        }
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
            dirs_synced: AtomicBool::new(false),
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
    /// the lock file); then makes the folders and the lock file durable,
    /// once per handle (even when another handle created them). Readers
    /// take a missing lock file for an empty feed, so its entry must be on
    /// disk before any segment's: a power loss could otherwise keep the
    /// segments and lose the lock file, hiding the whole feed.
    fn lock_exclusive(&self) -> Result<FileLock> {
        let created =
            self.fs.create_dir(&self.state_dir)? | self.fs.create_dir(&self.segments_dir)?;
        let lock = self.fs.lock(&self.lock_path, LockMode::Exclusive)?;
        if self.sync && (created || !self.dirs_synced.load(Ordering::Acquire)) {
            self.fs.sync_dir(&self.root)?;
            self.fs.sync_dir(&self.state_dir)?;
            self.dirs_synced.store(true, Ordering::Release);
        }
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
        let mut segments = self.segments()?;
        let (last, count, len) = match segments.last() {
            None => (0, 0, 0),
            Some(newest) => {
                let text = SegmentText::read(&self.fs, newest)?;
                let last = last_seq_of(newest, &text)?;
                if text.is_torn() {
                    self.fs.truncate(&newest.path, text.complete as u64)?;
                }
                (last, text.count(), text.complete as u64)
            }
        };
        let seq = last.checked_add(1).ok_or_else(|| Error::Corrupt {
            location: self.segments_dir.display().to_string(),
            reason: "the feed's seq is at its maximum".to_owned(),
        })?;
        let rolled = segments.is_empty() || count >= self.segment_changes;
        let len_before = if rolled {
            segments.push(Segment::new(&self.segments_dir, seq));
            0
        } else {
            len
        };
        Ok(PendingChange {
            log: self,
            _lock: lock,
            segments,
            seq,
            len_before,
            rolled,
            appended: false,
        })
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

/// The next seq, reserved under the log's exclusive lock until this is
/// dropped, undone or finished.
#[derive(Debug)]
pub struct PendingChange<'a> {
    log: &'a ChangeLog,
    _lock: FileLock,
    /// The segments, the last one being where this change goes (possibly
    /// not created yet).
    segments: Vec<Segment>,
    seq: u64,
    /// The length of the last segment before this change.
    len_before: u64,
    /// Whether this change starts a new segment.
    rolled: bool,
    appended: bool,
}

impl PendingChange<'_> {
    fn segment(&self) -> &Segment {
        // `begin` always leaves at least the segment to write to.
        &self.segments[self.segments.len() - 1]
    }

    /// Appends the change (and makes it durable under full durability)
    /// before the document it describes is renamed into place. On failure
    /// the segment is cut back to where it was.
    pub fn append(&mut self, key: &Key, revision: u64, kind: ChangeKind) -> Result<()> {
        let change = Change {
            seq: self.seq,
            key: key.clone(),
            revision,
            kind,
        };
        let line = log_line::encode(&change).map_err(|e| Error::Backend {
            backend: "yaml",
            context: format!("encoding the change of {key} for the feed"),
            source: Box::new(e),
        })?;
        self.appended = true;
        let path = &self.segment().path;
        let mut written = self.log.fs.append(path, &line, self.log.sync);
        if written.is_ok() && self.rolled && self.log.sync {
            written = self.log.fs.sync_dir(&self.log.segments_dir);
        }
        if written.is_err() {
            self.cut_back();
        }
        written
    }

    /// Removes the appended change after its commit failed before the
    /// rename, and releases the lock. If even that fails the line stays, as
    /// after a crash (the at-least-once exception in the crate docs).
    pub fn undo(mut self) {
        self.cut_back();
    }

    fn cut_back(&mut self) {
        if self.appended {
            // Best effort; see `undo`.
            let _ = self.log.fs.truncate(&self.segment().path, self.len_before);
            self.appended = false;
        }
    }

    /// Ends a committed change: after starting a new segment, removes the
    /// oldest segments whose every change is older than the newest
    /// `retain`; then releases the lock. Removal failures leave segments
    /// for the next compaction: the commit is already done, and keeping
    /// more history than asked is harmless.
    pub fn finish(self) {
        if !self.rolled {
            return;
        }
        let keep_after = self.seq.saturating_sub(self.log.retain);
        for pair in self.segments.windows(2) {
            let (segment, next) = (&pair[0], &pair[1]);
            if next.first - 1 > keep_after || self.log.fs.remove_file(&segment.path).is_err() {
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
