//! The configuration error the core's parsers (catalog, profiles) return, and `mark-gateway`'s
//! config re-exports: the file or flag at fault and what to do about it.

use thiserror::Error;

/// A configuration problem, with the file or flag it came from.
#[derive(Debug, Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// File or flag that holds the bad value.
    pub source_name: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `source_name`.
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}
