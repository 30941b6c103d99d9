//! The YAML backend of revstore: one human-editable `.yaml` file per
//! document.
//!
//! # Layout
//! ```text
//! <root>/<collection>/<name>.yaml       the document
//! <root>/<collection>/.<name>.lock      its lock file (empty, never removed)
//! <root>/<collection>/.<name>.yaml.tmp  a commit's staging file (debris after a crash)
//! <root>/.revstore/changes.lock            the change feed's lock file (never removed)
//! <root>/.revstore/changes/<seq>.log       the change feed's segments
//! ```
//! Reserved collections such as `_schema` are ordinary folders of that name.
//! Files whose names start with `.` are the backend's own and are ignored
//! by [`list`](revstore::StorageBackend::list); so are files that do not end
//! in `.yaml`, and sub-folders. The [`.revstore`](STATE_DIR) folder can
//! never be taken for a collection: collection names start with a letter,
//! a digit or `_`. Older versions also made `.<name>.turnstile` files next
//! to the lock files of reserved keys (such as `_schema/.models.turnstile`);
//! nothing uses them now, and they may be deleted.
//!
//! # File format
//! A YAML mapping with the revision first, then the body, then a seal
//! (here the document `models/orders`):
//! ```yaml
//! revision: 3
//! body:
//!   description: All orders
//!   joins:
//!   - customers
//! digest: fnv1a64-1c7e67eb0e65a6ae
//! ```
//! A delete leaves a tombstone that keeps the revision, so a re-create
//! continues the sequence:
//! ```yaml
//! revision: 4
//! deleted: true
//! digest: fnv1a64-4dadf5d6aa37a29b
//! ```
//! - `revision` is an integer from 0 to [`MAX_REVISION`] (`i64::MAX`, the
//!   SQLite backend's limit too); `body` is a mapping; `deleted` is a
//!   boolean (`deleted: false` is the same as leaving it out); `digest` is
//!   the seal. No other key is allowed, and the keys may come in any order
//!   when edited by hand.
//! - **The seal.** The last line of every file revstore writes is
//!   `digest: fnv1a64-` and 16 lowercase hex digits: the 64-bit FNV-1a hash
//!   of the document's `collection/name`, a newline, and every byte of the
//!   file before that line. It tells revstore's own files from files
//!   changed by anyone else, byte for byte (a comment or a changed key
//!   order counts). It detects edits; it is not a defence against forgery.
//! - **Hand edits are writes.** A file whose `digest` line is there but
//!   does not match (whatever its value: `digest: edited` will do) was
//!   changed by someone else, and reads as one revision *more* than it
//!   states: the edit is an implicit write. So a conditional write based
//!   on a read made before the edit fails with [`Error::Conflict`], and a
//!   patch applies on top of the edit; the next commit writes the stated
//!   revision + 2 with a fresh seal. Every handle and process agrees,
//!   because the revision is derived from the file alone. A write commits
//!   only if the file still holds exactly what the write was computed from
//!   (see `Commit::based_on`), so a patch or an update never overwrites a
//!   second hand edit made after the first was read. Limits: two hand edits
//!   with no commit in between are one implicit revision, so a
//!   compare-and-swap on the revision read after the first still succeeds
//!   after the second; and a file restored or copied by hand reads as its
//!   stated revision + 1, which may be older than revisions already given
//!   out — raise its `revision` by hand past the newest one used.
//! - **Files made by hand** state `revision: 0` and read as revision 1 (a
//!   create), seal or not. A file without a `digest` line that states any
//!   other revision is refused as [`Error::Corrupt`]: revstore never writes
//!   one, so it was cut short (see Durability), its seal line was
//!   deleted, or it predates seals; adding any `digest:` line adopts it as
//!   a hand edit. A mapping without the envelope (no `revision`, `body` or
//!   `deleted`: a bare body) is refused too, with a message saying how to
//!   wrap it. revstore never adopts or rewrites such files on its own.
//! - Bodies are JSON-model values: mappings with string keys (order kept),
//!   sequences, strings, booleans, null, integers (i64/u64) and finite
//!   floats. Keys that look like something else must be quoted (`"1": x`).
//!   YAML comments, flow style and anchors/aliases are fine when editing by
//!   hand (comments are not kept by the next write; merge keys `<<` are not
//!   expanded but read as a key named `<<`). Custom tags (`!name`), duplicate
//!   keys, non-string keys, `.nan`/`.inf` and integers outside i64/u64 are
//!   refused. Core-schema tags (`!!str 1`) resolve as YAML defines them.
//! - A file that is not of this shape is [`Error::Corrupt`] naming it, on
//!   read, list and commit; it is never overwritten or deleted, and other
//!   documents are unaffected (a `list` of its collection reports it).
//!   `list` reads a file whose seal matches and whose first lines are in the
//!   written shape (`revision: N` then `body:` or `deleted: true`) without
//!   parsing its YAML; any other file is decoded in full.
//! - Decoding cannot exhaust the stack or memory: nesting deeper than 128
//!   collections is refused, and aliases may expand a file to at most about
//!   four times its size ("billion laughs" is refused in milliseconds).
//!   Bodies nested deeper than [`MAX_DEPTH`] are refused on write
//!   ([`Error::InvalidBody`]) so every written file reads back. One cost
//!   remains: libyaml's scanner takes time quadratic in the nesting depth
//!   of flow collections (`[[[[…`), so a hostile hand-made file of tens of
//!   thousands of nested brackets takes seconds to be refused.
//!
//! # Concurrency
//! A commit is a read-modify-write under an exclusive `flock` on the
//! document's sidecar lock file (never the data file, which is replaced by
//! a rename), through an open file of its own — `flock` locks belong to
//! the open file — so commits from any thread, handle or process on the
//! same machine exclude each other. (A handle keeps up to 64 lock files
//! open between commits, each used by one commit at a time; one removed
//! or moved by hand is noticed once locked, as no longer the file its path
//! names, and opened again.)
//!
//! **Guards.** A commit with a [`Guard`](revstore::Guard) takes no lock on
//! the guard key: it checks the guard key's revision once it holds the
//! feed lock (see Writing), just before it appends its line and renames
//! its file. Every commit, a write of the guard key included, appends and
//! renames under that lock, held exclusively. So a write of the guard key
//! has either renamed its file already, and the check sees it (the commit
//! is refused, [`CommitOutcome::GuardChanged`], having written nothing),
//! or renames it only after this commit has released the feed lock, and
//! comes after this commit in time and on the feed. That is what holding
//! the guard key's lock shared for the whole commit would give, without
//! its system calls. And with no shared holds of the guard key's lock,
//! overlapping guarded writers cannot starve a write of it (a schema
//! change): it waits for their document locks not at all, and for the
//! feed lock only as any commit does, each holder taking it exclusively
//! and briefly.
//!
//! Reads take no lock: a rename replaces a file atomically, so a
//! reader sees the old or the new file, never a mix. Every commit also
//! briefly takes the feed lock exclusively (see below), so commits of
//! different documents overlap in their reads, checks, staging-file writes
//! and most of their staging-file fsyncs, but not in their appends, the
//! segment's fsync and their renames. Network filesystems whose `flock`
//! is not shared between machines are not supported.
//!
//! **Warm reads.** Each handle keeps the records it decoded or wrote
//! (bounded; see [`with_decode_cache`](YamlBackend::with_decode_cache)),
//! each with the exact bytes of the file it came from. A read still reads
//! the whole file, but skips parsing it when its bytes are identical to
//! those cached. Timestamps, sizes and inode numbers are never trusted, so
//! any change at all — a commit by another handle or process, a hand edit
//! in place that keeps the file's size and timestamp, a file replaced by
//! one stating the same revision — is seen by the next read.
//!
//! # Change feed
//! Every commit appends one line to the newest segment file under
//! `.revstore/changes/`:
//! ```text
//! {"seq":7,"collection":"models","name":"orders","revision":3,"kind":"updated"}
//! ```
//! A segment is named after the seq of its first line, zero-padded to 20
//! digits (`00000000000000000001.log`), and its lines hold consecutive
//! seqs; the log is append-only and not meant to be edited.
//!
//! **Writing.** A commit, already holding its document's lock and having
//! checked the document's revision, writes the staging file of the new
//! document (under full durability starting its fsync on a helper thread
//! of the handle, so that it runs beside the segment's below: two fsyncs
//! in flight at once share the device's flushes; a commit that finds the
//! helper busy with another commit of the handle makes the fsync itself,
//! before going on); then it takes
//! `.revstore/changes.lock` *exclusively*, checks its guard if it has one
//! (removing the staging file and releasing the lock, with nothing
//! appended, when the guard key has moved on), finds the last seq in the
//! newest segment, appends the line with the next seq and fsyncs the
//! segment, waits for the staging file's fsync, renames the staging file
//! over the document and releases the feed lock;
//! the document's folder is fsynced after that. Seqs therefore increase in commit order across
//! threads, handles and processes, and a document never becomes durable
//! before its line.
//!
//! **Group commit.** Under full durability the threads of one handle
//! share that exclusive hold and the segment's fsync: a commit ready for
//! the feed queues in its handle, and the first to find no one leading
//! leads. It takes the feed lock and the queued commits the segment has
//! room for, checks each one's guard, appends all their lines in one
//! write and one fsync, then renames their staging files in feed order,
//! each once its own fsync is done, and releases the lock. A write of a
//! guard key (a schema) is led alone, so a commit it guards is checked
//! either before its rename or after it, as when every commit held the
//! lock alone. If a staging fsync or a rename fails after the shared
//! fsync, that commit's line and every later one of the group are cut off
//! the segment; that commit fails, and the later ones, never renamed and
//! still holding their documents' locks, queue again for the next group.
//! If the append itself fails, its first commit gets the error and the
//! others queue again. Processes still take turns: the feed lock is a file
//! lock.
//!
//! To find the last seq, a handle that committed before keeps the newest
//! segment open and checks it rather than listing the folder and reading
//! the segment whole: the file must still be the one its path names and no
//! shorter, must
//! still hold the last line it wrote (or saw) at the same place, and no
//! segment named after the next seq may exist; lines appended since by
//! others are read and their last one decoded. Anything else (a segment
//! removed, cut, rewritten, or started by a handle with another retention)
//! sends it back to listing and reading.
//!
//! **Reading.** [`changes_since`](revstore::StorageBackend::changes_since)
//! and [`last_seq`](revstore::StorageBackend::last_seq) take the feed lock
//! *shared*. A line and its document's rename happen under one exclusive
//! hold, so a reader never sees a line whose document still holds the older
//! revision (it could otherwise move its cursor past the change before the
//! change is readable), and once a document read shows a commit, the next
//! feed read shows its line. Readers never create the `.revstore` folder
//! or write anything; they decode only the lines they return, checking each
//! holds the seq its position says.
//!
//! **Lock order.** The document, then the feed lock — never the other way
//! round; a commit holds no other lock (a guard key is read, not locked),
//! and feed readers take only the feed lock and never wait while holding
//! it. A commit waiting in its handle's group holds its document's lock
//! and takes no other; the group's leader takes only the feed lock and
//! waits for nothing but the group's staging fsyncs. So no two callers can
//! deadlock, in one process or several.
//!
//! **Crashes: the at-least-once exception.** A writer killed in the middle
//! of its append leaves a torn last line without its newline; readers skip
//! it and the next commit cuts it off under the exclusive lock (its
//! document was never renamed). A writer killed after its append but before
//! its rename (or whose rename fails and whose clean-up then fails too)
//! leaves a complete line for a revision that never committed: the
//! document stays at the revision before, and the next commit of that key
//! writes the same revision again under its own, later line (a process
//! killed while leading a group leaves such a line for each commit of the
//! group not yet renamed). A consumer
//! that installs a body only when its revision is newer than the one it
//! holds (as [`Change`] recommends) is unaffected, because reading the
//! document at the first line gives the older revision. A rename that
//! fails without a crash removes its line again, so the seq is reused.
//!
//! **Hand edits are not on the feed.** The implicit revision of a hand
//! edit (see the file format) has no line: the feed shows the edit only
//! through the next commit of that document, whose revision skips one
//! (`…, 3, 5`); a file made by hand first appears with revision 2, as an
//! update. A consumer that must see hand edits promptly re-lists; a
//! [`CachedStore`](revstore::CachedStore) keeps the pre-edit body until
//! that next commit.
//!
//! **Retention.** A segment holds `retain_changes / 4` changes (at least 1,
//! at most [`MAX_SEGMENT_CHANGES`]). The commit that starts a new segment
//! then deletes, oldest first, every segment whose changes are all older
//! than the newest [`retain_changes`](YamlOptions::retain_changes), so the
//! feed keeps at least that many and at most about half as many again (a
//! segment that cannot be deleted is left for the next compaction; the
//! commit is already done). A cursor older than the first seq of the
//! oldest segment, minus one, gets [`Error::Compacted`] with that value as
//! `retained_after`. Deleting under the exclusive lock never pulls a
//! segment from under a reader. Each handle compacts with its own setting,
//! so all handles on a store should agree on it.
//!
//! **Corruption.** A line that does not parse, holds an invalid key or a
//! seq out of place is [`Error::Corrupt`] naming the segment file and line
//! (`…/00000000000000000001.log line 2`); an older segment whose number of
//! lines does not reach the next segment's first seq (a deleted segment)
//! is [`Error::Corrupt`] naming it. A corrupt *last* line stops every
//! commit (the seq cannot be known) and is never overwritten. Deleting
//! the whole `.revstore` folder restarts the seqs at 1, which confuses any
//! consumer holding a cursor; do not.
//!
//! # Durability
//! What survives a power loss (or a kernel crash) at any instant, on a
//! file system that honours fsync. (A crash of the process alone loses
//! nothing acknowledged at either level: the kernel holds the data.)
//!
//! [`Durability::Full`] (default). The staging file is fsynced before its
//! rename and the folder after it; a newly created root or collection
//! folder is fsynced in its parent (once per handle and collection); the
//! feed segment is fsynced after each append (and its folder when a
//! segment is started), before the document's rename. After a power loss:
//! - every document holds a committed state — never a torn or partial
//!   file — no older than its last acknowledged commit; it may hold the
//!   commit that was in flight (renamed, not yet acknowledged);
//! - the feed holds the line of every acknowledged commit and of every
//!   revision a document holds; it may also hold the lines of the commits
//!   in flight (a group's, see Group commit) whose renames were lost (the
//!   at-least-once exception above) and a torn last line, which readers
//!   skip and the next commit cuts off;
//! - a staging file may be left (see below).
//!
//! [`Durability::Relaxed`]: no fsync at all, documents and feed alike.
//! After a power loss:
//! - a document may be back at any older committed state, or absent if it
//!   (or its whole collection folder) was created since the file system
//!   last flushed;
//! - on a file system that may persist a rename before the renamed file's
//!   data (ext4 without `auto_da_alloc`, for instance), a document written
//!   shortly before may be empty, zero-filled or cut short. Such a file
//!   lacks a matching seal and reads as [`Error::Corrupt`] naming it, never
//!   as a wrong body; the one exception is a file cut inside its seal line,
//!   whose content is complete and which reads as a hand edit of it (one
//!   revision more than written). Writes to a corrupt document are refused
//!   until a person repairs or removes the file; other documents work;
//! - the feed may lack its newest lines (their seqs are reused by later
//!   commits, so consumers should re-list after a power loss), lack lines
//!   of revisions the documents hold, read as empty until the next commit
//!   (when its lock file was lost), or hold zero-filled or torn bytes:
//!   at the end they are cut off like a torn line, anywhere else they are
//!   reported as [`Error::Corrupt`] by feed readers.
//!
//! Either way, a commit is visible to reads (and the feed) from its rename
//! on, a moment before it is acknowledged and, under full durability,
//! before its folder is fsynced: a power loss in that moment may take back
//! a revision someone has already read.
//!
//! The crate's `power_loss` tests check these promises on a model of a
//! disk that keeps, of everything not yet fsynced, any prefix of each
//! folder's entry changes and any of four fates for each file's data
//! (lost, kept, cut short, zero-filled), at every point of recorded
//! create, patch, delete and re-create sequences.
//!
//! # Failures and crash debris
//! A failed step of a commit — creating, writing or fsyncing the staging
//! file, taking a lock, appending or fsyncing the feed, the rename — is
//! reported as [`Error::Io`] naming the step and the file, is never
//! retried into a false success, and leaves the document and the feed as
//! they were (the staging file is removed and the feed line cut off). The
//! one step after the rename, the folder fsync, leaves the commit visible
//! and on the feed but possibly not durable, and is reported too. The
//! handle stays usable after any of them.
//!
//! A writer killed mid-commit leaves no lock behind (`flock` locks die with
//! their process), at most its document's staging file, and perhaps a torn
//! or extra feed line (see the change feed). A new handle reads and writes
//! at once: readers ignore staging files, and the next commit of that
//! document, holding its exclusive lock, knows any staging file to be
//! debris and replaces it. So debris never exceeds one file per document.
//!
#![warn(missing_docs)]

