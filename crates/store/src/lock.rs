//! The exclusive lock that keeps two servers (or a server and an admin command) off one data dir.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::files::open_rw;

/// Name of the message file inside a data dir; also the file the data-dir lock is taken on.
pub const DATABASE_FILE: &str = "database.db";

/// An exclusive lock on `<dir>/database.db`, held until dropped.
///
/// [`crate::MessageStore::open`] takes it for the store's life, so admin commands that change the
/// data dir (`user add`, `db repair`, …) can take it too and refuse politely while a server runs.
/// The lock is advisory (`flock`): it binds every gc process, same or other, but not other programs.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `<dir>/database.db`, creating the directory (0700) and an empty file
    /// (0600) if absent, and tightening them if others may read them. Fails at once with
    /// [`StoreError::Locked`] if another process or handle holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        crate::private::dir(dir).map_err(|e| StoreError::io("create the directory", dir, e))?;
        Self::acquire_file(&dir.join(DATABASE_FILE))
    }

    /// Takes the lock on `path` itself (the client cache locks its own file this way).
    pub(crate) fn acquire_file(path: &Path) -> Result<Self> {
        let file = open_rw(path)?;
        lock_file(&file, path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// Wraps a file the caller has just locked.
    pub(crate) fn from_locked(file: File, path: &Path) -> Self {
        Self {
            file,
            path: path.to_owned(),
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open, locked file (read and write access).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// Takes an exclusive lock on `file` without waiting.
pub(crate) fn lock_file(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::io("lock", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_locked_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let lock = DataDirLock::acquire(&data).unwrap();
        assert!(data.join(DATABASE_FILE).exists());
        match DataDirLock::acquire(&data) {
            Err(e @ StoreError::Locked { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("database.db"), "{msg}");
                assert!(msg.contains("another gc-server"), "{msg}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(lock);
        DataDirLock::acquire(&data).unwrap();
    }
}
