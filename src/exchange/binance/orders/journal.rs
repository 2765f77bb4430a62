//! The order journal: a JSONL file under the state dir recording every client order id
//! (with its owning strategy) before the order is sent, and each state change after. A
//! restart replays it to know which orders to look up.
//!
//! **Compaction.** Appending alone would grow the file forever, so it is rewritten to what
//! a restart needs: the registry's current orders (see [`super::order_registry`]: every order
//! not in a final state, plus a bounded window of the most recently finished ones), one
//! `new` and at most one `update` record each. The registry compacts at open, after
//! replay, and in the background once the file has grown past [`COMPACT_MIN_BYTES`] and
//! twice its size after the last compaction. The snapshot is written to
//! [`COMPACTION_FILE`] and synced without holding the journal's lock, so appends go on
//! meanwhile (to the old file, and kept aside); then, under the lock, those appends are
//! added, the file is synced, renamed over the journal, and the directory synced. A crash
//! at any point leaves either the old or the new journal complete; a leftover
//! [`COMPACTION_FILE`] is an unfinished compaction and is deleted at open.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::journal_sync::{DiskSync, JournalSync};
use super::symbols::ValidOrder;
use crate::exchange::types::{ClientOrderId, OrderStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum JournalRecord {
    /// Written before the order is sent (on the disk before or right after it: see `JournalSync`).
    /// The order is the one sent, its fields flat beside these (see `symbols::ValidOrder`'s form,
    /// which also reads the float `price` and `quantity` of journals written before it).
    New {
        client_id: ClientOrderId,
        strategy: String,
        #[serde(flatten)]
        order: ValidOrder,
        time: i64,
        /// The client id of the order list the order is sent in (`listClientOrderId`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        list_client_id: Option<String>,
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
        /// The quantity after an amendment (absent when never amended).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<f64>,
        /// The order list the order is a leg of.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        list_id: Option<u64>,
    },
    /// Never sent (refused by the ledger or the connection); the id is spent.
    Unsent { client_id: String, reason: String },
    /// The runner shut down cleanly: every record before this one reached the disk.
    Closed { time: i64 },
}

/// Whether the run that wrote `records` ended with a clean shutdown. After any other end (a crash, a
/// `kill -9`, a power loss) the last orders' records may be missing under the `background` policy.
pub fn ended_cleanly(records: &[JournalRecord]) -> bool {
    records.is_empty() || matches!(records.last(), Some(JournalRecord::Closed { .. }))
}

#[derive(Debug, thiserror::Error)]
#[error("order journal {}{}: {source}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct JournalError {
    path: PathBuf,
    /// The line at fault, when one is.
    line: Option<usize>,
    #[source]
    source: std::io::Error,
}

impl JournalError {
    fn at(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
        move |source| JournalError {
            path: path.to_path_buf(),
            line: None,
            source,
        }
    }
}

pub const JOURNAL_FILE: &str = "orders.jsonl";
/// Where a compaction writes the new journal before renaming it over the old one.
pub const COMPACTION_FILE: &str = "orders.jsonl.compacting";
/// The size below which the journal is never compacted while running.
pub const COMPACT_MIN_BYTES: u64 = 16 << 20;

pub struct Journal {
    path: PathBuf,
    dir: PathBuf,
    compact_min_bytes: u64,
    active: Mutex<Active>,
    /// The journal's current file, for the sync thread: a lock of its own, so an append (an order
    /// about to be sent) never waits on the sync thread, which may be preempted while holding it.
    file_to_sync: Arc<Mutex<File>>,
    disk: DiskSync,
    policy: JournalSync,
}

