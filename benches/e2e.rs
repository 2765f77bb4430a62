//! End-to-end figures, everything in one process on loopback:
//!
//! - `tick_to_order`: simulator → market stream → client → host → Lua `on_book` → `orders.place` →
//!   signed REST request. Timed on the wire by a byte-forwarding relay between the client and the
//!   simulator (see [`WireProbe`]).
//! - `throughput`: bookTicker quotes handled by Lua `on_book` per second, simulator driven flat out.
//! - `reload`: file saved → the new version handling events, with `Host::reload` and with the file
//!   watcher; every event is counted across the swaps.
//! - `memory`: 100 idle strategies in one host: resident memory and Lua heap per strategy.
//! - `order_path`: `Venue::place` alone, on a thread of its own, to the signed request handed to the
//!   HTTP client: the order path's share of tick-to-order, without Lua and the market stream.
//!
//! `cargo bench --bench e2e` runs all five; `cargo bench --bench e2e -- reload memory` runs some;
//! `-- tick_to_order_busy_poll` or `-- tick_to_order_default` one tick-to-order layout. Built with
//! `--features stage-timing`, tick-to-order also shows how long after the frame each stage was reached.
//! Figures are printed as they are measured; nothing is estimated.

#[path = "../tests/support/redis.rs"]
mod redis_server;
#[path = "../tests/host/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use async_trait::async_trait;
use parking_lot::{Condvar, Mutex};
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use runner::exchange::binance::orders::journal_sync::JournalSync;
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::{BinanceVenue, ClientOptions, Credentials, Profile};
use runner::exchange::latency::{self, LatencySamples, LatencySummary, Trigger};
use runner::exchange::risk::{RiskGuard, RiskLimits};
use runner::exchange::stage_timing;
use runner::exchange::{CallCtx, EventSink, MarketEvent, OrderKind, OrderRequest, Side, TimeInForce, Trade, Venue};
use runner::host::{Host, HostConfig, LoadError, StopReason, StrategyStats};
use runner::ledger::{FastClock, IntervalUnit, Ledger, LedgerConfig, PoolKind, RateLimit};
use runner::reload::{self, ReloadTarget};
use runner::sim::{self, SimConfig, SimHandle};
use support::TestVenue;

/// Every wait for the system under test; a hang fails the run instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()));
    let logs = LogCapture::install();
    println!("machine: {} cores, load average {}", cores(), load_average());
    // First, so the process has not grown for other reasons yet.
    if runs("memory") {
        memory(&logs, 100)?;
    }
    // `tick_to_order` runs every layout; `tick_to_order_default` or `tick_to_order_busy_poll` one.
    let all_layouts = runs("tick_to_order");
    if all_layouts || runs("tick_to_order_default") || runs("tick_to_order_busy_poll") {
        // The defaults first; then orders over the WebSocket API; then the stricter journal policy,
        // which adds a disk sync per order.
        use OrderTransport::{Rest, WsApi};
        let (background, before_send) = (JournalSync::Background, JournalSync::BeforeSend);
        if !all_layouts && runs("tick_to_order_default") {
            tick_to_order(&logs, 2000, Wiring::new(background, Rest), Cores::Shared)?;
        }
        if all_layouts {
            for cores in [Cores::Shared, Cores::Split] {
                tick_to_order(&logs, 2000, Wiring::new(background, Rest), cores)?;
                tick_to_order(&logs, 2000, Wiring::new(background, WsApi), cores)?;
            }
        }
        // The low-latency layout: the strategy spins on a core of its own.
        if all_layouts || runs("tick_to_order_busy_poll") {
            for transport in [Rest, WsApi] {
                let wiring = Wiring::new(background, transport).busy_polling_on(0);
                tick_to_order(&logs, 2000, wiring, Cores::Isolated)?;
            }
        }
        if all_layouts {
            tick_to_order(&logs, 500, Wiring::new(before_send, Rest), Cores::Shared)?;
        }
    }
    if runs("tick_to_order_shared") {
        // The same, beside the ledger shared through a Redis of the bench's own (`redis-server`
        // on the PATH): a lease hit on the hot path, a Redis round trip when a lease runs out.
        let redis = redis_server::RedisServer::start();
        let local = Wiring::new(JournalSync::Background, OrderTransport::Rest);
        tick_to_order(&logs, 500, local, Cores::Shared)?;
        let shared = Wiring::new(JournalSync::Background, OrderTransport::Rest).sharing_through(redis.url());
        tick_to_order(&logs, 500, shared, Cores::Shared)?;
    }
    if runs("throughput") {
        use Source::*;
        throughput(&[(Simulator, 1), (Replay, 1), (Replay, 4)], Duration::from_secs(5))?;
    }
    if runs("reload") {
        reload(&logs, 25)?;
    }
    if runs("order_path") {
        order_path(order_path_samples())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Tick to order

/// Alternates BTC between these two prices; the strategy fires when the bid crosses the trigger.
/// Every bid near `HIGH` starts with an 8, which is how the relay recognises the frame.
const LOW: u32 = 50_000;
const HIGH: u32 = 85_000;

const TICK_TO_ORDER: &str = r#"
local TRIGGER = 65000
local armed, arms, fires = false, 0, 0
return {
    name = "trigger",
    symbols = { "BTCUSDT" },
    streams = { "book" },
    on_book = function(q)
        if q.bid < TRIGGER then
            if not armed then
                armed = true
                arms = arms + 1
                log.info("armed %d", arms)
            end
        elseif armed then
            armed = false
            fires = fires + 1
            -- Far below the market and immediate-or-cancel: it expires without trading.
            local o, err = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "IOC",
                quantity = 0.001, price = market.round_price("BTCUSDT", q.bid * 0.5) }
            log.info("placed %d %s", fires, o and o.status or tostring(err))
        end
    end,
}
"#;

