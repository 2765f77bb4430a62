//! Property tests of the ledger under tokio's paused time.
//!
//! 1. Many tasks send random request streams (weights, order counts, connection
//!    attempts, lanes, deadlines, credits). Replaying every admission by its
//!    sequence number: no pool's aligned window ever holds more than its limit,
//!    market data never eats into the headroom, and every admission that had to
//!    wait happened at an instant where something could have made room (a window
//!    reset, another request's arrival, deadline or admission) — never at a
//!    polling tick.
//! 2. A lone client: each request is admitted at exactly the earliest instant an
//!    independent model of the windows allows, or refused with exactly that
//!    instant as `until_ms` when it lies past the deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proptest::prelude::*;
use runner::ledger::limits::IntervalUnit::Second;
use runner::ledger::limits::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
use runner::ledger::{Cost, Lane, Ledger, LedgerConfig, LedgerError, PoolKind, RateLimit, TokioClock};

const T0: i64 = 1_700_000_040_000;
const HEADROOM: f64 = 0.1;

fn limits() -> Vec<RateLimit> {
    vec![
        RateLimit::new(RequestWeight, Second, 1, 20),
        RateLimit::new(RequestWeight, Second, 10, 120),
        RateLimit::new(Orders, Second, 2, 4),
        RateLimit::new(RawRequests, Second, 1, 15),
        RateLimit::new(Connections, Second, 5, 3),
    ]
}

fn units(kind: PoolKind, cost: &Cost) -> u64 {
    cost.units_of(kind)
}

