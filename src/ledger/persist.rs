//! Persistence of windows and backoff state, so a restart inside a window (or
//! during a ban) does not start from zero.
//!
//! The file is written whole to a temporary name and renamed over `ledger.json`,
//! so a crash mid-write leaves the previous version intact.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::admission::State;
use super::limits::{Interval, PoolKind, RateLimit, Scope, WindowKind};
use super::{BackoffState, Ledger};

const FILE_NAME: &str = "ledger.json";
const TMP_NAME: &str = "ledger.json.tmp";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    version: u32,
    saved_at_ms: i64,
    pools: Vec<SavedPool>,
    /// The latest ends of any scope's back-off: all a file written before back-offs were kept
    /// per scope holds (then they stop every scope), and what such a build reads.
    throttled_until_ms: i64,
    banned_until_ms: i64,
    /// Each scope's back-off (absent in files written before back-offs were kept per scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoffs: Option<Vec<SavedBackoff>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SavedBackoff {
    scope: Scope,
    throttled_until_ms: i64,
    banned_until_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPool {
    /// Absent in files written before pools had scopes: the kind's usual scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Scope>,
    #[serde(default)]
    window: WindowKind,
    kind: PoolKind,
    interval: Interval,
    /// The pool's limit, so a pool the configured limits lack can be adopted on restore
    /// (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    window_start_ms: i64,
    used: u64,
}

impl SavedPool {
    /// The saved pool as a limit of `limit` units.
    fn limit_with(&self, limit: u64) -> RateLimit {
        RateLimit {
            kind: self.kind,
            interval: self.interval,
            limit,
            scope: self.scope.unwrap_or(self.kind.default_scope()),
            window: self.window,
        }
    }

    /// Whether what it counted may still count at `now_ms`.
    fn is_current(&self, saved_at_ms: i64, now_ms: i64) -> bool {
        match self.window {
            WindowKind::Fixed => self.interval.window_start(now_ms) == self.window_start_ms,
            WindowKind::Rolling | WindowKind::Bucket => now_ms.saturating_sub(saved_at_ms) < self.interval.millis(),
        }
    }
}

pub(crate) fn snapshot(st: &State) -> Snapshot {
    Snapshot {
        version: VERSION,
        saved_at_ms: st.now_ms(),
        pools: st
            .pools
            .iter()
            .map(|p| SavedPool {
                scope: Some(p.limit.scope),
                window: p.limit.window,
                kind: p.limit.kind,
                interval: p.limit.interval,
                limit: Some(p.limit.limit),
                window_start_ms: p.window_start,
                used: p.used,
            })
            .collect(),
        throttled_until_ms: st
            .backoffs
            .saved()
            .map(|(_, b)| b.throttled_until_ms)
            .max()
            .unwrap_or(0),
        banned_until_ms: st.backoffs.saved().map(|(_, b)| b.banned_until_ms).max().unwrap_or(0),
        backoffs: Some(
            st.backoffs
                .saved()
                .map(|(scope, b)| SavedBackoff {
                    scope,
                    throttled_until_ms: b.throttled_until_ms,
                    banned_until_ms: b.banned_until_ms,
                })
                .collect(),
        ),
    }
}

pub(crate) fn write(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    let tmp = dir.join(TMP_NAME);
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(FILE_NAME))
}

/// The longest backoff or ban a state file is believed for (the exchange's longest ban).
const MAX_RESTORED_WAIT_MS: i64 = 3 * 86_400_000;

