//! One market event for several strategies is parsed once and shared: the client decodes each
//! frame once, and every subscribed strategy receives its event.

use std::time::Duration;

use crate::support::{connected_to_sim, stats, wait_for};
use runner::exchange::binance::ClientOptions;
use runner::exchange::Venue;
use runner::host::StopReason;

const STRATEGIES: usize = 4;
const LONG: Duration = Duration::from_secs(30);

/// Frames parsed by the client and events received by each strategy, read when nothing has moved
/// for a while (the simulator sends a quote every 100 ms).
async fn settled(venue: &runner::exchange::binance::BinanceVenue, host: &runner::host::Host) -> (u64, Vec<u64>) {
    let read = || {
        let received = (0..STRATEGIES)
            .map(|i| stats(host, &format!("fan{i}")).events_received)
            .collect::<Vec<_>>();
        (venue.market_frames_parsed(), received)
    };
    let mut last = read();
    loop {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_market_frame_is_parsed_once_for_every_strategy() {
    let (sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    for i in 0..STRATEGIES {
        let path = files.write(
            &format!("fan{i}.lua"),
            &format!(
                r#"
                return {{
                    name = "fan{i}",
                    symbols = {{ "BTCUSDT" }},
                    streams = {{ "book" }},
                    on_book = function(q) state.n = (state.n or 0) + 1 end,
                }}
                "#
            ),
        );
        host.add(&path).await.expect("strategy starts");
    }
    wait_for("quotes reaching every strategy", LONG, || {
        (0..STRATEGIES).all(|i| stats(&host, &format!("fan{i}")).events_received >= 2)
    })
    .await;
    let (parsed_before, received_before) = settled(&venue, &host).await;
    wait_for("more quotes", LONG, || {
        venue.market_frames_parsed() >= parsed_before + 5
    })
    .await;
    let (parsed_after, received_after) = settled(&venue, &host).await;

    let parsed = parsed_after - parsed_before;
    assert!(parsed >= 5, "{parsed}");
    for (i, (before, after)) in received_before.iter().zip(&received_after).enumerate() {
        // Every frame the client decoded reached this strategy, once: N strategies, one parse each.
        assert_eq!(
            after - before,
            parsed,
            "strategy fan{i}: {received_before:?} -> {received_after:?}"
        );
    }
    host.stop_all(StopReason::Shutdown).await;
    venue.shutdown().await;
    drop(sim);
}
