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
    use std::thread::{Scope, ScopedJoinHandle};
    use std::time::Duration;

    use revstore::Error;

    fn failed() -> Error {
        Error::io(
            "fsync folder",
            std::path::Path::new("c"),
            std::io::Error::other("injected"),
        )
    }

    /// Holds an fsync running until the test lets it end.
    struct Gate {
        entered: Barrier,
        released: Barrier,
    }

    impl Gate {
        fn new() -> Gate {
            Gate {
                entered: Barrier::new(2),
                released: Barrier::new(2),
            }
        }

        /// Called by the fsync.
        fn hold(&self) {
            self.entered.wait();
            self.released.wait();
        }
    }

    /// A caller on `collection` whose fsync runs, once this returns, until
    /// `gate` is released, and then ends with `outcome`.
    fn held<'scope>(
        scope: &'scope Scope<'scope, '_>,
        syncs: &'scope FolderSyncs,
        collection: &'static str,
        gate: &'scope Gate,
        outcome: fn() -> Result<()>,
    ) -> ScopedJoinHandle<'scope, Result<()>> {
        let caller = scope.spawn(move || {
            syncs.ticket(collection).wait(|| {
                gate.hold();
                outcome()
            })
        });
        gate.entered.wait();
        caller
    }

    /// `count` callers on "c", each counting its fsync in `made`.
    fn counted<'scope>(
        scope: &'scope Scope<'scope, '_>,
        syncs: &'scope FolderSyncs,
        made: &'scope AtomicUsize,
        count: usize,
    ) -> Vec<ScopedJoinHandle<'scope, Result<()>>> {
        (0..count)
            .map(|_| {
                scope.spawn(|| {
                    syncs.ticket("c").wait(|| {
                        made.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect()
    }

    /// Lets spawned callers reach their wait. Not needed for correctness
    /// (a caller that comes late leads its own fsync, counted the same),
    /// only for the case under test to be the common one.
    fn settle() {
        std::thread::sleep(Duration::from_millis(30));
    }

    #[test]
    fn a_lone_caller_fsyncs_every_time() {
        let syncs = FolderSyncs::default();
        let made = AtomicUsize::new(0);
        for _ in 0..5 {
            std::thread::scope(|scope| {
                for caller in counted(scope, &syncs, &made, 1) {
                    caller.join().unwrap().unwrap();
                }
            });
        }
        assert_eq!(made.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn an_fsync_running_at_the_call_does_not_count_one_begun_after_it_does() {
        let syncs = FolderSyncs::default();
        let gate = Gate::new();
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = held(scope, &syncs, "c", &gate, || Ok(()));
            let waiters = counted(scope, &syncs, &made, 3);
            settle();
            assert_eq!(made.load(Ordering::SeqCst), 0);
            gate.released.wait();
            first.join().unwrap().unwrap();
            for waiter in waiters {
                waiter.join().unwrap().unwrap();
            }
        });
        // One more after the running fsync, for the three that waited.
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn folders_do_not_cover_each_other() {
        let syncs = FolderSyncs::default();
        let gate = Gate::new();
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = held(scope, &syncs, "a", &gate, || Ok(()));
            // Neither blocked by `a`'s fsync nor covered by it.
            for caller in counted(scope, &syncs, &made, 1) {
                caller.join().unwrap().unwrap();
            }
            gate.released.wait();
            first.join().unwrap().unwrap();
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_shared_fsync_is_its_makers_error_and_its_waiters_make_their_own() {
        let syncs = FolderSyncs::default();
        let (gate, failing_gate) = (Gate::new(), Gate::new());
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = held(scope, &syncs, "c", &gate, || Ok(()));
            // Queues behind the running fsync, then leads one that fails.
            let failing = scope.spawn(|| {
                syncs.ticket("c").wait(|| {
                    failing_gate.hold();
                    Err(failed())
                })
            });
            settle();
            gate.released.wait();
            first.join().unwrap().unwrap();
            failing_gate.entered.wait();
            let waiters = counted(scope, &syncs, &made, 2);
            settle();
            failing_gate.released.wait();
            assert!(failing.join().unwrap().is_err());
            for waiter in waiters {
                waiter.join().unwrap().unwrap();
            }
        });
        // The two that waited for the failed fsync share the next.
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_caller_covered_only_by_a_failed_fsync_makes_its_own() {
        let syncs = FolderSyncs::default();
        let gate = Gate::new();
        let own = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = held(scope, &syncs, "c", &gate, || Ok(()));
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
            settle();
            gate.released.wait();
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
        let gate = Gate::new();
        let made = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let first = held(scope, &syncs, "c", &gate, || panic!("injected"));
            let waiters = counted(scope, &syncs, &made, 1);
            settle();
            gate.released.wait();
            assert!(first.join().is_err());
            for waiter in waiters {
                waiter.join().unwrap().unwrap();
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }
}
