//! A file system that fails one chosen step: the N-th call of one kind of
//! operation, counted from when the fault is armed.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::fs::{DirEntry, FileId, FileSystem, LockMode, PathStat};

/// The kinds of operation a fault can target, one per [`FileSystem`]
/// method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// [`FileSystem::read_into`] and [`FileSystem::read_at`].
    Read,
    /// [`FileSystem::is_dir`].
    IsDir,
    /// [`FileSystem::list_dir`].
    ListDir,
    /// [`FileSystem::create_dir`].
    CreateDir,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::open_lock_file`].
    OpenLock,
    /// [`FileSystem::lock`].
    Lock,
    /// [`FileSystem::create_new`] (the staging file of a commit).
    CreateTemp,
    /// [`FileSystem::open_append`] (a feed segment).
    OpenAppend,
    /// [`FileSystem::file_id`] and [`FileSystem::stat_path`] (a lock file
    /// or feed segment just opened, and whether its path still names it).
    StatFile,
    /// [`FileSystem::write`]; a failing write first writes half its bytes,
    /// as a full disk can.
    Write,
    /// [`FileSystem::start_writeback`].
    StartWriteback,
    /// [`FileSystem::sync_data`].
    Sync,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::truncate`].
    Truncate,
    /// [`FileSystem::remove_file`].
    Remove,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 16] = [
        OpKind::Read,
        OpKind::IsDir,
        OpKind::ListDir,
        OpKind::CreateDir,
        OpKind::SyncDir,
        OpKind::OpenLock,
        OpKind::Lock,
        OpKind::CreateTemp,
        OpKind::OpenAppend,
        OpKind::StatFile,
        OpKind::Write,
        OpKind::StartWriteback,
        OpKind::Sync,
        OpKind::Rename,
        OpKind::Truncate,
        OpKind::Remove,
    ];
}

/// A fault that happened: which operation, on which path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The operation that failed.
    pub kind: OpKind,
    /// The path it failed on.
    pub path: PathBuf,
}

/// One armed fault: the kind it fails, how many more matching calls pass
/// before one fails, and the part of the path a call must hold to match.
#[derive(Debug)]
struct Armed {
    kind: OpKind,
    left: usize,
    path_part: Option<String>,
}

impl Armed {
    fn matches(&self, kind: OpKind, path: &Path) -> bool {
        self.kind == kind
            && self
                .path_part
                .as_deref()
                .is_none_or(|part| path.to_string_lossy().contains(part))
    }
}

#[derive(Debug, Default)]
struct State {
    /// The armed faults.
    armed: Vec<Armed>,
    /// The first armed fault that fired.
    fired: Option<Fired>,
    calls: HashMap<OpKind, usize>,
}

/// Wraps a [`FileSystem`] and fails the one call it is told to, with an
/// `io::Error` of kind `Other` whose message says it was injected. Every
/// call is counted by kind. With [`without_real_syncs`](Self::without_real_syncs)
/// the fsyncs succeed without reaching the disk, which keeps suites fast;
/// they are still counted and can still be failed.
#[derive(Debug)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    real_syncs: bool,
    state: Mutex<State>,
}

impl FaultyFs {
    /// Passes every call to `inner` until a fault is armed.
    pub fn new(inner: Arc<dyn FileSystem>) -> FaultyFs {
        FaultyFs {
            inner,
            real_syncs: true,
            state: Mutex::new(State::default()),
        }
    }

