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
    Ok(config.validate()?)
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
