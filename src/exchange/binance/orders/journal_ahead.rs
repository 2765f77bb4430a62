//! The order journal's file, written ahead of its records with zeros by the sync thread, so that an
//! append on the order's path overwrites blocks that already exist: it neither grows the file nor
//! allocates (both take file-system locks that a concurrent sync may hold), and the page it writes
//! was made and written back long before (see `journal`'s notes on pages of their own).
//!
//! The fill and the appends never write the same bytes: the fill starts past the last record and
//! past everything filled before; an append that would reach past the filled part takes the fill's
//! lock, so it waits for a fill under way (rare: only when the records outrun the fill), and a fill
//! after it starts past its record.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::journal::PAGE;

/// How far past the last record the sync thread keeps the file filled.
pub const FILL_AHEAD: u64 = 1 << 20;
/// A fill starts once less than this is left ahead of the last record.
const FILL_WHEN_LEFT: u64 = FILL_AHEAD / 2;
/// The fill's source, one page: the kernel caches a larger write in a larger unit (a folio of
/// several pages), which it locks whole while writing it back, so a record on a page of its own
/// inside it could wait for a sync of the record before it.
static ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];

pub struct FileAhead {
    /// The file the sync thread syncs and fills; its lock is the fill's.
    target: Mutex<Target>,
    /// The file holds written zeros or records up to here.
    filled: AtomicU64,
    /// Where the last record ends.
    end: AtomicU64,
}

struct Target {
    file: File,
    /// After a failed fill (a full disk), the next is tried once the records reach here.
    retry_at: u64,
}

impl FileAhead {
    /// `file` (a handle of the journal's file for the sync thread) holds records up to `len`.
    pub fn new(file: File, len: u64) -> FileAhead {
        FileAhead {
            target: Mutex::new(Target { file, retry_at: 0 }),
            filled: AtomicU64::new(len),
            end: AtomicU64::new(len),
        }
    }

    /// Writes a record's `bytes` at `at` (past the last one) with `file`, the appender's handle of
    /// the same file. The caller orders the appends (they are made under its lock).
    pub fn write_record(&self, file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
        let stop = at + bytes.len() as u64;
        let result = if stop <= self.filled.load(Ordering::Acquire) {
            file.write_all_at(bytes, at)
        } else {
            // Past the filled part: not while a fill is under way, and the next starts past it.
            let _fill = self.target.lock();
            let result = file.write_all_at(bytes, at);
            self.end.store(stop, Ordering::Release);
            return result;
        };
        // Even after an error: part of it may be in the file, and a fill must start past it.
        self.end.store(stop, Ordering::Release);
        result
    }

    /// For the sync thread, before each sync: fills the file ahead when the room left is short,
    /// and returns a handle of it to sync. A failed fill is only logged: records then grow the
    /// file as they would without it (slower, never lost).
    pub fn prepare_sync(&self) -> std::io::Result<File> {
        let mut target = self.target.lock();
        let end = self.end.load(Ordering::Acquire);
        let filled = self.filled.load(Ordering::Acquire);
        if filled < end.saturating_add(FILL_WHEN_LEFT) && end >= target.retry_at {
            // Page-aligned, so the fill never shares a page with a record.
            let from = filled.max(end).next_multiple_of(PAGE);
            match fill(&target.file, from, FILL_AHEAD) {
                Ok(()) => self.filled.store(from + FILL_AHEAD, Ordering::Release),
                Err(e) => {
                    tracing::warn!("writing the order journal's space ahead failed: {e}");
                    target.retry_at = end.saturating_add(FILL_WHEN_LEFT);
                }
            }
        }
        target.file.try_clone()
    }

    /// A compaction's new file, holding records up to `len`, replaces the journal's.
    pub fn replace(&self, file: File, len: u64) {
        let mut target = self.target.lock();
        *target = Target { file, retry_at: 0 };
        self.filled.store(len, Ordering::Release);
        self.end.store(len, Ordering::Release);
    }

    /// Cuts the file (`file`, the appender's handle) back to its records, which end at `len`: a
    /// clean shutdown leaves no zeros behind. The caller holds the appends off meanwhile.
    pub fn trim(&self, file: &File, len: u64) -> std::io::Result<()> {
        let _fill = self.target.lock();
        file.set_len(len)?;
        self.filled.store(len, Ordering::Release);
        Ok(())
    }
}

fn fill(file: &File, from: u64, len: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < from + len {
        let chunk = (from + len - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..chunk], at)?;
        at += chunk as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, File, FileAhead) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let ahead = FileAhead::new(file.try_clone().unwrap(), 0);
        (dir, file, ahead)
    }

    #[test]
    fn the_sync_thread_fills_ahead_of_the_records_and_never_over_them() {
        let (_dir, file, ahead) = fixture();
        ahead.write_record(&file, b"one\n", 0).unwrap();
        ahead.prepare_sync().unwrap();
        let filled = ahead.filled.load(Ordering::Acquire);
        assert_eq!(filled, 4096 + FILL_AHEAD, "from the next page on");
        assert_eq!(file.metadata().unwrap().len(), filled);
        // Records inside the filled part, and one more sync: nothing is filled over them.
        ahead.write_record(&file, b"two\n", 4).unwrap();
        ahead.write_record(&file, b"three\n", 8192).unwrap();
        ahead.prepare_sync().unwrap();
        let mut text = vec![0; 8198];
        file.read_exact_at(&mut text, 0).unwrap();
        assert_eq!(&text[..8], b"one\ntwo\n");
        assert_eq!(&text[8192..], b"three\n");
        assert_eq!(
            ahead.filled.load(Ordering::Acquire),
            filled,
            "enough room left: no fill"
        );
    }

    #[test]
    fn records_that_outrun_the_fill_are_kept_and_the_next_fill_starts_past_them() {
        let (_dir, file, ahead) = fixture();
        ahead.prepare_sync().unwrap();
        let beyond = ahead.filled.load(Ordering::Acquire) + 10;
        ahead.write_record(&file, b"far\n", beyond).unwrap();
        ahead.prepare_sync().unwrap();
        let mut text = [0; 4];
        file.read_exact_at(&mut text, beyond).unwrap();
        assert_eq!(&text, b"far\n");
        assert_eq!(
            ahead.filled.load(Ordering::Acquire),
            (beyond + 4).next_multiple_of(4096) + FILL_AHEAD
        );
    }

    #[test]
    fn trimming_cuts_the_zeros_and_a_later_fill_starts_again() {
        let (_dir, file, ahead) = fixture();
        ahead.write_record(&file, b"one\n", 0).unwrap();
        ahead.prepare_sync().unwrap();
        ahead.trim(&file, 4).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 4);
        ahead.prepare_sync().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 4096 + FILL_AHEAD);
    }
}
