//! Server configuration: built-in defaults, overridden by an optional TOML file, overridden by
//! command-line flags. The settings, their checks and the file's format are the `gc-config`
//! crate's (re-exported here); this adds what needs the server's I/O and stores.

use std::path::Path;

pub use gc_config::*;

use crate::error::ServerError;

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid(what) => Self::Config(what),
            // Only `load` parses files, and it names the file.
            ConfigError::Parse(message) => Self::Config(message),
        }
    }
}

/// Reads and parses a TOML configuration file.
pub fn load_file(path: &Path) -> Result<FileConfig, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
        what: "read the configuration file",
        path: path.to_owned(),
        source,
    })?;
    FileConfig::parse(&text).map_err(|e| ServerError::ConfigFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Checks a configuration as [`Config::validate`] does, and its store URL too.
pub fn check(config: &Config) -> Result<(), ServerError> {
    if let Some(url) = &config.store {
        database_url(url)?;
    }
    if config.store.is_none()
        && let Some(dir) = &config.files_dir
        && *dir != config.data_dir.join("files")
    {
        return Err(ServerError::Config(format!(
            "files-dir {}: the flat file store keeps shared files in its data dir ({}); \
             files-dir is for instances sharing a PostgreSQL store (--store). Leave it unset, \
             or link the data dir's files/ to the directory you want",
            dir.display(),
            config.data_dir.join("files").display()
        )));
    }
    Ok(config.validate()?)
}

/// The shared files where the configuration says: the data dir's `files/` with its own index,
/// or, with PostgreSQL, `files-dir` with the database's index. The schema must be current: the
/// server migrates it when it opens the store, `gc-server files …` before it calls this.
pub fn open_files(config: &Config) -> Result<gc_store::ContentStore, ServerError> {
    let Some(url) = &config.store else {
        return Ok(gc_store::ContentStore::open(&config.data_dir)?);
    };
    let url = database_url(url)?;
    let index = std::sync::Arc::new(gc_pgstore::PgFileIndex::new(&url));
    Ok(gc_store::ContentStore::open_shared(
        &config.files_dir(),
        index,
    )?)
}

/// [`open_files`] to read only: nothing is made or changed (listings beside running servers);
/// `None` when nothing was ever shared in the data dir.
pub fn open_files_read_only(
    config: &Config,
) -> Result<Option<gc_store::ContentStore>, ServerError> {
    let Some(url) = &config.store else {
        return Ok(gc_store::ContentStore::open_read_only(&config.data_dir)?);
    };
    let index = std::sync::Arc::new(gc_pgstore::PgFileIndex::new(&database_url(url)?));
    Ok(Some(gc_store::ContentStore::open_shared_read_only(
        &config.files_dir(),
        index,
    )))
}

/// The store URL, parsed (`store` must be a `postgres://` URL or libpq key=value string).
pub fn database_url(url: &str) -> Result<gc_pgstore::DbUrl, ServerError> {
    url.parse().map_err(|e: gc_pgstore::PgError| {
        ServerError::Config(format!(
            "store: {e} (give a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL, or leave \
             store unset for the data dir's flat files)"
        ))
    })
}

/// The time plugin hooks are held to.
pub fn plugin_hook_limits(config: &Config) -> gc_plugin::HookLimits {
    gc_plugin::HookLimits {
        budget: config.plugin_hook_budget,
        limit: config.plugin_hook_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_dir_is_for_a_shared_store_only() {
        let mut config = Config {
            data_dir: "/srv/gc".into(),
            files_dir: Some("/mnt/shared/gc-files".into()),
            ..Config::default()
        };
        let e = check(&config).expect_err("flat store with files-dir elsewhere");
        let text = e.to_string();
        assert!(text.contains("/mnt/shared/gc-files"), "{text}");
        assert!(text.contains("/srv/gc/files"), "{text}");
        // The data dir's own is no change; with PostgreSQL any directory goes.
        config.files_dir = Some("/srv/gc/files".into());
        check(&config).expect("the default, spelt out");
        config.files_dir = Some("/mnt/shared/gc-files".into());
        config.store = Some("postgres://gc@db.example/gc".into());
        check(&config).expect("shared store");
        assert_eq!(
            config.files_dir(),
            std::path::Path::new("/mnt/shared/gc-files")
        );
    }
}
