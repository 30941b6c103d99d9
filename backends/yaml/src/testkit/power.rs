//! Simulated power loss: [`RecordingFs`] records every operation that
//! changes the disk, and [`PowerLoss`] replays a prefix of them on a model
//! of what survives a power cut, enumerating the states the disk could be
//! left in.
//!
//! A process crash (SIGKILL) keeps the page cache, so it cannot show what
//! an fsync protects; this model can. What it assumes, pessimistically:
//! - File data is on disk only once the file is fsynced. Un-synced data
//!   may be lost, kept, cut short, or kept as zeros (the length reached
//!   the disk, the data did not).
//! - A folder's entries (files created, renamed, removed; folders created)
//!   are on disk only once the folder is fsynced. Un-synced entry changes
//!   of one folder survive as a prefix of the order they were made in
//!   (journaling file systems commit metadata in order); folders are
//!   independent of each other. A folder whose own entry in its parent is
//!   lost is lost with everything in it.
//! - fsyncing a file does not make its name durable.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::fs::{DirEntry, FileId, FileSystem, LockMode, PathStat};

/// One operation that changes the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// A folder was created.
    CreateDir(PathBuf),
    /// An empty file was created.
    CreateFile(PathBuf),
    /// Bytes were appended to a file (every write of the backend goes to
    /// the end of a file).
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        bytes: Vec<u8>,
    },
    /// A file's data was fsynced.
    SyncFile(PathBuf),
    /// A folder was fsynced.
    SyncDir(PathBuf),
    /// A file was renamed (within one folder).
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name, replaced if it existed.
        to: PathBuf,
    },
    /// A file was cut down to `len` bytes.
    Truncate {
        /// The file.
        path: PathBuf,
        /// Its new length.
        len: u64,
    },
    /// A file was removed.
    Remove(PathBuf),
}

/// Wraps a [`FileSystem`] and records, in order, every operation that
/// changes the disk (reads and locks are passed through unrecorded). With
/// [`without_real_syncs`](Self::without_real_syncs) fsyncs are recorded
/// but not performed.
#[derive(Debug)]
pub struct RecordingFs {
    inner: Arc<dyn FileSystem>,
    real_syncs: bool,
    /// How long each file fsync waits before it is performed and recorded.
    file_sync_delay: std::time::Duration,
    log: Mutex<Vec<FsOp>>,
}

