//! Every parser of exchange input, fed mutated real-shaped messages (bytes flipped, the text cut
//! short, fields dropped, renamed, retyped or added): none panics; an order answer is either read
//! with the order it names or refused (and the order then looked up, see `client_answers.rs`),
//! never read as another order; market frames are applied or counted as malformed. The number of
//! cases run is printed (`--nocapture`) and recorded in BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use runner::exchange::binance::market_data::stream_router::Router;
use runner::exchange::binance::orders::order_state::OrderUpdate;
use runner::exchange::binance::orders::symbols::SymbolTable;
use runner::exchange::binance::transport::gateway::{Gateway, GatewayConfig, Shutdown};
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::wire::{self, OrderAnswer, UserDataFrame, WsApiResponse};
use runner::exchange::binance::{account::user_data, limits::usage, Credentials, Profile};
use runner::ledger::{Ledger, LedgerConfig, TokioClock};

use serde_json::Value;

/// Cases per parser; five parsers (order answers, WebSocket API answers, user-data events, REST
/// errors with headers and exchangeInfo, market frames).
const CASES: u32 = 3000;

const ORDER_ANSWER: &str = r#"{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","transactTime":1507725176595,"price":"0.00000000","origQty":"10.00000000","executedQty":"10.00000000","origQuoteOrderQty":"0.000000","cummulativeQuoteQty":"10.00000000","status":"FILLED","timeInForce":"GTC","type":"MARKET","side":"SELL","workingTime":1507725176595,"selfTradePreventionMode":"NONE","fills":[{"price":"4000.00000000","qty":"1.00000000","commission":"4.00000000","commissionAsset":"USDT","tradeId":56}]}"#;
const CANCEL_ANSWER: &str = r#"{"symbol":"LTCBTC","origClientOrderId":"myOrder1","orderId":4,"orderListId":-1,"clientOrderId":"cancelMyOrder1","transactTime":1684804350068,"price":"2.00000000","origQty":"1.00000000","executedQty":"0.00000000","cummulativeQuoteQty":"0.00000000","status":"CANCELED","timeInForce":"GTC","type":"LIMIT","side":"BUY","selfTradePreventionMode":"NONE"}"#;
const WS_ANSWER: &str = r#"{"id":"56374a46-3061-486b-a311-99ee972eb648","status":200,"result":{"symbol":"BTCUSDT","orderId":12569099453,"orderListId":-1,"clientOrderId":"4d96324ff9d44481926157ec08158a40","transactTime":1660801715639,"executedQty":"0.00000000","cummulativeQuoteQty":"0.00000000","status":"NEW"},"rateLimits":[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50,"count":1},{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":1}]}"#;
const WS_ERROR: &str = r#"{"id":"fc93a61a-a192-4cf4-bb2a-a8f0f0c51e06","status":429,"error":{"code":-1003,"msg":"Too much request weight used.","data":{"serverTime":1659126584000,"retryAfter":1659126644000}},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":6010}]}"#;
const EXECUTION_REPORT: &str = r#"{"subscriptionId":0,"event":{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW","r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1499405658657,"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}}"#;
const POSITION: &str = r#"{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1564034571105,"u":1564034571073,"B":[{"a":"ETH","f":"10000.000000","l":"0.000000"}]}}"#;
const BALANCE: &str = r#"{"subscriptionId":0,"event":{"e":"balanceUpdate","E":1573200697110,"a":"BTC","d":"100.00000000","T":1573200697068}}"#;
const SHUTDOWN: &str = r#"{"event":{"e":"serverShutdown","E":1770123456789}}"#;
const BOOK_TICKER: &str = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}"#;
const DEPTH: &str = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1672515782136,"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}"#;
const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}"#;
const KLINE: &str = r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1672515782136,"s":"BTCUSDT","k":{"t":1672515780000,"T":1672515839999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}"#;
const CONTROL: &str = r#"{"result":null,"id":1}"#;
const ERROR_BODY: &str = r#"{"code":-1015,"msg":"Too many new orders; current limit is 100 orders per 10 SECOND."}"#;
const EXCHANGE_INFO: &str = r#"{"timezone":"UTC","serverTime":1565246363776,"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],"exchangeFilters":[],"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT","quotePrecision":8,"quoteAssetPrecision":8,"orderTypes":["LIMIT","MARKET"],"isSpotTradingAllowed":true,"filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000","tickSize":"0.01"},{"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"}]}]}"#;

