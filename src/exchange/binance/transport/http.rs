//! The HTTP transport: a request as a URL-encoded query (a form body for a POST), signed when it must be, sent on the
//! calling thread's HTTP client (a strategy's own thread gets a client of its own, see
//! [`super::per_thread`]; multi-thread runtimes, the client's own background work, share one).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use url::form_urlencoded;

use crate::ledger::ServerUsage;

use super::per_thread::PerThread;
use super::sign::Signing;
use crate::exchange::binance::errors::{GatewayError, SendError};
use crate::exchange::binance::limits::endpoints::{Endpoint, HttpMethod};
use crate::exchange::binance::limits::usage;
use crate::exchange::binance::transport::{Answer, Request};

const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-mbx-apikey");
const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

/// Sends requests over HTTP.
pub struct HttpTransport {
    clients: HttpClients,
    /// `X-MBX-APIKEY`, checked once and marked sensitive (kept out of debug output).
    api_key_header: HeaderValue,
    rest_base: String,
    /// Where public market data is read, when not from `rest_base` (see `Profile::market_rest_url`).
    market_rest_base: Option<String>,
    /// The trading venue's URL of each POST path, parsed once: a POST's parameters go in its body,
    /// so its URL never changes, and the HTTP client need not parse it again for every order.
    post_urls: RwLock<HashMap<&'static str, reqwest::Url>>,
    request_timeout: Duration,
}

impl HttpTransport {
    pub fn new(
        api_key: &str,
        rest_base: &str,
        market_rest_base: Option<&str>,
        request_timeout: Duration,
        source: Option<std::net::IpAddr>,
    ) -> Result<HttpTransport, GatewayError> {
        let clients = HttpClients::new(request_timeout, source).map_err(GatewayError::Http)?;
        let mut api_key_header = HeaderValue::from_str(api_key).map_err(|_| GatewayError::ApiKeyHeader)?;
        api_key_header.set_sensitive(true);
        Ok(HttpTransport {
            clients,
            api_key_header,
            rest_base: rest_base.to_string(),
            market_rest_base: market_rest_base.map(str::to_string),
            post_urls: RwLock::default(),
            request_timeout,
        })
    }

    #[cfg(test)]
    pub(crate) fn api_key_header(&self) -> &HeaderValue {
        &self.api_key_header
    }

    /// Sends `request` as `method path` (signed with `signing` when it is a signed request) and
    /// reads the answer.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: HttpMethod,
        path: &'static str,
        request: &Request,
        signing: Option<Signing<'_>>,
        now_ms: impl Fn() -> i64,
    ) -> Result<Answer<T>, SendError> {
        let query = query_string(request, signing.as_ref());
        let market_base = self
            .market_rest_base
            .as_deref()
            .filter(|_| self.goes_to_source(method, request));
        let base = market_base.unwrap_or(&self.rest_base);
        // A POST (new orders) carries its parameters as a form body, which the exchange reads and
        // signs as it reads a query: the HTTP client then parses (several times over) only a short
        // URL, not one with the whole signed query in it.
        let in_body = method == HttpMethod::Post && !query.is_empty();
        let mut url = String::with_capacity(base.len() + path.len() + query.len() + 1);
        url.push_str(base);
        url.push_str(path);
        if !query.is_empty() && !in_body {
            url.push('?');
            url.push_str(&query);
        }
        let method = match method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let client = self.clients.current();
        let parsed = if in_body && market_base.is_none() {
            self.post_url(path)
        } else {
            None
        };
        let http = match parsed {
            Some(parsed) => client.request(method, parsed),
            None => client.request(method, &url),
        };
        let mut http = http.timeout(self.request_timeout);
        if market_base.is_none() {
            http = http.header(API_KEY_HEADER, self.api_key_header.clone());
        }
        if in_body {
            http = http.header(CONTENT_TYPE, FORM).body(query);
        }

        // The HTTP client writes the request inside `send`, which tells nobody when: this is the
        // last moment before it (the WebSocket API transport records the write itself).
        if let Some(trigger) = &request.trigger {
            trigger.order_written();
        }
        let response = http.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        // As the exchange counted them; the gateway moves them to the pools of the server and
        // egress group the request went to.
        let usage = header_usage(response.headers());
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        Ok(Answer::from_http(
            status,
            retry_after.as_deref(),
            &body,
            usage,
            now_ms(),
        ))
    }

    /// The trading venue's parsed URL of `path`, parsed on first use (`None` if it does not parse:
    /// the HTTP client then reports it as it reports any bad URL).
    fn post_url(&self, path: &'static str) -> Option<reqwest::Url> {
        if let Some(url) = self.post_urls.read().get(path) {
            return Some(url.clone());
        }
        let url = reqwest::Url::parse(&format!("{}{path}", self.rest_base)).ok()?;
        self.post_urls.write().insert(path, url.clone());
        Some(url)
    }

    /// Whether `request` goes to the separate market-data source (paper trading on a real market):
    /// public market-data reads do; signed requests and the server time stay the trading venue's.
    pub fn goes_to_source(&self, method: HttpMethod, request: &Request) -> bool {
        self.market_rest_base.is_some()
            && !request.signed
            && method == HttpMethod::Get
            && request.endpoint != Endpoint::Time
    }

    fn transport_error(&self, error: &reqwest::Error) -> SendError {
        // reqwest's Display can include the URL (and with it the signed query); keep only the host.
        let host = error
            .url()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_else(|| "the exchange".into());
        if error.is_timeout() {
            SendError::Timeout(self.request_timeout.as_millis() as u64)
        } else if error.is_connect() {
            SendError::Connect {
                host,
                reason: root_cause(error),
            }
        } else {
            SendError::Transport(format!("{host}: {}", root_cause(error)))
        }
    }
}

