//! Market recordings: `runner record` writes what the market streams deliver to compressed,
//! append-only, checksummed files ([`format`]); backtests replay them.

pub(crate) mod format;
pub(crate) mod recorder;

pub use format::{BlockReader, BlockWriter, FormatError, Record, RecordKind};
pub use recorder::{get, record, stream_names, RecordError, RecordOptions, RecordSummary, Rotate};
