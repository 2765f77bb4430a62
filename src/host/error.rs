//! Why a strategy could not be loaded.

use std::path::PathBuf;

use crate::exchange::ApiError;

/// A failed load, validation or reload. `Display` is one line, starting with
/// `file:line:` whenever Lua said where the problem is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// A syntax or runtime error while running the strategy file; the message carries file:line.
    #[error("{0}")]
    Lua(String),
    #[error("{}: a strategy file must return a table, got {got}", path.display())]
    NotATable { path: PathBuf, got: String },
    #[error("{}: {field} must be {expected}, got {got}", path.display())]
    BadField {
        path: PathBuf,
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("{}: unknown symbol '{symbol}' (the exchange does not list it)", path.display())]
    UnknownSymbol { path: PathBuf, symbol: String },
    #[error("{}: unknown stream '{stream}'{suggestion} (streams: book, depth, trade, kline_<interval>)", path.display())]
    UnknownStream {
        path: PathBuf,
        stream: String,
        suggestion: String,
    },
    #[error("a strategy named '{0}' is already running")]
    Duplicate(String),
    #[error("no strategy named '{0}'")]
    NotFound(String),
    #[error("{}: the strategy's name changed from '{old}' to '{new}'; a reload keeps the name", path.display())]
    Renamed { path: PathBuf, old: String, new: String },
    #[error("subscribing for '{name}' failed: {error}")]
    Subscribe { name: String, error: ApiError },
    #[error("could not start the strategy's thread: {0}")]
    Thread(String),
    #[error("strategy '{0}' is not running")]
    Stopped(String),
    #[error("{name}: state cannot be carried over: {error}")]
    State {
        name: String,
        #[source]
        error: super::state_table::StateError,
    },
}

impl LoadError {
    /// Keeps only the first line of a Lua error (tracebacks go to the log, not here).
    pub fn from_lua(err: &mlua::Error) -> LoadError {
        let text = super::sandbox::error_text(err);
        LoadError::Lua(text.lines().next().unwrap_or_default().to_owned())
    }
}