/// Loads what is still true at `now_ms`: counts of windows that are still the
/// current ones, and a backoff or ban that has not ended. Anything unreadable is
/// logged and ignored: a fresh ledger is always a safe start.
pub(crate) fn restore(st: &mut State, dir: &Path, now_ms: i64) {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the ledger state; starting fresh");
            return;
        }
    };
    let snapshot: Snapshot = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt ledger state; starting fresh");
            return;
        }
    };
    if snapshot.version != VERSION {
        tracing::warn!(path = %path.display(), version = snapshot.version, "unknown ledger state version; starting fresh");
        return;
    }
    adopt_missing_pools(st, &snapshot, now_ms);
    let mut restored = 0;
    for saved in &snapshot.pools {
        if !saved.is_current(snapshot.saved_at_ms, now_ms) {
            continue;
        }
        let limit = saved.limit_with(0);
        if let Some(pool) = st.pools.iter_mut().find(|p| p.limit.same_pool(&limit)) {
            // More than the limit cannot have been used: the file is damaged. The full limit is
            // the safe reading (the window waits out its end, which is near), said out loud.
            let used = if saved.used > pool.limit.limit {
                tracing::warn!(
                    path = %path.display(),
                    pool = %pool.limit.interval,
                    saved = saved.used,
                    limit = pool.limit.limit,
                    "the saved count is above the limit; taking the window as full"
                );
                pool.limit.limit
            } else {
                saved.used
            };
            match saved.window {
                WindowKind::Fixed => pool.charge(used),
                // Counted anew from now: later than it was sent, so on the safe side.
                WindowKind::Rolling | WindowKind::Bucket => pool.charge_at(used, now_ms),
            }
            restored += 1;
        }
    }
    // No real backoff or ban lasts longer than three days.
    let latest = now_ms.saturating_add(MAX_RESTORED_WAIT_MS);
    let believable = |until: i64, what: &str| {
        if until > latest {
            tracing::warn!(path = %path.display(), until_ms = until, "the saved {what} ends implausibly late; keeping three days of it");
        }
        until.min(latest)
    };
    let saved: Vec<SavedBackoff> = match &snapshot.backoffs {
        Some(per_scope) => per_scope.clone(),
        // An older file's back-off covered everything: it stops every scope.
        None => {
            let mut scopes: Vec<Scope> = st.pools.iter().map(|p| p.limit.scope).collect();
            scopes.sort();
            scopes.dedup();
            scopes
                .into_iter()
                .map(|scope| SavedBackoff {
                    scope,
                    throttled_until_ms: snapshot.throttled_until_ms,
                    banned_until_ms: snapshot.banned_until_ms,
                })
                .collect()
        }
    };
    for b in saved {
        if b.throttled_until_ms > now_ms {
            let until = believable(b.throttled_until_ms, "backoff");
            st.backoffs.join(b.scope, BackoffState::Throttled, until);
        }
        if b.banned_until_ms > now_ms {
            let until = believable(b.banned_until_ms, "ban");
            st.backoffs.join(b.scope, BackoffState::Banned, until);
        }
    }
    tracing::info!(
        path = %path.display(),
        pools = restored,
        resume_at_ms = st.backoffs.overall(now_ms).map(|(_, r)| r),
        "restored ledger state"
    );
}

/// Adds the saved pools with a current window that the configured limits lack. The ledger
/// starts on documented defaults, but the exchange may announce other windows (say 300 per
/// 10 seconds) and does so only after start-up requests have been sent: without this their
/// counts would be lost and a restart could burst over a window the exchange still holds.
/// The next announcement of limits replaces them like any other pool.
fn adopt_missing_pools(st: &mut State, snapshot: &Snapshot, now_ms: i64) {
    let configured: Vec<RateLimit> = st.pools.iter().map(|p| p.limit).collect();
    let missing: Vec<RateLimit> = snapshot
        .pools
        .iter()
        .filter(|saved| saved.is_current(snapshot.saved_at_ms, now_ms))
        .filter_map(|saved| Some(saved.limit_with(saved.limit.filter(|l| *l > 0)?)))
        .filter(|limit| !configured.iter().any(|l| l.same_pool(limit)))
        .collect();
    if !missing.is_empty() {
        st.set_limits(configured.into_iter().chain(missing).collect());
    }
}

/// Saves periodically while running; stops (saving once more) when stopped or dropped.
#[must_use = "dropping the handle stops the autosave"]
pub struct Autosave {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Autosave {
    /// Stops the task and waits for its final save.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "the ledger autosave task failed; the final save may be missing");
            }
        }
    }
}

impl Drop for Autosave {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which saves once more and ends.
        self.stop.take();
    }
}

pub(crate) fn spawn_autosave(ledger: Ledger, every: Duration) -> Autosave {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let every = every.max(Duration::from_millis(10));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut stopped => true,
            };
            if last || ledger.unsaved() {
                // File I/O (with fsync) stays off the async workers.
                let saver = ledger.clone();
                match tokio::task::spawn_blocking(move || saver.save()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the ledger state"),
                    Err(e) => tracing::warn!(error = %e, "ledger save task failed"),
                }
            }
            if last {
                return;
            }
        }
    });
    Autosave {
        stop: Some(stop),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
    use crate::ledger::{Cost, Lane, Ledger, LedgerConfig, TokioClock};

    #[tokio::test(start_paused = true)]
    async fn an_absurd_saved_count_is_taken_as_a_full_window_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let start = 1_700_000_000_000;
        let open = || {
            Ledger::new(
                vec![RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 1200)],
                LedgerConfig {
                    state_dir: Some(dir.path().to_path_buf()),
                    ..LedgerConfig::default()
                },
                Arc::new(TokioClock::starting_at(start)),
            )
        };
        let ledger = open();
        let cost = Cost::new()
            .with(PoolKind::RequestWeight, 60)
            .with(PoolKind::RawRequests, 1);
        ledger.try_reserve("s", Lane::Order, cost).unwrap();
        ledger.save().unwrap();
        let path = dir.path().join(super::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"used\": 60"), "{text}");
        std::fs::write(&path, text.replace("\"used\": 60", "\"used\": 20000000000")).unwrap();

        let status = open().status("s");
        let pool = status.pools.iter().find(|p| p.kind == PoolKind::RequestWeight).unwrap();
        assert_eq!(
            pool.used, 1200,
            "clamped to the limit, so the summary shows at most 100 %"
        );
    }
}
