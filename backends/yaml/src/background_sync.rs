//! A helper thread that fsyncs one file while its caller goes on.
//!
//! A durable commit must have two files on stable storage before its
//! rename: the staging file and the feed segment. Made one after the
//! other, the second fsync still waits for a device flush of its own; in
//! flight at the same moment, both share the flushes (and, on a journaling
//! file system, the journal commits). So a commit hands the staging file's
//! fsync to this thread as soon as the file is written, takes the feed
//! lock, appends and fsyncs the segment itself, and waits for both before
//! it renames.
//!
//! There is one thread per handle, started on first use, doing one fsync at
//! a time. A commit that finds it busy with another commit's fsync (or
//! cannot start it) makes its own at once, as it would without the helper:
//! nothing waits in a queue, and every result reaches exactly the commit
//! that asked.

use std::fmt;
use std::fs::File;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::fs::FileSystem;

/// One fsync to run: what [`FileSystem::sync_data`] is called with.
struct Job {
    fs: Arc<dyn FileSystem>,
    file: Arc<File>,
    path: PathBuf,
}

#[derive(Default)]
struct Slot {
    /// Taken by the commit whose fsync the thread runs, from
    /// [`BackgroundSync::start`] until [`PendingSync::wait`] returns.
    busy: bool,
    job: Option<Job>,
    result: Option<io::Result<()>>,
    /// The handle is gone: the thread ends.
    closed: bool,
    /// The thread is running (started, not ended).
    started: bool,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Slot>) -> MutexGuard<'a, Slot> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut slot = self.slot();
        loop {
            if let Some(job) = slot.job.take() {
                drop(slot);
                // A file system that panics (a test's, say) must not leave
                // its commit waiting for ever.
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    job.fs.sync_data(&job.file, &job.path)
                }))
                .unwrap_or_else(|_| Err(io::Error::other("the fsync panicked")));
                drop(job);
                slot = self.slot();
                slot.result = Some(result);
                self.changed.notify_all();
            } else if slot.closed {
                slot.started = false;
                return;
            } else {
                slot = self.wait(slot);
            }
        }
    }
}

/// A handle's fsync helper thread; see the module docs.
#[derive(Default)]
pub struct BackgroundSync {
    shared: Arc<Shared>,
}

impl fmt::Debug for BackgroundSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundSync").finish_non_exhaustive()
    }
}

impl BackgroundSync {
    /// Starts `fs.sync_data(file, path)` on the helper thread; `None` when
    /// it is busy with another commit's fsync or cannot be started, and
    /// the caller must fsync the file itself.
    pub fn start(
        &self,
        fs: &Arc<dyn FileSystem>,
        file: &Arc<File>,
        path: PathBuf,
    ) -> Option<PendingSync<'_>> {
        let mut slot = self.shared.slot();
        if slot.busy {
            return None;
        }
        if !slot.started {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("revstore-yaml-fsync".to_owned())
                .spawn(move || shared.run());
            if spawned.is_err() {
                return None;
            }
            slot.started = true;
        }
        slot.busy = true;
        slot.result = None;
        slot.job = Some(Job {
            fs: Arc::clone(fs),
            file: Arc::clone(file),
            path,
        });
        self.shared.changed.notify_all();
        Some(PendingSync {
            shared: &self.shared,
            waited: false,
        })
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        // The thread ends once it sees this; nobody waits for it (an fsync
        // in progress has no commit waiting for it any more).
        self.shared.slot().closed = true;
        self.shared.changed.notify_all();
    }
}

/// An fsync running on the helper thread; its result is collected by
/// [`wait`](Self::wait) (or, unread, when it is dropped: the helper is
/// never left to a commit that has given up on it).
pub struct PendingSync<'a> {
    shared: &'a Shared,
    waited: bool,
}

impl PendingSync<'_> {
    /// Blocks until the fsync is done and returns its result.
    pub fn wait(mut self) -> io::Result<()> {
        self.collect()
    }

    fn collect(&mut self) -> io::Result<()> {
        self.waited = true;
        let mut slot = self.shared.slot();
        loop {
            if let Some(result) = slot.result.take() {
                slot.busy = false;
                return result;
            }
            slot = self.shared.wait(slot);
        }
    }
}

impl Drop for PendingSync<'_> {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn a_busy_helper_sends_the_second_caller_back_and_frees_itself_after_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(File::create(&path).unwrap());
        let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
        let helper = BackgroundSync::default();
        let first = helper.start(&fs, &file, path.clone()).unwrap();
        assert!(helper.start(&fs, &file, path.clone()).is_none());
        first.wait().unwrap();
        let again = helper.start(&fs, &file, path.clone()).unwrap();
        drop(again);
        helper.start(&fs, &file, path).unwrap().wait().unwrap();
    }
}
