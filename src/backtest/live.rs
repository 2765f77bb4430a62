//! Paper trading on a live market: the paper simulator's matching engine fed by another
//! exchange's public market streams (book tickers, trades, depth diffs over a REST snapshot)
//! instead of its synthetic market, through the same fill model as backtests
//! ([`crate::sim::replay`]). Only public data is read from the source: no keys, no orders.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::data;
use crate::exchange::binance::account::profile::Profile;
use crate::exchange::binance::errors::SendError;
use crate::exchange::binance::limits::{pools, usage};
use crate::exchange::binance::orders::symbols::symbol_info;
use crate::exchange::binance::wire::ExchangeInfo;
use crate::exchange::{ApiError, Depth, SymbolInfo};
use crate::ledger::{Ledger, Observation, Permit};
use crate::record::{self, RecordError};
use crate::sim::replay::{self, Level, MarketItem, MarketMirror};
use crate::sim::{MarketPort, SymbolSpec};

/// How the mirror reaches the source: through the runner's gateway, so its stream connection and
/// depth snapshots are charged to the ledger like every other request.
#[async_trait::async_trait]
pub trait SourceAccess: Send + Sync {
    /// A combined-stream connection to the source carrying `streams`.
    async fn connect_streams(&self, streams: &[String]) -> Result<Socket, SourceError>;
    /// The source's order book of `symbol` (1000 levels).
    async fn depth_snapshot(&self, symbol: &str) -> Result<Arc<Depth>, SourceError>;
}

/// Why the mirror could not reach its source (it retries).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No stream connection: the ledger refused, or the connection failed.
    #[error(transparent)]
    Connect(#[from] SendError),
    /// A request to the source was refused or failed.
    #[error(transparent)]
    Request(#[from] ApiError),
    #[error("{symbol}: a depth request answered with another kind")]
    NotDepth { symbol: String },
}

const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How often the simulator's own depth streams are cut, as its synthetic market would.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where the market comes from: `live`, `testnet`, or the base URL of a Binance-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSource {
    /// REST base, e.g. `https://api.binance.com`.
    pub rest_url: String,
    /// Market-stream base, e.g. `wss://stream.binance.com:9443`.
    pub ws_url: String,
}

