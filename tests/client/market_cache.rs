//! Market data asked of the simulator once: shared errors, stream-backed answers equal to the
//! exchange's book, and no stale stream answer across a dropped connection and a resync.

use std::sync::Arc;
use std::time::Duration;

use crate::client_support::{ctx, eventually, start, Setup};
use runner::exchange::{
    ErrorCode, Freshness, MarketData, MarketRequest, Source, StrategyId, StreamKey, StreamKind, Venue,
};

fn depth_request(limit: u32) -> MarketRequest {
    MarketRequest::Depth {
        symbol: "BTCUSDT".into(),
        limit,
    }
}

fn depth_requests_at_the_exchange(setup: &Setup) -> usize {
    setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v3/depth")
        .count()
}

/// Bids and asks as `(price, qty)`.
type Sides = (Vec<(f64, f64)>, Vec<(f64, f64)>);

const STREAM: Freshness = Freshness {
    max_age: None,
    stream: true,
};

/// The stream answer to `depth(BTCUSDT, 100)`, if the venue has one now, as exact decimal strings.
fn stream_depth(setup: &Setup) -> Option<Sides> {
    let answer = setup
        .venue
        .market_local(&Arc::from("reader"), &depth_request(100), STREAM)?;
    assert_eq!((answer.source, answer.age_ms), (Source::Stream, 0));
    match answer.data {
        MarketData::Depth(d) => Some((d.bids.clone(), d.asks.clone())),
        other => panic!("a depth answer, got {other:?}"),
    }
}

fn sim_depth(setup: &Setup) -> Sides {
    use rust_decimal::prelude::ToPrimitive;
    let book = setup.sim.book("BTCUSDT", 100).expect("BTCUSDT listed");
    let side = |levels: &[[rust_decimal::Decimal; 2]]| -> Vec<(f64, f64)> {
        levels
            .iter()
            .map(|[p, q]| (p.to_f64().unwrap(), q.to_f64().unwrap()))
            .collect()
    };
    (side(&book.bids), side(&book.asks))
}

/// Waits until the stream answer equals the simulator's book (both read in the same instant).
async fn stream_depth_matches(setup: &Setup) {
    eventually(
        Duration::from_secs(15),
        "the stream depth to equal the exchange's book",
        || {
            let local = stream_depth(setup);
            let remote = sim_depth(setup);
            async move { (local? == remote).then_some(()) }
        },
    )
    .await;
}

