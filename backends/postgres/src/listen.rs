//! Waking watchers at once: a background thread per backend handle holds a
//! `LISTEN` connection on the namespace's channel, records the highest seq
//! it heard of, and wakes every waiter.
//!
//! The feed stays the source of truth: a notification only tells a waiter
//! to poll now rather than at the end of its interval. One lost (the
//! listener was reconnecting, a writer did not notify) only delays a
//! watcher until its next poll. On every (re)connection, after `LISTEN`
//! took effect, the thread reads the newest seq, so a commit made while it
//! was not listening still wakes waiters.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::NoTls;

/// How often the thread checks, while idle, whether its backend is gone
/// (then it closes its connection and ends).
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the listener heard, shared with the waiters.
#[derive(Debug, Default)]
struct Heard {
    /// The highest seq notified (or read on connecting).
    highest: u64,
    /// Whether the thread holds a listening connection now.
    listening: bool,
}

/// The listener of one backend handle; the thread ends after it is
/// dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    heard: Mutex<Heard>,
    changed: Condvar,
}

impl Shared {
    fn heard(&self) -> MutexGuard<'_, Heard> {
        // Only numbers and a flag are kept: a panic cannot leave them torn.
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn raise(&self, seq: u64) {
        let mut heard = self.heard();
        if seq > heard.highest {
            heard.highest = seq;
            drop(heard);
            self.changed.notify_all();
        }
    }

    fn set_listening(&self, listening: bool) {
        self.heard().listening = listening;
        self.changed.notify_all();
    }
}

/// What the thread needs to (re)connect.
pub(crate) struct Target {
    pub(crate) config: postgres::Config,
    pub(crate) channel: String,
    pub(crate) last_seq_sql: String,
}

impl Listener {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the operating system cannot start a thread.
    pub(crate) fn start(target: Target) -> std::io::Result<Listener> {
        let shared = Arc::new(Shared::default());
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("revstore-postgres-listen".to_owned())
            .spawn(move || run(&weak, &target))?;
        Ok(Listener { shared })
    }

    /// Waits until a change after `after` was heard of, or `timeout`.
    pub(crate) fn wait(&self, after: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut heard = self.shared.heard();
        while heard.highest <= after {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            heard = self
                .shared
                .changed
                .wait_timeout(heard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` until the thread listens; whether it does.
    pub(crate) fn wait_listening(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut heard = self.shared.heard();
        while !heard.listening {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            heard = self
                .shared
                .changed
                .wait_timeout(heard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// The thread: connect, listen, relay; reconnect when the connection
/// drops; end once the backend is gone.
fn run(weak: &Weak<Shared>, target: &Target) {
    let mut backoff = Duration::from_millis(20);
    loop {
        if weak.strong_count() == 0 {
            return;
        }
        match listen(weak, target, &mut backoff) {
            // The backend is gone.
            Ok(()) => return,
            Err(Lost) => {
                if let Some(shared) = weak.upgrade() {
                    shared.set_listening(false);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The listening connection failed or dropped.
struct Lost;

impl From<postgres::Error> for Lost {
    fn from(_: postgres::Error) -> Self {
        Lost
    }
}

/// One connection's life: returns `Ok` when the backend is gone, `Err`
/// when the connection failed or dropped.
fn listen(weak: &Weak<Shared>, target: &Target, backoff: &mut Duration) -> Result<(), Lost> {
    let mut client = target.config.connect(NoTls)?;
    *backoff = Duration::from_millis(20);
    let channel = target.channel.replace('"', "\"\"");
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    // Commits made before LISTEN took effect sent their notifications to
    // no one: the newest seq covers them.
    let last: i64 = client
        .query_one(target.last_seq_sql.as_str(), &[])?
        .try_get(0)?;
    {
        let Some(shared) = weak.upgrade() else {
            return Ok(());
        };
        shared.raise(last.unsigned_abs());
        shared.set_listening(true);
    }
    loop {
        let next = client.notifications().timeout_iter(IDLE_CHECK).next()?;
        let Some(shared) = weak.upgrade() else {
            return Ok(());
        };
        if let Some(notification) = next {
            if notification.channel() == target.channel {
                if let Ok(seq) = notification.payload().parse::<u64>() {
                    shared.raise(seq);
                }
            }
        }
        drop(shared);
        // The iterator ends quietly when the server hangs up.
        if client.is_closed() {
            return Err(Lost);
        }
    }
}
