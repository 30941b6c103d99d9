//! Every filesystem call the backend makes, in one place.
//!
//! [`FileSystem`] is the seam: a handful of primitive operations, each one
//! dynamic call, with [`RealFs`] (the operating system) as the only
//! production implementation. Tests wrap it to fail any single step or to
//! record every operation for a simulated power loss (see the `testkit`
//! feature). [`Fs`] sits on top and is the one spot that turns an
//! operating-system error into [`Error::Io`] naming the step and the path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use revstore::{Error, Result};

use crate::background_sync::{BackgroundSync, PendingSync};

/// The primitive filesystem operations of the YAML backend.
///
/// Implementations must behave like the operating system's calls named in
/// each method: the backend's atomicity and durability arguments rest on
/// those semantics (an atomic `rename`, `flock` locks that belong to the
/// open file, `fsync` that reports write-back failures).
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Reads a whole file into `buf`, from its start, and returns the
    /// file's length: its bytes are `buf[..len]`. `buf` is used as it is
    /// (its length, not its capacity, is the room available) and grown,
    /// zero-filled, when the file does not fit; what lies past the file's
    /// length is unspecified. `NotFound` when the file or its folder is
    /// missing.
    ///
    /// A read that returns fewer bytes than asked ends the file, as it does
    /// for regular files on Linux: so a file that fits is read with one
    /// `read` call, and no `stat` is needed to size the buffer.
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<usize>;
    /// Whether a path is a folder, following symbolic links.
    fn is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Lists a folder's entries (not `.` and `..`).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Creates one folder (`AlreadyExists` when it exists).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Flushes a folder's entries (created, renamed, removed files) to
    /// stable storage.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Opens a lock file for reading and writing, creating it when `create`
    /// (never truncating it).
    fn open_lock_file(&self, path: &Path, create: bool) -> io::Result<File>;
    /// Blocks until `file` is `flock`ed in `mode`.
    fn lock(&self, file: &File, path: &Path, mode: LockMode) -> io::Result<()>;
    /// Releases `file`'s `flock`, keeping the file open. Its failure is
    /// never reported: the caller closes the file instead, which releases
    /// the lock as well.
    fn unlock(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Creates a new, empty file for writing (`AlreadyExists` when the name
    /// is taken), with mode `0666` before the umask.
    fn create_new(&self, path: &Path) -> io::Result<File>;
    /// Opens a file for reading and appending, creating it when missing.
    fn open_append(&self, path: &Path) -> io::Result<File>;
    /// The identity of `file` (opened by this file system from `path`),
    /// which stays the same for as long as it is open (`fstat`).
    fn file_id(&self, file: &File, path: &Path) -> io::Result<FileId>;
    /// The identity and length of the file `path` names now, following
    /// symbolic links (`stat`); `NotFound` when it names none.
    fn stat_path(&self, path: &Path) -> io::Result<PathStat>;
    /// Fills `buf` from `file` (opened for reading by this file system from
    /// `path`) at `offset`, leaving its position alone; `UnexpectedEof`
    /// when the file ends first.
    fn read_at(&self, file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `bytes` to `file` (opened by this file system from
    /// `path`) at its current position.
    fn write(&self, file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Starts writing `file`'s dirty data back without waiting for it
    /// (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that a later
    /// [`sync_data`](Self::sync_data) has less left to do. A hint only:
    /// nothing is durable until `sync_data` returns. Does nothing where the
    /// system has no such call.
    fn start_writeback(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Flushes `file`'s data and the metadata needed to read it back
    /// (`fdatasync`), reporting any write-back failure.
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Renames `from` over `to` atomically (both in one folder).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Cuts a file down to `len` bytes.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file (`NotFound` when it is missing).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
}

/// One entry of a folder listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The entry's file name.
    pub file_name: std::ffi::OsString,
    /// Its full path.
    pub path: PathBuf,
    /// Whether it is a folder (symbolic links are followed).
    pub is_dir: bool,
}

/// Which file a path names or a [`File`] has open: equal for the same
/// file, different for another one. An open file's identity never
/// changes, so it is read once when the file is opened; whether a path
/// still names that file then takes one `stat` of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device and inode numbers.
    #[cfg(unix)]
    dev_ino: (u64, u64),
    // Elsewhere std offers no stable identity, so any file matches: only a
    // path that names no file at all is taken for one moved away.
}

impl FileId {
    /// The identity in `metadata`.
    #[cfg(unix)]
    pub fn of(metadata: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev_ino: (metadata.dev(), metadata.ino()),
        }
    }

    /// The identity in `metadata`.
    #[cfg(not(unix))]
    pub fn of(_metadata: &std::fs::Metadata) -> FileId {
        FileId {}
    }
}

/// What [`FileSystem::stat_path`] tells of the file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStat {
    /// Which file it is.
    pub id: FileId,
    /// Its length in bytes.
    pub len: u64,
}

/// How a lock file is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes `Exclusive`.
    Shared,
    /// One holder; excludes everything.
    Exclusive,
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut file = File::open(path)?;
        if buf.len() < MIN_READ_BUFFER {
            buf.resize(MIN_READ_BUFFER, 0);
        }
        let mut filled = 0;
        loop {
            let n = match file.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            filled += n;
            if n == 0 || filled < buf.len() {
                return Ok(filled);
            }
            // Full: the file may go on.
            buf.resize(buf.len().saturating_mul(2), 0);
        }
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        std::fs::metadata(path).map(|m| m.is_dir())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let entry_path = entry.path();
            let file_type = entry.file_type()?;
            let is_dir = if file_type.is_symlink() {
                std::fs::metadata(&entry_path).is_ok_and(|m| m.is_dir())
            } else {
                file_type.is_dir()
            };
            out.push(DirEntry {
                file_name: entry.file_name(),
                path: entry_path,
                is_dir,
            });
        }
        Ok(out)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn open_lock_file(&self, path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
    }

    fn lock(&self, file: &File, _path: &Path, mode: LockMode) -> io::Result<()> {
        loop {
            // Fully qualified: newer std has inherent `File` lock methods too.
            let locked = match mode {
                LockMode::Shared => fs2::FileExt::lock_shared(file),
                LockMode::Exclusive => fs2::FileExt::lock_exclusive(file),
            };
            match locked {
                // A signal interrupted the wait; waiting again is harmless.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn unlock(&self, file: &File, _path: &Path) -> io::Result<()> {
        fs2::FileExt::unlock(file)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        // A human-editable document gets the usual mode (the umask applies).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o666);
        options.open(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
    }

    fn file_id(&self, file: &File, _path: &Path) -> io::Result<FileId> {
        #[cfg(unix)]
        {
            file.metadata().map(|metadata| FileId::of(&metadata))
        }
        // Nothing to read: every file has the same identity there.
        #[cfg(not(unix))]
        {
            let _ = file;
            Ok(FileId {})
        }
    }

    fn stat_path(&self, path: &Path) -> io::Result<PathStat> {
        let metadata = std::fs::metadata(path)?;
        Ok(PathStat {
            id: FileId::of(&metadata),
            len: metadata.len(),
        })
    }

    fn read_at(&self, file: &File, _path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom};
            let mut file = file;
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(buf)
        }
    }

    fn write(&self, file: &mut File, _path: &Path, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, file: &File, _path: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a descriptor `file` keeps open for
        // its duration; it reads and writes no memory of ours.
        let status =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            // A file system or kernel without it: the fsync does it all.
            Some(libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => Ok(()),
            _ => Err(error),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&self, _file: &File, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_data(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// The least room [`RealFs::read_into`] reads into: the documents of a
/// store are mostly smaller, so they are read with one call.
const MIN_READ_BUFFER: usize = 64 * 1024;

/// A thread's read buffer is given up after holding a file larger than
/// this, so one big document does not pin its memory for the thread's life.
const MAX_KEPT_READ_BUFFER: usize = 1024 * 1024;

thread_local! {
    /// Each thread's buffer for [`with_read_buffer`]; zero-filled once and
    /// reused, so reading a small file allocates nothing.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable read buffer (for
/// [`Fs::read_into`]); a fresh one when it is in use further up the stack.
pub fn with_read_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    READ_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let result = f(&mut buf);
            if buf.len() > MAX_KEPT_READ_BUFFER {
                *buf = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// A [`FileSystem`] with the backend's error handling: every failure is an
/// [`Error::Io`] naming the step and the path; "not found" is an answer
/// where the caller expects it.
#[derive(Debug, Clone)]
pub struct Fs(Arc<dyn FileSystem>, Arc<KeptLockFiles>);

/// Most lock files one handle keeps open between locks.
const MAX_KEPT_LOCK_FILES: usize = 64;

/// Lock files kept open, unlocked, between the locks of one handle, so
/// taking a lock again skips opening the file (a path lookup and a file
/// allocation) and closing it. Each file is taken out while it is locked,
/// so no two threads ever lock through one open file description (which
/// would not exclude them). Safe because lock files are never removed or
/// replaced by revstore; one removed, moved or replaced by hand is noticed
/// (its path names another file, or none, once locked) and opened afresh.
#[derive(Debug, Default)]
pub struct KeptLockFiles {
    files: Mutex<KeptFiles>,
}

#[derive(Debug, Default)]
struct KeptFiles {
    /// By the path's bytes: hashing a `Path` walks its components, and
    /// the backend spells each lock file's path one way only.
    by_path: HashMap<OsString, Vec<LockFile>>,
    count: usize,
}

/// An open lock file and its identity, read once when it was opened.
#[derive(Debug)]
struct LockFile {
    file: File,
    id: FileId,
}

impl KeptLockFiles {
    fn take(&self, path: &Path) -> Option<LockFile> {
        let mut kept = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let file = kept.by_path.get_mut(path.as_os_str())?.pop()?;
        kept.count -= 1;
        Some(file)
    }

    /// Keeps an unlocked file, or closes it when enough are kept.
    fn put(&self, path: PathBuf, file: LockFile) {
        let mut kept = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.count >= MAX_KEPT_LOCK_FILES {
            return;
        }
        kept.count += 1;
        match kept.by_path.get_mut(path.as_os_str()) {
            Some(files) => files.push(file),
            None => {
                kept.by_path.insert(path.into_os_string(), vec![file]);
            }
        }
    }

    /// Closes every file kept for `path` (it was removed).
    fn forget(&self, path: &Path) {
        let mut kept = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(files) = kept.by_path.remove(path.as_os_str()) {
            kept.count -= files.len();
        }
    }
}

/// A held lock; released when dropped: the file is unlocked and kept for
/// the next lock of the same path, or closed.
#[derive(Debug)]
pub struct FileLock {
    file: Option<File>,
    /// Where to give the file back, its path and its identity; `None`:
    /// just close it.
    keep: Option<(Fs, PathBuf, FileId)>,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let (Some(file), Some((fs, path, id))) = (self.file.take(), self.keep.take()) else {
            return;
        };
        // A file that cannot be unlocked is closed, which unlocks it.
        if fs.0.unlock(&file, &path).is_ok() {
            fs.1.put(path, LockFile { file, id });
        }
    }
}

/// The hidden file a commit stages the new content of `target` in:
/// `.<name>.yaml.tmp` next to it. One fixed name per document: only the
/// holder of the document's exclusive lock writes it, so any such file
/// found by that holder is debris of a writer that crashed, and replacing
/// it is the clean-up.
pub fn staging_path(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default();
    let mut staged = std::ffi::OsString::with_capacity(name.len() + 5);
    staged.push(".");
    staged.push(name);
    staged.push(".tmp");
    target.with_file_name(staged)
}

impl Fs {
    /// Wraps a file system; clones share the lock files kept open.
    pub fn new(fs: Arc<dyn FileSystem>) -> Fs {
        Fs(fs, Arc::default())
    }

    /// Reads a whole file; `None` when it (or its folder) does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.read_into(path, &mut buf)?.map(|len| {
            buf.truncate(len);
            buf
        }))
    }

    /// Reads a whole file into `buf` (see [`FileSystem::read_into`]) and
    /// returns its length; `None` when it (or its folder) does not exist.
    pub fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        match self.0.read_into(path, buf) {
            Ok(len) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Lists a folder; `None` when it does not exist.
    pub fn list_dir(&self, path: &Path) -> Result<Option<Vec<DirEntry>>> {
        match self.0.list_dir(path) {
            Ok(entries) => Ok(Some(entries)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("list folder", path, e)),
        }
    }

    /// Whether a path exists and is a folder (`None`: it does not exist).
    pub fn is_dir(&self, path: &Path) -> Result<Option<bool>> {
        match self.0.is_dir(path) {
            Ok(is_dir) => Ok(Some(is_dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    /// Creates a folder; `true` if this call created it, `false` if it
    /// existed.
    pub fn create_dir(&self, path: &Path) -> Result<bool> {
        match self.0.create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("create folder", path, e)),
        }
    }

    /// Flushes a folder's entries to stable storage.
    pub fn sync_dir(&self, path: &Path) -> Result<()> {
        // An empty parent of a relative path is the current folder.
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        self.0
            .sync_dir(path)
            .map_err(|e| Error::io("fsync folder", path, e))
    }

    /// Opens (creating if needed) a lock file, or takes one this handle
    /// kept open (see [`KeptLockFiles`]), and blocks until it is locked.
    ///
    /// A file is never shared while locked because `flock` locks belong to
    /// the open file description: two threads locking one shared `File`
    /// would not exclude each other.
    pub fn lock(&self, path: &Path, mode: LockMode) -> Result<FileLock> {
        loop {
            let (file, kept) = match self.1.take(path) {
                Some(file) => (file, true),
                None => {
                    let file = self
                        .0
                        .open_lock_file(path, true)
                        .map_err(|e| Error::io("open lock file", path, e))?;
                    let id = self.file_id(&file, path)?;
                    (LockFile { file, id }, false)
                }
            };
            // On failure the file is closed, which releases any lock.
            self.0
                .lock(&file.file, path, mode)
                .map_err(|e| Error::io("lock", path, e))?;
            // Checked once locked: from then on, whoever takes the lock
            // through the path waits for this hold. The path, not the link
            // count: a file moved away by hand is still linked, but
            // whoever opens the path now gets another one.
            let named = self.stat_path(path)?.map(|stat| stat.id);
            if named == Some(file.id) {
                return Ok(FileLock {
                    file: Some(file.file),
                    keep: Some((self.clone(), path.to_owned(), file.id)),
                });
            }
            // Removed or moved away by hand since it was opened (kept, or
            // just now between the open and the lock): locking it excludes
            // no one who opens the path now. Closed, like any other kept
            // for it, and the path opened again.
            if kept {
                self.1.forget(path);
            }
        }
    }

    /// Like [`lock`](Fs::lock) but never creates the lock file: `None` when
    /// it (or its folder) does not exist, so a reader leaves the folder
    /// untouched.
    pub fn lock_existing(&self, path: &Path, mode: LockMode) -> Result<Option<FileLock>> {
        match self.0.open_lock_file(path, false) {
            Ok(file) => self.lock_file(file, path, mode).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open lock file", path, e)),
        }
    }

    fn lock_file(&self, file: File, path: &Path, mode: LockMode) -> Result<FileLock> {
        self.0
            .lock(&file, path, mode)
            .map_err(|e| Error::io("lock", path, e))?;
        Ok(FileLock {
            file: Some(file),
            keep: None,
        })
    }

    /// Writes `bytes` to the staging file of `target` (see
    /// [`staging_path`]), ready to be made durable by [`StagedFile::sync`]
    /// and renamed over `target` by [`StagedFile::rename_over`]; when it is
    /// to be synced (`durable`), its write-back starts at once, without
    /// waiting. The caller must hold the document's exclusive lock: a
    /// staging file already there is debris and is replaced.
    pub fn stage(&self, target: &Path, bytes: &[u8], durable: bool) -> Result<StagedFile<'_>> {
        let temp = staging_path(target);
        let mut file = match self.0.create_new(&temp) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.remove_file(&temp)?;
                self.0.create_new(&temp)
            }
            other => other,
        }
        .map_err(|e| Error::io("create temp file", &temp, e))?;
        let written = self.0.write(&mut file, &temp, bytes);
        // From here on, dropping `staged` removes the file again.
        let staged = StagedFile {
            fs: self,
            temp,
            file: Arc::new(file),
            renamed: false,
        };
        written.map_err(|e| Error::io("write", &staged.temp, e))?;
        if durable {
            // A hint only: its failure makes nothing less durable, and a
            // write-back error is reported by the fsync that follows.
            let _ = self.0.start_writeback(&staged.file, &staged.temp);
        }
        Ok(staged)
    }

    /// Opens a file for reading and appending, creating it if missing.
    pub fn open_append(&self, path: &Path) -> Result<File> {
        self.0
            .open_append(path)
            .map_err(|e| Error::io("open for append", path, e))
    }

    /// Appends `bytes` to `file` (opened by [`open_append`](Fs::open_append)
    /// from `path`) in one write and fsyncs its data (`sync`). On failure
    /// the file may hold a prefix of `bytes`; the caller cuts it off with
    /// [`truncate`](Fs::truncate).
    pub fn append(&self, file: &mut File, path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
        self.0
            .write(file, path, bytes)
            .map_err(|e| Error::io("append", path, e))?;
        if sync {
            // fdatasync also flushes the new length, which reading needs.
            self.0
                .sync_data(file, path)
                .map_err(|e| Error::io("fsync", path, e))?;
        }
        Ok(())
    }

    /// The identity of a file this file system opened from `path`; it
    /// never changes while the file is open.
    pub fn file_id(&self, file: &File, path: &Path) -> Result<FileId> {
        self.0
            .file_id(file, path)
            .map_err(|e| Error::io("stat", path, e))
    }

    /// The identity and length of the file `path` names now; `None` when
    /// it names none.
    pub fn stat_path(&self, path: &Path) -> Result<Option<PathStat>> {
        match self.0.stat_path(path) {
            Ok(stat) => Ok(Some(stat)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    /// The bytes of an open file from `offset` to `end`.
    pub fn read_range(&self, file: &File, path: &Path, offset: u64, end: u64) -> Result<Vec<u8>> {
        let len = end.saturating_sub(offset);
        let len = usize::try_from(len).map_err(|_| {
            Error::io(
                "read",
                path,
                io::Error::new(io::ErrorKind::OutOfMemory, "the range is too large"),
            )
        })?;
        let mut buf = vec![0; len];
        self.0
            .read_at(file, path, offset, &mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        Ok(buf)
    }

    /// Cuts a file down to `len` bytes.
    pub fn truncate(&self, path: &Path, len: u64) -> Result<()> {
        self.0
            .truncate(path, len)
            .map_err(|e| Error::io("truncate", path, e))
    }

    /// Renames the staged file `temp` (see [`Fs::stage`]) over `target`
    /// atomically; for a staged file renamed by another thread than the
    /// one that staged it ([`StagedFile::rename_over`] otherwise).
    pub fn rename_staged(&self, temp: &Path, target: &Path) -> Result<()> {
        self.0
            .rename(temp, target)
            .map_err(|e| Error::io("rename", target, e))
    }

    /// Removes a file; one that is already gone is not an error.
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        match self.0.remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }
}

/// A complete replacement for a file, written next to it under a hidden
/// name and not yet visible; dropping it removes it.
#[derive(Debug)]
pub struct StagedFile<'a> {
    fs: &'a Fs,
    temp: PathBuf,
    /// Kept open for [`sync`](Self::sync); shared with the helper thread
    /// of [`start_sync`](Self::start_sync).
    file: Arc<File>,
    renamed: bool,
}

impl StagedFile<'_> {
    /// Flushes the staged bytes to stable storage (`fdatasync`). A failure
    /// is reported, never retried: Linux may drop the dirty pages, so a
    /// retry could "succeed" without the data.
    pub fn sync(&self) -> Result<()> {
        self.fs
            .0
            .sync_data(&self.file, &self.temp)
            .map_err(|e| Error::io("fsync", &self.temp, e))
    }

    /// Starts [`sync`](Self::sync) on `helper`'s thread, so the caller can
    /// go on meanwhile; `None` when the helper is busy (and the caller
    /// must [`sync`](Self::sync) itself).
    pub fn start_sync<'h>(&self, helper: &'h BackgroundSync) -> Option<PendingSync<'h>> {
        helper.start(&self.fs.0, &self.file, self.temp.clone())
    }

    /// Waits for the fsync [`start_sync`](Self::start_sync) started: the
    /// same result [`sync`](Self::sync) would have.
    pub fn finish_sync(&self, started: PendingSync<'_>) -> Result<()> {
        started
            .wait()
            .map_err(|e| Error::io("fsync", &self.temp, e))
    }

    /// Renames the staged file over `target` atomically: a reader sees the
    /// old or the new file, never a mix. On failure `target` is untouched
    /// and the staged file is removed (best effort: the next commit of the
    /// document replaces it anyway). The folder is not fsynced here.
    pub fn rename_over(mut self, target: &Path) -> Result<()> {
        self.fs.rename_staged(&self.temp, target)?;
        self.renamed = true;
        Ok(())
    }

    /// The staging file's path.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Forgets the file once another thread renamed it into place (see
    /// [`Fs::rename_staged`]): dropping it then removes nothing.
    pub fn renamed_elsewhere(mut self) {
        self.renamed = true;
    }
}

