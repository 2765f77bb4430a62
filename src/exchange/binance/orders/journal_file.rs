//! Where each journal record goes in the file, and how the file is synced, so that an append (on
//! an order's path, or under the order registry's lock) never waits for the disk.
//!
//! **Why it would.** To write a page back, the kernel locks it; a `write(2)` into a locked page
//! sleeps until the lock is let go (traced on ext4: `ext4_da_write_begin` → `__filemap_get_folio`
//! → `io_schedule`, tens to hundreds of µs). Appending puts each record in the page of the one
//! before, which the sync thread is often writing back at that moment. And a write that grows the
//! file or needs new blocks takes the file system's locks, which a sync also takes.
//!
//! **So:**
//! - A record starts on the next page instead when a sync that began after its page was last
//!   written is still under way (that sync may be writing the page back). A sync and an append
//!   agree on who goes first (`writing` / `syncs_started`, both sequentially consistent): either
//!   the append sees the sync and moves on, or the sync waits for the append to finish. The gap
//!   holds zero bytes and ends in a newline, so the record is a clean line and readers skip the
//!   gap.
//! - The sync thread writes zeros ahead of the records ([`FILL_AHEAD`]), one page per `write` (a
//!   larger one would be cached as one multi-page unit, locked whole), so appends overwrite pages
//!   that exist, in blocks that exist. The fill never writes where a record is: it starts past the
//!   last record and past everything filled before, and an append that would reach past the filled
//!   part takes the fill's lock. A clean shutdown cuts the zeros off again ([`JournalFile::trim`]);
//!   after a crash a reader skips them like the gaps.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// The unit the kernel caches a small write in and locks while writing it back.
pub const PAGE: u64 = 4096;
/// How far past the last record the sync thread keeps the file filled.
pub const FILL_AHEAD: u64 = 1 << 20;
/// A fill starts once less than this is left ahead of the last record.
const FILL_WHEN_LEFT: u64 = FILL_AHEAD / 2;
/// The fill's source: one page per write (see the module's notes).
static ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];

pub struct JournalFile {
    /// The file the sync thread fills and syncs; its lock is the fill's.
    target: Mutex<Target>,
    /// The file holds written zeros or records up to here.
    filled: AtomicU64,
    /// Where the last record ends (written by appends, one at a time; read by the sync thread's fill).
    end: AtomicU64,
    /// An append is writing (set before it looks at `syncs_started`).
    writing: AtomicBool,
    /// Syncs begun (counted before each waits for `writing` to clear) and finished.
    syncs_started: AtomicU64,
    syncs_done: AtomicU64,
    /// `syncs_started` as the last append saw it: a sync counted after that may be writing the
    /// last record's page back. Only appends touch it (one at a time, under the journal's lock).
    last_page_written_at: AtomicU64,
}

struct Target {
    /// Shared with the sync under way, which runs after the lock is let go.
    file: Arc<File>,
    /// After a failed fill (a full disk), the next is tried once the records reach here.
    retry_at: u64,
}

impl JournalFile {
    /// `file` (a handle of the journal's file for the sync thread) holds records up to `len`.
    pub fn new(file: File, len: u64) -> JournalFile {
        JournalFile {
            target: Mutex::new(Target {
                file: Arc::new(file),
                retry_at: 0,
            }),
            filled: AtomicU64::new(len),
            end: AtomicU64::new(len),
            writing: AtomicBool::new(false),
            syncs_started: AtomicU64::new(0),
            syncs_done: AtomicU64::new(0),
            last_page_written_at: AtomicU64::new(0),
        }
    }

