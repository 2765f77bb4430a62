//! Attacks on the sandbox, run by the real binary beside a benign strategy: the benign one keeps its
//! timer and its market data, the process stops within seconds of its `--duration`, nothing panics,
//! and the log stays small.

use std::time::{Duration, Instant};

use crate::harness::{small_limits, strategy, Exchange};

/// Long enough for the hostile strategies to be stopped for their trips (three each).
const RUN: Duration = Duration::from_secs(6);

#[test]
fn pattern_bombs_log_floods_timer_floods_and_memory_bombs_leave_the_neighbour_alone() {
    let exchange = Exchange::start(small_limits(1200));
    let started = Instant::now();
    let outcome = exchange.run(
        &[
            strategy("benign.lua"),
            strategy("pattern_bomb.lua"),
            strategy("log_flood.lua"),
            strategy("timer_flood.lua"),
            strategy("memory_bomb.lua"),
        ],
        RUN,
    );
    let took = started.elapsed();
    let text = outcome.text();
    let bytes = text.len();
    println!("SANDBOX attacks: run {RUN:?} took {took:?}, {bytes} bytes of output");
    assert!(outcome.exit_ok, "exits 0:\n{}", tail(&text));
    println!("SANDBOX attacks: peak memory {:.1} MiB", outcome.peak_memory_mib());
    outcome.assert_memory_bounded(5);
    // Start-up (sign-in to the simulator, four VMs) plus the stop; a slow, shared machine gets slack.
    assert!(took < RUN + Duration::from_secs(10), "took {took:?}");
    assert!(!text.contains("panicked"), "{}", tail(&text));
    // 450 MB in 10 s before the log was rate-limited; now about 64 KiB/s per strategy plus a burst.
    assert!(bytes < 8 << 20, "{bytes} bytes of output");
    assert!(text.contains("log lines suppressed"), "{}", tail(&text));
    assert!(
        text.contains("timer_flood timers=1000 refused_calls=2000"),
        "{}",
        tail(&text)
    );
    let ticks = text.lines().filter(|l| l.contains("benign tick=")).count();
    assert!(
        ticks >= 30,
        "the benign strategy ticked {ticks} times in {RUN:?}:\n{}",
        tail(&text)
    );
    let last_books = text
        .lines()
        .filter_map(|l| l.split("books=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(last_books > 0, "the benign strategy saw market data");
    // Running out of memory is a limit trip even inside `pcall`: the bomb is stopped, not retried forever.
    assert!(
        text.lines()
            .any(|l| l.contains("memory limit exceeded") && l.contains("strategy=memory_bomb")),
        "{}",
        tail(&text)
    );
    assert!(
        text.contains("pattern_bomb") && text.contains("CPU limit exceeded"),
        "{}",
        tail(&text)
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