/// The file appends go to, and what a compaction needs to know about it.
struct Active {
    file: File,
    len: u64,
    /// The size right after the last compaction (or at open).
    base_len: u64,
    /// While a compaction runs: the lines appended since its snapshot, for the new file.
    tail: Option<Vec<u8>>,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and returns the records already in it.
    /// Unreadable lines (e.g. a line torn by a crash) are skipped with a warning.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<JournalRecord>), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let err = JournalError::at(&path);
        fs::create_dir_all(dir).map_err(&err)?;
        let leftover = dir.join(COMPACTION_FILE);
        if leftover.exists() {
            // A compaction that did not reach its rename: the journal itself is complete.
            tracing::warn!(path = %leftover.display(), "removing an unfinished journal compaction");
            fs::remove_file(&leftover).map_err(JournalError::at(&leftover))?;
        }
        let mut records = Vec::new();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(&err)?);
            for (number, line) in reader.split(b'\n').enumerate() {
                let line = String::from_utf8(line.map_err(&err)?).map_err(|_| JournalError {
                    path: path.clone(),
                    line: Some(number + 1),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not text: the file is corrupt (move it away to start without it, and check the exchange for open orders)",
                    ),
                })?;
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
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(&err)?;
        // A torn last line must not swallow the next record.
        if !ends_with_newline(&path).map_err(&err)? {
            file.write_all(b"\n").map_err(&err)?;
        }
        let len = file.metadata().map_err(&err)?.len();
        let file_to_sync = Arc::new(Mutex::new(file.try_clone().map_err(&err)?));
        let active = Mutex::new(Active {
            file,
            len,
            base_len: len,
            tail: None,
        });
        let current = Arc::clone(&file_to_sync);
        let disk = DiskSync::start(Box::new(move || current.lock().try_clone())).map_err(&err)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            path: path.clone(),
            compact_min_bytes: COMPACT_MIN_BYTES,
            active,
            file_to_sync,
            disk,
            policy: JournalSync::default(),
        };
        Ok((journal, records))
    }

    /// Compacts while running once the file reaches `bytes` (and twice its compacted size).
    pub fn with_compact_min_bytes(mut self, bytes: u64) -> Self {
        self.compact_min_bytes = bytes;
        self
    }

    /// Sets when an order's record must be on the disk (see [`JournalSync`]).
    pub fn with_sync(mut self, policy: JournalSync) -> Self {
        self.policy = policy;
        self
    }

    /// Appends one record (written at once, on the disk soon after: see [`DiskSync`]).
    pub fn append(&self, record: &JournalRecord) -> Result<(), JournalError> {
        self.write(record)?;
        self.disk.kick();
        Ok(())
    }

    /// Appends the record of an order about to be sent, without waking the sync thread: then
    /// [`Journal::before_send`], the send, and [`Journal::sent`] (see [`JournalSync`]).
    pub fn append_for_send(&self, record: &JournalRecord) -> Result<(), JournalError> {
        self.write(record)
    }

    /// Called after an order's record is appended and before the order is sent: waits for the
    /// disk if the policy says so.
    pub fn before_send(&self) -> Result<(), JournalError> {
        match self.policy {
            JournalSync::Background => Ok(()),
            JournalSync::BeforeSend => self.wait_synced(),
        }
    }

    /// The order whose record [`Journal::append_for_send`] wrote has been sent (or will not be):
    /// its record goes to the disk now.
    pub fn sent(&self) {
        self.disk.kick();
    }

    fn write(&self, record: &JournalRecord) -> Result<(), JournalError> {
        let line = line_of(record).map_err(JournalError::at(&self.path))?;
        let mut active = self.active.lock();
        let result = active.file.write_all(&line);
        active.len += line.len() as u64;
        if let Some(tail) = &mut active.tail {
            tail.extend_from_slice(&line);
        }
        self.disk.written_quietly();
        result.map_err(JournalError::at(&self.path))
    }

    /// Waits until every record appended so far is on the disk.
    pub fn wait_synced(&self) -> Result<(), JournalError> {
        self.disk
            .wait_all()
            .map_err(|message| JournalError::at(&self.path)(std::io::Error::other(message)))
    }

    pub fn flush(&self) -> Result<(), JournalError> {
        self.wait_synced()?;
        self.active.lock().file.sync_all().map_err(JournalError::at(&self.path))
    }

    /// The file's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.active.lock().len
    }

    /// Whether the file has grown enough since the last compaction to compact it again
    /// (and none is running).
    pub fn wants_compaction(&self) -> bool {
        let active = self.active.lock();
        active.tail.is_none() && active.len >= self.compact_min_bytes.max(active.base_len.saturating_mul(2))
    }

    /// Starts a compaction: from now on appends are also kept for the new file. The caller
    /// takes its snapshot after this, under the lock that orders its own state changes, so
    /// every change is in the snapshot or among those appends. False if one is running.
    pub fn begin_compaction(&self) -> bool {
        let mut active = self.active.lock();
        if active.tail.is_some() {
            return false;
        }
        active.tail = Some(Vec::new());
        true
    }

    /// Ends the compaction [`begin_compaction`](Self::begin_compaction) started: writes
    /// `snapshot` and the records appended since to a new file and renames it over the
    /// journal. On an error the journal stays as it was (with every record).
    pub fn finish_compaction(&self, snapshot: &[JournalRecord]) -> Result<(), JournalError> {
        let temp = self.dir.join(COMPACTION_FILE);
        let result = self
            .write_snapshot(&temp, snapshot)
            .and_then(|file| self.switch_to(&temp, file));
        if result.is_err() {
            self.abandon_compaction();
            // Best effort: a leftover is removed at the next open anyway.
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Gives up a compaction begun but not finished; the journal stays as it is.
    pub fn abandon_compaction(&self) {
        self.active.lock().tail = None;
    }

    /// Writes and syncs the snapshot; slow, so done without the lock.
    fn write_snapshot(&self, temp: &Path, snapshot: &[JournalRecord]) -> Result<File, JournalError> {
        let err = JournalError::at(temp);
        match fs::remove_file(temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        // Append mode: after the rename this handle is the journal's.
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(temp)
            .map_err(&err)?;
        let mut writer = BufWriter::new(&file);
        for record in snapshot {
            writer.write_all(&line_of(record).map_err(&err)?).map_err(&err)?;
        }
        writer.flush().map_err(&err)?;
        drop(writer);
        file.sync_all().map_err(&err)?;
        Ok(file)
    }

    /// Adds the appends made meanwhile, renames the new file over the journal and makes
    /// it the one appended to. Holding the lock throughout orders it with every append.
    fn switch_to(&self, temp: &Path, mut file: File) -> Result<(), JournalError> {
        let mut active = self.active.lock();
        let tail = active.tail.take().unwrap_or_default();
        let to_sync = file
            .write_all(&tail)
            .and_then(|()| file.sync_data())
            .and_then(|()| file.try_clone())
            .map_err(JournalError::at(temp))?;
        fs::rename(temp, &self.path).map_err(JournalError::at(&self.path))?;
        // Before the lock is let go: a record appended to the new file is synced in the new file.
        *self.file_to_sync.lock() = to_sync;
        let len = file.metadata().map_or(active.len, |m| m.len());
        // The next compaction is measured against the snapshot alone: the records carried over
        // from a busy compaction are history the next one may drop, however fast they came.
        let snapshot_len = len.saturating_sub(tail.len() as u64);
        *active = Active {
            file,
            len,
            base_len: snapshot_len,
            tail: None,
        };
        // Until the directory is synced the rename may not survive a crash; appends wait.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(JournalError::at(&self.dir))
    }
}

fn line_of(record: &JournalRecord) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
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
    use crate::exchange::types::{OrderKind, Side, TimeInForce};
    use rust_decimal::Decimal;

    /// The `new` records of a journal written before orders were typed (floats, 0 for none), as
    /// one such version wrote them, read into the typed record.
    #[test]
    fn new_records_of_earlier_versions_still_read() {
        let old = concat!(
            r#"{"t":"new","client_id":"rmk3f-0","strategy":"arb","symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT","tif":"GTC","price":100.5,"quantity":0.25,"time":1}"#,
            "\n",
            r#"{"t":"new","client_id":"rmk3f-1","strategy":"arb","symbol":"BTCUSDT","side":"SELL","order_type":"MARKET","price":0.0,"quantity":0.001,"time":2}"#,
        );
        let records: Vec<JournalRecord> = old.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let JournalRecord::New { client_id, order, .. } = &records[0] else {
            panic!("{:?}", records[0])
        };
        assert_eq!(client_id.as_str(), "rmk3f-0");
        assert_eq!((order.side(), order.kind().tif()), (Side::Buy, Some(TimeInForce::Gtc)));
        assert_eq!(order.kind().price(), Some(Decimal::new(1005, 1)));
        let JournalRecord::New { order, .. } = &records[1] else {
            panic!("{:?}", records[1])
        };
        assert!(matches!(order.kind(), OrderKind::Market { .. }));
        assert_eq!(
            (order.kind().price(), order.kind().quantity()),
            (None, Some(Decimal::new(1, 3)))
        );
    }

    #[test]
    fn records_round_trip_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let new: JournalRecord = serde_json::from_str(
            r#"{"t":"new","client_id":"rA-1","strategy":"arb","symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT","tif":"GTC","price":"100.5","quantity":"0.25","time":1}"#,
        )
        .unwrap();
        let update = JournalRecord::Update {
            client_id: "rA-1".into(),
            id: Some(7),
            status: OrderStatus::PartiallyFilled,
            filled_qty: 0.1,
            filled_quote: 10.05,
            reject_reason: None,
            time: 2,
            quantity: None,
            list_id: None,
        };
        {
            let (journal, records) = Journal::open(dir.path()).unwrap();
            assert!(records.is_empty());
            journal.append(&new).unwrap();
            journal.append(&update).unwrap();
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
        journal.append(&unsent).unwrap();
        drop(journal);
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.last(), Some(&unsent));
    }

    fn unsent(n: usize) -> JournalRecord {
        JournalRecord::Unsent {
            client_id: format!("c-{n}"),
            reason: "rate_limited".into(),
        }
    }

    /// A journal in `dir` holding `count` records.
    fn journal_of(dir: &Path, count: usize) -> Journal {
        let (journal, _) = Journal::open(dir).unwrap();
        for n in 0..count {
            journal.append(&unsent(n)).unwrap();
        }
        journal
    }

    fn file_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len()
    }

    #[test]
    fn compaction_replaces_the_file_and_keeps_what_was_appended_while_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_of(dir.path(), 50);
        let before = file_len(dir.path());
        assert!(journal.begin_compaction());
        assert!(!journal.begin_compaction(), "one compaction at a time");
        // Appended after the snapshot was taken: it must reach the new file.
        journal.append(&unsent(50)).unwrap();
        journal.finish_compaction(&[unsent(1)]).unwrap();
        journal.append(&unsent(51)).unwrap();
        assert_eq!(journal.size_bytes(), file_len(dir.path()));
        assert!(file_len(dir.path()) < before / 10, "the file shrank");
        drop(journal);
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(1), unsent(50), unsent(51)]);
        assert!(!dir.path().join(COMPACTION_FILE).exists());
    }

    #[test]
    fn a_compaction_cut_short_by_a_crash_leaves_the_old_journal_whole() {
        let dir = tempfile::tempdir().unwrap();
        drop(journal_of(dir.path(), 3));
        // The crash came after part of the new file was written, before the rename.
        let leftover = dir.path().join(COMPACTION_FILE);
        fs::write(
            &leftover,
            b"{\"t\":\"unsent\",\"client_id\":\"c-9\",\"reason\":\"x\"}\n{\"t\":\"un",
        )
        .unwrap();
        let (journal, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(0), unsent(1), unsent(2)]);
        assert!(!leftover.exists(), "the unfinished compaction is removed");
        // And the next compaction works.
        assert!(journal.begin_compaction());
        journal.finish_compaction(&[unsent(2)]).unwrap();
        drop(journal);
        assert_eq!(Journal::open(dir.path()).unwrap().1, vec![unsent(2)]);
    }

    #[test]
    fn a_failed_compaction_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_of(dir.path(), 1);
        // A directory where the new file should go: writing it fails.
        fs::create_dir(dir.path().join(COMPACTION_FILE)).unwrap();
        assert!(journal.begin_compaction());
        journal.append(&unsent(1)).unwrap();
        assert!(journal.finish_compaction(&[]).is_err());
        journal.append(&unsent(2)).unwrap();
        assert!(journal.begin_compaction(), "a later compaction may try again");
        journal.abandon_compaction();
        drop(journal);
        fs::remove_dir(dir.path().join(COMPACTION_FILE)).unwrap();
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(0), unsent(1), unsent(2)]);
    }

    #[test]
    fn compaction_is_wanted_past_the_minimum_and_twice_the_compacted_size() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let journal = journal.with_compact_min_bytes(500);
        let line = line_of(&unsent(0)).unwrap().len() as u64;
        let mut n = 0;
        while journal.size_bytes() + line < 500 {
            journal.append(&unsent(n)).unwrap();
            n += 1;
        }
        assert!(!journal.wants_compaction());
        journal.append(&unsent(n)).unwrap();
        assert!(journal.wants_compaction());
        assert!(journal.begin_compaction());
        assert!(!journal.wants_compaction(), "not while one runs");
        // A snapshot bigger than the minimum: the next one waits for the file to double.
        let kept: Vec<JournalRecord> = (0..=n).map(unsent).collect();
        journal.finish_compaction(&kept).unwrap();
        let compacted = journal.size_bytes();
        while journal.size_bytes() + line < 2 * compacted {
            journal.append(&unsent(0)).unwrap();
        }
        assert!(!journal.wants_compaction());
        journal.append(&unsent(0)).unwrap();
        assert!(journal.wants_compaction());
    }
}
