//! The YAML backend of revstore: one human-editable `.yaml` file per
//! document.
//!
//! # Layout
//! ```text
//! <root>/<collection>/<name>.yaml     the document
//! <root>/<collection>/.<name>.lock    its lock file (empty, never removed)
//! <root>/<collection>/.<name>.yaml.*.tmp  debris of a write cut short by a crash
//! ```
//! Reserved collections such as `_schema` are ordinary folders of that name.
//! Files whose names start with `.` are the backend's own and are ignored
//! by [`list`](revstore::StorageBackend::list); so are files that do not end
//! in `.yaml`, and sub-folders.
//!
//! # File format
//! A YAML mapping with the revision first, then the body:
//! ```yaml
//! revision: 3
//! body:
//!   description: All orders
//!   joins: [customers]
//! ```
//! A delete leaves a tombstone that keeps the revision, so a re-create
//! continues the sequence:
//! ```yaml
//! revision: 4
//! deleted: true
//! ```
//! - `revision` is an integer >= 1; `body` is a mapping; `deleted` is a
//!   boolean (`deleted: false` is the same as leaving it out). No other key
//!   is allowed, and the keys may come in any order when edited by hand —
//!   though listing is fastest with `revision: N` as the first line, as
//!   written.
//! - Bodies are JSON-model values: mappings with string keys (order kept),
//!   sequences, strings, booleans, null, integers (i64/u64) and finite
//!   floats. Keys that look like something else must be quoted (`"1": x`).
//!   YAML comments, flow style and anchors/aliases are fine when editing by
//!   hand (comments are not kept by the next write; merge keys `<<` are not
//!   expanded but read as a key named `<<`). Custom tags (`!name`), duplicate
//!   keys, non-string keys, `.nan`/`.inf` and integers outside i64/u64 are
//!   refused. Core-schema tags (`!!str 1`) resolve as YAML defines them.
//! - A file that is not of this shape is [`Error::Corrupt`] naming it, on
//!   read and commit; it is never overwritten or deleted. `list` reads only
//!   the first line(s) of a file in the written shape (`revision: N` then
//!   `body:` or `deleted: true`), so it reports a file whose header is
//!   broken, but lists one that is broken only further down; reading that
//!   document reports it.
//! - Decoding cannot exhaust the stack or memory: nesting deeper than 128
//!   collections is refused, and aliases may expand a file to at most about
//!   four times its size. Bodies nested deeper than [`MAX_DEPTH`] are refused
//!   on write ([`Error::InvalidBody`]) so every written file reads back.
//!   One cost remains: libyaml's scanner takes time quadratic in the nesting
//!   depth of flow collections (`[[[[…`), so a hostile hand-made file of
//!   tens of thousands of nested brackets takes seconds to be refused.
//!
//! # Concurrency
//! A commit is a read-modify-write under an exclusive `flock` on the
//! document's sidecar lock file (never the data file, which is replaced by
//! a rename), opened afresh for each commit; so commits from any thread,
//! handle or process on the same machine exclude each other. A commit with
//! a [`Guard`](revstore::Guard) first takes a shared lock on the guard key's
//! lock file, so it excludes writes of the guard key but not other guarded
//! writers. Reads take no lock: a rename replaces a file atomically, so a
//! reader sees the old or the new file, never a mix. Network filesystems
//! whose `flock` is not shared between machines are not supported.
//!
//! # Durability
//! - [`Durability::Full`] (default): the temp file is fsynced before the
//!   rename, the folder after it, and a newly created root or collection
//!   folder is fsynced in its parent (once per handle and collection). An
//!   acknowledged commit survives a power loss on a filesystem that honours
//!   fsync.
//! - [`Durability::Relaxed`]: no fsync at all. An acknowledged commit
//!   survives a crash of the process (the kernel holds it). After a power
//!   loss a document may be back at an older committed state; on a
//!   filesystem that may persist a rename before the renamed file's data
//!   (ext4 without `auto_da_alloc`, for instance) it may also be empty or
//!   zero-filled, which reads as [`Error::Corrupt`] rather than as a wrong
//!   body.
//!
//! In both modes a failed write, fsync or rename is reported as
//! [`Error::Io`] naming the step and the file, never retried into a false
//! success; a failure after the rename (the folder fsync) leaves the new
//! content visible but possibly not durable.
#![warn(missing_docs)]

mod changelog;
mod codec;
mod fs;
mod log_line;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use revstore::{
    backend::current_of, Change, Commit, CommitOutcome, Durability, Entry, Error, Key, NameKind,
    Record, Result, StorageBackend,
};

