//! Getting journal records onto the disk: one background thread runs `fdatasync` for every
//! record written so far (group commit), so concurrent writers share one sync instead of queueing
//! behind each other's, and a writer that does not need to wait never pays for it.
//!
//! What the two policies protect against:
//! - [`JournalSync::Background`]: an order's record is written (`write(2)`) before the order is
//!   sent, which survives any crash of the runner itself (panic, OOM kill, `kill -9`): the kernel
//!   holds the data. The sync thread is woken once the order's request has gone out (not before:
//!   its wake-up and `fdatasync` would compete for the CPU with the send), so the record reaches
//!   the disk one sync after the send (a fraction of a millisecond on an SSD; never later than
//!   [`SAFETY_NET`] even if no wake-up came). Only a power loss or kernel crash inside that gap
//!   can lose it. Every other record wakes the sync thread at once.
//! - [`JournalSync::BeforeSend`]: the order waits until its record is on the disk, which puts one
//!   `fdatasync` on every order's tick-to-order path (≈ 0.2 ms on the disk the benchmarks ran on,
//!   far more on network storage).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// When the record written before an order is sent must be on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalSync {
    /// Written before the send, on the disk right after it (the default).
    #[default]
    Background,
    /// On the disk before the send.
    BeforeSend,
}

impl JournalSync {
    /// `background` or `before-send`.
    pub fn parse(text: &str) -> Result<JournalSync, String> {
        match text {
            "background" => Ok(JournalSync::Background),
            "before-send" => Ok(JournalSync::BeforeSend),
            other => Err(format!(
                "journal sync must be \"background\" or \"before-send\", got {other:?}"
            )),
        }
    }
}

/// Puts everything written to the journal so far on the disk (`fdatasync` of its current file,
/// whichever a compaction made it). Called by the sync thread, one call at a time.
pub type SyncNow = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// After a failed sync, the pause before the next attempt (not a tight loop against a bad disk).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest a written record waits for its sync when nothing wakes the sync thread.
pub const SAFETY_NET: Duration = Duration::from_secs(1);

pub struct DiskSync {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Sequence number of the last record written: counted without a lock, since a writer about
    /// to send an order must not wait for the sync thread (which may be preempted holding one).
    written: AtomicU64,
    state: Mutex<State>,
    /// Wakes the syncer (new writes, or stop) and the writers waiting for it.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Every record up to this one is on the disk.
    synced: u64,
    /// The last sync failed; writers waiting get this error until a sync succeeds.
    failure: Option<String>,
    stop: bool,
}

impl DiskSync {
    pub fn start(sync_now: SyncNow) -> std::io::Result<DiskSync> {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("journal-sync".into()).spawn(move || {
            never_preempts_on_wake();
            run(&worker, &sync_now)
        })?;
        Ok(DiskSync {
            shared,
            thread: Some(thread),
        })
    }

    /// Notes that one more record has been written and wakes the sync thread; returns its
    /// sequence number.
    pub fn written(&self) -> u64 {
        let written = self.written_quietly();
        self.kick();
        written
    }

    /// Notes a written record without waking the sync thread (a later [`DiskSync::kick`], any
    /// other write, or [`SAFETY_NET`] does); returns its sequence number.
    pub fn written_quietly(&self) -> u64 {
        self.shared.written.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Wakes the sync thread for what has been written so far.
    pub fn kick(&self) {
        // Through the lock: the sync thread is then either before its look at `written` (and sees
        // this record) or waiting (and gets the wake-up), never in between.
        drop(self.shared.state.lock());
        self.shared.changed.notify_all();
    }

    /// Waits until every record written so far is on the disk.
    pub fn wait_all(&self) -> Result<(), String> {
        let mut state = self.shared.state.lock();
        let target = self.shared.written.load(Ordering::SeqCst);
        // Records written quietly have not woken the sync thread yet.
        self.shared.changed.notify_all();
        loop {
            if state.synced >= target {
                return Ok(());
            }
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            self.shared.changed.wait(&mut state);
        }
    }
}

impl Drop for DiskSync {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // It syncs what is left before it ends.
            if thread.join().is_err() {
                tracing::error!("the order journal's sync thread panicked");
            }
        }
    }
}

