//! A file system that lets a test act at an exact point of a commit.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::{DirEntry, FileId, FileSystem, LockMode, PathStat, RealFs};

/// What [`BeforeLock`] runs.
type Hook = Box<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

/// The real file system, calling a hook with a lock file's path just before
/// each lock of it is taken: the seam for a test in which another writer,
/// or a hand, must act between two steps of a commit. An error from the
/// hook is the lock's error.
pub struct BeforeLock {
    hook: Hook,
}

impl BeforeLock {
    /// The real file system, calling `hook` before every lock.
    pub fn new(hook: impl Fn(&Path) -> io::Result<()> + Send + Sync + 'static) -> BeforeLock {
        BeforeLock {
            hook: Box::new(hook),
        }
    }
}

impl std::fmt::Debug for BeforeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeLock").finish_non_exhaustive()
    }
}

impl FileSystem for BeforeLock {
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
        RealFs.read_into(path, buf)
    }
    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        RealFs.is_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.list_dir(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn open_lock_file(&self, path: &Path, create: bool) -> io::Result<File> {
        RealFs.open_lock_file(path, create)
    }
    fn lock(&self, file: &File, path: &Path, mode: LockMode) -> io::Result<()> {
        (self.hook)(path)?;
        RealFs.lock(file, path, mode)
    }
    fn unlock(&self, file: &File, path: &Path) -> io::Result<()> {
        RealFs.unlock(file, path)
    }
    fn create_new(&self, path: &Path) -> io::Result<File> {
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<File> {
        RealFs.open_append(path)
    }
    fn file_id(&self, file: &File, path: &Path) -> io::Result<FileId> {
        RealFs.file_id(file, path)
    }
    fn stat_path(&self, path: &Path) -> io::Result<PathStat> {
        RealFs.stat_path(path)
    }
    fn read_at(&self, file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        RealFs.read_at(file, path, offset, buf)
    }
    fn write(&self, file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
        RealFs.write(file, path, bytes)
    }
    fn start_writeback(&self, file: &File, path: &Path) -> io::Result<()> {
        RealFs.start_writeback(file, path)
    }
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        RealFs.sync_data(file, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        RealFs.truncate(path, len)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
}
