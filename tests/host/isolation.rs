//! A misbehaving strategy is cut short and stopped; its neighbour never notices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{config, good_neighbour, quote, report, stats, wait_for, Files, TestVenue};
use runner::exchange::{EventSink, MarketEvent};
use runner::host::{Host, HostConfig, StopReason};

const LONG: Duration = Duration::from_secs(20);

async fn misbehaving_neighbour(bad_source: &str, limit_kind: &str) {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(
        venue.clone(),
        HostConfig {
            cpu_limit: Duration::from_millis(30),
            memory_limit: 16 << 20,
            ..config(&files)
        },
    );
    host.add(&files.write("good.lua", &good_neighbour())).await.unwrap();
    host.add(&files.write("bad.lua", bad_source)).await.unwrap();

    // Feed both a steady stream of quotes while the bad one misbehaves on each of them.
    let started = Instant::now();
    let mut id = 0;
    while stats(&host, "bad").running && started.elapsed() < LONG {
        id += 1;
        host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, id)));
        host.market(MarketEvent::Book(quote("ETHUSDT", 1.0, id)));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bad = stats(&host, "bad");
    assert!(
        !bad.running,
        "{limit_kind}: the bad strategy is stopped after repeated trips"
    );
    assert_eq!(bad.trips, 3, "{limit_kind}: {bad:?}");

    // The good one kept its pace throughout and still runs.
    let ticks_before = venue.reports("good", "tick:").len();
    let window = Instant::now();
    wait_for("more ticks", LONG, || {
        venue.reports("good", "tick:").len() >= ticks_before + 5
    })
    .await;
    let per_tick = window.elapsed() / 5;
    assert!(
        per_tick < Duration::from_millis(200),
        "{limit_kind}: timer ticks every {per_tick:?}"
    );
    let ticks = venue.reports("good", "tick:");
    let expected: Vec<String> = (1..=ticks.len()).map(|n| format!("tick:{n}")).collect();
    assert_eq!(ticks, expected, "{limit_kind}: every tick, in order");
    let good = stats(&host, "good");
    assert!(good.running && good.trips == 0 && good.errors == 0, "{good:?}");
    host.market(MarketEvent::Book(quote("ETHUSDT", 1.0, id + 1)));
    wait_for("the good strategy's quotes", LONG, || {
        stats(&host, "good").events_handled as usize > ticks.len()
    })
    .await;
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_does_not_disturb_the_neighbour() {
    misbehaving_neighbour(
        r#"return { name = "bad", symbols = { "BTCUSDT" },
            on_book = function() while true do pcall(function() while true do end end) end end }"#,
        "cpu",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_does_not_disturb_the_neighbour() {
    misbehaving_neighbour(
        r#"keep = {}
        return { name = "bad", symbols = { "BTCUSDT" },
            on_book = function()
                while true do pcall(function() keep[#keep + 1] = string.rep("m", 1 << 20) end) end
            end }"#,
        "memory",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_caught_trip_nothing_reaches_the_host() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(
        venue.clone(),
        HostConfig {
            cpu_limit: Duration::from_millis(30),
            max_trips: 10,
            ..config(&files)
        },
    );
    let source = format!(
        r#"return {{ name = "sneaky", symbols = {{ "BTCUSDT" }},
            on_book = function(q)
                if q.update_id == 1 then
                    pcall(function() while true do end end)
                    {}
                else
                    {}
                end
            end }}"#,
        report(r#""after-trip""#),
        report(r#""normal""#)
    );
    host.add(&files.write("sneaky.lua", &source)).await.unwrap();
    host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, 1)));
    wait_for("the trip", LONG, || stats(&host, "sneaky").trips == 1).await;
    host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, 2)));
    wait_for("the next event", LONG, || !venue.reports("sneaky", "normal").is_empty()).await;
    assert!(
        venue.reports("sneaky", "after-trip").is_empty(),
        "the caught trip reached the host"
    );
    assert!(stats(&host, "sneaky").running, "one trip does not stop it");
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_exchange_blocks_only_the_caller() {
    let files = Files::new();
    let venue = TestVenue::new();
    *venue.latency.lock() = Duration::from_millis(300);
    let host = Host::new(venue.clone(), config(&files));
    let slow = r#"return { name = "slow", symbols = { "BTCUSDT" },
        on_book = function() local d = market.depth("BTCUSDT") state.depth = d ~= nil end }"#;
    host.add(&files.write("slow.lua", slow)).await.unwrap();
    host.add(&files.write(
        "fast.lua",
        r#"return { name = "fast", symbols = { "ETHUSDT" }, on_book = function() end }"#,
    ))
    .await
    .unwrap();
    host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, 1)));
    wait_for("the slow call to start", LONG, || {
        venue.calls.lock().iter().any(|c| c.starts_with("depth"))
    })
    .await;
    let started = Instant::now();
    for id in 1..=50 {
        host.market(MarketEvent::Book(quote("ETHUSDT", 1.0, id)));
        wait_for("the fast strategy", LONG, || stats(&host, "fast").events_handled == id).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "fast was held up: {:?}",
        started.elapsed()
    );
    wait_for("the slow call to finish", LONG, || {
        stats(&host, "slow").events_handled == 1
    })
    .await;
    host.stop_all(StopReason::Shutdown).await;
}