use changelog::ChangeLog;
pub use changelog::{MAX_SEGMENT_CHANGES, STATE_DIR};
pub use codec::MAX_DEPTH;

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
/// and never see a half-written file. See the crate docs for the file
/// format, the layout and what each [`Durability`] level guarantees.
#[derive(Debug)]
pub struct YamlBackend {
    root: PathBuf,
    durability: Durability,
    /// Collections whose folder entry this handle has made durable, so the
    /// root is fsynced once per collection rather than on every commit.
    synced_collections: Mutex<HashSet<String>>,
    /// The change feed.
    changes: ChangeLog,
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
        let root = root.as_ref();
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
        let backend = YamlBackend {
            root: root.to_owned(),
            durability: options.durability,
            synced_collections: Mutex::new(HashSet::new()),
            changes: ChangeLog::new(
                root,
                options.retain_changes,
                options.durability == Durability::Full,
            ),
        };
        backend.create_dir_all(root)?;
        Ok(backend)
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The durability this handle writes with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The file holding a document.
    pub fn document_path(&self, key: &Key) -> PathBuf {
        self.root
            .join(key.collection())
            .join(format!("{}.yaml", key.name()))
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root
            .join(key.collection())
            .join(format!(".{}.lock", key.name()))
    }

    fn syncs(&self) -> bool {
        self.durability == Durability::Full
    }

    /// Creates `dir` and its missing ancestors, each fsynced in its parent.
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        match fs::is_dir(dir)? {
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
        fs::create_dir(dir)?;
        if self.syncs() {
            fs::sync_dir(parent)?;
        }
        Ok(())
    }

    /// Makes sure a collection's folder exists and, under full durability,
    /// that its entry in the root is on disk before the first commit this
    /// handle acknowledges in it — even if another handle created it.
    fn ensure_collection(&self, collection: &str) -> Result<()> {
        let created = fs::create_dir(&self.root.join(collection))?;
        if !self.syncs() {
            return Ok(());
        }
        let mut synced = self
            .synced_collections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if created || !synced.contains(collection) {
            fs::sync_dir(&self.root)?;
            synced.insert(collection.to_owned());
        }
        Ok(())
    }

    fn read_record(&self, key: &Key) -> Result<Option<Record>> {
        let path = self.document_path(key);
        match fs::read(&path)? {
            Some(bytes) => codec::decode(&bytes, &path).map(Some),
            None => Ok(None),
        }
    }

    /// The live revision of one listed file, `None` for a tombstone.
    fn listed_revision(&self, path: &Path) -> Result<Option<u64>> {
        let Some((head, whole)) = fs::read_head(path, codec::HEADER_BYTES)? else {
            // Removed by hand since the folder was listed.
            return Ok(None);
        };
        if let Some(header) = codec::read_header(&head, whole) {
            return Ok(header.live.then_some(header.revision));
        }
        let record = if whole {
            codec::decode(&head, path)?
        } else {
            match fs::read(path)? {
                Some(bytes) => codec::decode(&bytes, path)?,
                None => return Ok(None),
            }
        };
        Ok(record.body.is_some().then_some(record.revision))
    }
}

impl StorageBackend for YamlBackend {
    fn kind(&self) -> &'static str {
        "yaml"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        self.read_record(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let key = commit.key;
        let bytes = codec::encode(commit.new_revision(), commit.body).map_err(|reason| {
            Error::InvalidBody {
                key: key.clone(),
                reason,
            }
        })?;
        self.ensure_collection(key.collection())?;
        // Guard first, then the document: guard keys are reserved and
        // committed keys never are, so every process locks in one order.
        // (A guard on the committed key itself is covered by the exclusive
        // lock; locking its file twice would deadlock.)
        let _guard_lock = match commit.guard {
            Some(guard) if guard.key != key => {
                fs::create_dir(&self.root.join(guard.key.collection()))?;
                Some(fs::lock(&self.lock_path(guard.key), fs::LockMode::Shared)?)
            }
            _ => None,
        };
        let _lock = fs::lock(&self.lock_path(key), fs::LockMode::Exclusive)?;
        if let Some(guard) = commit.guard {
            let actual = current_of(self.read_record(guard.key)?.as_ref());
            if actual.last_revision() != guard.revision {
                return Ok(CommitOutcome::GuardChanged { actual });
            }
        }
        let actual = current_of(self.read_record(key)?.as_ref());
        if actual.last_revision() != commit.expected {
            return Ok(CommitOutcome::Conflict { actual });
        }
        let dir = self.root.join(key.collection());
        let path = self.document_path(key);
        let staged = fs::stage(&dir, &path, &bytes, self.syncs())?;
        // The feed lock is held from the append until the rename is done,
        // so no feed reader sees the change before a document read can.
        let mut change = self.changes.begin()?;
        change.append(key, commit.new_revision(), commit.kind)?;
        if let Err(e) = staged.rename_over(&path) {
            change.undo();
            return Err(e);
        }
        change.finish();
        if self.syncs() {
            fs::sync_dir(&dir)?;
        }
        Ok(CommitOutcome::Committed)
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        let Some(files) = fs::list_dir(&self.root.join(collection))? else {
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
            if let Some(revision) = self.listed_revision(&file.path)? {
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
