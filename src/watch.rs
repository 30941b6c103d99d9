//! Following the change feed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::feed::Change;
use crate::store::Store;

/// How many changes one poll fetches.
const BATCH: usize = 256;

/// A blocking iterator over a store's change feed, from a cursor on.
///
/// It polls [`Store::changes_since`] and sleeps `poll` between empty polls,
/// so a change made by any handle or process shows up within about one
/// poll interval. Changes arrive in commit order, each once; the iterator
/// stops after yielding an error (for instance
/// [`Error::Compacted`](crate::Error::Compacted) when the cursor fell
/// behind retention).
#[derive(Debug)]
pub struct Watch {
    store: Store,
    cursor: u64,
    poll: Duration,
    pending: VecDeque<Change>,
    failed: bool,
}

impl Watch {
    pub(crate) fn new(store: Store, after: u64, poll: Duration) -> Watch {
        Watch {
            store,
            cursor: after,
            poll,
            pending: VecDeque::new(),
            failed: false,
        }
    }

    /// The seq of the last change handed out (or the starting cursor).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next change, waiting at most `timeout`; `Ok(None)` when none
    /// arrived in time.
    ///
    /// # Errors
    /// The feed's errors, [`Error::Compacted`](crate::Error::Compacted)
    /// among them.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.cursor = change.seq;
                return Ok(Some(change));
            }
            let fetched = self.store.changes_since(self.cursor, BATCH)?;
            if !fetched.is_empty() {
                self.pending.extend(fetched);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store
                .backend()
                .wait_for_change(self.cursor, self.poll.min(deadline - now))?;
        }
    }
}

impl Iterator for Watch {
    type Item = Result<Change>;

    /// Blocks until the next change (or an error, after which it ends).
    fn next(&mut self) -> Option<Result<Change>> {
        if self.failed {
            return None;
        }
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(change)) => return Some(Ok(change)),
                Ok(None) => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
