//! Market data into Lua, end to end, as a user runs it: the real `runner` binary, a separate feed
//! process (this one) blasting combined `bookTicker` frames for 3 symbols over one loopback
//! WebSocket, and strategies that only count `on_book` calls. The simulator (in this process too)
//! answers the runner's REST and WebSocket API calls; only the market streams come from the feed.
//!
//! Reported per run: frames sent, events delivered to Lua (each strategy's own count), the share
//! conflated (replaced by a newer quote while the strategy was busy), the delivery rate over the
//! strategy's own first-to-last `on_book`, and the CPU the runner process used. With
//! `MD_E2E_PYTHON=/path/to/python` (a Python with the `websockets` package, as
//! `scripts/market_data_e2e.sh` sets up), a Python asyncio + `websockets` + `json` loop reads the same
//! feed in the same run, for comparison.
//!
//! `cargo bench --bench market_data_e2e` (options by environment: `MD_E2E_FRAMES`, default 1 500 000).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "ETHBTC"];

fn main() -> Result<()> {
    let frames: usize = std::env::var("MD_E2E_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // The synthetic market stands still: the simulator only answers the runner's own calls.
    let quiet = runner::sim::SimConfig {
        market_tick: Duration::ZERO,
        dislocation_every: Duration::ZERO,
        ..runner::sim::SimConfig::default()
    };
    let sim = runtime.block_on(runner::sim::start(quiet, ([127, 0, 0, 1], 0).into()))?;
    let feed = Arc::new(frames_for(frames));
    println!(
        "machine: {} cores, load average {}; {} frames per run, {} symbols, one combined stream, feed {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_average(),
        frames,
        SYMBOLS.len(),
        feed_rate().map_or("as fast as read".to_string(), |r| format!("paced at {r:.0} frames/s"))
    );
    for strategies in [1, 4] {
        run_runner(&runtime, &sim.rest_url(), &feed, strategies)?;
    }
    if let Ok(python) = std::env::var("MD_E2E_PYTHON") {
        run_python(&runtime, &python, &feed)?;
    } else {
        println!("python: skipped (set MD_E2E_PYTHON, or run scripts/market_data_e2e.sh)");
    }
    runtime.block_on(sim.shutdown());
    Ok(())
}

/// The feed's pace in frames per second (`MD_E2E_RATE`); unset or 0: as fast as the reader reads.
fn feed_rate() -> Option<f64> {
    std::env::var("MD_E2E_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|rate| *rate > 0.0)
}

/// Ready-made frames: the update ids rise, so the runner never drops one as stale.
fn frames_for(count: usize) -> Vec<Utf8Bytes> {
    (0..count as u64)
        .map(|u| {
            let symbol = SYMBOLS[(u % SYMBOLS.len() as u64) as usize];
            let bid = 100.0 + (u % 1000) as f64 * 0.01;
            Utf8Bytes::from(format!(
                r#"{{"stream":"{}@bookTicker","data":{{"u":{},"s":"{symbol}","b":"{bid:.2}","B":"1.5","a":"{:.2}","A":"2.5"}}}}"#,
                symbol.to_lowercase(),
                u + 1,
                bid + 0.01
            ))
        })
        .collect()
}

/// What the feed did: frames written and how long writing them took.
#[derive(Default)]
struct Sent {
    frames: AtomicU64,
    micros: AtomicU64,
}

/// A stream server: every connection waits for `go`, then gets every frame once, as fast as it
/// reads or at `MD_E2E_RATE` frames per second.
async fn feed_server(frames: Arc<Vec<Utf8Bytes>>, go: watch::Receiver<bool>, sent: Arc<Sent>) -> Result<String> {
    let pace = feed_rate();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (frames, mut go, sent) = (frames.clone(), go.clone(), sent.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                // Drain what the client sends (pings, subscriptions); the protocol answers pings.
                tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
                if go.wait_for(|go| *go).await.is_err() {
                    return;
                }
                let started = Instant::now();
                for (i, frame) in frames.iter().enumerate() {
                    // Flushed in batches, as a busy exchange's writes coalesce.
                    let result = if i % 64 == 63 {
                        if let Some(rate) = pace {
                            // Ahead of the paced schedule: wait for it (the timer's millisecond
                            // granularity makes the feed bursty, as a real one is).
                            let due = started + Duration::from_secs_f64((i + 1) as f64 / rate);
                            tokio::time::sleep_until(due.into()).await;
                        }
                        sink.send(Message::Text(frame.clone())).await
                    } else {
                        sink.feed(Message::Text(frame.clone())).await
                    };
                    if result.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_ok() {
                    sent.frames.fetch_add(frames.len() as u64, Ordering::Relaxed);
                    sent.micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                // Keep the connection open: a closed stream would make the runner reconnect.
                std::future::pending::<()>().await;
            });
        }
    });
    Ok(format!("ws://{addr}"))
}