mod background_sync;
mod changelog;
mod codec;
mod digest;
mod fs;
#[cfg(feature = "testkit")]
pub mod fuzzing;
mod group_commit;
mod log_line;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use revstore::{
    backend::current_of, Change, ChangeKind, Commit, CommitOutcome, Current, DecodeCache,
    Durability, Entry, Error, Key, NameKind, Record, Result, StorageBackend,
};

use background_sync::BackgroundSync;
use changelog::ChangeLog;
pub use changelog::{MAX_SEGMENT_CHANGES, STATE_DIR};
pub use codec::{MAX_DEPTH, MAX_REVISION};
use fs::Fs;
#[cfg(feature = "testkit")]
pub use fs::{DirEntry, FileId, FileSystem, LockMode, PathStat, RealFs};
use group_commit::{FeedGroup, Member, Queued, Settled, Turn};

/// Options of a [`YamlBackend`]. Build one with struct-update syntax,
/// `YamlOptions { durability, ..YamlOptions::default() }`, so options added
/// later keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlOptions {
    /// What an acknowledged write survives, documents and change feed
    /// alike; see the crate docs for exactly what each level does.
    pub durability: Durability,
    /// How many of the newest changes the change feed keeps at least
    /// (default [`revstore::DEFAULT_RETAINED_CHANGES`]); it may keep up to
    /// about half as many again. Must be at least 1. Applied by this handle
    /// when it compacts the feed, so every handle on a store should use the
    /// same value.
    pub retain_changes: u64,
}