    /// Where the last record ends.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Appends `line` (a record: a newline, its JSON, a newline) after the last record, with `file`
    /// (the appender's handle). The caller makes one append at a time. Even after an error the next
    /// record goes after this one's place: part of it may be in the file.
    pub fn append(&self, file: &File, line: &[u8]) -> std::io::Result<()> {
        let end = self.end.load(Ordering::Relaxed);
        self.writing.store(true, Ordering::SeqCst);
        let started = self.syncs_started.load(Ordering::SeqCst);
        let done = self.syncs_done.load(Ordering::SeqCst);
        let page_in_a_sync = started > self.last_page_written_at.load(Ordering::Relaxed) && done < started;
        let (at, bytes) = if page_in_a_sync && !end.is_multiple_of(PAGE) {
            (end.next_multiple_of(PAGE), line)
        } else {
            // The leading newline only ends a gap.
            (end, &line[1..])
        };
        let stop = at + bytes.len() as u64;
        let result = if stop <= self.filled.load(Ordering::Acquire) {
            file.write_all_at(bytes, at)
        } else {
            // Past the filled part: not while a fill is under way; the next fill starts past it.
            let _fill = self.target.lock();
            let result = file.write_all_at(bytes, at);
            self.filled.fetch_max(stop, Ordering::AcqRel);
            result
        };
        self.last_page_written_at.store(started, Ordering::Relaxed);
        self.end.store(stop, Ordering::Release);
        self.writing.store(false, Ordering::SeqCst);
        result
    }