fn cap(limit: &RateLimit, lane: Lane) -> u64 {
    match lane {
        Lane::MarketData => limit.limit - (limit.limit as f64 * HEADROOM).ceil() as u64,
        _ => limit.limit,
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn new_ledger() -> Ledger {
    Ledger::new(
        limits(),
        LedgerConfig {
            market_headroom: HEADROOM,
            backoff_jitter: Duration::ZERO,
            state_dir: None,
        },
        Arc::new(TokioClock::starting_at(T0)),
    )
}

#[derive(Debug, Clone)]
struct Request {
    delay_ms: u64,
    lane: Lane,
    cost: Cost,
    wait_ms: u64,
    /// Give back the one weight a successful order call does not cost.
    credit: bool,
}

fn lane() -> impl Strategy<Value = Lane> {
    prop_oneof![Just(Lane::Cancel), Just(Lane::Order), Just(Lane::MarketData)]
}

fn request() -> impl Strategy<Value = Request> {
    (
        0u64..1_500,
        lane(),
        0u32..9,
        prop_oneof![4 => Just(0u32), 2 => Just(1u32), 1 => Just(2u32)],
        prop_oneof![9 => Just(0u32), 1 => Just(1u32)],
        prop_oneof![1 => Just(0u64), 3 => 1u64..4_000, 1 => 4_000u64..15_000],
        any::<bool>(),
    )
        .prop_map(
            |(delay_ms, lane, weight, orders, connections, wait_ms, credit)| Request {
                delay_ms,
                lane,
                cost: Cost::new()
                    .with(RequestWeight, weight)
                    .with(Orders, orders)
                    .with(RawRequests, 1)
                    .with(Connections, connections),
                wait_ms,
                credit,
            },
        )
}

#[derive(Debug, Clone)]
struct Admission {
    seq: u64,
    lane: Lane,
    cost: Cost,
    credited: u32,
    requested_ms: i64,
    sent_at_ms: i64,
}

/// Instants at which the situation of a waiter can change.
fn is_event_instant(at: i64, requests: &[(i64, u64)], admissions: &[Admission]) -> bool {
    limits().iter().any(|l| at % l.interval.millis() == 0)
        || requests
            .iter()
            .any(|&(asked, wait)| asked == at || asked + wait as i64 == at)
        || admissions
            .iter()
            .any(|a| a.sent_at_ms == at && a.sent_at_ms == a.requested_ms)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn no_window_ever_exceeds_its_limit(tasks in prop::collection::vec(prop::collection::vec(request(), 1..12), 2..9)) {
        let admissions = Arc::new(Mutex::new(Vec::<Admission>::new()));
        let asked = Arc::new(Mutex::new(Vec::<(i64, u64)>::new()));
        paused_runtime().block_on(async {
            let ledger = new_ledger();
            let mut handles = Vec::new();
            for (t, stream) in tasks.into_iter().enumerate() {
                let ledger = ledger.clone();
                let admissions = admissions.clone();
                let asked = asked.clone();
                handles.push(tokio::spawn(async move {
                    let name = format!("task{t}");
                    for r in stream {
                        tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                        let requested_ms = ledger.now_ms();
                        asked.lock().push((requested_ms, r.wait_ms));
                        match ledger.reserve(&name, r.lane, r.cost, Duration::from_millis(r.wait_ms)).await {
                            Ok(p) => {
                                let credited = if r.credit && p.cost.units_of(Orders) > 0 { p.cost.units_of(RequestWeight).min(1) as u32 } else { 0 };
                                ledger.credit(&p, RequestWeight, credited);
                                admissions.lock().push(Admission {
                                    seq: p.seq,
                                    lane: p.lane,
                                    cost: p.cost,
                                    credited,
                                    requested_ms,
                                    sent_at_ms: p.sent_at_ms,
                                });
                            }
                            Err(LedgerError::RateLimited { until_ms }) => {
                                assert_eq!(ledger.now_ms(), requested_ms + r.wait_ms as i64, "refused before its deadline");
                                assert!(until_ms > requested_ms);
                            }
                            Err(e) => panic!("unexpected {e:?} for {r:?}"),
                        }
                    }
                }));
            }
            for h in handles {
                h.await.expect("task");
            }
        });

        let mut admissions = admissions.lock().clone();
        admissions.sort_by_key(|a| a.seq);
        let asked = asked.lock().clone();
        for limit in limits() {
            // Running net count per aligned window, replayed in admission order.
            let mut windows: HashMap<i64, u64> = HashMap::new();
            for a in &admissions {
                let n = units(limit.kind, &a.cost);
                if n == 0 {
                    continue;
                }
                let used = windows.entry(limit.interval.window_start(a.sent_at_ms)).or_default();
                *used += n;
                prop_assert!(*used <= cap(&limit, a.lane), "{:?} {} over its cap for {:?} at {}", limit.kind, limit.interval, a.lane, a.sent_at_ms);
                if limit.kind == RequestWeight {
                    *used -= u64::from(a.credited);
                }
            }
        }
        for a in &admissions {
            prop_assert!(a.sent_at_ms >= a.requested_ms);
            if a.sent_at_ms > a.requested_ms {
                prop_assert!(is_event_instant(a.sent_at_ms, &asked, &admissions), "admitted at {} for no reason", a.sent_at_ms);
            }
        }
    }

    #[test]
    fn a_lone_client_is_admitted_at_the_earliest_instant(stream in prop::collection::vec(request(), 1..40)) {
        paused_runtime().block_on(async {
            let ledger = new_ledger();
            // The model: used units per (pool, aligned window).
            let mut model: HashMap<(usize, i64), u64> = HashMap::new();
            let pools = limits();
            for r in stream {
                tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                let now = ledger.now_ms();
                let too_large = pools.iter().any(|l| units(l.kind, &r.cost) > cap(l, r.lane));
                let blocking_resets: Vec<i64> = pools
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| {
                        let n = units(l.kind, &r.cost);
                        let used = model.get(&(*i, l.interval.window_start(now))).copied().unwrap_or(0);
                        n > 0 && used + n > cap(l, r.lane)
                    })
                    .map(|(_, l)| l.interval.window_start(now) + l.interval.millis())
                    .collect();
                let room_at = blocking_resets.iter().copied().max().unwrap_or(now);
                let result = ledger.reserve("lone", r.lane, r.cost, Duration::from_millis(r.wait_ms)).await;
                match result {
                    Ok(p) => {
                        prop_assert!(!too_large);
                        prop_assert_eq!(p.sent_at_ms, room_at, "admitted at the wrong instant: {:?}", r);
                        prop_assert!(room_at <= now + r.wait_ms as i64);
                        for (i, l) in pools.iter().enumerate() {
                            *model.entry((i, l.interval.window_start(p.sent_at_ms))).or_default() += units(l.kind, &r.cost);
                        }
                    }
                    Err(LedgerError::TooLarge(_)) => prop_assert!(too_large),
                    Err(LedgerError::RateLimited { until_ms }) => {
                        prop_assert!(!too_large);
                        prop_assert_eq!(until_ms, room_at);
                        prop_assert!(room_at > now + r.wait_ms as i64, "refused although room came in time: {:?}", r);
                        prop_assert_eq!(ledger.now_ms(), now + r.wait_ms as i64);
                    }
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                }
            }
            Ok(())
        })?;
    }
}