/// Makes the calling thread a batch thread (`SCHED_BATCH`): the same share of the CPU, but its
/// wake-up never preempts the running thread. The sync thread is woken by a strategy's thread right
/// after an order's answer, and the scheduler would otherwise often run it at once on that thread's
/// CPU, delaying whatever that thread does next (the next market event) for a sync that can wait
/// a few µs.
fn never_preempts_on_wake() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, initialized `sched_param` that outlives the call; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::warn!(
                "the journal's sync thread stays a normal thread (its wake-ups may delay strategies): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn run(shared: &Shared, sync_now: &SyncNow) {
    loop {
        let target = {
            let mut state = shared.state.lock();
            while state.synced >= shared.written.load(Ordering::SeqCst) && !state.stop {
                // Timed: a record written quietly is synced even if its wake-up never comes.
                shared.changed.wait_for(&mut state, SAFETY_NET);
            }
            let written = shared.written.load(Ordering::SeqCst);
            if state.synced >= written {
                return;
            }
            written
        };
        // Everything written up to `target` is in the file: one sync covers all of it.
        let result = sync_now();
        let mut state = shared.state.lock();
        match result {
            Ok(()) => {
                state.synced = state.synced.max(target);
                state.failure = None;
                shared.changed.notify_all();
            }
            Err(error) => {
                let message = format!("syncing the order journal to disk failed: {error}");
                tracing::error!("{message}");
                state.failure = Some(message);
                shared.changed.notify_all();
                if state.stop {
                    return;
                }
                drop(state);
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file, and a syncer of it that counts its syncs and holds each one until the gate is open.
    struct Fixture {
        // Dropped first: its last sync still needs the file.
        sync: DiskSync,
        file: File,
        syncs: Arc<AtomicUsize>,
        gate: Arc<(Mutex<bool>, Condvar)>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(gate_open: bool) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j");
            let file = File::create(&path).unwrap();
            let syncs = Arc::new(AtomicUsize::new(0));
            let gate = Arc::new((Mutex::new(gate_open), Condvar::new()));
            let (counted, held) = (syncs.clone(), gate.clone());
            let sync_now: SyncNow = Box::new(move || {
                let mut open = held.0.lock();
                while !*open {
                    held.1.wait(&mut open);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                File::options().append(true).open(&path)?.sync_data()
            });
            Fixture {
                _dir: dir,
                file,
                sync: DiskSync::start(sync_now).unwrap(),
                syncs,
                gate,
            }
        }

        fn open_gate(&self) {
            *self.gate.0.lock() = true;
            self.gate.1.notify_all();
        }

        fn syncs(&self) -> usize {
            self.syncs.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_waiting_writer_returns_once_its_record_is_synced() {
        let mut f = Fixture::new(true);
        f.file.write_all(b"one\n").unwrap();
        let seq = f.sync.written();
        f.sync.wait_all().unwrap();
        assert!(f.syncs() >= 1);
        assert!(f.sync.shared.state.lock().synced >= seq);
    }

    #[test]
    fn writes_made_during_a_sync_share_the_next_one() {
        let mut f = Fixture::new(false);
        for i in 0..200 {
            writeln!(f.file, "record {i}").unwrap();
            f.sync.written();
        }
        f.open_gate();
        f.sync.wait_all().unwrap();
        assert_eq!(f.sync.shared.state.lock().synced, 200);
        // The first sync may have started after one write; everything else shares the second.
        assert!(f.syncs() <= 2, "{} syncs", f.syncs());
    }

    #[test]
    fn a_quiet_write_waits_for_its_kick() {
        let mut f = Fixture::new(true);
        f.file.write_all(b"sent soon\n").unwrap();
        let seq = f.sync.written_quietly();
        // Nothing woke the sync thread: well within the safety net, the record is not synced.
        std::thread::yield_now();
        assert!(f.sync.shared.state.lock().synced < seq);
        f.sync.kick();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.sync.shared.state.lock().synced < seq {
            assert!(std::time::Instant::now() < deadline, "the kick did not sync it");
            std::thread::yield_now();
        }
        assert_eq!(f.syncs(), 1);
    }

    #[test]
    fn a_quiet_write_is_synced_by_a_waiting_writer_or_the_safety_net() {
        let mut f = Fixture::new(true);
        f.file.write_all(b"one\n").unwrap();
        let seq = f.sync.written_quietly();
        f.sync.wait_all().unwrap();
        assert!(f.sync.shared.state.lock().synced >= seq);
        // With nobody waking it at all, the safety net still syncs it.
        f.file.write_all(b"two\n").unwrap();
        let seq = f.sync.written_quietly();
        let started = std::time::Instant::now();
        while f.sync.shared.state.lock().synced < seq {
            assert!(started.elapsed() < SAFETY_NET * 10, "never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_failing_sync_reaches_the_waiting_writer() {
        let sync_now: SyncNow = Box::new(|| Err(std::io::Error::other("disk gone")));
        let sync = DiskSync::start(sync_now).unwrap();
        sync.written();
        let error = sync.wait_all().unwrap_err();
        assert!(error.contains("disk gone"), "{error}");
    }

    #[test]
    fn dropping_syncs_what_is_left() {
        let mut f = Fixture::new(false);
        f.file.write_all(b"last\n").unwrap();
        f.sync.written();
        let (shared, syncs) = (Arc::clone(&f.sync.shared), f.syncs.clone());
        f.open_gate();
        drop(f);
        let state = shared.state.lock();
        assert_eq!(state.synced, shared.written.load(Ordering::SeqCst));
        assert!(syncs.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn policies_parse_from_their_names() {
        assert_eq!(JournalSync::parse("background"), Ok(JournalSync::Background));
        assert_eq!(JournalSync::parse("before-send"), Ok(JournalSync::BeforeSend));
        assert!(JournalSync::parse("always").unwrap_err().contains("before-send"));
    }
}