fn tick_to_order(logs: &LogCapture, samples: usize, wiring: Wiring, cores: Cores) -> Result<()> {
    const WARM_UP: usize = 100;
    if cores != Cores::Shared && self::cores() < 2 {
        println!("\n(skipped: splitting the cores needs two)");
        return Ok(());
    }
    logs.clear();
    let transport = wiring.transport;
    println!(
        "\n== tick to order, journal sync {:?}, orders over {transport:?}, cores {cores:?}{}{}: {samples} samples \
         after {WARM_UP} warm-up, load {}",
        wiring.journal,
        if wiring.busy_poll { ", busy poll" } else { "" },
        if wiring.shared_ledger.is_some() {
            ", ledger shared through Redis"
        } else {
            ""
        },
        load_average()
    );
    let (exchange_rt, client_rt, sim) = quiet_sim_and_client_runtime()?;
    let probe = exchange_rt.block_on(WireProbe::start(&sim))?;
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), "trigger.lua", TICK_TO_ORDER)?;
    let (venue, host, _shared) =
        client_rt.block_on(connect(&probe.authority(), &probe.authority(), dir.path(), wiring))?;
    client_rt.block_on(host.add(&path))?;
    let _pinned = pin(cores)?;

    let mut wire = Vec::with_capacity(samples);
    let mut from_step = Vec::with_capacity(samples);
    for i in 1..=WARM_UP + samples {
        // Stepped until seen: the first steps may come before the stream subscription is live.
        set_btc(&sim, LOW)?;
        let armed = format!("armed {i}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            sim.step_market();
            if logs.wait_for(&armed, Duration::from_millis(50)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the strategy never saw the low price: {:?}", host.stats());
            }
        }
        probe.reset();
        set_btc(&sim, HIGH)?;
        let step = Instant::now();
        sim.step_market();
        let placed = logs.wait(&format!("placed {i} "))?;
        ensure!(
            placed.ends_with("EXPIRED"),
            "the order was not placed as intended: {placed}"
        );
        let (tick, order) = probe
            .instants()
            .with_context(|| format!("sample {i}: missing an instant"))?;
        ensure!(order > tick, "sample {i}: the order left before the quote arrived");
        if i > WARM_UP {
            wire.push(order - tick);
            from_step.push(order - step);
        } else if i == WARM_UP {
            // The stage breakdown (with `--features stage-timing`) covers the measured orders only.
            stage_timing::report();
        }
    }
    println!("frame on the wire to the client → order request on the wire to the exchange");
    println!("  {}", Distribution::of(&mut wire));
    println!("simulator step starts (price move, requote, publish) → order request on the wire");
    println!("  {}", Distribution::of(&mut from_step));
    let stats = host.stats();
    let in_process = stats
        .first()
        .and_then(|s| s.tick_to_order)
        .context("the strategy recorded no tick-to-order latency")?;
    println!(
        "in process, as the runner records it (market frame read → order {}), latest {} orders:",
        match transport {
            OrderTransport::WsApi => "frame written to the socket",
            OrderTransport::Rest => "handed to the HTTP client, which writes it after",
        },
        in_process.count
    );
    println!(
        "  p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        micros(in_process.p50),
        micros(in_process.p99),
        micros(in_process.max)
    );
    let stages = stage_timing::report();
    if !stages.is_empty() {
        println!(
            "  where it went (`--features stage-timing`), µs after the frame was read, p50 / p90 / p99 \
             | mean of the slowest 1 % of orders:"
        );
        for s in stages {
            let stage = format!("{:?}", s.stage);
            println!(
                "    {stage:<14} {:>7.1} / {:>7.1} / {:>7.1} | {:>7.1}",
                s.p50_us, s.p90_us, s.p99_us, s.slowest_us
            );
        }
    }
    shut_down(&exchange_rt, &client_rt, sim, &host, &venue);
    Ok(())
}