/// The URL-encoded parameters, with recvWindow, timestamp and signature when signed.
fn query_string(request: &Request, signing: Option<&Signing<'_>>) -> String {
    // Sized for a signed order, so appending does not grow it step by step.
    let mut query = form_urlencoded::Serializer::new(String::with_capacity(384));
    for (k, v) in &request.params {
        query.append_pair(k, v);
    }
    let mut query = query.finish();
    if let (true, Some(signing)) = (request.signed, signing) {
        signing.sign_query(&mut query);
    }
    query
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The usage headers of an HTTP response (REST or WebSocket upgrade); values that are not text are skipped.
pub fn header_usage(headers: &reqwest::header::HeaderMap) -> Vec<ServerUsage> {
    usage::parse_usage_headers(
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

/// The HTTP clients of one transport.
struct HttpClients {
    shared: reqwest::Client,
    settings: Settings,
    per_thread: PerThread<reqwest::Client>,
}

#[derive(Clone, Copy)]
struct Settings {
    connect_timeout: Duration,
    /// The egress IP group's local address (see [`super::egress`]).
    source: Option<std::net::IpAddr>,
}

impl HttpClients {
    fn new(connect_timeout: Duration, source: Option<std::net::IpAddr>) -> Result<HttpClients, reqwest::Error> {
        let settings = Settings {
            connect_timeout,
            source,
        };
        Ok(HttpClients {
            shared: build(settings)?,
            settings,
            per_thread: PerThread::new(),
        })
    }

    /// The client for a request made from the current thread.
    fn current(&self) -> reqwest::Client {
        let own = self.per_thread.get(|| match build(self.settings) {
            Ok(client) => Some(client),
            // The same settings built the shared client, so this does not happen in practice;
            // the shared client is still correct, only without the thread affinity.
            Err(error) => {
                tracing::warn!(%error, "could not build a per-thread HTTP client; using the shared one");
                None
            }
        });
        own.unwrap_or_else(|| self.shared.clone())
    }
}

fn build(settings: Settings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(settings.connect_timeout)
        .local_address(settings.source)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::exchange::binance::transport::sign::{hmac_hex, Signer};
    use crate::ledger::Lane;

    /// One request as it arrived on the socket: head and body.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed mid-request");
            bytes.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&bytes);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .map_or(0, |v| v.parse::<usize>().unwrap());
                if bytes.len() >= end + 4 + length {
                    return String::from_utf8(bytes).unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn a_post_carries_its_signed_parameters_in_a_form_body_and_a_get_in_its_query() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                seen.push(read_request(&mut socket).await);
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
                              connection: close\r\n\r\n{}";
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        let transport = HttpTransport::new("key", &base, None, Duration::from_secs(5), None).unwrap();
        let signer = Signer::Hmac("secret".into());
        let signing = Signing {
            api_key: "key",
            signer: &signer,
            recv_window_ms: 5000,
            timestamp_ms: 1,
        };
        let order = Request::new(Endpoint::PlaceOrder, Lane::Order)
            .param("symbol", "BTCUSDT")
            .param("price", "1.5")
            .signed();
        let placed = transport
            .send::<serde_json::Value>(HttpMethod::Post, "/api/v3/order", &order, Some(signing), || 0)
            .await
            .unwrap();
        assert_eq!(placed.status, 200);
        let read = Request::new(Endpoint::Ping, Lane::MarketData).param("symbol", "BTCUSDT");
        transport
            .send::<serde_json::Value>(HttpMethod::Get, "/api/v3/ping", &read, None, || 0)
            .await
            .unwrap();
        let seen = server.await.unwrap();

        let (head, body) = seen[0].split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /api/v3/order HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-www-form-urlencoded"),
            "{head}"
        );
        let signed = "symbol=BTCUSDT&price=1.5&recvWindow=5000&timestamp=1";
        assert_eq!(body, format!("{signed}&signature={}", hmac_hex("secret", signed)));
        assert!(
            seen[1].starts_with("GET /api/v3/ping?symbol=BTCUSDT HTTP/1.1\r\n"),
            "{}",
            seen[1]
        );
    }

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// RSS of 100 threads with a current-thread runtime each, with and without their own client. Run with
    /// `cargo test --release --lib memory_of_per_thread_clients -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement; run in release"]
    fn memory_of_per_thread_clients() {
        let clients = Arc::new(HttpClients::new(Duration::from_secs(1), None).unwrap());
        let grow = |with_client: bool| {
            let before = rss_kib();
            let ready = Arc::new(std::sync::Barrier::new(101));
            let done = Arc::new(std::sync::Barrier::new(101));
            let threads: Vec<_> = (0..100)
                .map(|_| {
                    let (clients, ready, done) = (clients.clone(), ready.clone(), done.clone());
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        runtime.block_on(async {
                            if with_client {
                                let _ = clients.current();
                            }
                        });
                        ready.wait();
                        done.wait();
                    })
                })
                .collect();
            ready.wait();
            let grown = rss_kib() - before;
            done.wait();
            threads.into_iter().for_each(|t| t.join().unwrap());
            grown
        };
        let without = grow(false);
        let with = grow(true);
        println!("100 threads: {without} KiB without a client, {with} KiB with one each");
        println!("per-thread client ≈ {} KiB", with.saturating_sub(without) / 100);
    }
}