impl Default for YamlOptions {
    /// Full durability, the default retention.
    fn default() -> Self {
        YamlOptions {
            durability: Durability::default(),
            retain_changes: revstore::DEFAULT_RETAINED_CHANGES,
        }
    }
}

/// A store of one YAML file per document under a root folder.
///
/// # Guarantees
/// Keeps the [`StorageBackend`] contract across threads, handles (several
/// `YamlBackend`s on one root) and OS processes on one machine: commits are
/// atomic and conditional under a per-document file lock, reads never write
/// and never see a half-written file. Every commit appears in the change
/// feed once, with a seq recorded under the feed lock together with the
/// document's rename (the one exception, a crash between the two, is
/// described in the crate docs). See the crate docs for the file format,
/// the layout, the feed and what each [`Durability`] level guarantees.
#[derive(Debug)]
pub struct YamlBackend {
    fs: Fs,
    root: PathBuf,
    durability: Durability,
    /// Collections whose folder this handle has made sure of (and, under
    /// full durability, of its entry in the root being on disk): so commits
    /// neither try to create the folder again nor fsync the root more than
    /// once per collection. Forgotten when a folder turns out to have been
    /// removed.
    known_collections: Mutex<HashSet<String>>,
    /// The change feed.
    changes: ChangeLog,
    /// Records decoded from files this handle read or wrote, each valid
    /// only for the exact bytes it came from: a read still reads the whole
    /// file, and skips parsing it when the bytes are the ones cached.
    decodes: DecodeCache,
    /// Fsyncs a commit's staging file while the commit fsyncs the feed.
    background_sync: BackgroundSync,
    /// Durable commits of this handle's threads waiting for the feed; see
    /// `group_commit`.
    group: FeedGroup,
}