/// `busy_poll` really keeps a waiting strategy's thread on its core, and the default really lets
/// it sleep (the thread's CPU time from /proc, in 10 ms ticks, over half a second).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_strategy_keeps_its_core_and_a_sleeping_one_does_not() {
    let idle_cpu_ticks = |busy_poll| async move {
        let files = Files::new();
        let host = polling_host(TestVenue::new(), &files, busy_poll);
        let source = r#"return { symbols = { "BTCUSDT" }, on_book = function(q) end }"#;
        host.add(&files.write("idler.lua", source)).await.unwrap();
        let used = cpu_ticks_over("strategy:idler", Duration::from_millis(500)).await;
        host.stop_all(StopReason::Shutdown).await;
        used
    };
    let spinning = idle_cpu_ticks(true).await;
    let sleeping = idle_cpu_ticks(false).await;
    assert!(spinning >= 10, "a busy-polling thread used {spinning} ticks of 50");
    assert!(sleeping <= 5, "a sleeping thread used {sleeping} ticks of 50");
}

/// A busy-polling strategy's thread keeps spinning while its callback waits for the exchange's
/// answer: had it slept, the answer (and the next market event) would wait for it to wake.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_strategy_spins_while_its_callback_waits_for_the_exchange() {
    let waiting_cpu_ticks = |busy_poll| async move {
        let files = Files::new();
        let venue = TestVenue::new();
        *venue.latency.lock() = Duration::from_millis(600);
        let host = polling_host(venue.clone(), &files, busy_poll);
        let source = r#"return { symbols = { "BTCUSDT" },
            on_book = function() state.depth = market.depth("BTCUSDT") ~= nil end }"#;
        host.add(&files.write("waiter.lua", source)).await.unwrap();
        host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, 1)));
        wait_for("the call to start", LONG, || {
            venue.calls.lock().iter().any(|c| c.starts_with("depth"))
        })
        .await;
        // Measured inside the call's 600 ms.
        let used = cpu_ticks_over("strategy:waiter", Duration::from_millis(400)).await;
        host.stop_all(StopReason::Shutdown).await;
        used
    };
    let spinning = waiting_cpu_ticks(true).await;
    let sleeping = waiting_cpu_ticks(false).await;
    assert!(
        spinning >= 10,
        "a busy-polling thread used {spinning} ticks of 40 while it waited"
    );
    assert!(
        sleeping <= 5,
        "a sleeping thread used {sleeping} ticks of 40 while it waited"
    );
}

fn polling_host(venue: Arc<TestVenue>, files: &Files, busy_poll: bool) -> Arc<Host> {
    Host::new(
        venue,
        HostConfig {
            busy_poll,
            ..config(files)
        },
    )
}

/// The CPU time the thread named `name` uses over `window`, in clock ticks.
#[cfg(target_os = "linux")]
async fn cpu_ticks_over(name: &str, window: Duration) -> u64 {
    let before = thread_cpu_ticks(name);
    tokio::time::sleep(window).await;
    thread_cpu_ticks(name) - before
}

/// User plus system time of this process's thread named `name`, in clock ticks.
#[cfg(target_os = "linux")]
fn thread_cpu_ticks(name: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            // After "pid (comm) " come the state (field 3) ... utime (14) and stime (15).
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            return fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
    }
    panic!("no thread named {name}");
}