    /// For the sync thread: fills the file ahead of the records when the room left is short, then
    /// puts everything appended so far on the disk. A failed fill is only logged: appends then grow
    /// the file as they would without it (slower, never lost).
    pub fn sync(&self) -> std::io::Result<()> {
        let file = {
            let mut target = self.target.lock();
            let end = self.end.load(Ordering::Acquire);
            let filled = self.filled.load(Ordering::Acquire);
            if filled < end.saturating_add(FILL_WHEN_LEFT) && end >= target.retry_at {
                // Page-aligned, so the fill never shares a page with a record.
                let from = filled.max(end).next_multiple_of(PAGE);
                match fill(&target.file, from, FILL_AHEAD) {
                    Ok(()) => {
                        self.filled.fetch_max(from + FILL_AHEAD, Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::warn!("writing the order journal's space ahead failed: {e}");
                        target.retry_at = end.saturating_add(FILL_WHEN_LEFT);
                    }
                }
            }
            Arc::clone(&target.file)
        };
        self.syncs_started.fetch_add(1, Ordering::SeqCst);
        while self.writing.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let result = file.sync_data();
        self.syncs_done.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// A compaction's new file, holding records up to `len`, replaces the journal's. The caller
    /// holds the appends off meanwhile.
    pub fn replace(&self, file: File, len: u64) {
        let mut target = self.target.lock();
        *target = Target {
            file: Arc::new(file),
            retry_at: 0,
        };
        self.filled.store(len, Ordering::Release);
        self.end.store(len, Ordering::Release);
    }

    /// Cuts the file (`file`, the appender's handle) back to its records: a clean shutdown leaves no
    /// zeros behind. The caller holds the appends off meanwhile.
    pub fn trim(&self, file: &File) -> std::io::Result<()> {
        let _fill = self.target.lock();
        let len = self.end();
        file.set_len(len)?;
        self.filled.store(len, Ordering::Release);
        Ok(())
    }
}

fn fill(file: &File, from: u64, len: u64) -> std::io::Result<()> {
    for page in 0..len.div_ceil(PAGE) {
        file.write_all_at(&ZEROS, from + page * PAGE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new empty file, opened to read and write, in a directory of its own.
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (dir, path, file)
    }

    fn fixture() -> (tempfile::TempDir, File, JournalFile) {
        let (dir, _, file) = scratch();
        let journal = JournalFile::new(file.try_clone().unwrap(), 0);
        (dir, file, journal)
    }

    /// Appends `line`; where the records now end.
    fn put(journal: &JournalFile, file: &File, line: &[u8]) -> u64 {
        journal.append(file, line).unwrap();
        journal.end()
    }

    fn read(file: &File, at: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, at).unwrap();
        bytes
    }

    #[test]
    fn records_follow_each_other_until_a_sync_may_be_writing_their_page() {
        let (_dir, file, journal) = fixture();
        assert_eq!(put(&journal, &file, b"\none\n"), 4);
        assert_eq!(put(&journal, &file, b"\ntwo\n"), 8, "no sync yet: right after");
        // A sync is counted and under way: its page may be locked, so the next record moves on.
        journal.syncs_started.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            put(&journal, &file, b"\nthree\n"),
            PAGE + 7,
            "on the next page, after the newline ending the gap"
        );
        assert_eq!(read(&file, PAGE, 7), b"\nthree\n");
        // Its own page was written after that sync began: the sync does not hold it.
        assert_eq!(put(&journal, &file, b"\nfour\n"), PAGE + 12);
        // Once the sync is done, nothing holds the page.
        journal.syncs_done.fetch_add(1, Ordering::SeqCst);
        assert_eq!(put(&journal, &file, b"\nfive\n"), PAGE + 17);
        assert_eq!(&read(&file, 0, 8), b"one\ntwo\n");
        assert!(read(&file, 8, PAGE as usize - 8).iter().all(|&b| b == 0));
    }

    #[test]
    fn a_sync_waits_for_an_append_under_way_and_counts_itself_done() {
        let (_dir, file, journal) = fixture();
        journal.writing.store(true, Ordering::SeqCst);
        std::thread::scope(|scope| {
            let syncing = scope.spawn(|| journal.sync());
            while journal.syncs_started.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(journal.syncs_done.load(Ordering::SeqCst), 0, "it waited for the append");
            journal.writing.store(false, Ordering::SeqCst);
            syncing.join().unwrap().unwrap();
        });
        assert_eq!(journal.syncs_done.load(Ordering::SeqCst), 1);
        drop(file);
    }

    #[test]
    fn the_sync_thread_fills_ahead_of_the_records_and_never_over_them() {
        let (_dir, file, journal) = fixture();
        put(&journal, &file, b"\none\n");
        journal.sync().unwrap();
        let filled = journal.filled.load(Ordering::Acquire);
        assert_eq!(filled, PAGE + FILL_AHEAD, "from the next page on");
        assert_eq!(file.metadata().unwrap().len(), filled);
        // Records inside the filled part, and one more sync: nothing is filled over them.
        assert_eq!(put(&journal, &file, b"\ntwo\n"), 8);
        journal.sync().unwrap();
        assert_eq!(&read(&file, 0, 8), b"one\ntwo\n");
        assert_eq!(
            journal.filled.load(Ordering::Acquire),
            filled,
            "enough room left: no fill"
        );
    }

    #[test]
    fn records_that_outrun_the_fill_are_kept_and_the_next_fill_starts_past_them() {
        let (_dir, file, journal) = fixture();
        journal.sync().unwrap();
        // The records reach past the filled part (as a burst between two syncs can).
        let beyond = journal.filled.load(Ordering::Acquire) + 10;
        journal.end.store(beyond, Ordering::Release);
        let far = put(&journal, &file, b"\nfar\n");
        assert_eq!(far, beyond + 4);
        journal.sync().unwrap();
        assert_eq!(read(&file, beyond, 4), b"far\n");
        assert_eq!(
            journal.filled.load(Ordering::Acquire),
            far.next_multiple_of(PAGE) + FILL_AHEAD
        );
    }

    #[test]
    fn a_fill_that_fails_is_only_logged_and_records_grow_the_file_as_before() {
        let (_dir, path, file) = scratch();
        // The sync thread's handle cannot write: every fill fails (as on a full disk).
        let journal = JournalFile::new(File::open(&path).unwrap(), 0);
        for record in [&b"\none\n"[..], b"\ntwo\n", b"\nthree\n"] {
            put(&journal, &file, record);
            journal.sync().unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
        assert_eq!(journal.syncs_done.load(Ordering::SeqCst), 3, "every sync still ran");
    }

    #[test]
    fn trimming_cuts_the_zeros_and_a_later_fill_starts_again() {
        let (_dir, file, journal) = fixture();
        put(&journal, &file, b"\none\n");
        journal.sync().unwrap();
        journal.trim(&file).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 4);
        journal.sync().unwrap();
        assert_eq!(file.metadata().unwrap().len(), PAGE + FILL_AHEAD);
    }
}