impl YamlBackend {
    /// Opens (creating the folder if missing) a store at `root` with full
    /// durability.
    ///
    /// # Errors
    /// As [`open_with`](YamlBackend::open_with).
    pub fn open(root: impl AsRef<Path>) -> Result<YamlBackend> {
        YamlBackend::open_with(root, YamlOptions::default())
    }

    /// Opens (creating the folder and missing parents if needed) a store at
    /// `root`. Under [`Durability::Full`] each created folder is fsynced in
    /// its parent.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `root` is empty or exists but is not a
    /// folder, or `retain_changes` is 0; [`Error::Io`] when it cannot be
    /// created.
    pub fn open_with(root: impl AsRef<Path>, options: YamlOptions) -> Result<YamlBackend> {
        YamlBackend::open_on(root.as_ref(), options, Arc::new(fs::RealFs))
    }

    /// Like [`open_with`](YamlBackend::open_with), but every filesystem
    /// call goes through `fs` (feature `testkit`): the seam through which
    /// tests inject faults and record operations for simulated power
    /// losses. Production code has no reason to use it.
    ///
    /// # Errors
    /// As [`open_with`](YamlBackend::open_with).
    #[cfg(feature = "testkit")]
    pub fn open_with_fs(
        root: impl AsRef<Path>,
        options: YamlOptions,
        fs: Arc<dyn FileSystem>,
    ) -> Result<YamlBackend> {
        YamlBackend::open_on(root.as_ref(), options, fs)
    }