/// One mutation of a message.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, to: u8 },
    Truncate { at: usize },
    DropField { pick: usize },
    RenameField { pick: usize },
    RetypeField { pick: usize, to: u8 },
    AddField,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, to)| Mutation::FlipByte { at, to }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        any::<usize>().prop_map(|pick| Mutation::DropField { pick }),
        any::<usize>().prop_map(|pick| Mutation::RenameField { pick }),
        (any::<usize>(), any::<u8>()).prop_map(|(pick, to)| Mutation::RetypeField { pick, to }),
        Just(Mutation::AddField),
    ]
}

/// Picks the `pick`-th key (over all nested objects) and changes it with `change`.
fn change_field(value: &mut Value, pick: usize, change: &mut dyn FnMut(&mut serde_json::Map<String, Value>, String)) {
    let mut paths: Vec<Vec<PathStep>> = Vec::new();
    collect_keys(value, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        return;
    }
    let path = &paths[pick % paths.len()];
    let (last, parents) = path.split_last().expect("a key");
    let mut at = value;
    for step in parents {
        at = match (step, at) {
            (PathStep::Key(k), Value::Object(m)) => m.get_mut(k).expect("present"),
            (PathStep::Index(i), Value::Array(a)) => &mut a[*i],
            _ => return,
        };
    }
    if let (PathStep::Key(key), Value::Object(map)) = (last, at) {
        change(map, key.clone());
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn collect_keys(value: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(PathStep::Key(k.clone()));
                out.push(prefix.clone());
                collect_keys(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                collect_keys(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn retyped(value: &Value, to: u8) -> Value {
    match to % 6 {
        0 => Value::Null,
        1 => Value::Bool(true),
        2 => serde_json::json!(-1.5e300),
        3 => Value::String(value.to_string()),
        4 => serde_json::json!([value.clone()]),
        _ => serde_json::json!({"nested": value.clone()}),
    }
}

fn mutate(message: &str, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = message.as_bytes().to_vec();
    let json = |f: &mut dyn FnMut(&mut Value)| {
        let mut value: Value = serde_json::from_str(message).expect("the seed parses");
        f(&mut value);
        serde_json::to_vec(&value).expect("serialises")
    };
    match *mutation {
        Mutation::FlipByte { at, to } => {
            let at = at % bytes.len();
            bytes[at] = to;
            bytes
        }
        Mutation::Truncate { at } => {
            bytes.truncate(at % bytes.len());
            bytes
        }
        Mutation::DropField { pick } => json(&mut |v| {
            change_field(v, pick, &mut |m, k| {
                m.remove(&k);
            })
        }),
        Mutation::RenameField { pick } => json(&mut |v| {
            change_field(v, pick, &mut |m, k| {
                if let Some(x) = m.remove(&k) {
                    m.insert(format!("{k}_renamed"), x);
                }
            })
        }),
        Mutation::RetypeField { pick, to } => json(&mut |v| {
            change_field(v, pick, &mut |m, k| {
                if let Some(x) = m.get_mut(&k) {
                    *x = retyped(x, to);
                }
            })
        }),
        Mutation::AddField => json(&mut |v| {
            if let Value::Object(m) = v {
                m.insert("unexpectedField".into(), serde_json::json!({"a": [1, "b", null]}));
            }
        }),
    }
}

/// Reads a (mutated) order answer as the client does; whatever it reads is the order the JSON names.
fn order_answer_holds(bytes: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<OrderAnswer>(bytes) else {
        return; // refused: the client reports unknown_status and looks the order up
    };
    // serde skips ignored fields without checking their UTF-8: compare on the text as read.
    let Ok(value) = serde_json::from_str::<Value>(&String::from_utf8_lossy(bytes)) else {
        return;
    };
    assert_eq!(value["clientOrderId"].as_str(), Some(answer.client_order_id.as_str()));
    assert_eq!(value["status"].as_str(), Some(answer.status.as_str()));
    if let Some(update) = OrderUpdate::from_answer(&answer, 0) {
        let named = answer
            .orig_client_order_id
            .as_deref()
            .unwrap_or(&answer.client_order_id);
        assert_eq!(update.client_id, named);
        assert_eq!(update.id, Some(answer.order_id));
    }
}

fn ws_answer_holds(bytes: &[u8]) {
    if let Ok(response) = serde_json::from_slice::<WsApiResponse>(bytes) {
        let _ = usage::ws_api_observation(&response, 1_659_126_584_000);
        let _ = usage::ws_order_limit_wait(&response, 1_659_126_584_000);
        if let Some(result) = response.result {
            let _ = serde_json::from_value::<OrderAnswer>(result);
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        if let Some(error) = value.get("error") {
            let _ = usage::classify_ws_error(429, error, 1_659_126_584_000);
        }
    }
}

fn user_data_holds(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        let _ = user_data::is_server_shutdown(&value);
        if let Ok(frame) = serde_json::from_value::<UserDataFrame>(value) {
            if let wire::UserDataEvent::ExecutionReport(report) = frame.event {
                let _ = OrderUpdate::from_report(&report);
            }
        }
    }
}

fn rest_error_holds(bytes: &[u8], retry_after: &str) {
    for status in [400, 403, 418, 429, 500, 503] {
        let _ = usage::classify(status, Some(retry_after), bytes, 1_700_000_000_000);
        let _ = usage::http_order_limit_wait(Some(retry_after), bytes);
    }
    if let Ok(info) = serde_json::from_slice::<wire::ExchangeInfo>(bytes) {
        let _ = usage::parse_rate_limits(&info.rate_limits);
        let _ = SymbolTable::from_entries(&info.symbols);
    }
}

/// A router on a gateway that never sends (its depth snapshots would go nowhere).
fn router() -> (tokio::runtime::Runtime, Arc<Router>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = runtime.block_on(async {
        let ledger = Ledger::new(
            runner::exchange::binance::limits::pools::spot_defaults(),
            LedgerConfig::default(),
            Arc::new(TokioClock::new()),
        );
        let profile = Profile::custom(
            "http://127.0.0.1:1",
            "ws://127.0.0.1:1",
            "ws://127.0.0.1:1/x",
            Credentials::new("k", "s"),
        );
        let config = GatewayConfig {
            recv_window_ms: 5000,
            request_timeout: Duration::from_millis(100),
            order_transport: OrderTransport::Rest,
            breaker: Default::default(),
            egress: Default::default(),
            account: 0,
        };
        let gateway = Arc::new(Gateway::new(&profile, ledger, config, Shutdown::default()).unwrap());
        let info: wire::ExchangeInfo = serde_json::from_str(EXCHANGE_INFO).unwrap();
        Arc::new(Router::new(
            gateway,
            Arc::new(SymbolTable::from_entries(&info.symbols)),
            100,
        ))
    });
    (runtime, router)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn order_answers(seed in prop::sample::select(vec![ORDER_ANSWER, CANCEL_ANSWER]), m in mutation()) {
        order_answer_holds(&mutate(seed, &m));
    }

    #[test]
    fn websocket_api_answers(seed in prop::sample::select(vec![WS_ANSWER, WS_ERROR]), m in mutation()) {
        ws_answer_holds(&mutate(seed, &m));
    }

    #[test]
    fn user_data_events(seed in prop::sample::select(vec![EXECUTION_REPORT, POSITION, BALANCE, SHUTDOWN]), m in mutation()) {
        user_data_holds(&mutate(seed, &m));
    }

    #[test]
    fn rest_errors_headers_and_exchange_info(
        seed in prop::sample::select(vec![ERROR_BODY, EXCHANGE_INFO]),
        m in mutation(),
        retry_after in "[0-9a-z.\\- ]{0,12}",
        header_name in "x-mbx-(used-weight|order-count)-[0-9]{0,3}[smhdSMHD]?",
        header_value in "[0-9\\-.e]{0,22}",
    ) {
        rest_error_holds(&mutate(seed, &m), &retry_after);
        let _ = usage::parse_usage_headers([(header_name.as_str(), header_value.as_str())]);
    }
}

#[test]
fn market_stream_frames() {
    let (runtime, router) = router();
    let _guard = runtime.enter();
    let seeds = [BOOK_TICKER, DEPTH, TRADE, KLINE, CONTROL];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let before = router.malformed_frames();
    let fed = std::cell::Cell::new(0u64);
    runner
        .run(&(prop::sample::select(seeds.to_vec()), mutation()), |(seed, m)| {
            let bytes = mutate(seed, &m);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = user_data::is_server_shutdown_text(text);
                router.on_frame(text, std::time::Instant::now());
            }
            fed.set(fed.get() + 1);
            Ok(())
        })
        .unwrap();
    // Some mutations are harmless (an added field); many are not, and are counted, never fatal.
    assert!(router.malformed_frames() > before, "malformed frames are counted");
    let applied_or_skipped = fed.get();
    assert!(applied_or_skipped >= u64::from(CASES));
    println!(
        "exchange-input fuzz: {applied_or_skipped} market frames, {} skipped as malformed; {CASES} cases for each of the four other parsers",
        router.malformed_frames() - before
    );
}
