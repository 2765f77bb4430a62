//! The `<symbol>@kline_1s` stream: one candle a second, each closed one printed once with
//! `x: true`, the running one pushed as it grows — the same candles `klines?interval=1s` serves.

use crate::sim_support::*;
use runner::sim::SimConfig;
use serde_json::Value;

#[tokio::test]
async fn one_second_klines_close_every_second_as_rest_serves_them() {
    let sim = start(SimConfig::default()).await;
    let mut ws = ws_connect(&format!("{}/ws/btcusdt@kline_1s", sim.ws_url())).await;
    let (mut closed, mut running): (Vec<Value>, usize) = (Vec::new(), 0);
    while closed.len() < 3 {
        let frame = next_json(&mut ws).await.expect("the stream stays open");
        assert_eq!(frame["e"], "kline", "{frame}");
        let k = &frame["k"];
        assert_eq!(
            (k["s"].as_str(), k["i"].as_str()),
            (Some("BTCUSDT"), Some("1s")),
            "{frame}"
        );
        let open = k["t"].as_i64().expect("open time");
        assert_eq!((open % 1000, k["T"].as_i64()), (0, Some(open + 999)), "{frame}");
        if k["x"] == true {
            closed.push(k.clone());
        } else {
            running += 1;
        }
    }
    assert!(running > 0, "the running second is pushed as it grows");
    for pair in closed.windows(2) {
        assert_eq!(
            pair[1]["t"].as_i64(),
            pair[0]["t"].as_i64().map(|t| t + 1000),
            "every second closes once, in order: {closed:?}"
        );
    }
    // REST builds its one-second candles from the trades: the stream's closed seconds agree.
    let rest = Rest::new(&sim);
    for k in &closed {
        let open = k["t"].as_i64().unwrap();
        let rows = rest
            .get(&format!(
                "/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={open}&endTime={open}"
            ))
            .await;
        let row = &rows.body[0];
        assert_eq!(row[0].as_i64(), Some(open), "{}", rows.body);
        let stream = [&k["o"], &k["h"], &k["l"], &k["c"], &k["v"]];
        let served = [&row[1], &row[2], &row[3], &row[4], &row[5]];
        assert_eq!(stream, served, "second {open}: stream {k} against REST {row}");
        assert_eq!(k["n"], row[8], "trade count of second {open}");
    }
    sim.shutdown().await;
}