    fn open_on(
        root: &Path,
        options: YamlOptions,
        filesystem: Arc<dyn fs::FileSystem>,
    ) -> Result<YamlBackend> {
        if root.as_os_str().is_empty() {
            return Err(Error::InvalidConfig {
                input: String::new(),
                reason: "the root folder path is empty".to_owned(),
            });
        }
        if options.retain_changes == 0 {
            return Err(Error::InvalidConfig {
                input: "0".to_owned(),
                reason: "retention is a positive number of changes".to_owned(),
            });
        }
        let fs = Fs::new(filesystem);
        let backend = YamlBackend {
            fs: fs.clone(),
            root: root.to_owned(),
            durability: options.durability,
            known_collections: Mutex::new(HashSet::new()),
            changes: ChangeLog::new(
                fs,
                root,
                options.retain_changes,
                options.durability == Durability::Full,
            ),
            decodes: DecodeCache::default(),
            background_sync: BackgroundSync::default(),
            group: FeedGroup::default(),
        };
        backend.create_dir_all(root)?;
        Ok(backend)
    }

    /// Sets how many bytes of decoded records this handle keeps for warm
    /// reads (about twice the size of the files they came from; default
    /// [`revstore::DEFAULT_DECODE_CACHE_BYTES`]); 0 keeps none, so every
    /// read parses its file. Drops what was cached.
    pub fn with_decode_cache(mut self, max_bytes: usize) -> YamlBackend {
        self.decodes = DecodeCache::new(max_bytes);
        self
    }

    /// The cache of decoded records (feature `testkit`), for tests that
    /// check it stays bounded.
    #[cfg(feature = "testkit")]
    pub fn decode_cache(&self) -> &DecodeCache {
        &self.decodes
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The durability this handle writes with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How many of the newest changes this handle's compactions keep.
    pub fn retain_changes(&self) -> u64 {
        self.changes.retain()
    }

    /// The file holding a document.
    pub fn document_path(&self, key: &Key) -> PathBuf {
        self.file_in_collection(key, "", ".yaml")
    }

    /// The lock file of a document: hidden beside it.
    fn lock_path(&self, key: &Key) -> PathBuf {
        self.file_in_collection(key, ".", ".lock")
    }

    /// `<root>/<collection>/<prefix><name><suffix>`, built in one
    /// allocation: this is on the path of every read and commit.
    fn file_in_collection(&self, key: &Key, prefix: &str, suffix: &str) -> PathBuf {
        let root = self.root.as_os_str();
        let mut path = std::ffi::OsString::with_capacity(
            root.len()
                + key.collection().len()
                + key.name().len()
                + prefix.len()
                + suffix.len()
                + 2,
        );
        path.push(root);
        let mut path = PathBuf::from(path);
        path.push(key.collection());
        let text = path.as_mut_os_string();
        text.push(std::path::MAIN_SEPARATOR_STR);
        text.push(prefix);
        text.push(key.name());
        text.push(suffix);
        path
    }

    /// Locks a key's lock file exclusively, the only way keys are locked
    /// (guard keys are not locked by guarded writers: see the module docs).
    ///
    /// The key's folder must have been made sure of; should it have been
    /// removed since (by hand), it is made again.
    fn lock_key(&self, key: &Key) -> Result<fs::FileLock> {
        let path = self.lock_path(key);
        match self.fs.lock(&path, fs::LockMode::Exclusive) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.known_collections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(key.collection());
                self.ensure_collection(key.collection())?;
                self.fs.lock(&path, fs::LockMode::Exclusive)
            }
            locked => locked,
        }
    }

    fn syncs(&self) -> bool {
        self.durability == Durability::Full
    }

    /// Creates `dir` and its missing ancestors, each fsynced in its parent.
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        match self.fs.is_dir(dir)? {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(Error::InvalidConfig {
                    input: dir.display().to_string(),
                    reason: "the store root exists but is not a folder".to_owned(),
                })
            }
            None => {}
        }
        let parent = dir.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() {
            self.create_dir_all(parent)?;
        }
        self.fs.create_dir(dir)?;
        if self.syncs() {
            self.fs.sync_dir(parent)?;
        }
        Ok(())
    }

    /// Makes sure a collection's folder exists and, under full durability,
    /// that its entry in the root is on disk before the first commit this
    /// handle acknowledges in it — even if another handle created it. Once
    /// per handle and collection: later calls only look at what this
    /// handle remembers.
    fn ensure_collection(&self, collection: &str) -> Result<()> {
        let mut known = self
            .known_collections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.contains(collection) {
            return Ok(());
        }
        self.fs.create_dir(&self.root.join(collection))?;
        if self.syncs() {
            self.fs.sync_dir(&self.root)?;
        }
        known.insert(collection.to_owned());
        Ok(())
    }

    /// Reads and decodes a document, or takes the record decoded before
    /// from the cache when the file holds exactly the bytes it came from.
    fn read_record(&self, key: &Key) -> Result<Option<Record>> {
        let path = self.document_path(key);
        fs::with_read_buffer(|buf| {
            let Some(len) = self.fs.read_into(&path, buf)? else {
                self.decodes.forget(key);
                return Ok(None);
            };
            let bytes = &buf[..len];
            if let Some(record) = self.decodes.lookup(key, bytes) {
                return Ok(Some(record));
            }
            let record = codec::decode(bytes, &label(key.collection(), key.name()), &path)?;
            self.decodes.insert(key, bytes, record.clone());
            Ok(Some(record))
        })
    }

    /// The live revision of one listed file, `None` for a tombstone.
    fn listed_revision(&self, collection: &str, name: &str, path: &Path) -> Result<Option<u64>> {
        fs::with_read_buffer(|buf| {
            let Some(len) = self.fs.read_into(path, buf)? else {
                // Removed by hand since the folder was listed.
                return Ok(None);
            };
            let bytes = &buf[..len];
            let label = label(collection, name);
            if let Some(header) = codec::scan(bytes, &label) {
                return Ok(header.live.then_some(header.revision));
            }
            let record = codec::decode(bytes, &label, path)?;
            Ok(record.body.is_some().then_some(record.revision))
        })
    }
}

