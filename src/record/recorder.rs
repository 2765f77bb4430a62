//! `runner record`: subscribes to the market streams of chosen symbols and writes every frame,
//! with the exchange's symbol rules and REST order-book snapshots the depth diffs build on, to
//! rotating recording files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::format::{BlockWriter, FormatError, Record, RecordKind};
use crate::ledger::clock::system_ms;

/// A block is cut at least this often, so a kill loses at most this much of the market.
pub const BLOCK_INTERVAL: Duration = Duration::from_millis(250);
/// ... or when its records reach this many bytes.
const BLOCK_BYTES: usize = 256 << 10;
/// The kline interval recorded alongside book tickers, trades and depth diffs.
pub const KLINE_INTERVAL: &str = "1m";
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// When to start a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    Never,
    /// Once the file holds this many bytes.
    Bytes(u64),
    /// At every UTC hour boundary.
    Hourly,
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub symbols: Vec<String>,
    pub out: PathBuf,
    /// REST base, e.g. `http://127.0.0.1:9000` (public endpoints only: no keys).
    pub rest_url: String,
    /// Market-stream base, e.g. `ws://127.0.0.1:9000`.
    pub ws_url: String,
    pub rotate: Rotate,
    pub duration: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("cannot create the output folder {}: {source}", path.display())]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("the exchange does not list {0}")]
    UnknownSymbol(String),
    #[error("no symbols to record")]
    NoSymbols,
}

/// What a recording session wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecordSummary {
    pub files: Vec<PathBuf>,
    pub frames: u64,
    pub snapshots: u64,
    pub reconnects: u64,
}

