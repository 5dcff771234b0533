//! File names inside the data directory.

use std::path::{Path, PathBuf};

/// The message log.
pub fn database(dir: &Path) -> PathBuf {
    dir.join("database.db")
}

/// The accounts file.
pub fn accounts(dir: &Path) -> PathBuf {
    dir.join("usernames.db")
}