/// Where the bench's threads run while tick-to-order is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cores {
    /// Wherever the OS puts them: the exchange side (simulator, relay, the bench's own thread)
    /// shares both cores with the client, and preempts it.
    Shared,
    /// The exchange side on core 1, the client and its strategy on core 0: as if the exchange ran
    /// on another machine, so the client is measured alone (it then has one core, not two).
    Split,
    /// The strategy's thread alone on core 0 (run with `--busy-poll --pin-strategies 0`, as
    /// `HostConfig` fields), everything else on core 1:
    /// a machine with a core reserved for the strategy. The client's stream task shares core 1
    /// with the exchange side here, which delays frames before the runner reads them (on the wire)
    /// but not after (in process).
    Isolated,
}

/// Pins every thread as `layout` says. `Split`: the bench's own thread and the `exchange` runtime
/// on core 1, every other thread (the client runtime, the strategy, the journal's sync thread) on
/// core 0. `Isolated`: every thread but the strategy's (which the runner pinned to core 0 itself)
/// on core 1. Threads started
/// later inherit their creator's. Dropping the result lets every thread run anywhere again.
fn pin(layout: Cores) -> Result<Option<Pinned>> {
    if layout == Cores::Shared {
        return Ok(None);
    }
    let pinned = Pinned {
        all: (0..cores()).collect(),
    };
    let main = std::fs::read_link("/proc/thread-self")?;
    let main = main
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let core = match layout {
            // The runner pinned it itself (`HostConfig::strategy_cpus`).
            Cores::Isolated if name.starts_with("strategy:") => continue,
            Cores::Isolated => 1,
            _ if tid == main || name.starts_with("exchange") => 1,
            _ => 0,
        };
        set_affinity(tid.parse()?, &[core])?;
    }
    Ok(Some(pinned))
}

/// Every core the process could use before pinning.
struct Pinned {
    all: Vec<usize>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for tid in tasks
                .flatten()
                .filter_map(|t| t.file_name().to_string_lossy().parse().ok())
            {
                let _ = set_affinity(tid, &self.all);
            }
        }
    }
}

fn set_affinity(tid: i32, cpus: &[usize]) -> Result<()> {
    Ok(runner::host::affinity::pin_thread(tid, cpus)?)
}

fn set_btc(sim: &SimHandle, price: u32) -> Result<()> {
    ensure!(
        sim.set_price("BTCUSDT", Decimal::from(price)),
        "the simulator refused the price"
    );
    Ok(())
}

/// A byte-forwarding relay between the client and the simulator (REST, market streams and the
/// WebSocket API) that notes, to the microsecond, when the market frame with the trigger price
/// leaves for the client (it has been read from the simulator and is being written to the
/// client's socket) and when the first bytes of an order request arrive from the client (a REST
/// `POST /api/v3/order`, or a WebSocket API `order.place` frame). Both instants are on the
/// client's own sockets, so their difference is the client's tick-to-order time; the relay's one
/// extra hop lies outside it.
struct WireProbe {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    tick: Option<Instant>,
    order: Option<Instant>,
}

impl WireProbe {
    async fn start(sim: &SimHandle) -> Result<WireProbe> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = sim.addr();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let noted = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = noted.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (client_rx, client_tx) = client.into_split();
                    let (server_rx, server_tx) = server.into_split();
                    let down = relay(server_rx, client_tx, is_trigger_quote, seen.clone(), |s| &mut s.tick);
                    let up = relay(client_rx, server_tx, is_order, seen, |s| &mut s.order);
                    tokio::join!(down, up);
                });
            }
        });
        Ok(WireProbe { addr, seen })
    }

    fn authority(&self) -> String {
        self.addr.to_string()
    }

    fn reset(&self) {
        *self.seen.lock() = Seen::default();
    }

    fn instants(&self) -> Result<(Instant, Instant)> {
        let seen = self.seen.lock();
        match (seen.tick, seen.order) {
            (Some(tick), Some(order)) => Ok((tick, order)),
            (tick, order) => bail!("frame seen: {}, order seen: {}", tick.is_some(), order.is_some()),
        }
    }
}

