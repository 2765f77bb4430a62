//! Simulator throughput on loopback: REST requests per second (keep-alive clients hitting
//! `/api/v3/ping` and `/api/v3/depth`) and market-stream messages per second delivered to
//! WebSocket clients. Each iteration is a fixed batch; criterion reports elements per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{self, SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

const REST_BATCH: u64 = 4_000;
const REST_CLIENTS: u64 = 32;
const STREAM_CLIENTS: usize = 16;
const STREAM_STEPS: u64 = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// No limit gets in the way of a throughput measurement, and the market only moves when stepped.
fn unlimited() -> SimConfig {
    SimConfig {
        limits: vec![RateLimit::new(
            PoolKind::RequestWeight,
            IntervalUnit::Minute,
            1,
            u64::MAX / 4,
        )],
        market_tick: Duration::ZERO,
        request_log_cap: 10_000,
        ..SimConfig::default()
    }
}

async fn start() -> SimHandle {
    sim::start(unlimited(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator")
}

fn rest(c: &mut Criterion) {
    let rt = runtime();
    let handle = rt.block_on(start());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let mut group = c.benchmark_group("sim_rest");
    group.throughput(Throughput::Elements(REST_BATCH));
    group.sample_size(10);
    for path in ["/api/v3/ping", "/api/v3/depth?symbol=BTCUSDT&limit=20"] {
        let url = format!("{}{}", handle.rest_url(), path);
        group.bench_function(path, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..REST_CLIENTS)
                            .map(|_| {
                                let (http, url) = (http.clone(), url.clone());
                                tokio::spawn(async move {
                                    for _ in 0..REST_BATCH / REST_CLIENTS {
                                        let resp = http.get(&url).send().await.expect("answer");
                                        assert!(resp.status().is_success());
                                        resp.bytes().await.expect("body");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    // The same batch from minimal keep-alive HTTP/1.1 clients, so the figure is the server's
    // capacity rather than the cost of a full HTTP client sharing the two cores.
    let addr = handle.addr();
    group.bench_function("raw_keepalive//api/v3/ping", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..REST_CLIENTS)
                        .map(|_| tokio::spawn(raw_client(addr, REST_BATCH / REST_CLIENTS)))
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(handle.shutdown());
}

/// Sends `n` pings one after another on one connection, reading each answer fully.
async fn raw_client(addr: std::net::SocketAddr, n: u64) {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    let request = b"GET /api/v3/ping HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    for _ in 0..n {
        conn.write_all(request).await.expect("write");
        buf.clear();
        loop {
            let read = conn.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            buf.extend_from_slice(&chunk[..read]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn streams(c: &mut Criterion) {
    let rt = runtime();
    let handle = rt.block_on(start());
    // Every stream of every symbol on each connection.
    let names: Vec<String> = sim::default_symbols()
        .iter()
        .flat_map(|s| {
            let l = s.symbol.to_ascii_lowercase();
            [
                "trade",
                "bookTicker",
                "depth@100ms",
                "depth5@100ms",
                "depth10@100ms",
                "depth20@100ms",
            ]
            .map(|k| format!("{l}@{k}"))
        })
        .collect();
    let url = format!("{}/stream?streams={}", handle.ws_url(), names.join("/"));
    let received = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        for _ in 0..STREAM_CLIENTS {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
            let received = received.clone();
            tokio::spawn(async move {
                while let Some(Ok(_)) = ws.next().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    // Messages one market step produces across all connections.
    let per_step = rt.block_on(async {
        let before = received.load(Ordering::Relaxed);
        handle.step_market();
        tokio::time::sleep(Duration::from_millis(300)).await;
        received.load(Ordering::Relaxed) - before
    });
    let (total_msgs, total_time) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut group = c.benchmark_group("sim_streams");
    group.throughput(Throughput::Elements(per_step * STREAM_STEPS));
    group.sample_size(10);
    group.bench_function("market_steps_fanned_out", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let first = received.load(Ordering::Relaxed);
                for _ in 0..iters {
                    let target = received.load(Ordering::Relaxed) + per_step * STREAM_STEPS * 9 / 10;
                    for _ in 0..STREAM_STEPS {
                        handle.step_market();
                        tokio::task::yield_now().await;
                    }
                    while received.load(Ordering::Relaxed) < target {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                let elapsed = start.elapsed();
                total_msgs.fetch_add(received.load(Ordering::Relaxed) - first, Ordering::Relaxed);
                total_time.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
                elapsed
            })
        })
    });
    group.finish();
    let (msgs, micros) = (
        total_msgs.load(Ordering::Relaxed),
        total_time.load(Ordering::Relaxed).max(1),
    );
    println!(
        "stream messages per market step (all {STREAM_CLIENTS} connections): {per_step}; counted delivery: {} messages/s",
        msgs * 1_000_000 / micros
    );
    rt.block_on(handle.shutdown());
}

criterion_group!(benches, rest, streams);
criterion_main!(benches);