impl Drop for StagedFile<'_> {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        // Best effort: a leftover is debris the next commit replaces.
        let _ = self.fs.remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_keeps_a_bounded_number_of_lock_files_and_never_shares_one() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Fs::new(Arc::new(RealFs));
        let paths: Vec<PathBuf> = (0..100)
            .map(|i| dir.path().join(format!(".{i}.lock")))
            .collect();
        for path in &paths {
            drop(fs.lock(path, LockMode::Exclusive).unwrap());
        }
        let kept = || fs.1.files.lock().unwrap().count;
        assert_eq!(kept(), MAX_KEPT_LOCK_FILES);
        // A kept file is taken out while locked: a second lock of the same
        // path, shared or not, gets a file of its own.
        let first = fs.lock(&paths[0], LockMode::Shared).unwrap();
        assert_eq!(kept(), MAX_KEPT_LOCK_FILES - 1);
        let second = fs.lock(&paths[0], LockMode::Shared).unwrap();
        assert_eq!(kept(), MAX_KEPT_LOCK_FILES - 1);
        drop((first, second));
        // Given back unlocked: another open file can lock it exclusively.
        let probe = File::open(&paths[0]).unwrap();
        fs2::FileExt::try_lock_exclusive(&probe).unwrap();
    }

    /// Another writer opening `path` now cannot take its lock.
    fn assert_a_writer_through_the_path_is_excluded(path: &Path) {
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        assert!(
            fs2::FileExt::try_lock_exclusive(&other).is_err(),
            "a writer opening the lock file's path got in while this handle held the lock"
        );
    }

    #[test]
    fn a_kept_lock_file_moved_away_by_hand_is_not_locked_in_place_of_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".doc.lock");
        let fs = Fs::new(Arc::new(RealFs));
        drop(fs.lock(&path, LockMode::Exclusive).unwrap());
        // Moved, not removed: the kept file is still linked, under another
        // name, and whoever opens the path now locks a file of its own.
        std::fs::rename(&path, dir.path().join(".doc.lock.old")).unwrap();
        // Another writer has opened the path since, so it names a file:
        // just another one than the kept file.
        let _opened = File::create(&path).unwrap();
        let held = fs.lock(&path, LockMode::Exclusive).unwrap();
        assert_a_writer_through_the_path_is_excluded(&path);
        drop(held);
    }

    #[test]
    #[cfg(feature = "testkit")]
    fn a_lock_file_moved_away_between_open_and_lock_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".doc.lock");
        // The first lock first moves its path away by hand, between the
        // caller's open and its lock.
        let moved = std::sync::atomic::AtomicBool::new(false);
        let fs = Fs::new(Arc::new(crate::testkit::hooks::BeforeLock::new(
            move |path| {
                if !moved.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::fs::rename(path, path.with_extension("old"))?;
                }
                Ok(())
            },
        )));
        let held = fs.lock(&path, LockMode::Exclusive).unwrap();
        assert!(dir.path().join(".doc.old").exists(), "the move happened");
        assert_a_writer_through_the_path_is_excluded(&path);
        drop(held);
    }
}