impl MarketSource {
    /// `live`, `testnet`, `http(s)://HOST[:PORT]` or `ws(s)://HOST[:PORT]` (a server that has
    /// REST and streams on one port, as `runner sim` does).
    pub fn parse(text: &str) -> Result<MarketSource, String> {
        let public = |p: Profile| MarketSource {
            rest_url: p.rest_url,
            ws_url: p.ws_url,
        };
        let none = || crate::exchange::binance::account::profile::Credentials::new("", "");
        let text = text.trim().trim_end_matches('/');
        match text {
            "live" => Ok(public(Profile::live(none()))),
            "testnet" => Ok(public(Profile::testnet(none()))),
            url => {
                let (scheme, rest) = url
                    .split_once("://")
                    .ok_or_else(|| format!("{url:?}: expected live, testnet or a URL such as http://127.0.0.1:9000"))?;
                let (http, ws) = match scheme {
                    "http" | "ws" => ("http", "ws"),
                    "https" | "wss" => ("https", "wss"),
                    other => return Err(format!("{url:?}: unknown scheme {other:?} (http, https, ws or wss)")),
                };
                if rest.is_empty() {
                    return Err(format!("{url:?}: no host"));
                }
                Ok(MarketSource {
                    rest_url: format!("{http}://{rest}"),
                    ws_url: format!("{ws}://{rest}"),
                })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveMarketError {
    #[error("market source: {0}")]
    Source(#[from] RecordError),
    #[error("no budget to ask the market source: {0}")]
    Budget(#[source] crate::ledger::LedgerError),
    #[error("market source {url}: bad exchangeInfo: {source}")]
    Info {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("market source {url} lists none of the symbols {wanted:?}")]
    NoSymbols { url: String, wanted: Vec<String> },
}

/// The rules of those of `wanted` the source lists, as the simulator's symbols (one public
/// `exchangeInfo` request to the source, charged by `permit` to the source's pools,
/// [`pools::SOURCE_IP`]). What the source answers (its usage headers, or a 429/418) reconciles
/// those pools of `ledger` as every other answer does.
pub async fn source_symbols(
    source: &MarketSource,
    wanted: &[String],
    ledger: &Ledger,
    permit: &Permit,
) -> Result<Vec<SymbolSpec>, LiveMarketError> {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v3/exchangeInfo", source.rest_url);
    let http_err = |source| RecordError::Http {
        url: url.clone(),
        source,
    };
    let response = http.get(&url).send().await.map_err(http_err)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(http_err)?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let observation = Observation {
        usage: pools::usage_at_source(usage::parse_usage_headers(
            headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        )),
        verdict: usage::classify(status, text("retry-after"), &body, ledger.now_ms()),
        scope: pools::backoff_scope(pools::SOURCE_GROUP),
    };
    ledger.observe(permit, &observation);
    if status != 200 {
        return Err(RecordError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        }
        .into());
    }
    let info: ExchangeInfo = serde_json::from_slice(&body).map_err(|source| LiveMarketError::Info {
        url: url.clone(),
        source,
    })?;
    let specs: Vec<SymbolSpec> = info
        .symbols
        .iter()
        .map(symbol_info)
        .filter(|s| wanted.contains(&s.symbol))
        .map(|s| spec_of(&s))
        .collect();
    if specs.is_empty() {
        return Err(LiveMarketError::NoSymbols {
            url,
            wanted: wanted.to_vec(),
        });
    }
    Ok(specs)
}

/// The simulator's view of a symbol's rules.
pub fn spec_of(s: &SymbolInfo) -> SymbolSpec {
    SymbolSpec {
        symbol: s.symbol.clone(),
        base: s.base.clone(),
        quote: s.quote.clone(),
        tick_size: s.tick_size,
        step_size: s.step_size,
        min_qty: s.min_qty,
        max_qty: s.max_qty,
        min_notional: s.min_notional,
        max_num_orders: s.max_num_orders.unwrap_or(200),
    }
}

/// Mirrors the source's market into the simulator behind `port` until the task is aborted:
/// the simulator's own market is cleared first, then every symbol it lists follows the source
/// (reconnecting with back-off; each connection starts from fresh REST snapshots).
pub fn mirror(source: MarketSource, port: MarketPort, access: std::sync::Arc<dyn SourceAccess>) -> JoinHandle<()> {
    port.apply(|ex, _| replay::clear_market(ex));
    tokio::spawn(async move {
        let symbols = port.symbols();
        let streams: Vec<String> = symbols.iter().flat_map(|s| record::stream_names(s)).collect();
        let mut mirror = MarketMirror::new(false);
        let mut failures = 0u32;
        loop {
            match access.connect_streams(&streams).await {
                Ok(mut socket) => {
                    // Frames queue on the socket meanwhile; diffs the snapshots hold are skipped.
                    match snapshots(access.as_ref(), &symbols, &port, &mut mirror).await {
                        Ok(()) => {
                            failures = 0;
                            tracing::info!(source = %source.ws_url, symbols = ?symbols, "paper market follows the source");
                            pump(&mut socket, &port, &mut mirror).await;
                            tracing::warn!("market source stream closed; reconnecting");
                        }
                        Err(e) => {
                            failures += 1;
                            let error = crate::error_chain::chain(&e);
                            tracing::warn!(%error, "cannot read the market source's order books");
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    let error = crate::error_chain::chain(&e);
                    tracing::warn!(%error, "cannot connect to the market source's streams");
                }
            }
            let delay = RECONNECT_BASE.saturating_mul(1 << failures.min(7)).min(RECONNECT_MAX);
            tokio::time::sleep(delay).await;
        }
    })
}

async fn snapshots(
    access: &dyn SourceAccess,
    symbols: &[String],
    port: &MarketPort,
    mirror: &mut MarketMirror,
) -> Result<(), SourceError> {
    for symbol in symbols {
        let depth = access.depth_snapshot(symbol).await?;
        match snapshot_item(symbol, &depth) {
            Some(item) => {
                port.apply(|ex, now| mirror.apply(ex, &item, now));
            }
            None => {
                tracing::warn!(%symbol, "the market source sent an order book with a price or quantity out of range; skipped")
            }
        }
    }
    Ok(())
}

/// A source's order book as the fill model's snapshot. The levels arrive as `f64`; prices and
/// quantities have at most 8 decimals on the exchange, so rounding to 8 gives back its exact values.
pub fn snapshot_item(symbol: &str, depth: &Depth) -> Option<MarketItem> {
    let exact = |x: f64| Some(Decimal::from_f64(x)?.round_dp(8).normalize());
    let levels = |rows: &[(f64, f64)]| -> Option<Vec<Level>> {
        rows.iter().map(|&(p, q)| Some((exact(p)?, exact(q)?))).collect()
    };
    Some(MarketItem::Snapshot {
        symbol: Arc::from(symbol),
        update_id: depth.update_id,
        bids: levels(&depth.bids)?,
        asks: levels(&depth.asks)?,
    })
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Applies frames until the connection ends.
async fn pump(socket: &mut Socket, port: &MarketPort, mirror: &mut MarketMirror) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => match data::stream_item(text.as_str()) {
                    Ok(Some(item)) => {
                        port.apply(|ex, now| mirror.apply(ex, &item, now));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable market source frame; skipped"),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "market source stream error");
                    return;
                }
                None => return,
            },
            _ = flush.tick() => {
                ticks += 1;
                port.flush_streams(ticks.is_multiple_of(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_depth_becomes_a_snapshot_with_the_exchange_decimals() {
        let depth = Depth {
            symbol: "BTCUSDT".into(),
            update_id: 42,
            bids: vec![(65_000.01, 0.00012345), (64_999.99, 1.5)],
            asks: vec![(65_000.02, 12_345.12345678)],
        };
        let Some(MarketItem::Snapshot {
            symbol,
            update_id,
            bids,
            asks,
        }) = snapshot_item("BTCUSDT", &depth)
        else {
            panic!("not a snapshot")
        };
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!((&*symbol, update_id), ("BTCUSDT", 42));
        assert_eq!(bids, vec![(d("65000.01"), d("0.00012345")), (d("64999.99"), d("1.5"))]);
        assert_eq!(asks, vec![(d("65000.02"), d("12345.12345678"))]);
        let bad = Depth {
            bids: vec![(f64::NAN, 1.0)],
            ..depth
        };
        assert!(snapshot_item("BTCUSDT", &bad).is_none());
    }

    #[test]
    fn market_sources_parse() {
        let live = MarketSource::parse("live").unwrap();
        assert_eq!(live.ws_url, "wss://stream.binance.com:9443");
        assert_eq!(live.rest_url, "https://api.binance.com");
        assert!(MarketSource::parse("testnet").unwrap().ws_url.contains("testnet"));
        let local = MarketSource::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(local.rest_url, "http://127.0.0.1:9000");
        assert_eq!(local.ws_url, "ws://127.0.0.1:9000");
        assert_eq!(
            MarketSource::parse("wss://example.test").unwrap().rest_url,
            "https://example.test"
        );
        assert!(MarketSource::parse("ftp://x").is_err());
        assert!(MarketSource::parse("mainnet").is_err());
    }
}