/// Every bid near `HIGH` starts with an 8 (the simulator writes frames unmasked, in one piece).
fn is_trigger_quote(chunk: &[u8]) -> bool {
    contains(chunk, br#""b":"8"#)
}

/// The client writes each request in one piece; a WebSocket frame from a client is masked.
fn is_order(chunk: &[u8]) -> bool {
    contains(chunk, b"POST /api/v3/order") || unmasked_ws_payload(chunk).is_some_and(|p| contains(&p, b"order.place"))
}

/// The payload of a masked WebSocket frame at the start of `chunk` (as much of it as `chunk` holds).
fn unmasked_ws_payload(chunk: &[u8]) -> Option<Vec<u8>> {
    let (&[_, len_byte], rest) = chunk.split_first_chunk::<2>()?;
    if len_byte & 0x80 == 0 {
        return None;
    }
    let skip = match len_byte & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let rest = rest.get(skip..)?;
    let (mask, payload) = rest.split_first_chunk::<4>()?;
    Some(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect())
}

/// Copies `from` to `to`; the first time a chunk read matches `wanted` after a reset, notes the
/// instant it was read.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    wanted: fn(&[u8]) -> bool,
    seen: Arc<Mutex<Seen>>,
    slot: fn(&mut Seen) -> &mut Option<Instant>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        let chunk = &buf[..n];
        if wanted(chunk) {
            slot(&mut seen.lock()).get_or_insert(now);
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// 2. Events per second

fn quote_counter(name: &str) -> String {
    format!(
        r#"
local n, spread = 0, 0
return {{
    name = "{name}",
    symbols = {{ {symbols} }},
    streams = {{ "book" }},
    on_book = function(q) n = n + 1 spread = q.ask - q.bid end,
}}
"#,
        symbols = SYMBOLS.map(|s| format!("{s:?}")).join(", ")
    )
}

const SYMBOLS: [&str; 10] = [
    "BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT", "BNBBTC", "BNBETH", "SOLUSDT", "SOLBTC", "XRPUSDT", "XRPBTC",
];

/// Where the market frames come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// The simulator, stepped flat out (its own cost shares the two cores).
    Simulator,
    /// A stream server that sends ready-made bookTicker frames as fast as the client reads them.
    Replay,
}

fn throughput(runs: &[(Source, usize)], run: Duration) -> Result<()> {
    for &(source, count) in runs {
        println!(
            "\n== events/s: {source:?} source, {count} strategies × 10 symbols' bookTicker, {run:?}, load {}",
            load_average()
        );
        let (exchange_rt, client_rt, sim) = quiet_sim_and_client_runtime()?;
        let streams = match source {
            Source::Simulator => sim.addr(),
            Source::Replay => exchange_rt.block_on(replay_server())?,
        };
        let dir = tempfile::tempdir()?;
        let (venue, host, _shared) = client_rt.block_on(connect(
            &sim.addr().to_string(),
            &streams.to_string(),
            dir.path(),
            Wiring::default(),
        ))?;
        for i in 0..count {
            let path = write(dir.path(), &format!("q{i}.lua"), &quote_counter(&format!("q{i}")))?;
            client_rt.block_on(host.add(&path))?;
        }
        let step = || {
            if let Source::Simulator = source {
                sim.step_market();
            }
        };
        // Wait until quotes flow (the subscriptions are live).
        let deadline = Instant::now() + PATIENCE;
        while totals(&host.stats()).0 == 0 {
            ensure!(Instant::now() < deadline, "no quote reached the strategies");
            step();
            std::thread::sleep(Duration::from_millis(5));
        }
        let (handled0, coalesced0) = totals(&host.stats());
        let (strategy_cpu0, client_cpu0) = (thread_cpu("strategy:")?, thread_cpu("client")?);
        let started = Instant::now();
        let mut steps = 0u64;
        while started.elapsed() < run {
            match source {
                Source::Simulator => {
                    step();
                    steps += 1;
                }
                Source::Replay => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let elapsed = started.elapsed();
        let (handled1, coalesced1) = totals(&host.stats());
        let (strategy_cpu, client_cpu) = (
            thread_cpu("strategy:")? - strategy_cpu0,
            thread_cpu("client")? - client_cpu0,
        );
        let per_s = |n: u64| n as f64 / elapsed.as_secs_f64();
        let (handled, coalesced) = (handled1 - handled0, coalesced1 - coalesced0);
        if let Source::Simulator = source {
            println!("simulator steps: {:.0}/s", per_s(steps));
        }
        println!(
            "quotes handled by on_book: {:.0}/s in all, {:.0}/s per strategy; quotes replaced by a newer one \
             while the strategy was busy: {:.0}/s; errors {}",
            per_s(handled),
            per_s(handled) / count as f64,
            per_s(coalesced),
            host.stats().iter().map(|s| s.errors).sum::<u64>()
        );
        println!(
            "CPU: strategy threads {:.2} s ({:.2} µs per quote handled), client runtime {:.2} s ({:.2} µs per \
             quote received), over {:.2} s",
            strategy_cpu.as_secs_f64(),
            strategy_cpu.as_secs_f64() * 1e6 / handled as f64,
            client_cpu.as_secs_f64(),
            client_cpu.as_secs_f64() * 1e6 / (handled + coalesced) as f64 * count as f64,
            elapsed.as_secs_f64()
        );
        shut_down(&exchange_rt, &client_rt, sim, &host, &venue);
    }
    Ok(())
}

/// CPU time (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Result<Duration> {
    // Linux reports it in clock ticks; 100 per second on every common configuration.
    const TICKS_PER_SECOND: u64 = 100;
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let stat = match std::fs::read_to_string(task?.path().join("stat")) {
            Ok(stat) => stat,
            Err(_) => continue, // the thread ended meanwhile
        };
        // `pid (comm) state ...`: the name may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based over the whole line).
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(14) + field(15);
    }
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Accepts market-stream connections and sends each an endless run of combined bookTicker
/// frames for [`SYMBOLS`], as fast as the connection takes them.
async fn replay_server() -> Result<std::net::SocketAddr> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                for u in 1u64.. {
                    let symbol = SYMBOLS[(u % SYMBOLS.len() as u64) as usize];
                    let bid = 100.0 + (u % 1000) as f64 * 0.01;
                    let frame = format!(
                        r#"{{"stream":"{}@bookTicker","data":{{"u":{u},"s":"{symbol}","b":"{bid:.2}","B":"1.5","a":"{:.2}","A":"2.5"}}}}"#,
                        symbol.to_lowercase(),
                        bid + 0.01
                    );
                    // Flushed in batches, as a busy server's writes coalesce.
                    let sent = if u % 32 == 0 {
                        ws.send(Message::text(frame)).await
                    } else {
                        ws.feed(Message::text(frame)).await
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// (events handled, quotes replaced in an inbox) over every strategy.
fn totals(stats: &[StrategyStats]) -> (u64, u64) {
    stats
        .iter()
        .fold((0, 0), |(h, c), s| (h + s.events_handled, c + s.events_coalesced))
}

// ---------------------------------------------------------------------------------------------
// 3. Hot reload

fn reloading(version: usize) -> String {
    format!(
        r#"
local first = true
return {{
    name = "live",
    symbols = {{ "BTCUSDT" }},
    streams = {{ "trade" }},
    on_trade = function(t)
        if first then
            first = false
            log.info("version {version} handles trade %d", t.id)
        end
        if t.id ~= (state.last or 0) + 1 then state.gaps = (state.gaps or 0) + 1 end
        state.last = t.id
        state.count = (state.count or 0) + 1
    end,
}}
"#
    )
}

/// Pause between two trades fed to the host while reloading (the OS adds its own slack).
const FEED_EVERY: Duration = Duration::from_micros(100);

fn reload(logs: &LogCapture, reloads: usize) -> Result<()> {
    println!(
        "\n== hot reload: {reloads} reloads each way, a trade every {FEED_EVERY:?} + OS slack, load {}",
        load_average()
    );
    let rt = runtime("host", 2)?;
    let dir = tempfile::tempdir()?;
    let state_dir = dir.path().join("state");
    let path = write(dir.path(), "live.lua", &reloading(0))?;
    let host = rt.block_on(async {
        let host = Host::new(
            TestVenue::new(),
            HostConfig {
                stdlib_dir: repo_path("stdlib"),
                state_dir: Some(state_dir.clone()),
                ..HostConfig::default()
            },
        );
        host.add(&path).await.map(|_| host)
    })?;
    let (fed, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let feeding = Instant::now();
    let feeder = feed_trades(host.clone(), fed.clone(), stop.clone());
    logs.wait("version 0 handles trade")?;

    let mut direct = Vec::with_capacity(reloads);
    let mut swaps = Vec::with_capacity(reloads);
    for v in 1..=reloads {
        std::fs::write(&path, reloading(v))?;
        let saved = Instant::now();
        let outcome = rt.block_on(host.reload("live"))?;
        let first = logs.wait_instant(&format!("version {v} handles trade"))?;
        direct.push(first - saved);
        swaps.push(outcome.swap);
    }
    let watcher = rt.block_on(async { reload::spawn(Arc::new(Reloader(host.clone())), reload::DEFAULT_DEBOUNCE) })?;
    let mut watched = Vec::with_capacity(reloads);
    for v in reloads + 1..=2 * reloads {
        save_like_an_editor(&path, &reloading(v))?;
        let saved = Instant::now();
        let first = logs.wait_instant(&format!("version {v} handles trade"))?;
        watched.push(first - saved);
    }
    watcher.abort();
    stop.store(true, Ordering::SeqCst);
    let feeding = feeding.elapsed();
    feeder.join().map_err(|_| anyhow!("the feeder panicked"))?;
    let fed = fed.load(Ordering::SeqCst);
    rt.block_on(host.stop_all(StopReason::Shutdown));
    let stats = host.stats();
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(state_dir.join("strategies/live.json"))?)?;
    println!(
        "Host::reload: write → new version's first event   {}",
        Distribution::of(&mut direct)
    );
    println!(
        "  of which the swap itself (request → in place)   {}",
        Distribution::of(&mut swaps)
    );
    println!(
        "file watcher: editor save (rename) → new version's first event   {}",
        Distribution::of(&mut watched)
    );
    println!(
        "events: fed {fed} in {:.2} s, handled {}, out of order or missing {}, dropped {}",
        feeding.as_secs_f64(),
        state["count"],
        state.get("gaps").map_or(0, |g| g.as_u64().unwrap_or(u64::MAX)),
        stats.iter().map(|s| s.trades_dropped).sum::<u64>()
    );
    ensure!(state["count"].as_u64() == Some(fed), "events were lost: {state}");
    ensure!(state.get("gaps").is_none(), "events arrived out of order: {state}");
    println!("load average after: {}", load_average());
    Ok(())
}

/// Feeds trades with consecutive ids from its own thread, one every ~[`FEED_EVERY`], until `stop`.
fn feed_trades(host: Arc<Host>, fed: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut id = 0;
        while !stop.load(Ordering::SeqCst) {
            id += 1;
            host.market(MarketEvent::Trade(Trade {
                symbol: "BTCUSDT".into(),
                id,
                price: 65_000.0,
                qty: 0.01,
                time: 1_700_000_000_000,
                buyer_maker: false,
            }));
            fed.store(id, Ordering::SeqCst);
            std::thread::sleep(FEED_EVERY);
        }
    })
}

/// What the file watcher drives: the host.
struct Reloader(Arc<Host>);

#[async_trait]
impl ReloadTarget for Reloader {
    fn names(&self) -> Vec<String> {
        self.0.names()
    }

    fn watched_files(&self, name: &str) -> Vec<PathBuf> {
        self.0.watched_files(name)
    }

    async fn reload(&self, name: &str) -> Result<Duration, LoadError> {
        self.0.reload(name).await.map(|o| o.swap)
    }
}

/// Editors save by writing a temporary file and renaming it over the original.
fn save_like_an_editor(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("lua.tmp~");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Memory per idle strategy

const IDLE: &str = r#"
local ind = require("indicators")
local fast, slow = ind.ema(12), ind.ema(26)
return {
    symbols = { "BTCUSDT", "ETHUSDT", "ETHBTC" },
    streams = { "book", "trade" },
    on_start = function()
        timer.every(60000, "report")
        log.info("heap %.1f KiB", collectgarbage("count"))
    end,
    on_trade = function(t) fast:update(t.price) slow:update(t.price) end,
    on_timer = function() log.info("ema %.2f %.2f", fast:value() or 0, slow:value() or 0) end,
}
"#;

fn memory(logs: &LogCapture, count: usize) -> Result<()> {
    println!(
        "\n== memory: {count} idle strategies in one host, load {}",
        load_average()
    );
    let rt = runtime("host", 2)?;
    let dir = tempfile::tempdir()?;
    let host = rt.block_on(async {
        Host::new(
            TestVenue::new(),
            HostConfig {
                stdlib_dir: repo_path("stdlib"),
                ..HostConfig::default()
            },
        )
    });
    let paths: Vec<PathBuf> = (0..count)
        .map(|i| write(dir.path(), &format!("idle{i:03}.lua"), IDLE))
        .collect::<Result<_>>()?;
    let before = proc_status()?;
    rt.block_on(async {
        for path in &paths {
            host.add(path).await?;
        }
        Ok::<_, runner::host::LoadError>(())
    })?;
    let heaps = logs.wait_all("heap ", count)?;
    let after = proc_status()?;
    let mut heap_kib: Vec<f64> = heaps
        .iter()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect();
    ensure!(heap_kib.len() == count, "a heap figure is missing");
    heap_kib.sort_by(f64::total_cmp);
    let grown = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "RSS {} → {} KiB (+{} KiB), threads {} → {}: {:.0} KiB per strategy",
        before.rss_kib,
        after.rss_kib,
        grown,
        before.threads,
        after.threads,
        grown as f64 / count as f64
    );
    println!(
        "Lua heap per VM after on_start: min {:.1} KiB, median {:.1} KiB, max {:.1} KiB",
        heap_kib[0],
        heap_kib[count / 2],
        heap_kib[count - 1]
    );
    ensure!(
        host.stats().iter().filter(|s| s.running).count() == count,
        "a strategy stopped"
    );
    rt.block_on(host.stop_all(StopReason::Shutdown));
    Ok(())
}

struct ProcStatus {
    rss_kib: u64,
    threads: u64,
}

fn proc_status() -> Result<ProcStatus> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/self/status"))?;
        line[name.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("unreadable {line}"))
    };
    Ok(ProcStatus {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
    })
}

