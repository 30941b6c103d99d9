//! Shared folder fsyncs: the durable commits of one handle's threads share
//! the fsync of their documents' folder.
//!
//! A durable commit is acknowledged once its rename is on disk, that is
//! once an fsync of the folder has completed that *began after* the
//! rename. Which thread made it does not matter: `fsync` of a folder
//! writes out every entry changed before the call. Fsyncs of a folder are
//! numbered as they begin, and a rename takes a ticket right after it is
//! made: the number of the next fsync to begin. The commit then waits
//! until an fsync numbered at least that has succeeded; when none such is
//! running, it makes one, and every commit whose ticket it reaches waits
//! for it instead of making its own. A group's leader takes its members'
//! tickets as it renames their files, so the fsync the first of them makes
//! covers the whole group. A lone writer makes its own at once, as before.
//!
//! A failed fsync is reported to the thread that made it. A commit whose
//! covering fsyncs all failed does not take another thread's error for its
//! own: it fsyncs the folder itself and reports that result.
//!
//! Processes do not share fsyncs: they have no memory in common.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use revstore::Result;

/// The folder fsyncs of one handle, by collection.
#[derive(Debug, Default)]
pub struct FolderSyncs {
    folders: Mutex<HashMap<String, Arc<FolderSync>>>,
}

impl FolderSyncs {
    /// What a rename of a file in `collection`'s folder, made before this
    /// call, waits for: any fsync of the folder that begins after it. The
    /// leader of a group takes it for its members once their renames are
    /// done, so that the fsync it makes next covers them all, though they
    /// wake after it began.
    pub fn ticket(&self, collection: &str) -> FolderTicket {
        let folder = {
            let mut folders = self.folders.lock().unwrap_or_else(PoisonError::into_inner);
            match folders.get(collection) {
                Some(folder) => Arc::clone(folder),
                None => Arc::clone(folders.entry(collection.to_owned()).or_default()),
            }
        };
        // Any fsync numbered `needed` or later begins after this, so after
        // the rename; a running one may have begun before it.
        let needed = folder.state().begun + 1;
        FolderTicket { folder, needed }
    }
}

/// A rename waiting for its folder's fsync; see [`FolderSyncs::ticket`].
#[derive(Debug, Clone)]
pub struct FolderTicket {
    folder: Arc<FolderSync>,
    /// The first fsync that counts.
    needed: u64,
}

impl FolderTicket {
    /// Returns once an fsync of the folder that counts for this ticket has
    /// succeeded; makes it with `sync` (at most once) when none is running
    /// that counts.
    ///
    /// # Errors
    /// `sync`'s error when this thread's fsync (the shared one it made, or
    /// its own after a shared one it waited for failed) fails.
    pub fn wait(self, sync: impl FnOnce() -> Result<()>) -> Result<()> {
        self.folder.sync(self.needed, sync)
    }
}

/// One folder's fsyncs: at most one runs at a time.
#[derive(Debug, Default)]
struct FolderSync {
    state: Mutex<State>,
    ended: Condvar,
}

/// Fsyncs are numbered in the order they began, from 1.
#[derive(Debug, Default)]
struct State {
    /// The number of the last fsync begun.
    begun: u64,
    /// Whether fsync number `begun` is still running.
    running: bool,
    /// The number of the last fsync that succeeded (0 if none did).
    succeeded: u64,
}

/// What the calling thread does about its folder fsync.
enum Step {
    /// An fsync begun after the call succeeded: nothing.
    Covered,
    /// Make fsync number `.0`, shared with whoever waits for it.
    Lead(u64),
    /// The fsync that would have covered it failed: make one of its own.
    Alone,
}