/// What a document's seal covers besides its bytes: `collection/name`, so
/// a file copied from another document is recognised as a hand edit.
impl YamlBackend {
    /// The feed and the rename of a commit without fsyncs: under the feed
    /// lock, its guard is checked, its line appended and its file renamed.
    fn commit_relaxed(
        &self,
        commit: &Commit<'_>,
        path: &Path,
        staged: fs::StagedFile<'_>,
    ) -> Result<CommitOutcome> {
        // The feed lock comes last (after the document's), and is held
        // from the append until the rename is done, so no feed reader sees
        // the change before a document read can.
        let mut change = self.changes.begin()?;
        // Every commit, a write of the guard key included, renames its file
        // under the feed lock: a write of the guard key that the check
        // misses renames only after this commit's rename, and so comes
        // after it in time and on the feed. As strong as holding the guard
        // key's lock, without it. (A guard on the committed key itself is
        // checked here too; nobody else can change it meanwhile.)
        if let Some(guard) = commit.guard {
            let actual = current_of(self.read_record(guard.key)?.as_ref());
            if actual.last_revision() != guard.revision {
                // Nothing appended: the feed lock is released as it was,
                // and dropping `staged` removes the staging file.
                change.abandon();
                return Ok(CommitOutcome::GuardChanged { actual });
            }
        }
        change.append(commit.key, commit.new_revision(), commit.kind)?;
        if let Err(e) = staged.rename_over(path) {
            change.undo();
            return Err(e);
        }
        change.finish();
        Ok(CommitOutcome::Committed)
    }

    /// The feed and the rename of a durable commit, grouped with the
    /// handle's other durable commits ready at the same moment (see
    /// `group_commit`): its staging fsync starts at once, on the handle's
    /// helper thread when it is free, and runs while the group's leader
    /// appends the lines and fsyncs the segment; the file is renamed once
    /// both are durable. `actual` is the key's state read under its lock.
    fn commit_durably(
        &self,
        commit: &Commit<'_>,
        path: &Path,
        staged: fs::StagedFile<'_>,
        actual: Current,
    ) -> Result<CommitOutcome> {
        // Two fsyncs in flight at once share the device's flushes (and on a
        // journaling file system its journal commits), where one after the
        // other they cost about two. When the helper is busy with another
        // commit of this handle, the fsync is made here, before the feed,
        // as it would be without the helper.
        let sync = match staged.start_sync(&self.background_sync) {
            Some(started) => OwnSync::Pending(started),
            None => {
                // Nothing appended yet: dropping `staged` removes it.
                staged.sync()?;
                OwnSync::Done(Ok(()))
            }
        };
        let mut own = OwnCommit {
            sync,
            staged: Some(staged),
        };
        let staged_path = match own.staged.as_ref() {
            Some(staged) => staged.path().to_owned(),
            None => return Err(already_renamed(path)),
        };
        let member = || Member {
            key: commit.key.clone(),
            revision: commit.new_revision(),
            kind: commit.kind,
            guard: commit.guard.map(|g| (g.key.clone(), g.revision)),
            staged: staged_path.clone(),
            target: path.to_owned(),
        };
        // A commit cut from its group by an earlier member's failure was
        // never renamed and still holds its document's lock and its staged,
        // fsynced file: it queues again, for the next group to check its
        // guard and append its line. Bounded, in case every group fails.
        for _ in 0..MAX_REQUEUES {
            let (ticket, mut leads) = self.group.join(member());
            if !leads {
                // A member that does not lead ends its staging fsync itself,
                // while it waits, and tells the leader.
                let synced = own.finish_sync();
                self.group.synced(ticket, synced);
            }
            let settled = loop {
                if leads {
                    if let Some(settled) = self.lead(ticket, &mut own)? {
                        break settled;
                    }
                }
                match self.group.wait_turn(ticket) {
                    Turn::Settled(settled) => break settled,
                    Turn::Lead => leads = true,
                }
            };
            return match settled {
                Settled::Committed => {
                    if let Some(staged) = own.staged.take() {
                        // Renamed by the leader.
                        staged.renamed_elsewhere();
                    }
                    Ok(CommitOutcome::Committed)
                }
                Settled::Refused(outcome) => Ok(outcome),
                Settled::Retry => continue,
                Settled::SyncFailed => match own.sync {
                    OwnSync::Done(Err(e)) => Err(e),
                    _ => Err(Error::Backend {
                        backend: "yaml",
                        context: format!("committing {}: the staging fsync failed", commit.key),
                        source: "no error was kept".into(),
                    }),
                },
                Settled::Failed(e) => Err(e),
            };
        }
        // Nothing of it was written; the engine starts again from a fresh
        // read, which finds the key as it was.
        Ok(CommitOutcome::Conflict { actual })
    }

