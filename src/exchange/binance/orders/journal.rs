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
//!
//! **Off the order's path.** Records are written at offsets chosen so that an append never waits
//! for the disk (an order's record is written on the strategy's thread, an update under the order
//! registry's lock): see [`super::journal_file`]. So the file may hold zero bytes between records
//! and after the last one; a reader skips them.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::journal_file::JournalFile;
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
/// Locked while a runner has the journal open (never renamed, unlike the journal).
pub const LOCK_FILE: &str = "orders.jsonl.lock";
/// The size below which the journal is never compacted while running.
pub const COMPACT_MIN_BYTES: u64 = 16 << 20;

pub struct Journal {
    path: PathBuf,
    dir: PathBuf,
    compact_min_bytes: u64,
    active: Mutex<Active>,
    /// Where records go in the file, and its syncs (see [`super::journal_file`]): shared with the
    /// sync thread without a lock an append would wait on (the sync thread may be preempted while
    /// holding one).
    file: Arc<JournalFile>,
    disk: DiskSync,
    policy: JournalSync,
    /// Held (locked) while the journal is open: a second runner on the same state dir would write
    /// records the first never sees (see [`lock_dir`]).
    _lock: Arc<File>,
}

/// The file appends go to, and what a compaction needs to know about it.
struct Active {
    /// Written at offsets (where the last record ends: `JournalFile::end`), not in append mode: the
    /// file is filled past its records.
    file: File,
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
        let lock = lock_dir(dir)?;
        let leftover = dir.join(COMPACTION_FILE);
        if leftover.exists() {
            // A compaction that did not reach its rename: the journal itself is complete.
            tracing::warn!(path = %leftover.display(), "removing an unfinished journal compaction");
            fs::remove_file(&leftover).map_err(JournalError::at(&leftover))?;
        }
        let (records, content_end) = read_records(&path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(&err)?;
        let mut len = content_end;
        // A torn last line must not swallow the next record.
        if !ends_with_newline(&file, len).map_err(&err)? {
            file.write_all_at(b"\n", len).map_err(&err)?;
            len += 1;
        }
        let journal_file = Arc::new(JournalFile::new(file.try_clone().map_err(&err)?, len));
        let active = Mutex::new(Active {
            file,
            base_len: len,
            tail: None,
        });
        let to_sync = Arc::clone(&journal_file);
        let disk = DiskSync::start(Box::new(move || to_sync.sync())).map_err(&err)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            path: path.clone(),
            compact_min_bytes: COMPACT_MIN_BYTES,
            active,
            file: journal_file,
            disk,
            policy: JournalSync::default(),
            _lock: lock,
        };
        Ok((journal, records))
    }

    /// The records of the journal in `dir`, read only: a runner may have it open meanwhile.
    pub fn read(dir: &Path) -> Result<Vec<JournalRecord>, JournalError> {
        Ok(read_records(&dir.join(JOURNAL_FILE))?.0)
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
        // With a leading newline, which ends the gap when the record starts a page.
        // Sized for an order's record, so the serializer does not grow it step by step.
        let mut line = Vec::with_capacity(512);
        line.push(b'\n');
        serde_json::to_writer(&mut line, record).map_err(|e| JournalError::at(&self.path)(e.into()))?;
        line.push(b'\n');
        let mut active = self.active.lock();
        let result = self.file.append(&active.file, &line);
        if let Some(tail) = &mut active.tail {
            tail.extend_from_slice(&line[1..]);
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

    /// Waits for every record to be on the disk, with the zeros written ahead of them cut off.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.wait_synced()?;
        let active = self.active.lock();
        let err = JournalError::at(&self.path);
        self.file.trim(&active.file).map_err(&err)?;
        active.file.sync_all().map_err(&err)
    }

    /// The file's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.file.end()
    }

    /// Whether the file has grown enough since the last compaction to compact it again
    /// (and none is running).
    pub fn wants_compaction(&self) -> bool {
        let active = self.active.lock();
        active.tail.is_none() && self.file.end() >= self.compact_min_bytes.max(active.base_len.saturating_mul(2))
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
        // Read and write: after the rename this handle is the journal's (see `Active::file`).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
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
        let len = file.metadata().map_or(self.file.end(), |m| m.len());
        // Before the lock is let go: a record appended to the new file is synced in the new file.
        self.file.replace(to_sync, len);
        // The next compaction is measured against the snapshot alone: the records carried over
        // from a busy compaction are history the next one may drop, however fast they came.
        let snapshot_len = len.saturating_sub(tail.len() as u64);
        *active = Active {
            file,
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

/// The journal locks this process holds, by directory. A journal opened again in the same process
/// (a venue connected anew after another, as after a crash in the tests) shares its lock; another
/// process is refused.
static LOCKS_HELD: Mutex<Vec<(PathBuf, Weak<File>)>> = Mutex::new(Vec::new());

/// Locks the journal of `dir` for this process, or says that another process holds it.
fn lock_dir(dir: &Path) -> Result<Arc<File>, JournalError> {
    let path = dir.join(LOCK_FILE);
    let err = JournalError::at(&path);
    let key = dir.canonicalize().map_err(&err)?;
    let mut held = LOCKS_HELD.lock();
    held.retain(|(_, lock)| lock.strong_count() > 0);
    if let Some(lock) = held
        .iter()
        .find(|(d, _)| *d == key)
        .and_then(|(_, lock)| lock.upgrade())
    {
        return Ok(lock);
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(&err)?;
    match file.try_lock() {
        Ok(()) => {
            let lock = Arc::new(file);
            held.push((key, Arc::downgrade(&lock)));
            Ok(lock)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(err(std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            "another runner has this order journal open: give each running runner its own --state-dir",
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

/// The records in the journal at `path` (none if there is no file), and where the last of them
/// ends (the zero bytes after it, if any, are space written ahead). Zero bytes between records (the
/// gap before a record that starts a page) are skipped; unreadable lines (a line torn by a crash)
/// are skipped with a warning.
fn read_records(path: &Path) -> Result<(Vec<JournalRecord>, u64), JournalError> {
    let err = JournalError::at(path);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(err(e)),
    };
    let mut reader = BufReader::new(file);
    let (mut records, mut line, mut number) = (Vec::new(), Vec::new(), 0);
    let (mut at, mut content_end) = (0u64, 0u64);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(&err)?;
        if read == 0 {
            return Ok((records, content_end));
        }
        number += 1;
        if let Some(last) = line.iter().rposition(|&b| b != 0) {
            content_end = at + last as u64 + 1;
        }
        at += read as u64;
        let text = std::str::from_utf8(&line).map_err(|_| JournalError {
            path: path.to_path_buf(),
            line: Some(number),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not text: the file is corrupt (move it away to start without it, and check the exchange for open orders)",
            ),
        })?;
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str(text) {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!(path = %path.display(), line = number, "skipping unreadable journal line: {e}"),
        }
    }
}

/// True when the first `len` bytes of `file` are empty or end with a newline.
fn ends_with_newline(file: &File, len: u64) -> std::io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::orders::journal_file::PAGE;
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

    #[test]
    fn compaction_replaces_the_file_and_keeps_what_was_appended_while_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_of(dir.path(), 50);
        let before = journal.size_bytes();
        assert!(journal.begin_compaction());
        assert!(!journal.begin_compaction(), "one compaction at a time");
        // Appended after the snapshot was taken: it must reach the new file.
        journal.append(&unsent(50)).unwrap();
        journal.finish_compaction(&[unsent(1)]).unwrap();
        // With no sync under way, the next record follows the last one (no page gap).
        journal.wait_synced().unwrap();
        journal.append(&unsent(51)).unwrap();
        // Past the records the file holds only the zeros the sync thread may have written ahead.
        let bytes = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        let end = journal.size_bytes() as usize;
        assert_eq!(bytes[end - 1], b'\n');
        assert!(bytes[end..].iter().all(|&b| b == 0));
        assert!(journal.size_bytes() < before / 10, "the file shrank");
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
        // Appended until wanted (a record may start a new page, so sizes are watched, not counted).
        let append_until_wanted = |below: u64| {
            while !journal.wants_compaction() {
                assert!(
                    journal.size_bytes() < below,
                    "not wanted at {} bytes",
                    journal.size_bytes()
                );
                journal.append(&unsent(0)).unwrap();
            }
            assert!(
                journal.size_bytes() >= below,
                "wanted at {} bytes",
                journal.size_bytes()
            );
        };
        append_until_wanted(500);
        assert!(journal.begin_compaction());
        assert!(!journal.wants_compaction(), "not while one runs");
        // A snapshot bigger than the minimum: the next one waits for the file to double.
        let kept: Vec<JournalRecord> = (0..20).map(unsent).collect();
        journal.finish_compaction(&kept).unwrap();
        let compacted = journal.size_bytes();
        assert!(compacted > 500);
        append_until_wanted(2 * compacted);
    }

    /// Where `record`'s line starts in the journal file in `dir`.
    fn offset_of(dir: &Path, record: &JournalRecord) -> usize {
        let bytes = fs::read(dir.join(JOURNAL_FILE)).unwrap();
        let line = line_of(record).unwrap();
        bytes
            .windows(line.len())
            .position(|w| w == line.as_slice())
            .expect("the record is in the file")
    }

    #[test]
    fn records_read_back_after_a_crash_left_zeros_ahead_of_them_and_a_clean_stop_cuts_those() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&unsent(0)).unwrap();
        journal.append_for_send(&unsent(1)).unwrap();
        journal.sent();
        journal.wait_synced().unwrap();
        // The sync thread wrote zeros ahead; a crash now (no clean shutdown) leaves them.
        let end = offset_of(dir.path(), &unsent(1)) + line_of(&unsent(1)).unwrap().len();
        let file_len = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
        assert!(file_len > end as u64 + PAGE, "written ahead: {file_len}");
        // A crash: no clean shutdown (the zeros written ahead stay), the lock goes with the process.
        drop(journal);
        let (journal, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(0), unsent(1)]);
        // No sync under way: the next record follows the last one, not the zeros.
        journal.append(&unsent(2)).unwrap();
        assert_eq!(offset_of(dir.path(), &unsent(2)), end);
        // A clean shutdown leaves the records and nothing after them.
        journal.flush().unwrap();
        drop(journal);
        let bytes = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(bytes.len(), end + line_of(&unsent(2)).unwrap().len());
        assert_eq!(
            Journal::open(dir.path()).unwrap().1,
            (0..3).map(unsent).collect::<Vec<_>>()
        );
    }

    /// Appends from several threads while the sync thread syncs and fills ahead, then a crash:
    /// every record is there, each thread's in its order, whatever page each landed on.
    #[test]
    fn concurrent_appends_racing_the_syncs_all_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let record = |thread: usize, n: usize| JournalRecord::Unsent {
            client_id: format!("t{thread}-{n}"),
            reason: "x".repeat(n % 300),
        };
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (journal, record) = (&journal, &record);
                scope.spawn(move || {
                    for n in 0..500 {
                        if n % 2 == 0 {
                            journal.append_for_send(&record(thread, n)).unwrap();
                            journal.sent();
                        } else {
                            journal.append(&record(thread, n)).unwrap();
                        }
                    }
                });
            }
        });
        journal.wait_synced().unwrap();
        // A crash: no clean shutdown (the zeros written ahead stay), the lock goes with the process.
        drop(journal);
        let (_, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.len(), 2000);
        for thread in 0..4 {
            let mine: Vec<&JournalRecord> = records
                .iter()
                .filter(|r| matches!(r, JournalRecord::Unsent { client_id, .. } if client_id.starts_with(&format!("t{thread}-"))))
                .collect();
            let expected: Vec<JournalRecord> = (0..500).map(|n| record(thread, n)).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "thread {thread}");
        }
    }

    /// Another process holding the journal's lock (another runner on the same state dir) is
    /// refused, with what to do; a journal opened again in this process shares the lock.
    #[test]
    fn another_runner_on_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Another process's lock, as a second open file description of the lock file holds it.
        let other = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.path().join(LOCK_FILE))
            .unwrap();
        other.lock().unwrap();
        let Err(refused) = Journal::open(dir.path()) else {
            panic!("opened while another process holds the journal")
        };
        assert!(refused.to_string().contains("its own --state-dir"), "{refused}");
        other.unlock().unwrap();
        let (first, _) = Journal::open(dir.path()).unwrap();
        first.append(&unsent(0)).unwrap();
        // Held by this process now: another cannot take it, a second journal here shares it.
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        let (second, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(0)]);
        drop((first, second));
        other.try_lock().expect("released once both are closed");
    }

    #[test]
    fn a_torn_record_between_zeros_is_skipped_and_the_next_one_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        // As a crash can leave it: a record torn mid-line, the gap to the next page, a record
        // there, and zeros written ahead.
        let mut bytes = line_of(&unsent(0)).unwrap();
        bytes.extend_from_slice(b"{\"t\":\"uns");
        bytes.resize(PAGE as usize, 0);
        bytes.push(b'\n');
        bytes.extend_from_slice(&line_of(&unsent(1)).unwrap());
        bytes.resize(3 * PAGE as usize, 0);
        fs::write(&path, &bytes).unwrap();
        let (journal, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![unsent(0), unsent(1)]);
        journal.append(&unsent(2)).unwrap();
        drop(journal);
        assert_eq!(
            Journal::open(dir.path()).unwrap().1,
            vec![unsent(0), unsent(1), unsent(2)]
        );
    }
}
