//! The circuit breakers against the simulator's fault knobs: an outage of 5xx answers, slow
//! answers, a single failure. Short windows and cool-downs (set in the options) keep them fast.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client_support::{ctx, resting_buy, start_with};
use runner::exchange::binance::ClientOptions;
use runner::exchange::breaker::{BreakerConfig, BreakerState, EndpointClass};
use runner::exchange::{ClientOrderId, ErrorCode, OrderRef, OrderRequest, OrderStatus, Venue};
use runner::sim::{FailKind, SimConfig};

const COOL_DOWN: Duration = Duration::from_millis(500);
const JITTER: f64 = 0.2;
const PROBES: u32 = 2;

fn breaker() -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        window: Duration::from_secs(1),
        min_calls: 4,
        failure_rate: 0.5,
        cool_down: COOL_DOWN,
        jitter: JITTER,
        probes: PROBES,
        slow_call: Duration::from_millis(300),
    }
}

fn options(breaker: BreakerConfig) -> ClientOptions {
    ClientOptions {
        breaker,
        ..ClientOptions::default()
    }
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn state_of(venue: &dyn Venue, class: EndpointClass) -> BreakerState {
    venue
        .breakers()
        .into_iter()
        .find(|b| b.class == class)
        .expect("a breaker per class")
        .state
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What an outage did, for the assertions and for BENCHMARKS.md.
#[derive(Debug)]
#[allow(dead_code)] // Read through Debug, printed for BENCHMARKS.md.
struct Figures {
    fast_failures: usize,
    fail_fast_p50: Duration,
    fail_fast_p99: Duration,
    fail_fast_max: Duration,
    /// REST requests that reached the simulator during the outage: in all, and after the first
    /// refusal (the breaker open).
    sent_during_outage: usize,
    sent_while_open: usize,
    cancels_while_open: usize,
    bound_while_open: usize,
    /// From the end of the outage until every breaker is closed again.
    recovery: Duration,
}

/// A strategy polls the ticker every 5 ms through an outage of `outage` (5xx with -1007: what
/// reached the backend was done, its answer lost), with orders placed before and during it and
/// cancels sent while it lasts.
async fn outage_scenario(outage: Duration) -> Figures {
    let setup = start_with(
        SimConfig::default(),
        runner::exchange::binance::limits::pools::spot_defaults(),
        options(breaker()),
    )
    .await;
    let venue = setup.venue.clone();
    let strategy = ctx("poller");

    // Placed before the outage: known NEW.
    let mut before = Vec::new();
    for (i, factor) in [0.90, 0.91, 0.92].into_iter().enumerate() {
        let mut request = resting_buy(&venue, "poller", factor).await;
        request.client_id = Some(ClientOrderId::new(format!("before-{i}")).unwrap());
        before.push(venue.place(&strategy, request).await.expect("placed before the outage"));
    }
    let mut during = Vec::new();
    for (i, factor) in [0.93, 0.94].into_iter().enumerate() {
        let mut request = resting_buy(&venue, "poller", factor).await;
        request.client_id = Some(ClientOrderId::new(format!("during-{i}")).unwrap());
        during.push(request);
    }

    let outage_start = wall_ms();
    setup.sim.faults().outage(outage, FailKind::Unknown1007);
    let outage_end = outage_start + outage.as_millis() as i64;

    // Placed as the outage starts: done by the exchange, answers lost, outcomes looked up later.
    for request in during {
        let error = venue.place(&strategy, request).await.expect_err("no answer");
        assert_eq!(error.code, ErrorCode::UnknownStatus, "{error}");
    }

    // The strategy keeps asking for prices and placing orders; once the breakers open, its calls
    // fail at once.
    let mut fast = Vec::new();
    let mut first_refusal_ms = None;
    let mut placed_unknown = Vec::new();
    let mut refused_order = None;
    let mut cancels_while_open = 0;
    let mut refusal = |took: Duration, error: &runner::exchange::ApiError, fast: &mut Vec<Duration>| {
        assert!(error.retry_after_ms.is_some_and(|ms| ms >= 1), "{error:?}");
        fast.push(took);
        first_refusal_ms.get_or_insert_with(wall_ms);
    };
    while wall_ms() < outage_end - 50 {
        let asked = Instant::now();
        let result = venue.ticker(&strategy, "BTCUSDT").await;
        let took = asked.elapsed();
        match result {
            Err(e) if e.code == ErrorCode::Unavailable => refusal(took, &e, &mut fast),
            Err(_) => {}
            Ok(_) => panic!("an answer during the outage"),
        }
        if refused_order.is_none() {
            let id = format!("loop-{}", placed_unknown.len());
            let first = &before[0];
            let request = OrderRequest {
                client_id: Some(ClientOrderId::new(id.as_str()).unwrap()),
                ..OrderRequest::limit("BTCUSDT", first.side, first.quantity, first.price)
            };
            let asked = Instant::now();
            let error = venue
                .place(&strategy, request)
                .await
                .expect_err("no answer during the outage");
            let took = asked.elapsed();
            match error.code {
                ErrorCode::UnknownStatus => placed_unknown.push(id),
                ErrorCode::Unavailable => {
                    refusal(took, &error, &mut fast);
                    refused_order = Some(id);
                    // Cancels still go out (and their unknown outcome is looked up).
                    for order in &before[..2] {
                        let reference = OrderRef::ClientId(order.client_id.clone());
                        let error = venue
                            .cancel(&strategy, "BTCUSDT", &reference)
                            .await
                            .expect_err("no answer during the outage");
                        assert_eq!(error.code, ErrorCode::UnknownStatus, "{error}");
                        cancels_while_open += 1;
                    }
                }
                _ => panic!("{error}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_refusal_ms = first_refusal_ms.expect("a breaker opened during the outage");
    let refused_order = refused_order.expect("the orders breaker opened during the outage");

    // Recovery: every breaker closes within one cool-down (with its jitter) of the outage's end.
    while wall_ms() < outage_end {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let recovered = Instant::now();
    let deadline = COOL_DOWN.mul_f64(1.0 + JITTER) + Duration::from_millis(400);
    loop {
        let all_closed = venue.breakers().iter().all(|b| b.state == BreakerState::Closed);
        if all_closed {
            break;
        }
        assert!(
            recovered.elapsed() < deadline * 3,
            "breakers still not closed: {:?}",
            venue.breakers()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let recovery = recovered.elapsed();
    assert!(
        recovery <= deadline,
        "closed {recovery:?} after the outage, more than one cool-down"
    );
    assert!(venue.ticker(&strategy, "BTCUSDT").await.is_ok());

    // Every order is known: the two cancelled, the third resting, the two placed in the outage NEW;
    // each exactly once on the exchange, and the refused one not at all.
    let sink = setup.sink.clone();
    for order in &before[..2] {
        sink.order_reaching(&order.client_id, OrderStatus::Canceled, Duration::from_secs(15))
            .await;
    }
    let mut unknown: Vec<String> = vec!["during-0".into(), "during-1".into()];
    unknown.extend(placed_unknown);
    for id in &unknown {
        sink.order_reaching(id, OrderStatus::New, Duration::from_secs(15)).await;
    }
    for id in unknown
        .iter()
        .map(String::as_str)
        .chain(["before-0", "before-1", "before-2"])
    {
        assert_eq!(
            setup.sim.orders_by_client_id(id).len(),
            1,
            "{id} exactly once on the exchange"
        );
    }
    assert!(
        setup.sim.orders_by_client_id(&refused_order).is_empty(),
        "refused, never sent"
    );
    assert_eq!(sink.last_order(&before[2].client_id).unwrap().status, OrderStatus::New);
    assert_eq!(
        venue.open_orders("poller", None).len(),
        1 + unknown.len(),
        "the third order and those placed during the outage"
    );

    // Requests during the outage, from the simulator's own log.
    let log = setup.sim.request_log();
    let rest_between = |from: i64, to: i64| {
        log.iter()
            .filter(|r| r.transport == "REST" && r.at_ms >= from && r.at_ms < to)
            .count()
    };
    let sent_during_outage = rest_between(outage_start, outage_end);
    let sent_while_open = rest_between(first_refusal_ms, outage_end);
    let opened: usize = venue.breakers().iter().filter(|b| b.times_opened > 0).count();
    // Per class, each cool-down (at least cool_down × (1 − jitter)) ends in at most `probes` requests.
    let episodes = (outage.as_secs_f64() / COOL_DOWN.mul_f64(1.0 - JITTER).as_secs_f64()).ceil() as usize + 1;
    let bound_while_open = opened * PROBES as usize * episodes + cancels_while_open;
    assert!(
        sent_while_open <= bound_while_open,
        "{sent_while_open} requests while open, bound {bound_while_open}"
    );
    // Probes are charged like any request.
    let pings = log.iter().filter(|r| r.path == "/api/v3/ping").count() as u64;
    assert!(pings >= 1, "the breaker was probed");
    assert!(setup.ledger.status("_client").mine.total_weight >= pings);

    fast.sort();
    assert!(fast.len() >= 20, "only {} fast failures", fast.len());
    let figures = Figures {
        fast_failures: fast.len(),
        fail_fast_p50: percentile(&fast, 0.5),
        fail_fast_p99: percentile(&fast, 0.99),
        fail_fast_max: *fast.last().unwrap(),
        sent_during_outage,
        sent_while_open,
        cancels_while_open,
        bound_while_open,
        recovery,
    };
    assert!(
        figures.fail_fast_p99 < Duration::from_millis(1),
        "calls fail fast once open: {figures:?}"
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_sends_little_and_recovers_within_a_cool_down() {
    let figures = outage_scenario(Duration::from_secs(3)).await;
    println!("3 s outage: {figures:?}");
}

/// The figures in BENCHMARKS.md: `cargo test --release --test client breaker -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10 s outage: run for the figures"]
async fn ten_second_outage_figures() {
    let figures = outage_scenario(Duration::from_secs(10)).await;
    println!("10 s outage: {figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_open_it() {
    let config = BreakerConfig {
        window: Duration::from_secs(10),
        slow_call: Duration::from_millis(150),
        cool_down: Duration::from_secs(30),
        ..breaker()
    };
    let setup = start_with(
        SimConfig::default(),
        runner::exchange::binance::limits::pools::spot_defaults(),
        options(config),
    )
    .await;
    let venue = setup.venue.clone();
    let strategy = ctx("slowpoke");
    setup.sim.faults().set_latency(Duration::from_millis(250));
    // Slow answers are still answers, and count as failures (beside the start-up's quick successes).
    let mut answered = 0;
    let error = loop {
        let asked = Instant::now();
        match venue.ticker(&strategy, "BTCUSDT").await {
            Ok(_) => {
                assert!(asked.elapsed() >= Duration::from_millis(250));
                answered += 1;
            }
            Err(error) => break error,
        }
        assert!(answered <= 8, "still closed after {answered} slow answers");
    };
    assert!(answered >= 2, "opened after {answered} slow answer(s)");
    assert_eq!(state_of(venue.as_ref(), EndpointClass::MarketData), BreakerState::Open);
    let asked = Instant::now();
    let error_again = venue.ticker(&strategy, "BTCUSDT").await.expect_err("open");
    assert_eq!(error_again.code, ErrorCode::Unavailable);
    assert!(asked.elapsed() < Duration::from_millis(50), "{:?}", asked.elapsed());
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(error.retry_after_ms.is_some_and(|ms| ms > 20_000), "{error:?}");
    assert_eq!(state_of(venue.as_ref(), EndpointClass::Orders), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failure_does_not_open_it() {
    let setup = start_with(
        SimConfig::default(),
        runner::exchange::binance::limits::pools::spot_defaults(),
        options(breaker()),
    )
    .await;
    let venue = setup.venue.clone();
    let strategy = ctx("steady");
    setup.sim.faults().fail_next(1, FailKind::BadGateway);
    // The failed read is retried; the one failure among the calls keeps the rate low.
    for _ in 0..6 {
        venue.ticker(&strategy, "BTCUSDT").await.expect("answered");
    }
    let status = venue.breakers();
    assert!(
        status
            .iter()
            .all(|b| b.state == BreakerState::Closed && b.times_opened == 0),
        "{status:?}"
    );
    let market = status.iter().find(|b| b.class == EndpointClass::MarketData).unwrap();
    assert_eq!(market.failures, 1, "{status:?}");
}
