//! The order journal: an append-only JSONL file under the state dir recording every
//! client order id (with its owning strategy) before the order is sent, and each
//! state change after. A restart replays it to know which orders to look up.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::exchange::types::{OrderStatus, OrderType, Side, TimeInForce};

pub const JOURNAL_FILE: &str = "orders.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum JournalRecord {
    /// Written (and synced to disk) before the order is sent.
    New {
        client_id: String,
        strategy: String,
        symbol: String,
        side: Side,
        order_type: OrderType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tif: Option<TimeInForce>,
        price: f64,
        quantity: f64,
        time: i64,
    },
    /// A state change learned from the exchange.
    Update {
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        status: OrderStatus,
        filled_qty: f64,
        filled_quote: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reject_reason: Option<String>,
        time: i64,
    },
    /// Never sent (refused by the ledger or the connection); the id is spent.
    Unsent { client_id: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("order journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: std::io::Error,
}

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and returns the records already in it.
    /// Unreadable lines (e.g. a line torn by a crash) are skipped with a warning.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<JournalRecord>), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let err = |source| JournalError {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let mut records = Vec::new();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(err)?);
            for (number, line) in reader.lines().enumerate() {
                let line = line.map_err(err)?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(&line) {
                    Ok(record) => records.push(record),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), line = number + 1, "skipping unreadable journal line: {e}")
                    }
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(err)?;
        // A torn last line must not swallow the next record.
        if !ends_with_newline(&path).map_err(err)? {
            file.write_all(b"\n").map_err(err)?;
        }
        Ok((
            Journal {
                path,
                file: Mutex::new(file),
            },
            records,
        ))
    }

    /// Appends one record; `durable` waits until it is on disk.
    pub fn append(&self, record: &JournalRecord, durable: bool) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(record).map_err(|e| JournalError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        let mut file = self.file.lock();
        let result = file
            .write_all(line.as_bytes())
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
        result.map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }

    pub fn flush(&self) -> Result<(), JournalError> {
        self.file.lock().sync_all().map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }
}

/// True for an empty file or one whose last byte is a newline.
fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let new = JournalRecord::New {
            client_id: "rA-1".into(),
            strategy: "arb".into(),
            symbol: "BTCUSDT".into(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Gtc),
            price: 100.5,
            quantity: 0.25,
            time: 1,
        };
        let update = JournalRecord::Update {
            client_id: "rA-1".into(),
            id: Some(7),
            status: OrderStatus::PartiallyFilled,
            filled_qty: 0.1,
            filled_quote: 10.05,
            reject_reason: None,
            time: 2,
        };
        {
            let (journal, records) = Journal::open(dir.path()).unwrap();
            assert!(records.is_empty());
            journal.append(&new, true).unwrap();
            journal.append(&update, false).unwrap();
            journal.flush().unwrap();
        }
        // A crash mid-write leaves a torn last line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        file.write_all(b"{\"t\":\"upd").unwrap();
        drop(file);
        let (journal, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![new, update]);
        let unsent = JournalRecord::Unsent {
            client_id: "rA-2".into(),
            reason: "rate_limited".into(),
        };
        journal.append(&unsent, true).unwrap();
        drop(journal);
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.last(), Some(&unsent));
    }
}