    /// Leads groups, under the feed lock each, until the group holding
    /// `own_ticket` is settled, and returns its outcome; `None` when its
    /// outcome was handed over in a group led before (it then waits for
    /// it). An error before the own commit was taken into a group ends the
    /// turn with that error for it alone.
    fn lead(&self, own_ticket: u64, own: &mut OwnCommit<'_>) -> Result<Option<Settled>> {
        // A file system that panics (a test's, say) must not leave the
        // members of the group waiting for ever.
        let led = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.lead_groups(own_ticket, own)
        }));
        led.unwrap_or_else(|panic| {
            self.group.withdraw(own_ticket);
            self.group.fail_taken(own_ticket, || Error::Backend {
                backend: "yaml",
                context: "a group commit".to_owned(),
                source: "the thread leading it panicked".into(),
            });
            std::panic::resume_unwind(panic)
        })
    }

    /// [`lead`](Self::lead), without its care for panics.
    fn lead_groups(&self, own_ticket: u64, own: &mut OwnCommit<'_>) -> Result<Option<Settled>> {
        loop {
            if let Some(settled) = self.group.outcome(own_ticket) {
                self.group.resign();
                return Ok(Some(settled));
            }
            let change = match self.changes.begin() {
                Ok(change) => change,
                Err(e) => {
                    let withdrawn = self.group.withdraw(own_ticket);
                    self.group.resign();
                    if withdrawn {
                        own.finish_sync();
                        return Err(e);
                    }
                    return Ok(None);
                }
            };
            let taken = self.group.take(change.room());
            if taken.is_empty() {
                // Not expected: the own commit is queued until settled.
                // Hand over rather than spin.
                drop(change);
                self.group.resign();
                return Ok(None);
            }
            let settled = self.commit_group(change, &taken, own_ticket, own);
            self.group.settle(settled);
        }
    }

    /// Commits a group under the feed lock held by `change`: checks each
    /// member's guard, appends the lines of those that hold in one write and
    /// fsync, then renames their files in feed order, each once its staging
    /// fsync is done. A failure after the append cuts the failed member's
    /// line and every later one off the segment; the later members retry.
    fn commit_group(
        &self,
        mut change: changelog::PendingChange<'_>,
        taken: &[Queued],
        own_ticket: u64,
        own: &mut OwnCommit<'_>,
    ) -> Vec<(u64, Settled)> {
        let mut settled = Vec::with_capacity(taken.len());
        let mut writing = Vec::with_capacity(taken.len());
        for queued in taken {
            if let Some((guard, revision)) = &queued.member.guard {
                match self.read_record(guard) {
                    Ok(record) => {
                        let actual = current_of(record.as_ref());
                        if actual.last_revision() != *revision {
                            let refused = CommitOutcome::GuardChanged { actual };
                            settled.push((queued.ticket, Settled::Refused(refused)));
                            continue;
                        }
                    }
                    Err(e) => {
                        settled.push((queued.ticket, Settled::Failed(e)));
                        continue;
                    }
                }
            }
            writing.push(queued);
        }
        if writing.is_empty() {
            change.abandon();
            return settled;
        }
        let changes: Vec<(&Key, u64, ChangeKind)> = writing
            .iter()
            .map(|q| (&q.member.key, q.member.revision, q.member.kind))
            .collect();
        if let Err(e) = change.append_all(&changes) {
            // The segment was cut back: nothing of the group is written.
            // The first member gets the error; the others queue again, as
            // after any failure of a member before them.
            let mut first = Some(e);
            for queued in &writing {
                let outcome = match first.take() {
                    Some(e) => Settled::Failed(e),
                    None => Settled::Retry,
                };
                settled.push((queued.ticket, outcome));
            }
            change.undo();
            return settled;
        }
        let mut failed = false;
        for (index, queued) in writing.iter().enumerate() {
            if failed {
                settled.push((queued.ticket, Settled::Retry));
                continue;
            }
            let renamed = if queued.ticket == own_ticket {
                own.rename(&queued.member.target)
            } else if self.group.wait_synced(queued.ticket) {
                match self
                    .fs
                    .rename_staged(&queued.member.staged, &queued.member.target)
                {
                    Ok(()) => Settled::Committed,
                    Err(e) => Settled::Failed(e),
                }
            } else {
                Settled::SyncFailed
            };
            if !matches!(renamed, Settled::Committed) {
                // This member's line and every later one go; the later
                // members were not renamed and retry.
                change.keep_first(index);
                failed = true;
            }
            settled.push((queued.ticket, renamed));
        }
        change.finish();
        settled
    }
}

/// How many times a commit cut from its group by other members' failures
/// queues again before it is handed back to the engine as a conflict.
const MAX_REQUEUES: usize = 8;

/// The error of a commit whose staged file is gone before its rename: not
/// expected (a file is renamed once, by one thread).
fn already_renamed(target: &Path) -> Error {
    Error::Backend {
        backend: "yaml",
        context: format!("renaming over {}", target.display()),
        source: "the staged file was already renamed".into(),
    }
}