/// The stream names recorded for `symbol`.
pub fn stream_names(symbol: &str) -> [String; 4] {
    let s = symbol.to_ascii_lowercase();
    [
        format!("{s}@bookTicker"),
        format!("{s}@trade"),
        format!("{s}@depth@100ms"),
        format!("{s}@kline_{KLINE_INTERVAL}"),
    ]
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Records until `shutdown` resolves or the duration passes.
pub async fn record(
    options: RecordOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RecordSummary, RecordError> {
    if options.symbols.is_empty() {
        return Err(RecordError::NoSymbols);
    }
    std::fs::create_dir_all(&options.out).map_err(|source| RecordError::OutDir {
        path: options.out.clone(),
        source,
    })?;
    let http = reqwest::Client::new();
    let info = exchange_info(&http, &options).await?;
    let mut session = Session {
        options: &options,
        http,
        info,
        writer: None,
        file_hour: 0,
        pending: Vec::new(),
        pending_bytes: 0,
        summary: RecordSummary::default(),
    };
    let deadline = options.duration.map(|d| Instant::now() + d);
    let ended = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown, ended);
    let result = tokio::select! {
        result = session.run() => result,
        _ = &mut shutdown => Ok(()),
        _ = &mut ended => Ok(()),
    };
    // Whatever was received is written, even after an error.
    let closed = session.close();
    result.and(closed)?;
    Ok(session.summary)
}

/// `exchangeInfo` for the symbols, checking the exchange lists each of them.
async fn exchange_info(http: &reqwest::Client, options: &RecordOptions) -> Result<Vec<u8>, RecordError> {
    let list = serde_json::to_string(&options.symbols).unwrap_or_default();
    let url = format!("{}/api/v3/exchangeInfo?symbols={}", options.rest_url, urlencode(&list));
    let body = get(http, &url).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let listed: Vec<&str> = parsed["symbols"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["symbol"].as_str()).collect())
        .unwrap_or_default();
    if let Some(missing) = options.symbols.iter().find(|s| !listed.contains(&s.as_str())) {
        return Err(RecordError::UnknownSymbol(missing.clone()));
    }
    Ok(body)
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A public GET; a throttle (429/418) or any other failure ends the recording rather than retrying
/// into a back-off.
pub async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, RecordError> {
    let http_err = |source| RecordError::Http {
        url: url.to_string(),
        source,
    };
    let response = http.get(url).send().await.map_err(http_err)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(http_err)?.to_vec();
    if status != 200 {
        return Err(RecordError::Status {
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    Ok(body)
}

struct Session<'a> {
    options: &'a RecordOptions,
    http: reqwest::Client,
    info: Vec<u8>,
    writer: Option<BlockWriter>,
    file_hour: i64,
    pending: Vec<Record>,
    pending_bytes: usize,
    summary: RecordSummary,
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), RecordError> {
        let streams: Vec<String> = self.options.symbols.iter().flat_map(|s| stream_names(s)).collect();
        let url = format!("{}/stream?streams={}", self.options.ws_url, streams.join("/"));
        let mut failures = 0u32;
        loop {
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((socket, _)) => {
                    failures = 0;
                    self.snapshots().await?;
                    self.pump(socket).await?;
                    tracing::warn!("market stream closed; reconnecting");
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot connect to the market streams");
                }
            }
            self.summary.reconnects += 1;
            self.flush()?;
            let delay = RECONNECT_BASE.saturating_mul(1 << failures.min(7)).min(RECONNECT_MAX);
            tokio::time::sleep(delay).await;
        }
    }

    /// Reads frames until the connection ends, cutting a block every [`BLOCK_INTERVAL`].
    async fn pump(
        &mut self,
        mut socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Result<(), RecordError> {
        let mut cut = tokio::time::interval(BLOCK_INTERVAL);
        cut.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        self.summary.frames += 1;
                        self.push(RecordKind::Stream, text.as_bytes().to_vec());
                        if self.pending_bytes >= BLOCK_BYTES {
                            self.flush()?;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "market stream error");
                        return Ok(());
                    }
                    None => return Ok(()),
                },
                _ = cut.tick() => {
                    self.flush()?;
                    if self.due_for_rotation() {
                        self.rotate().await?;
                    }
                }
            }
        }
    }

    fn push(&mut self, kind: RecordKind, payload: Vec<u8>) {
        self.pending_bytes += payload.len() + 13;
        self.pending.push(Record {
            kind,
            received_us: now_us(),
            payload,
        });
    }

    /// REST order-book snapshots of every symbol: where its depth diffs start from.
    async fn snapshots(&mut self) -> Result<(), RecordError> {
        for symbol in self.options.symbols.clone() {
            let url = format!("{}/api/v3/depth?symbol={symbol}&limit=1000", self.options.rest_url);
            let body = get(&self.http, &url).await?;
            let mut snapshot: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            snapshot["symbol"] = serde_json::Value::String(symbol);
            self.push(RecordKind::DepthSnapshot, snapshot.to_string().into_bytes());
            self.summary.snapshots += 1;
        }
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut BlockWriter, RecordError> {
        if self.writer.is_none() {
            let path = self.next_path();
            let mut writer = BlockWriter::create(&path)?;
            // Every file carries the symbols' rules, so it replays on its own; they come first, timed
            // no later than what follows, so receive times never go back within a file.
            let first = self.pending.first().map_or_else(now_us, |r| r.received_us);
            writer.write_block(&[Record {
                kind: RecordKind::ExchangeInfo,
                received_us: first,
                payload: self.info.clone(),
            }])?;
            tracing::info!(file = %path.display(), "recording");
            self.summary.files.push(path);
            self.file_hour = system_ms().div_euclid(3_600_000);
            self.writer = Some(writer);
        }
        match self.writer.as_mut() {
            Some(writer) => Ok(writer),
            None => unreachable!("the writer was opened above"),
        }
    }

    fn next_path(&self) -> PathBuf {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        unique_path(&self.options.out, &stamp)
    }

    fn flush(&mut self) -> Result<(), RecordError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Opened first: a new file's rules are timed by the records still pending.
        self.writer()?;
        let records = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.writer()?.write_block(&records)?;
        Ok(())
    }

    fn due_for_rotation(&self) -> bool {
        let Some(writer) = &self.writer else { return false };
        match self.options.rotate {
            Rotate::Never => false,
            Rotate::Bytes(limit) => writer.len() >= limit,
            Rotate::Hourly => system_ms().div_euclid(3_600_000) != self.file_hour,
        }
    }

    /// Closes the current file; the next one starts with fresh order-book snapshots.
    async fn rotate(&mut self) -> Result<(), RecordError> {
        if let Some(mut writer) = self.writer.take() {
            writer.sync()?;
        }
        self.snapshots().await?;
        self.flush()
    }

    fn close(&mut self) -> Result<(), RecordError> {
        self.flush()?;
        if let Some(writer) = &mut self.writer {
            writer.sync()?;
        }
        Ok(())
    }
}

/// `DIR/STAMP-NNNN.rrec`, the first such name not taken.
fn unique_path(dir: &Path, stamp: &str) -> PathBuf {
    let mut n = 0u64;
    loop {
        let path = dir.join(format!("{stamp}-{n:04}.rrec"));
        if !path.exists() {
            return path;
        }
        n += 1;
    }
}