impl RecordingFs {
    /// Records the operations made through it on `inner`.
    pub fn new(inner: Arc<dyn FileSystem>) -> RecordingFs {
        RecordingFs {
            inner,
            real_syncs: true,
            file_sync_delay: std::time::Duration::ZERO,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Makes every file fsync wait `delay` before it is performed and
    /// recorded: a commit that did not wait for an fsync (one run on
    /// another thread, say) before its next step then shows that step
    /// first in the record, where the power-loss model catches it.
    pub fn with_slow_file_syncs(mut self, delay: std::time::Duration) -> RecordingFs {
        self.file_sync_delay = delay;
        self
    }

    /// Records fsyncs without performing them.
    pub fn without_real_syncs(mut self) -> RecordingFs {
        self.real_syncs = false;
        self
    }

    fn log(&self) -> MutexGuard<'_, Vec<FsOp>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> Vec<FsOp> {
        self.log().clone()
    }

    /// How many operations were recorded so far: a position to mark.
    pub fn len(&self) -> usize {
        self.log().len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.log().is_empty()
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

impl FileSystem for RecordingFs {
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.inner.read_into(path, buf)
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        self.inner.is_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut log = self.log();
        self.inner.create_dir(path)?;
        log.push(FsOp::CreateDir(path.to_owned()));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut log = self.log();
        if self.real_syncs {
            self.inner.sync_dir(path)?;
        }
        log.push(FsOp::SyncDir(path.to_owned()));
        Ok(())
    }

    fn open_lock_file(&self, path: &Path, create: bool) -> io::Result<File> {
        let mut log = self.log();
        let existed = exists(path);
        let file = self.inner.open_lock_file(path, create)?;
        if !existed {
            log.push(FsOp::CreateFile(path.to_owned()));
        }
        Ok(file)
    }

    fn lock(&self, file: &File, path: &Path, mode: LockMode) -> io::Result<()> {
        // Not under the log's mutex: a lock may wait for another thread.
        self.inner.lock(file, path, mode)
    }

    fn unlock(&self, file: &File, path: &Path) -> io::Result<()> {
        self.inner.unlock(file, path)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        let mut log = self.log();
        let file = self.inner.create_new(path)?;
        log.push(FsOp::CreateFile(path.to_owned()));
        Ok(file)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        let mut log = self.log();
        let existed = exists(path);
        let file = self.inner.open_append(path)?;
        if !existed {
            log.push(FsOp::CreateFile(path.to_owned()));
        }
        Ok(file)
    }

    fn file_id(&self, file: &File, path: &Path) -> io::Result<FileId> {
        self.inner.file_id(file, path)
    }

    fn stat_path(&self, path: &Path) -> io::Result<PathStat> {
        self.inner.stat_path(path)
    }

    fn read_at(&self, file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(file, path, offset, buf)
    }

    fn write(&self, file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut log = self.log();
        self.inner.write(file, path, bytes)?;
        log.push(FsOp::Write {
            path: path.to_owned(),
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    // Not logged: a hint that makes nothing durable, so the disk model
    // treats the file's data as unsynced until `sync_data`.
    fn start_writeback(&self, file: &File, path: &Path) -> io::Result<()> {
        if self.real_syncs {
            self.inner.start_writeback(file, path)
        } else {
            Ok(())
        }
    }

    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        if !self.file_sync_delay.is_zero() {
            std::thread::sleep(self.file_sync_delay);
        }
        let mut log = self.log();
        if self.real_syncs {
            self.inner.sync_data(file, path)?;
        }
        log.push(FsOp::SyncFile(path.to_owned()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut log = self.log();
        self.inner.rename(from, to)?;
        log.push(FsOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut log = self.log();
        self.inner.truncate(path, len)?;
        log.push(FsOp::Truncate {
            path: path.to_owned(),
            len,
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut log = self.log();
        self.inner.remove_file(path)?;
        log.push(FsOp::Remove(path.to_owned()));
        Ok(())
    }
}

/// What one file's un-synced data became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataFate {
    /// Lost: the file holds what it held at its last fsync.
    Dropped,
    /// Kept whole.
    Kept,
    /// Half of the un-synced part kept.
    CutShort,
    /// The length reached the disk, the data did not: zeros.
    Zeroed,
}

const FATES: [DataFate; 4] = [
    DataFate::Dropped,
    DataFate::Kept,
    DataFate::CutShort,
    DataFate::Zeroed,
];

#[derive(Debug, Clone, Default)]
struct Inode {
    durable: Vec<u8>,
    volatile: Vec<u8>,
}

impl Inode {
    fn is_dirty(&self) -> bool {
        self.durable != self.volatile
    }

    fn content(&self, fate: DataFate) -> Vec<u8> {
        let common = self
            .durable
            .iter()
            .zip(&self.volatile)
            .take_while(|(a, b)| a == b)
            .count();
        let extra = self.volatile.len().saturating_sub(common);
        match fate {
            DataFate::Dropped => self.durable.clone(),
            DataFate::Kept => self.volatile.clone(),
            DataFate::CutShort if extra > 0 => self.volatile[..common + extra / 2].to_vec(),
            DataFate::Zeroed if extra > 0 => {
                let mut bytes = self.volatile[..common].to_vec();
                bytes.resize(self.volatile.len(), 0);
                bytes
            }
            // Nothing was added past what is durable (a truncation): lost
            // or kept are the only outcomes.
            DataFate::CutShort | DataFate::Zeroed => self.durable.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, Node),
    Unlink(OsString),
    Rename(OsString, OsString),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<OsString, Node>) {
        match self {
            DirOp::Link(name, node) => {
                entries.insert(name.clone(), *node);
            }
            DirOp::Unlink(name) => {
                entries.remove(name);
            }
            DirOp::Rename(from, to) => {
                if let Some(node) = entries.remove(from) {
                    entries.insert(to.clone(), node);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SimDir {
    durable: BTreeMap<OsString, Node>,
    volatile: BTreeMap<OsString, Node>,
    pending: Vec<DirOp>,
}

/// The model of one disk: what the process sees and what is durable.
#[derive(Debug, Clone)]
struct Sim {
    base: PathBuf,
    inodes: Vec<Inode>,
    /// Folders by path relative to the base ("" is the base).
    dirs: BTreeMap<PathBuf, SimDir>,
}

impl Sim {
    fn new(base: &Path) -> Sim {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::new(), SimDir::default());
        Sim {
            base: base.to_owned(),
            inodes: Vec::new(),
            dirs,
        }
    }

    /// A path's folder (relative) and name.
    ///
    /// # Panics
    /// When the path is not below the base (test support only).
    fn split(&self, path: &Path) -> (PathBuf, OsString) {
        let relative = self.relative(path);
        let parent = relative.parent().map(Path::to_owned).unwrap_or_default();
        let name = relative
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| panic!("{} has no file name", path.display()));
        (parent, name)
    }

    /// A path relative to the base.
    ///
    /// # Panics
    /// When the path is not below the base (test support only).
    fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.base).unwrap_or_else(|_| {
            panic!(
                "{} is outside the simulated folder {}",
                path.display(),
                self.base.display()
            )
        })
    }

    fn dir(&mut self, path: &Path) -> &mut SimDir {
        self.dirs
            .get_mut(path)
            .unwrap_or_else(|| panic!("folder {} was never created", path.display()))
    }

    fn inode(&mut self, path: &Path) -> &mut Inode {
        let (parent, name) = self.split(path);
        match self.dir(&parent).volatile.get(&name) {
            Some(Node::File(id)) => {
                let id = *id;
                &mut self.inodes[id]
            }
            _ => panic!("{} is not a file", path.display()),
        }
    }

    fn dir_op(&mut self, parent: &Path, op: DirOp) {
        let dir = self.dir(parent);
        op.apply(&mut dir.volatile);
        dir.pending.push(op);
    }

    fn apply(&mut self, op: &FsOp) {
        match op {
            FsOp::CreateDir(path) => {
                let (parent, name) = self.split(path);
                self.dir_op(&parent, DirOp::Link(name.clone(), Node::Dir));
                self.dirs.insert(parent.join(name), SimDir::default());
            }
            FsOp::CreateFile(path) => {
                let (parent, name) = self.split(path);
                self.inodes.push(Inode::default());
                let id = self.inodes.len() - 1;
                self.dir_op(&parent, DirOp::Link(name, Node::File(id)));
            }
            FsOp::Write { path, bytes } => self.inode(path).volatile.extend_from_slice(bytes),
            FsOp::SyncFile(path) => {
                let inode = self.inode(path);
                inode.durable = inode.volatile.clone();
            }
            FsOp::SyncDir(path) => {
                let relative = self.relative(path).to_owned();
                let dir = self.dir(&relative);
                dir.durable = dir.volatile.clone();
                dir.pending.clear();
            }
            FsOp::Rename { from, to } => {
                let (parent, from_name) = self.split(from);
                let (to_parent, to_name) = self.split(to);
                assert_eq!(parent, to_parent, "renames stay within one folder");
                self.dir_op(&parent, DirOp::Rename(from_name, to_name));
            }
            FsOp::Truncate { path, len } => {
                let len = usize::try_from(*len).unwrap_or(usize::MAX);
                self.inode(path).volatile.truncate(len);
            }
            FsOp::Remove(path) => {
                let (parent, name) = self.split(path);
                self.dir_op(&parent, DirOp::Unlink(name));
            }
        }
    }
}

/// One state a power loss could leave: every file (path relative to the
/// simulated base folder, and its bytes) and every folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrashState {
    /// The files and their bytes.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// The folders.
    pub dirs: BTreeSet<PathBuf>,
}

impl CrashState {
    /// Writes the state below `dest` (which must exist).
    ///
    /// # Errors
    /// The first I/O error.
    pub fn materialize(&self, dest: &Path) -> io::Result<()> {
        for dir in &self.dirs {
            std::fs::create_dir_all(dest.join(dir))?;
        }
        for (path, bytes) in &self.files {
            std::fs::write(dest.join(path), bytes)?;
        }
        Ok(())
    }
}

/// One choice of what survived: how long a prefix of each folder's
/// un-synced changes, and the fate of each file's un-synced data.
struct Choice {
    prefixes: Vec<usize>,
    fates: Vec<DataFate>,
}

/// The recorded operations of a run, ready to be cut at any point.
#[derive(Debug, Clone)]
pub struct PowerLoss {
    base: PathBuf,
    ops: Vec<FsOp>,
}

impl PowerLoss {
    /// `ops` were recorded on paths below `base`, a folder that was empty
    /// (and durable) when recording began.
    pub fn new(base: &Path, ops: Vec<FsOp>) -> PowerLoss {
        PowerLoss {
            base: base.to_owned(),
            ops,
        }
    }

    /// How many operations were recorded: crash points run from 0 (before
    /// the first) to this (after the last).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Up to `max` distinct states a power loss right after the first
    /// `crash_point` operations could leave. Always among them: everything
    /// un-synced kept (what a process crash leaves) and everything
    /// un-synced lost; then each folder's un-synced changes cut at each
    /// point, and each file's un-synced data in each fate, one at a time;
    /// then random combinations drawn from `seed`.
    ///
    /// # Panics
    /// When the operations are inconsistent (test support only).
    pub fn states(&self, crash_point: usize, max: usize, seed: u64) -> Vec<CrashState> {
        let mut sim = Sim::new(&self.base);
        for op in &self.ops[..crash_point.min(self.ops.len())] {
            sim.apply(op);
        }
        let dirs: Vec<PathBuf> = sim
            .dirs
            .iter()
            .filter(|(_, dir)| !dir.pending.is_empty())
            .map(|(path, _)| path.clone())
            .collect();
        let pending: Vec<usize> = dirs.iter().map(|d| sim.dirs[d].pending.len()).collect();
        let dirty: Vec<usize> = (0..sim.inodes.len())
            .filter(|&id| sim.inodes[id].is_dirty())
            .collect();

        let all_kept = Choice {
            prefixes: pending.clone(),
            fates: vec![DataFate::Kept; dirty.len()],
        };
        let mut choices = vec![
            all_kept,
            Choice {
                prefixes: vec![0; dirs.len()],
                fates: vec![DataFate::Dropped; dirty.len()],
            },
        ];
        let mut singles = Vec::new();
        for (d, &len) in pending.iter().enumerate() {
            for prefix in 0..len {
                let mut prefixes = pending.clone();
                prefixes[d] = prefix;
                singles.push(Choice {
                    prefixes,
                    fates: vec![DataFate::Kept; dirty.len()],
                });
            }
        }
        for i in 0..dirty.len() {
            for fate in FATES {
                let mut fates = vec![DataFate::Kept; dirty.len()];
                fates[i] = fate;
                singles.push(Choice {
                    prefixes: pending.clone(),
                    fates,
                });
            }
        }
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Shuffled, so a small `max` still samples every folder and file.
        for i in (1..singles.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            singles.swap(i, j);
        }
        choices.extend(singles);

        let mut seen = HashSet::new();
        let mut states = Vec::new();
        let mut consider = |choice: &Choice, states: &mut Vec<CrashState>| {
            let state = build(&sim, &dirs, &dirty, choice);
            if seen.insert(state.clone()) {
                states.push(state);
            }
        };
        for choice in &choices {
            if states.len() >= max {
                return states;
            }
            consider(choice, &mut states);
        }
        // Random combinations; bounded attempts, as duplicates are common.
        for _ in 0..max.saturating_mul(4) {
            if states.len() >= max {
                break;
            }
            let choice = Choice {
                prefixes: pending
                    .iter()
                    .map(|&len| (next() % (len as u64 + 1)) as usize)
                    .collect(),
                fates: dirty
                    .iter()
                    .map(|_| FATES[(next() % FATES.len() as u64) as usize])
                    .collect(),
            };
            consider(&choice, &mut states);
        }
        states
    }
}

/// The disk after a power loss that kept what `choice` says.
fn build(sim: &Sim, dirs: &[PathBuf], dirty: &[usize], choice: &Choice) -> CrashState {
    let entries_of = |path: &Path| -> BTreeMap<OsString, Node> {
        let dir = &sim.dirs[path];
        let mut entries = dir.durable.clone();
        let prefix = dirs
            .iter()
            .position(|d| d == path)
            .map_or(0, |i| choice.prefixes[i]);
        for op in &dir.pending[..prefix] {
            op.apply(&mut entries);
        }
        entries
    };
    let content_of = |id: usize| -> Vec<u8> {
        let inode = &sim.inodes[id];
        match dirty.iter().position(|&d| d == id) {
            Some(i) => inode.content(choice.fates[i]),
            None => inode.volatile.clone(),
        }
    };
    let mut state = CrashState {
        files: BTreeMap::new(),
        dirs: BTreeSet::new(),
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for (name, node) in entries_of(&dir) {
            let path = dir.join(name);
            match node {
                Node::Dir => {
                    state.dirs.insert(path.clone());
                    stack.push(path);
                }
                Node::File(id) => {
                    state.files.insert(path, content_of(id));
                }
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        Path::new("/base").join(s)
    }

    fn ops() -> Vec<FsOp> {
        vec![
            FsOp::CreateDir(p("d")),
            FsOp::SyncDir(p("")),
            FsOp::CreateFile(p("d/.f.tmp")),
            FsOp::Write {
                path: p("d/.f.tmp"),
                bytes: b"new!".to_vec(),
            },
            FsOp::SyncFile(p("d/.f.tmp")),
            FsOp::Rename {
                from: p("d/.f.tmp"),
                to: p("d/f"),
            },
            FsOp::SyncDir(p("d")),
        ]
    }

    fn files(state: &CrashState) -> Vec<(String, Vec<u8>)> {
        state
            .files
            .iter()
            .map(|(k, v)| (k.display().to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn an_unsynced_folder_entry_may_be_lost_with_everything_below() {
        let loss = PowerLoss::new(Path::new("/base"), ops());
        let states = loss.states(1, 100, 1);
        assert_eq!(states.len(), 2);
        assert!(states.iter().any(|s| s.dirs.is_empty()));
        assert!(states.iter().any(|s| s.dirs.len() == 1));
    }

    #[test]
    fn synced_data_renamed_without_a_folder_sync_is_old_or_new_never_torn() {
        let loss = PowerLoss::new(Path::new("/base"), ops());
        let states = loss.states(6, 100, 1);
        let seen: BTreeSet<_> = states.iter().map(files).collect();
        let expected: BTreeSet<_> = [
            vec![],
            vec![("d/.f.tmp".to_owned(), b"new!".to_vec())],
            vec![("d/f".to_owned(), b"new!".to_vec())],
        ]
        .into_iter()
        .collect();
        assert_eq!(seen, expected);
        // After the folder's fsync only the new state remains.
        let states = loss.states(7, 100, 1);
        assert_eq!(states.len(), 1);
        assert_eq!(files(&states[0]), [("d/f".to_owned(), b"new!".to_vec())]);
    }

    #[test]
    fn unsynced_data_may_be_dropped_cut_short_or_zeroed() {
        let loss = PowerLoss::new(Path::new("/base"), ops());
        let states = loss.states(4, 100, 1);
        let contents: BTreeSet<Vec<u8>> = states
            .iter()
            .filter_map(|s| s.files.get(Path::new("d/.f.tmp")).cloned())
            .collect();
        let expected: BTreeSet<Vec<u8>> =
            [b"".to_vec(), b"ne".to_vec(), b"new!".to_vec(), vec![0; 4]]
                .into_iter()
                .collect();
        assert_eq!(contents, expected);
    }

    #[test]
    fn states_are_capped_and_distinct() {
        let loss = PowerLoss::new(Path::new("/base"), ops());
        for point in 0..=loss.len() {
            let states = loss.states(point, 2, 7);
            assert!(!states.is_empty() && states.len() <= 2);
            let distinct: HashSet<_> = states.iter().collect();
            assert_eq!(distinct.len(), states.len());
        }
    }
}