// ---------------------------------------------------------------------------------------------
// 5. The order path alone

/// `ORDER_PATH_SAMPLES` (default 1000, at most [`latency::RECENT`]): fewer for a run under callgrind.
fn order_path_samples() -> usize {
    std::env::var("ORDER_PATH_SAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
        .clamp(1, latency::RECENT)
}

/// The order path without Lua or the market stream: `Venue::place` (risk guard → validation →
/// journal → ledger → request → signature) called on a thread of its own with a current-thread
/// runtime, as a strategy's thread calls it, until the signed REST request is handed to the HTTP
/// client (the instant the runner's tick-to-order figure ends at); and the whole call, answer included.
fn order_path(samples: usize) -> Result<()> {
    const WARM_UP: usize = 100;
    println!(
        "\n== order path: Venue::place → signed request handed to the HTTP client, {samples} samples after \
         {WARM_UP} warm-up, load {}",
        load_average()
    );
    let (exchange_rt, client_rt, sim) = quiet_sim_and_client_runtime()?;
    let dir = tempfile::tempdir()?;
    let authority = sim.addr().to_string();
    let wiring = Wiring::new(JournalSync::Background, OrderTransport::Rest);
    let (venue, host, _shared) = client_rt.block_on(connect(&authority, &authority, dir.path(), wiring))?;
    let guard = RiskGuard::new(venue.clone(), RiskLimits::default());
    // Far below the market and immediate-or-cancel, as in tick-to-order: it expires without trading.
    set_btc(&sim, LOW)?;
    let price = f64::from(LOW / 2);
    let (to_request, calls) = std::thread::Builder::new()
        .name("order-path".into())
        .spawn(move || -> Result<(LatencySummary, Distribution)> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut to_request = Arc::new(LatencySamples::default());
            let mut calls = Vec::with_capacity(samples);
            for i in 0..WARM_UP + samples {
                if i == WARM_UP {
                    to_request = Arc::new(LatencySamples::default());
                }
                let request = OrderRequest::new(
                    "BTCUSDT",
                    Side::Buy,
                    OrderKind::Limit {
                        price,
                        quantity: 0.001,
                        tif: TimeInForce::Ioc,
                    },
                );
                let started = Instant::now();
                let ctx = CallCtx {
                    trigger: Some(Trigger {
                        received: started,
                        samples: Arc::clone(&to_request),
                    }),
                    ..CallCtx::new("order-path", PATIENCE)
                };
                let order = runtime
                    .block_on(guard.place(&ctx, request))
                    .map_err(|e| anyhow!("order {i}: {e}"))?;
                if i >= WARM_UP {
                    calls.push(started.elapsed());
                }
                ensure!(order.status.is_final(), "order {i} is {}, not final", order.status);
            }
            let to_request = to_request.summary().context("no order recorded its latency")?;
            Ok((to_request, Distribution::of(&mut calls)))
        })?
        .join()
        .map_err(|_| anyhow!("the order thread panicked"))??;
    println!("Venue::place called → signed request handed to the HTTP client");
    println!(
        "  n={} p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        to_request.count,
        micros(to_request.p50),
        micros(to_request.p99),
        micros(to_request.max)
    );
    println!("Venue::place called → answered (the exchange's round trip included)");
    println!("  {calls}");
    shut_down(&exchange_rt, &client_rt, sim, &host, &venue);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared

/// A simulator with limits out of the way and a market that moves only when stepped.
fn quiet_sim() -> SimConfig {
    SimConfig {
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 10_000_000),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 10_000_000),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Day, 1, 100_000_000),
            RateLimit::new(PoolKind::RawRequests, IntervalUnit::Minute, 5, 100_000_000),
            RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 5, 300),
        ],
        market_tick: Duration::ZERO,
        dislocation_every: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// The production wiring (as `engine::run` does it): ledger, Binance client, host. REST and
