//! Every filesystem call the backend makes, in one place: the seam where
//! faults can be injected, and the one spot that turns an operating-system
//! error into [`Error::Io`] naming the step and the path.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use revstore::{Error, Result};

/// Reads a whole file; `None` when it (or its folder) does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Reads at most `limit` bytes from the start of a file, and whether they
/// are the whole file; `None` when it does not exist.
pub fn read_head(path: &Path, limit: usize) -> Result<Option<(Vec<u8>, bool)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut head = Vec::with_capacity(limit + 1);
    // One byte past the limit tells whether anything follows.
    let cap = u64::try_from(limit + 1).unwrap_or(u64::MAX);
    file.take(cap)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", path, e))?;
    let whole = head.len() <= limit;
    head.truncate(limit);
    Ok(Some((head, whole)))
}

/// One entry of a folder listing.
pub struct DirEntry {
    /// The entry's file name.
    pub file_name: std::ffi::OsString,
    /// Its full path.
    pub path: PathBuf,
    /// Whether it is a folder (symbolic links are followed).
    pub is_dir: bool,
}

/// Lists a folder; `None` when it does not exist.
pub fn list_dir(path: &Path) -> Result<Option<Vec<DirEntry>>> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("list folder", path, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list folder", path, e))?;
        let entry_path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| Error::io("stat", &entry_path, e))?;
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
    Ok(Some(out))
}

/// Whether a path exists and is a folder (`None`: it does not exist).
pub fn is_dir(path: &Path) -> Result<Option<bool>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.is_dir())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Creates a folder; `true` if this call created it, `false` if it existed.
pub fn create_dir(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create folder", path, e)),
    }
}

/// Flushes a folder's entries (created, renamed files) to stable storage.
pub fn sync_dir(path: &Path) -> Result<()> {
    // An empty parent of a relative path is the current folder.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io("fsync folder", path, e))
}

/// How a lock file is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes `Exclusive`.
    Shared,
    /// One holder; excludes everything.
    Exclusive,
}

/// A held lock; released when dropped (closing its own file description).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Opens (creating if needed) a lock file and blocks until it is locked.
///
/// The file is opened afresh on every call because `flock` locks belong to
/// the open file description: two threads locking one shared `File` would
/// not exclude each other.
pub fn lock(path: &Path, mode: LockMode) -> Result<FileLock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    lock_file(file, path, mode)
}

/// Like [`lock`] but never creates the lock file: `None` when it (or its
/// folder) does not exist, so a reader leaves the folder untouched.
pub fn lock_existing(path: &Path, mode: LockMode) -> Result<Option<FileLock>> {
    match File::open(path) {
        Ok(file) => lock_file(file, path, mode).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("open lock file", path, e)),
    }
}

fn lock_file(file: File, path: &Path, mode: LockMode) -> Result<FileLock> {
    loop {
        // Fully qualified: newer std has inherent `File` lock methods too.
        let locked = match mode {
            LockMode::Shared => fs2::FileExt::lock_shared(&file),
            LockMode::Exclusive => fs2::FileExt::lock_exclusive(&file),
        };
        match locked {
            Ok(()) => return Ok(FileLock { _file: file }),
            // A signal interrupted the wait; waiting again is harmless.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("lock", path, e)),
        }
    }
}

/// A complete replacement for a file, written next to it under a hidden
/// temporary name and not yet visible; dropping it removes it.
#[derive(Debug)]
pub struct StagedFile {
    temp: tempfile::NamedTempFile,
}

/// Writes `bytes` to a hidden temp file in `dir` (named after `target`) and
/// fsyncs it (`sync`), ready to be renamed over `target` by
/// [`StagedFile::rename_over`]. A failed fsync is reported, never retried:
/// Linux may drop the dirty pages, so a retry could "succeed" without the
/// data.
pub fn stage(dir: &Path, target: &Path, bytes: &[u8], sync: bool) -> Result<StagedFile> {
    let prefix = match target.file_name() {
        Some(name) => format!(".{}.", name.to_string_lossy()),
        None => ".".to_owned(),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile defaults to 0600; a human-editable document gets the usual
    // mode (the umask still applies).
    #[cfg(unix)]
    let permissions = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o666)
    };
    #[cfg(unix)]
    builder.permissions(permissions);
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temp file", dir, e))?;
    let temp_path = temp.path().to_owned();
    temp.write_all(bytes)
        .map_err(|e| Error::io("write", &temp_path, e))?;
    if sync {
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", &temp_path, e))?;
    }
    Ok(StagedFile { temp })
}

impl StagedFile {
    /// Renames the staged file over `target` atomically: a reader sees the
    /// old or the new file, never a mix. On failure `target` is untouched
    /// and the temp file is removed. The folder is not fsynced here.
    pub fn rename_over(self, target: &Path) -> Result<()> {
        self.temp
            .persist(target)
            .map(drop)
            .map_err(|e| Error::io("rename", target, e.error))
    }
}

/// Appends `bytes` to a file (creating it if missing) in one write and
/// fsyncs its data (`sync`). On failure the file may hold a prefix of
/// `bytes`; the caller cuts it off with [`truncate`].
pub fn append(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io("open for append", path, e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("append", path, e))?;
    if sync {
        // fdatasync also flushes the new length, which reading the data needs.
        file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    }
    Ok(())
}

/// Cuts a file down to `len` bytes.
pub fn truncate(path: &Path, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len))
        .map_err(|e| Error::io("truncate", path, e))
}

/// Removes a file; one that is already gone is not an error.
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}
