//! Hot reload: watch every strategy file and every file it `require`s, debounce,
//! and ask the host to reload the strategies whose files changed.
//!
//! Folders are watched rather than files: editors save by writing a temporary
//! file and renaming it over the original, which a watch on the file itself misses.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::host::LoadError;

/// What the watcher reloads (the host, in production).
#[async_trait]
pub trait ReloadTarget: Send + Sync + 'static {
    /// Names of the running strategies.
    fn names(&self) -> Vec<String>;
    /// The files a strategy was loaded from (its file first, then required modules).
    fn watched_files(&self, name: &str) -> Vec<PathBuf>;
    /// Loads the new version (returns how long the swap took); on error the running version stays.
    async fn reload(&self, name: &str) -> Result<Duration, LoadError>;
}

/// Quiet time after the last change before reloading: editors write in bursts.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(25);

/// Watches until the returned handle is dropped or aborted.
pub fn spawn(target: Arc<dyn ReloadTarget>, debounce: Duration) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if is_content_change(&event.kind) => {
            for path in event.paths {
                // The receiver is gone only when the watch task ended; nothing left to tell.
                let _ = tx.send(path);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    })?;
    let mut task = WatchTask {
        target,
        watcher,
        debounce,
        watched_dirs: HashSet::new(),
        owners: HashMap::new(),
    };
    task.refresh_watches();
    Ok(tokio::spawn(task.run(rx)))
}

fn is_content_change(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
}

struct WatchTask {
    target: Arc<dyn ReloadTarget>,
    watcher: notify::RecommendedWatcher,
    debounce: Duration,
    watched_dirs: HashSet<PathBuf>,
    /// Canonical file path → strategies that load it.
    owners: HashMap<PathBuf, Vec<String>>,
}

impl WatchTask {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<PathBuf>) {
        let mut due: HashMap<String, Instant> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                changed = changes.recv() => {
                    let Some(path) = changed else { return };
                    for name in self.owners_of(&path) {
                        due.insert(name, Instant::now() + self.debounce);
                    }
                }
                _ = sleep_until_or_forever(next) => {
                    let now = Instant::now();
                    let ready: Vec<String> = due.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
                    for name in ready {
                        due.remove(&name);
                        self.reload(&name).await;
                    }
                    self.refresh_watches();
                }
            }
        }
    }

    async fn reload(&self, name: &str) {
        let files = self.target.watched_files(name);
        if let Some(main) = files.first() {
            if !main.exists() {
                tracing::warn!(strategy = name, file = %main.display(), "strategy file removed; the running version keeps going until it is restored");
                return;
            }
        }
        match self.target.reload(name).await {
            Ok(took) => {
                metrics::counter!("runner_reloads_total", "strategy" => name.to_string()).increment(1);
                tracing::info!(strategy = name, took_ms = took.as_secs_f64() * 1e3, "reloaded")
            }
            Err(error) => {
                metrics::counter!("runner_reload_failures_total", "strategy" => name.to_string()).increment(1);
                let error = crate::error_chain::chain(&error);
                tracing::error!(strategy = name, %error, "reload failed; the running version keeps going")
            }
        }
    }

    fn owners_of(&self, path: &Path) -> Vec<String> {
        self.owners.get(&canonical(path)).cloned().unwrap_or_default()
    }

    /// Re-reads which files each strategy loads (a reload may `require` new ones).
    fn refresh_watches(&mut self) {
        self.owners.clear();
        for name in self.target.names() {
            for file in self.target.watched_files(&name) {
                let file = canonical(&file);
                if let Some(dir) = file.parent() {
                    if self.watched_dirs.insert(dir.to_path_buf()) {
                        if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder; edits there will not reload");
                        }
                    }
                }
                self.owners.entry(file).or_default().push(name.clone());
            }
        }
    }
}

/// The canonical form of a path whose file may be missing right now (mid-rename):
/// canonicalise the folder and keep the file name.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(full) = path.canonicalize() {
        return full;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.canonicalize()
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    struct Recorder {
        files: Vec<PathBuf>,
        reloads: Mutex<Vec<String>>,
        notify: tokio::sync::Notify,
    }

    #[async_trait]
    impl ReloadTarget for Recorder {
        fn names(&self) -> Vec<String> {
            vec!["s".into()]
        }
        fn watched_files(&self, _: &str) -> Vec<PathBuf> {
            self.files.clone()
        }
        async fn reload(&self, name: &str) -> Result<Duration, LoadError> {
            self.reloads.lock().push(name.to_string());
            self.notify.notify_one();
            Ok(Duration::ZERO)
        }
    }

    #[tokio::test]
    async fn a_rename_over_a_required_file_reloads_once() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("s.lua");
        let module = dir.path().join("m.lua");
        std::fs::write(&main, "return {}").unwrap();
        std::fs::write(&module, "return 1").unwrap();
        let target = Arc::new(Recorder {
            files: vec![main, module.clone()],
            reloads: Mutex::new(Vec::new()),
            notify: tokio::sync::Notify::new(),
        });
        let handle = spawn(target.clone(), Duration::from_millis(50)).unwrap();
        // Save the way editors do: write a temporary file, then rename it over the module.
        let tmp = dir.path().join(".m.lua.swp");
        std::fs::write(&tmp, "return 2").unwrap();
        std::fs::rename(&tmp, &module).unwrap();
        tokio::time::timeout(Duration::from_secs(10), target.notify.notified())
            .await
            .expect("no reload");
        assert_eq!(*target.reloads.lock(), vec!["s".to_string()]);
        handle.abort();
    }
}