/// How the client and host are set up, where the benches differ.
#[derive(Default)]
struct Wiring {
    journal: JournalSync,
    transport: OrderTransport,
    busy_poll: bool,
    /// The CPU the runner pins the strategy's thread to (`--pin-strategies`).
    strategy_cpu: Option<usize>,
    /// `--ledger <url>`: the ledger shared through this Redis.
    shared_ledger: Option<String>,
}

impl Wiring {
    fn new(journal: JournalSync, transport: OrderTransport) -> Wiring {
        Wiring {
            journal,
            transport,
            busy_poll: false,
            strategy_cpu: None,
            shared_ledger: None,
        }
    }

    /// `--ledger <url>`.
    fn sharing_through(self, url: String) -> Wiring {
        Wiring {
            shared_ledger: Some(url),
            ..self
        }
    }

    /// `--busy-poll --pin-strategies <cpu>`.
    fn busy_polling_on(self, cpu: usize) -> Wiring {
        Wiring {
            busy_poll: true,
            strategy_cpu: Some(cpu),
            ..self
        }
    }
}

/// The client, its host, and (with `--ledger`) the lease keeper sharing its ledger.
type Connected = (
    Arc<BinanceVenue>,
    Arc<Host>,
    Option<runner::ledger::shared::SharedLedger>,
);