/// The commit of the calling thread in a group: its staging fsync and its
/// staged file (until it is renamed). In this order: a commit that gives
/// up waits for its fsync before its staged file is removed.
struct OwnCommit<'a> {
    sync: OwnSync<'a>,
    staged: Option<fs::StagedFile<'a>>,
}

enum OwnSync<'a> {
    Pending(background_sync::PendingSync<'a>),
    Done(Result<()>),
}

impl OwnCommit<'_> {
    /// Waits for the staging fsync; whether it succeeded (its error is
    /// kept).
    fn finish_sync(&mut self) -> bool {
        let sync = std::mem::replace(&mut self.sync, OwnSync::Done(Ok(())));
        let done = match (sync, self.staged.as_ref()) {
            (OwnSync::Pending(started), Some(staged)) => staged.finish_sync(started),
            (OwnSync::Pending(started), None) => started
                .wait()
                .map_err(|e| Error::io("fsync", Path::new(""), e)),
            (OwnSync::Done(done), _) => done,
        };
        let ok = done.is_ok();
        self.sync = OwnSync::Done(done);
        ok
    }

    /// Renames the staged file over `target` once its fsync is done.
    fn rename(&mut self, target: &Path) -> Settled {
        if !self.finish_sync() {
            return Settled::SyncFailed;
        }
        match self.staged.take() {
            Some(staged) => match staged.rename_over(target) {
                Ok(()) => Settled::Committed,
                Err(e) => Settled::Failed(e),
            },
            None => Settled::Failed(already_renamed(target)),
        }
    }
}

fn label(collection: &str, name: &str) -> String {
    format!("{collection}/{name}")
}

impl StorageBackend for YamlBackend {
    fn kind(&self) -> &'static str {
        "yaml"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        self.read_record(key)
    }

    fn read_cached(&self, key: &Key) -> Option<Record> {
        self.decodes.peek(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let key = commit.key;
        let path = self.document_path(key);
        let new_revision = commit.new_revision();
        // Encoded before any lock is taken; a revision past the maximum is
        // reported below, once the key is known to be at `expected`.
        let bytes = if new_revision <= MAX_REVISION {
            let label = label(key.collection(), key.name());
            Some(
                codec::encode_reusing(&label, new_revision, commit.body.map(|body| &**body))
                    .map_err(|reason| Error::InvalidBody {
                        key: key.clone(),
                        reason,
                    })?,
            )
        } else {
            None
        };
        self.ensure_collection(key.collection())?;
        // The guard key is not locked: its revision is checked under the
        // feed lock, below.
        let _lock = self.lock_key(key)?;
        let stored = self.read_record(key)?;
        let actual = current_of(stored.as_ref());
        // The revision alone is not enough: two hand edits in a row share
        // one implicit revision, and the write must not be computed from
        // the first and overwrite the second.
        let unchanged = match (stored.as_ref(), commit.based_on) {
            // Shared bodies compare by pointer first.
            (Some(stored), Some(based_on)) => stored == based_on,
            _ => true,
        };
        if actual.last_revision() != commit.expected || !unchanged {
            return Ok(CommitOutcome::Conflict { actual });
        }
        let Some(bytes) = bytes else {
            return Err(Error::Corrupt {
                location: path.display().to_string(),
                reason: format!(
                    "the document is at the largest revision, {MAX_REVISION}, \
                     and cannot be written again"
                ),
            });
        };
        // Replaces the staging file a crashed writer may have left (we hold
        // the document's exclusive lock, so no live writer owns it).
        let staged = self.fs.stage(&path, &bytes, self.syncs())?;
        let committed = if self.syncs() {
            self.commit_durably(commit, &path, staged, actual)?
        } else {
            self.commit_relaxed(commit, &path, staged)?
        };
        if committed != CommitOutcome::Committed {
            return Ok(committed);
        }
        // The file now holds `bytes`, which decode to this record (encoding
        // round-trips every body exactly), so the next read of the key by
        // this handle, such as the next patch's, skips parsing. The body
        // is the engine's, shared, not copied.
        self.decodes.insert(
            key,
            &bytes,
            Record {
                revision: new_revision,
                body: commit.body.cloned(),
            },
        );
        // Outside the feed lock: the line is already durable, so a power
        // loss before this fsync leaves at most the documented extra line.
        if self.syncs() {
            self.fs.sync_dir(&self.root.join(key.collection()))?;
        }
        Ok(CommitOutcome::Committed)
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        let Some(files) = self.fs.list_dir(&self.root.join(collection))? else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for file in files {
            if file.is_dir {
                continue;
            }
            // Non-UTF-8 names cannot be document names; like other foreign
            // files they are not the backend's business.
            let Some(file_name) = file.file_name.to_str() else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let Some(name) = file_name.strip_suffix(".yaml") else {
                continue;
            };
            if let Err(e) = revstore::validate_name(NameKind::Name, name) {
                return Err(Error::Corrupt {
                    location: file.path.display().to_string(),
                    reason: format!("the file name is not a valid document name: {e}"),
                });
            }
            if let Some(revision) = self.listed_revision(collection, name, &file.path)? {
                entries.push(Entry {
                    name: name.to_owned(),
                    revision,
                });
            }
        }
        entries.sort();
        Ok(entries)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.changes.changes_since(after, limit)
    }

    fn last_seq(&self) -> Result<u64> {
        self.changes.last_seq()
    }
}