async fn subscribe_depth_and_book(setup: &Setup) {
    let streams = vec![
        StreamKey {
            symbol: "BTCUSDT".into(),
            kind: StreamKind::Depth,
        },
        StreamKey {
            symbol: "BTCUSDT".into(),
            kind: StreamKind::Book,
        },
    ];
    setup
        .venue
        .set_subscriptions(&Arc::from("streams"), streams)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_shared_by_every_caller_and_sent_once() {
    let setup = start().await;
    let before = depth_requests_at_the_exchange(&setup);
    // Slow answers keep the one request in flight while everyone asks; it is answered with a 429.
    setup.sim.faults().set_latency(Duration::from_millis(400));
    setup.sim.faults().force_429(1);
    let calls = (0..20).map(|i| {
        let venue = Arc::clone(&setup.venue);
        tokio::spawn(async move {
            let call = ctx(&format!("s{i}"));
            venue.market_data(&call, depth_request(100), Freshness::default()).await
        })
    });
    let answers = futures_util::future::join_all(calls).await;
    let errors: Vec<_> = answers.into_iter().map(|a| a.unwrap().unwrap_err()).collect();
    assert!(
        errors
            .iter()
            .all(|e| e.code == errors[0].code && e.message == errors[0].message),
        "{errors:?}"
    );
    assert_eq!(errors[0].code, ErrorCode::Backoff, "{errors:?}");
    assert_eq!(depth_requests_at_the_exchange(&setup) - before, 1);
    let savings = setup.venue.market_savings();
    let total_sent: u64 = savings.iter().map(|(_, s)| s.requests_sent).sum();
    let total_joined: u64 = savings.iter().map(|(_, s)| s.joined).sum();
    assert_eq!((total_sent, total_joined), (1, 19), "{savings:?}");
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_backed_depth_is_the_exchange_book_at_no_weight() {
    let setup = start().await;
    subscribe_depth_and_book(&setup).await;
    stream_depth_matches(&setup).await;

    let before = depth_requests_at_the_exchange(&setup);
    let strategy: StrategyId = Arc::from("asker");
    let answer = setup
        .venue
        .market_data(&ctx(&strategy), depth_request(100), STREAM)
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Stream);
    // More levels than the book behind the stream holds are asked of the exchange.
    let deeper = setup
        .venue
        .market_data(&ctx(&strategy), depth_request(5000), STREAM)
        .await
        .unwrap();
    assert_eq!(deeper.source, Source::Exchange);
    // Without the stream option the same call goes to the exchange.
    let asked = setup
        .venue
        .market_data(&ctx(&strategy), depth_request(100), Freshness::default())
        .await
        .unwrap();
    assert_eq!(asked.source, Source::Exchange);
    assert_eq!(depth_requests_at_the_exchange(&setup) - before, 2);
    let mine = setup
        .venue
        .market_savings()
        .into_iter()
        .find(|(name, _)| *name == strategy)
        .unwrap()
        .1;
    assert_eq!((mine.stream_hits, mine.requests_sent, mine.weight_saved), (1, 2, 5));

    // A bookTicker answer from the stream is the latest streamed quote.
    let quote = setup
        .venue
        .market_data(
            &ctx(&strategy),
            MarketRequest::BookTicker {
                symbol: "BTCUSDT".into(),
            },
            STREAM,
        )
        .await
        .unwrap();
    assert_eq!(quote.source, Source::Stream);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_stream_answer_across_a_reconnect_and_a_resync() {
    let setup = start().await;
    subscribe_depth_and_book(&setup).await;
    stream_depth_matches(&setup).await;
    let quote_request = MarketRequest::BookTicker {
        symbol: "BTCUSDT".into(),
    };
    let reader: StrategyId = Arc::from("reader");
    eventually(Duration::from_secs(10), "a streamed quote", || {
        let q = setup.venue.market_local(&reader, &quote_request, STREAM);
        async move { q }
    })
    .await;

    // The connection drops: until the client has reconnected and resynced, nothing is answered from
    // the stream (the book and the quote it fed stopped being current when it dropped).
    let connects = || {
        setup
            .sim
            .request_log()
            .iter()
            .filter(|r| r.transport == "WS" && r.path == "/stream")
            .count()
    };
    let connected_before = connects();
    setup.sim.faults().drop_websockets();
    eventually(Duration::from_secs(10), "the drop to be noticed", || {
        let depth = stream_depth(&setup);
        let quote = setup.venue.market_local(&reader, &quote_request, STREAM);
        async move { (depth.is_none() && quote.is_none()).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(10), "a new connection", || {
        let n = connects();
        async move { (n > connected_before).then_some(()) }
    })
    .await;
    stream_depth_matches(&setup).await;

    // A sequence gap: the book resyncs from a new snapshot, and matches the exchange again.
    setup.sim.faults().skip_depth(1);
    stream_depth_matches(&setup).await;
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_is_served_within_max_age_only() {
    let setup = start().await;
    let before = depth_requests_at_the_exchange(&setup);
    let max_age = Freshness {
        max_age: Some(Duration::from_millis(300)),
        stream: false,
    };
    let first = setup
        .venue
        .market_data(&ctx("a"), depth_request(100), max_age)
        .await
        .unwrap();
    assert_eq!(first.source, Source::Exchange);
    let kept = setup
        .venue
        .market_local(&Arc::from("b"), &depth_request(100), max_age)
        .expect("a kept answer within 300 ms");
    assert_eq!(kept.source, Source::Cache);
    assert!(kept.age_ms <= 300);
    assert_eq!(kept.data, first.data);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(setup
        .venue
        .market_local(&Arc::from("b"), &depth_request(100), max_age)
        .is_none());
    let again = setup
        .venue
        .market_data(&ctx("b"), depth_request(100), max_age)
        .await
        .unwrap();
    assert_eq!(again.source, Source::Exchange);
    assert_eq!(depth_requests_at_the_exchange(&setup) - before, 2);
    setup.venue.shutdown().await;
}

fn klines_request(limit: u32) -> MarketRequest {
    MarketRequest::Klines {
        symbol: "BTCUSDT".into(),
        interval: "1m".into(),
        limit,
    }
}

fn klines_of(answer: &runner::exchange::MarketAnswer) -> Vec<runner::exchange::types::Kline> {
    match &answer.data {
        MarketData::Klines(k) => k.as_ref().clone(),
        other => panic!("a klines answer, got {other:?}"),
    }
}

/// A candle as compared: open time, open, high, low, close, volume, close time.
type Row = (i64, f64, f64, f64, f64, f64, i64);

/// Whether a series read between the exchange's answers `before` and `after` (of the same
/// candles) agrees with them: the closed candles equal, the current one grown from `before`
/// towards `after` (same open, volume and range between theirs).
fn between(local: &[Row], before: &[Row], after: &[Row]) -> bool {
    let open_times = |rows: &[Row]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
    let (Some((now, closed)), Some((b, _)), Some((a, after_closed))) =
        (local.split_last(), before.split_last(), after.split_last())
    else {
        return false;
    };
    open_times(local) == open_times(before)
        && open_times(local) == open_times(after)
        && closed == after_closed
        && (now.1, now.6) == (a.1, a.6)
        && (b.5..=a.5).contains(&now.5)
        && now.2 >= b.2
        && now.2 <= a.2
        && now.3 <= b.3
        && now.3 >= a.3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_backed_klines_continue_a_rest_answer_and_stop_at_a_dropped_connection() {
    let setup = start().await;
    setup
        .venue
        .set_subscriptions(
            &Arc::from("streams"),
            vec![StreamKey {
                symbol: "BTCUSDT".into(),
                kind: StreamKind::Kline("1m".into()),
            }],
        )
        .await
        .unwrap();
    let reader: StrategyId = Arc::from("reader");
    // A stream gives only the current candle: before a REST answer there is no history to answer from.
    assert!(setup.venue.market_local(&reader, &klines_request(5), STREAM).is_none());
    let first = setup
        .venue
        .market_data(&ctx(&reader), klines_request(5), STREAM)
        .await
        .unwrap();
    assert_eq!(first.source, Source::Exchange);

    // From then on the stream keeps the series: it moves on from the REST answer and agrees with
    // the simulator's own klines (asked over HTTP, beside the venue, so the series is not seeded
    // again). The market trades on while they are compared, so the stream's series is read between
    // two HTTP answers: its closed candles equal theirs, and its current candle lies between them.
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5",
        setup.sim.rest_url()
    );
    let rows = |k: &[runner::exchange::types::Kline]| -> Vec<Row> {
        k.iter()
            .map(|k| (k.open_time, k.open, k.high, k.low, k.close, k.volume, k.close_time))
            .collect()
    };
    let remote = || async {
        let answer: Vec<serde_json::Value> = http.get(&url).send().await.ok()?.json().await.ok()?;
        let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
        answer
            .iter()
            .map(|r| {
                Some((
                    r[0].as_i64()?,
                    num(&r[1])?,
                    num(&r[2])?,
                    num(&r[3])?,
                    num(&r[4])?,
                    num(&r[5])?,
                    r[6].as_i64()?,
                ))
            })
            .collect::<Option<Vec<Row>>>()
    };
    // The stream's connection may come up after that first answer; connecting unseeds the series
    // (updates before it may have been missed), and the next REST answer seeds it again, as a
    // strategy's next call would.
    let seeded = std::cell::RefCell::new(rows(&klines_of(&first)));
    eventually(
        Duration::from_secs(15),
        "stream klines that moved on and agree with the exchange's",
        || async {
            let before = remote().await?;
            let Some(local) = setup.venue.market_local(&reader, &klines_request(5), STREAM) else {
                let again = setup
                    .venue
                    .market_data(&ctx(&reader), klines_request(5), STREAM)
                    .await
                    .ok()?;
                *seeded.borrow_mut() = rows(&klines_of(&again));
                return None;
            };
            assert_eq!((local.source, local.age_ms), (Source::Stream, 0));
            let local = rows(&klines_of(&local));
            let after = remote().await?;
            (local != *seeded.borrow() && between(&local, &before, &after)).then_some(())
        },
    )
    .await;
    // More candles than the series holds are asked of the exchange.
    let longer = setup
        .venue
        .market_data(&ctx(&reader), klines_request(500), STREAM)
        .await
        .unwrap();
    assert_eq!(longer.source, Source::Exchange);
    assert_eq!(klines_of(&longer).len(), 500);

    // The connection drops: candles may be missed, so nothing is answered from the stream until a
    // REST answer seeds the series again.
    setup.sim.faults().drop_websockets();
    eventually(Duration::from_secs(10), "the drop to be noticed", || {
        let local = setup.venue.market_local(&reader, &klines_request(5), STREAM);
        async move { local.is_none().then_some(()) }
    })
    .await;
    setup.venue.shutdown().await;
}
