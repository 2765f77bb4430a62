//! Recording market streams and replaying them: `runner record` and `runner backtest`.

mod examples;
mod files;
mod replay;
