//! The machine's own floor under tick-to-order: a bare thread spinning on one CPU, doing nothing
//! but reading the clock, and every gap between two consecutive reads that is longer than 10 µs.
//! Such a gap is time the thread was held up by something other than its own work (the virtual CPU
//! descheduled, an interrupt, the kernel); any thread on that CPU, a strategy's included, is held
//! up alike. `cargo bench --bench stalls` spins 10 s on CPU 0, then 10 s on CPU 0 while CPU 1
//! spins too; `-- CPU SECONDS` picks one CPU and a duration.

use std::time::{Duration, Instant};

/// Gap thresholds reported, in µs.
const THRESHOLDS: [u64; 5] = [10, 20, 50, 100, 500];

fn main() {
    // Cargo adds `--bench`; the rest is ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let numbers: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    match (args.len(), numbers.as_slice()) {
        (0, _) => {}
        (2, &[cpu, seconds]) if seconds > 0 => {
            report(&spin(cpu as usize, Duration::from_secs(seconds), None));
            return;
        }
        _ => {
            eprintln!("usage: cargo bench --bench stalls [-- CPU SECONDS], SECONDS at least 1; got {args:?}");
            std::process::exit(2);
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = Duration::from_secs(10);
    println!("CPU 0 alone ({} cores):", cores);
    report(&spin(0, run, None));
    if cores > 1 {
        println!("CPU 0 while CPU 1 spins too:");
        report(&spin(0, run, Some(1)));
    }
}

struct Gaps {
    cpu: usize,
    run: Duration,
    over: [u64; THRESHOLDS.len()],
    max: Duration,
    lost: Duration,
}

/// Spins on `cpu` for `run` (and on `also` meanwhile, if given), noting the gaps.
fn spin(cpu: usize, run: Duration, also: Option<usize>) -> Gaps {
    let neighbour = also.map(|other| {
        std::thread::spawn(move || {
            pin(other);
            let end = Instant::now() + run;
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        })
    });
    let gaps = std::thread::spawn(move || {
        pin(cpu);
        let mut gaps = Gaps {
            cpu,
            run,
            over: [0; THRESHOLDS.len()],
            max: Duration::ZERO,
            lost: Duration::ZERO,
        };
        let start = Instant::now();
        let mut previous = start;
        while previous - start < run {
            let now = Instant::now();
            let gap = now - previous;
            previous = now;
            if gap > Duration::from_micros(THRESHOLDS[0]) {
                gaps.lost += gap;
                gaps.max = gaps.max.max(gap);
                for (count, threshold) in gaps.over.iter_mut().zip(THRESHOLDS) {
                    *count += u64::from(gap > Duration::from_micros(threshold));
                }
            }
        }
        gaps
    })
    .join()
    .expect("the spinning thread does not panic");
    if let Some(neighbour) = neighbour {
        neighbour.join().expect("the neighbouring spinner does not panic");
    }
    gaps
}

fn pin(cpu: usize) {
    if let Err(e) = runner::host::affinity::pin_current_thread(cpu) {
        // Unpinned, the figures would be the scheduler's moves, not the CPU's stalls.
        eprintln!("stalls: cannot run on CPU {cpu}: {e}");
        std::process::exit(2);
    }
}

fn report(gaps: &Gaps) {
    let seconds = gaps.run.as_secs_f64();
    let counts: Vec<String> = THRESHOLDS
        .iter()
        .zip(gaps.over)
        .map(|(threshold, count)| format!("> {threshold} µs {:.0}/s", count as f64 / seconds))
        .collect();
    println!(
        "  CPU {}, {:.0} s: held up {}; longest {:.1} µs; {:.2} % of the time lost",
        gaps.cpu,
        seconds,
        counts.join(", "),
        gaps.max.as_secs_f64() * 1e6,
        100.0 * gaps.lost.as_secs_f64() / seconds
    );
}