fn counter(name: &str) -> String {
    format!(
        r#"
local n, first, last = 0, nil, nil
return {{
    name = "{name}",
    symbols = {{ "BTCUSDT", "ETHUSDT", "ETHBTC" }},
    streams = {{ "book" }},
    on_start = function() log.info("md_ready") end,
    on_book = function(q)
        n = n + 1
        local now = clock.now()
        first = first or now
        last = now
    end,
    on_stop = function() log.info("md_count %d %d %d", n, first or 0, last or 0) end,
}}
"#
    )
}

fn run_runner(
    runtime: &tokio::runtime::Runtime,
    rest: &str,
    frames: &Arc<Vec<Utf8Bytes>>,
    strategies: usize,
) -> Result<()> {
    let (go_tx, go_rx) = watch::channel(false);
    let sent = Arc::new(Sent::default());
    let ws = runtime.block_on(feed_server(frames.clone(), go_rx, sent.clone()))?;
    let dir = tempfile::tempdir()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    for i in 0..strategies {
        let path = dir.path().join(format!("count{i}.lua"));
        std::fs::write(&path, counter(&format!("count{i}")))?;
        command.arg(path);
    }
    command
        .args([
            "--rest-url",
            rest,
            "--ws-url",
            &ws,
            "--no-reload",
            "--status-every",
            "0",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("starting the runner")?;
    let lines = read_lines(&mut child)?;
    // Every strategy loaded and subscribed, then the feed starts.
    wait_for(&lines, Duration::from_secs(30), |l| {
        l.iter().filter(|l| l.contains("md_ready")).count() >= strategies
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = process_cpu(child.id())?;
    go_tx.send(true)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent.frames.load(Ordering::Relaxed) == 0 {
        ensure!(Instant::now() < deadline, "the feed did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the strategies finish what is queued before counting.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = process_cpu(child.id())? - cpu0;
    // Ctrl-C, as a user stops it: the strategies' `on_stop` reports their counts.
    let stopped = Command::new("kill").arg("-INT").arg(child.id().to_string()).status()?;
    ensure!(stopped.success(), "could not signal the runner");
    wait_for(&lines, Duration::from_secs(30), |l| {
        l.iter().filter(|l| l.contains("md_count")).count() >= strategies
    })?;
    let _ = child.wait();
    let feed_secs = sent.micros.load(Ordering::Relaxed) as f64 / 1e6;
    let sent_frames = sent.frames.load(Ordering::Relaxed);
    let mut delivered_total = 0u64;
    let mut rates = Vec::new();
    for line in lines.lock().unwrap().iter().filter(|l| l.contains("md_count")) {
        let numbers: Vec<i64> = line
            .split("md_count")
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .collect();
        let &[count, first, last, ..] = numbers.as_slice() else {
            bail!("unreadable count line: {line}");
        };
        delivered_total += count as u64;
        let span = ((last - first) as f64 / 1e3).max(1e-3);
        rates.push(count as f64 / span);
    }
    let possible = sent_frames * strategies as u64;
    println!(
        "runner, {strategies} strateg{}: feed wrote {sent_frames} frames in {feed_secs:.2} s ({:.0}/s); \
         delivered to on_book {delivered_total} of {possible} ({:.2} % conflated); \
         delivery rate {:.0}/s in total (per strategy {}); runner CPU {:.2} s ({:.2} µs per frame)",
        if strategies == 1 { "y" } else { "ies" },
        sent_frames as f64 / feed_secs,
        100.0 * (possible - delivered_total.min(possible)) as f64 / possible as f64,
        rates.iter().sum::<f64>(),
        rates.iter().map(|r| format!("{r:.0}/s")).collect::<Vec<_>>().join(", "),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / sent_frames as f64,
    );
    Ok(())
}

fn run_python(runtime: &tokio::runtime::Runtime, python: &str, frames: &Arc<Vec<Utf8Bytes>>) -> Result<()> {
    let (_go_tx, go_rx) = watch::channel(true);
    let sent = Arc::new(Sent::default());
    let ws = runtime.block_on(feed_server(frames.clone(), go_rx, sent))?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/md_client.py");
    let streams: Vec<String> = SYMBOLS
        .iter()
        .map(|s| format!("{}@bookTicker", s.to_lowercase()))
        .collect();
    let output = Command::new(python)
        .arg(script)
        .arg(format!("{ws}/stream?streams={}", streams.join("/")))
        .arg(frames.len().to_string())
        .output()
        .context("running the Python client")?;
    ensure!(
        output.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    print!(
        "python asyncio + websockets + json: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

type Lines = Arc<std::sync::Mutex<Vec<String>>>;

/// Collects the child's stderr lines on a thread of their own.
fn read_lines(child: &mut Child) -> Result<Lines> {
    let stderr = child.stderr.take().context("no stderr")?;
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Ok(lines)
}

fn wait_for(lines: &Lines, patience: Duration, done: impl Fn(&[String]) -> bool) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if done(&lines.lock().unwrap()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out; the runner said:\n{}", lines.lock().unwrap().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// User + system CPU time of a process.
fn process_cpu(pid: u32) -> Result<Duration> {
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let close = stat.rfind(')').context("unreadable /proc stat")?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(Duration::from_millis((field(14) + field(15)) * 1000 / TICKS_PER_SECOND))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