    /// Makes fsyncs (of files and folders) succeed without calling the
    /// wrapped file system.
    pub fn without_real_syncs(mut self) -> FaultyFs {
        self.real_syncs = false;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms a fault: the `nth` call (1 for the next one) of `kind` from now
    /// on fails, once. Replaces any armed fault and forgets a fired one.
    pub fn fail(&self, kind: OpKind, nth: usize) {
        self.arm(kind, nth, None);
    }

    /// As [`fail`](Self::fail), counting only the calls on a path that
    /// contains `path_part`: to fail one file's step whatever the order of
    /// the calls on other files (which threads may change).
    pub fn fail_on(&self, kind: OpKind, nth: usize, path_part: &str) {
        self.arm(kind, nth, Some(path_part.to_owned()));
    }

    fn arm(&self, kind: OpKind, nth: usize, path_part: Option<String>) {
        let mut state = self.state();
        state.armed = vec![Armed {
            kind,
            left: nth.max(1) - 1,
            path_part,
        }];
        state.fired = None;
    }

    /// Arms one more fault next to those armed: a second failure, such as
    /// a clean-up that fails after the step it cleans up after.
    pub fn also_fail(&self, kind: OpKind, nth: usize) {
        self.state().armed.push(Armed {
            kind,
            left: nth.max(1) - 1,
            path_part: None,
        });
    }

    /// Disarms every fault, returning the first that fired, if any.
    pub fn disarm(&self) -> Option<Fired> {
        let mut state = self.state();
        state.armed.clear();
        state.fired.take()
    }

    /// The first fault that fired since they were armed, if any.
    pub fn fired(&self) -> Option<Fired> {
        self.state().fired.clone()
    }

    /// How many calls of `kind` were made so far.
    pub fn calls(&self, kind: OpKind) -> usize {
        self.state().calls.get(&kind).copied().unwrap_or(0)
    }

    /// Counts a call and fails it if an armed fault is due.
    fn check(&self, kind: OpKind, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        *state.calls.entry(kind).or_default() += 1;
        let mut due = false;
        state.armed.retain_mut(|armed| {
            if due || !armed.matches(kind, path) {
                return true;
            }
            match armed.left.checked_sub(1) {
                Some(fewer) => {
                    armed.left = fewer;
                    true
                }
                None => {
                    due = true;
                    false
                }
            }
        });
        if !due {
            return Ok(());
        }
        if state.fired.is_none() {
            state.fired = Some(Fired {
                kind,
                path: path.to_owned(),
            });
        }
        Err(io::Error::other(format!(
            "injected fault: {kind:?} of {}",
            path.display()
        )))
    }
}

impl FileSystem for FaultyFs {
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.check(OpKind::Read, path)?;
        self.inner.read_into(path, buf)
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        self.check(OpKind::IsDir, path)?;
        self.inner.is_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.check(OpKind::ListDir, path)?;
        self.inner.list_dir(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.check(OpKind::CreateDir, path)?;
        self.inner.create_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(OpKind::SyncDir, path)?;
        if self.real_syncs {
            self.inner.sync_dir(path)
        } else {
            Ok(())
        }
    }

    fn open_lock_file(&self, path: &Path, create: bool) -> io::Result<File> {
        self.check(OpKind::OpenLock, path)?;
        self.inner.open_lock_file(path, create)
    }

    fn lock(&self, file: &File, path: &Path, mode: LockMode) -> io::Result<()> {
        self.check(OpKind::Lock, path)?;
        self.inner.lock(file, path, mode)
    }

    fn unlock(&self, file: &File, path: &Path) -> io::Result<()> {
        // Never failed on purpose: its failure is never reported.
        self.inner.unlock(file, path)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.check(OpKind::CreateTemp, path)?;
        self.inner.create_new(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        self.check(OpKind::OpenAppend, path)?;
        self.inner.open_append(path)
    }

    fn file_id(&self, file: &File, path: &Path) -> io::Result<FileId> {
        self.check(OpKind::StatFile, path)?;
        self.inner.file_id(file, path)
    }

    fn stat_path(&self, path: &Path) -> io::Result<PathStat> {
        self.check(OpKind::StatFile, path)?;
        self.inner.stat_path(path)
    }

    fn read_at(&self, file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(OpKind::Read, path)?;
        self.inner.read_at(file, path, offset, buf)
    }

    fn write(&self, file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.check(OpKind::Write, path) {
            // A short write, then the error.
            self.inner.write(file, path, &bytes[..bytes.len() / 2])?;
            return Err(e);
        }
        self.inner.write(file, path, bytes)
    }

    fn start_writeback(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(OpKind::StartWriteback, path)?;
        if self.real_syncs {
            self.inner.start_writeback(file, path)
        } else {
            Ok(())
        }
    }

    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(OpKind::Sync, path)?;
        if self.real_syncs {
            self.inner.sync_data(file, path)
        } else {
            Ok(())
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(OpKind::Rename, to)?;
        self.inner.rename(from, to)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check(OpKind::Truncate, path)?;
        self.inner.truncate(path, len)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(OpKind::Remove, path)?;
        self.inner.remove_file(path)
    }
}