/// Connects REST and the WebSocket API through `rest`, market streams through `streams`.
async fn connect(rest: &str, streams: &str, dir: &Path, wiring: Wiring) -> Result<Connected> {
    let ledger = Ledger::new(
        runner::exchange::binance::limits::pools::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(FastClock::new()),
    );
    ledger.set_boundary_guard(runner::ledger::BOUNDARY_GUARD);
    let shared = match wiring.shared_ledger {
        Some(url) => {
            let config = runner::ledger::shared::SharedConfig {
                url,
                group: "bench".to_string(),
                fallback_on_start: false,
            };
            Some(runner::ledger::shared::share(ledger.clone(), config).await?)
        }
        None => None,
    };
    let profile = Profile::paper(
        &format!("http://{rest}"),
        &format!("ws://{streams}"),
        &format!("ws://{rest}/ws-api/v3"),
        Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
    );
    let options = ClientOptions {
        state_dir: Some(dir.join("state")),
        journal_sync: wiring.journal,
        order_transport: wiring.transport,
        ..ClientOptions::default()
    };
    let venue = BinanceVenue::connect(profile, ledger, options)
        .await
        .context("the client connects")?;
    // As the engine does: every order passes the (here empty) risk limits and the halt switch.
    let host = Host::new(
        RiskGuard::new(venue.clone(), RiskLimits::default()),
        HostConfig {
            stdlib_dir: repo_path("stdlib"),
            state_dir: Some(dir.join("state")),
            busy_poll: wiring.busy_poll,
            strategy_cpus: wiring.strategy_cpu.into_iter().collect(),
            ..HostConfig::default()
        },
    );
    let sink: Arc<dyn EventSink> = host.clone();
    venue.start(sink).await.map_err(|e| anyhow!("streams start: {e}"))?;
    Ok((venue, host, shared))
}