impl FolderSync {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for fsync number `needed` or a later one to succeed, making
    /// it with `sync` when none is running.
    fn sync(&self, needed: u64, sync: impl FnOnce() -> Result<()>) -> Result<()> {
        let step = {
            let mut state = self.state();
            loop {
                if state.succeeded >= needed {
                    break Step::Covered;
                }
                if !state.running {
                    if state.begun >= needed {
                        // Every fsync that covered it has ended, and
                        // none succeeded.
                        break Step::Alone;
                    }
                    state.begun += 1;
                    state.running = true;
                    break Step::Lead(state.begun);
                }
                state = self
                    .ended
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        match step {
            Step::Covered => Ok(()),
            Step::Alone => sync(),
            Step::Lead(number) => {
                // Ends the fsync even if `sync` panics, so that its waiters
                // make their own instead of waiting for ever.
                let mut running = Running {
                    folder: self,
                    number,
                    succeeded: false,
                };
                let result = sync();
                running.succeeded = result.is_ok();
                result
            }
        }
    }
}

/// A running fsync; ending it wakes its waiters.
struct Running<'a> {
    folder: &'a FolderSync,
    number: u64,
    succeeded: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.folder.state();
        state.running = false;
        if self.succeeded {
            state.succeeded = self.number;
        }
        drop(state);
        self.folder.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    use revstore::Error;

    fn failed() -> Error {
        Error::io(
            "fsync folder",
            std::path::Path::new("c"),
            std::io::Error::other("injected"),
        )
    }

    #[test]
    fn a_lone_caller_fsyncs_every_time() {
        let syncs = FolderSyncs::default();
        let made = AtomicUsize::new(0);
        for _ in 0..5 {
            syncs
                .ticket("c")
                .wait(|| {
                    made.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(made.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn an_fsync_running_at_the_call_does_not_count_one_begun_after_it_does() {
        let syncs = FolderSyncs::default();
        let inside = Barrier::new(2);
        let release = Barrier::new(2);
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            // The first caller's fsync runs until the others have called.
            let first = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    inside.wait();
                    release.wait();
                    made.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            });
            inside.wait();
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        syncs.ticket("c").wait(|| {
                            made.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                    })
                })
                .collect();
            // Let the three callers queue behind the running fsync.
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(made.load(Ordering::SeqCst), 0);
            release.wait();
            first.join().unwrap().unwrap();
            for waiter in waiters {
                waiter.join().unwrap().unwrap();
            }
        });
        // The running fsync, then one more for the three that waited.
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn folders_do_not_cover_each_other() {
        let syncs = FolderSyncs::default();
        let inside = Barrier::new(2);
        let release = Barrier::new(2);
        let made = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                syncs.ticket("a").wait(|| {
                    inside.wait();
                    release.wait();
                    made.lock().unwrap().push("a");
                    Ok(())
                })
            });
            inside.wait();
            // Not blocked by `a`'s fsync, and not covered by it.
            syncs
                .ticket("b")
                .wait(|| {
                    made.lock().unwrap().push("b");
                    Ok(())
                })
                .unwrap();
            release.wait();
            first.join().unwrap().unwrap();
        });
        assert_eq!(*made.lock().unwrap(), ["b", "a"]);
    }

    #[test]
    fn a_failed_shared_fsync_is_its_makers_error_and_the_waiters_make_their_own() {
        let syncs = FolderSyncs::default();
        let inside = Barrier::new(2);
        let release = Barrier::new(2);
        let second_inside = Barrier::new(2);
        let second_release = Barrier::new(2);
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    inside.wait();
                    release.wait();
                    Ok(())
                })
            });
            inside.wait();
            // `second` queues behind the running fsync and then leads one
            // that fails; `third` queues behind that one.
            let second = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    second_inside.wait();
                    second_release.wait();
                    Err(failed())
                })
            });
            std::thread::sleep(Duration::from_millis(30));
            release.wait();
            first.join().unwrap().unwrap();
            second_inside.wait();
            let third = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    made.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            });
            std::thread::sleep(Duration::from_millis(30));
            second_release.wait();
            assert!(second.join().unwrap().is_err());
            // `third` called while the failing fsync ran: it makes the
            // next one, its own.
            third.join().unwrap().unwrap();
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_caller_covered_only_by_a_failed_fsync_makes_its_own() {
        let syncs = FolderSyncs::default();
        let inside = Barrier::new(2);
        let release = Barrier::new(2);
        let own = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    inside.wait();
                    release.wait();
                    Ok(())
                })
            });
            inside.wait();
            // Both queue behind the running fsync; whichever leads the
            // next one fails it, and the other must not count as covered.
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        syncs.ticket("c").wait(|| {
                            if own.fetch_add(1, Ordering::SeqCst) == 0 {
                                Err(failed())
                            } else {
                                Ok(())
                            }
                        })
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            release.wait();
            first.join().unwrap().unwrap();
            let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        });
        // The failed shared fsync, then the other waiter's own.
        assert_eq!(own.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_fsync_does_not_leave_its_waiters_waiting() {
        let syncs = FolderSyncs::default();
        let inside = Barrier::new(2);
        let release = Barrier::new(2);
        std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    inside.wait();
                    release.wait();
                    panic!("injected");
                })
            });
            inside.wait();
            let waiter = scope.spawn(|| syncs.ticket("c").wait(|| Ok(())));
            std::thread::sleep(Duration::from_millis(30));
            release.wait();
            assert!(first.join().is_err());
            waiter.join().unwrap().unwrap();
        });
    }
}