/// Prints the load, then stops the strategies, the client and the simulator.
fn shut_down(exchange_rt: &Runtime, client_rt: &Runtime, sim: SimHandle, host: &Host, venue: &BinanceVenue) {
    println!("load average after: {}", load_average());
    client_rt.block_on(async {
        host.stop_all(StopReason::Shutdown).await;
        venue.shutdown().await;
    });
    exchange_rt.block_on(sim.shutdown());
}

/// The quiet simulator on its own 1-worker runtime ("exchange side"), and a 2-worker runtime for
/// the client and host.
fn quiet_sim_and_client_runtime() -> Result<(Runtime, Runtime, SimHandle)> {
    let exchange_rt = runtime("exchange", 1)?;
    let client_rt = runtime("client", 2)?;
    let sim = exchange_rt.block_on(sim::start(quiet_sim(), ([127, 0, 0, 1], 0).into()))?;
    Ok((exchange_rt, client_rt, sim))
}

fn runtime(name: &str, workers: usize) -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()?)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Sorted samples, summarised.
struct Distribution {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Distribution {
    fn of(samples: &mut [Duration]) -> Distribution {
        samples.sort();
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Distribution {
            n: samples.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            self.n,
            micros(self.p50),
            micros(self.p90),
            micros(self.p99),
            micros(self.max)
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The Lua `log` lines of every strategy, each with the instant it was written: the bench
/// learns what a strategy did, and when, without touching the code under test.
#[derive(Default)]
struct LogCapture {
    lines: Mutex<Vec<(Instant, String)>>,
    added: Condvar,
}

impl LogCapture {
    fn install() -> Arc<LogCapture> {
        let capture = Arc::new(LogCapture::default());
        // Only the `log` module's events are enabled, so no other callsite in the measured
        // paths becomes more expensive than in production.
        let only_lua_logs =
            tracing_subscriber::filter::Targets::new().with_target("runner::host::api::log", tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(CaptureLayer(capture.clone()).with_filter(only_lua_logs));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("a tracing subscriber was already installed; strategy logs cannot be captured");
        }
        capture
    }

    /// Forgets every line so far (a new run reuses its markers).
    fn clear(&self) {
        self.lines.lock().clear();
    }

    /// The first line starting with `prefix`, waiting for it.
    fn wait(&self, prefix: &str) -> Result<String> {
        self.wait_line(prefix).map(|(_, line)| line)
    }

    fn wait_instant(&self, prefix: &str) -> Result<Instant> {
        self.wait_line(prefix).map(|(at, _)| at)
    }

    fn wait_line(&self, prefix: &str) -> Result<(Instant, String)> {
        self.wait_for(prefix, PATIENCE)
    }

    fn wait_for(&self, prefix: &str, patience: Duration) -> Result<(Instant, String)> {
        let deadline = Instant::now() + patience;
        let mut lines = self.lines.lock();
        loop {
            if let Some(found) = lines.iter().rev().find(|(_, l)| l.starts_with(prefix)) {
                return Ok(found.clone());
            }
            if self.added.wait_until(&mut lines, deadline).timed_out() {
                bail!("no strategy logged {prefix:?} within {patience:?}");
            }
        }
    }

    /// `count` lines starting with `prefix`.
    fn wait_all(&self, prefix: &str, count: usize) -> Result<Vec<String>> {
        let deadline = Instant::now() + PATIENCE;
        let mut lines = self.lines.lock();
        loop {
            let found: Vec<String> = lines
                .iter()
                .filter(|(_, l)| l.starts_with(prefix))
                .map(|(_, l)| l.clone())
                .collect();
            if found.len() >= count {
                return Ok(found);
            }
            if self.added.wait_until(&mut lines, deadline).timed_out() {
                bail!("{} of {count} strategies logged {prefix:?}", found.len());
            }
        }
    }
}

struct CaptureLayer(Arc<LogCapture>);

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lines.lock().push((at, message.0));
        self.0.added.notify_all();
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
