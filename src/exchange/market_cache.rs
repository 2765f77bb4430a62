//! Market data asked of the exchange once.
//!
//! - **Single flight**: identical requests in flight at the same time share one request: the first
//!   caller (the leader) sends it, charged to its strategy; everyone who asks meanwhile (joiners) waits
//!   for the same answer or the same error, charged nothing.
//! - **Freshness chosen by the caller**: the latest answer to each request is kept with the instant its
//!   request was started; a caller giving `max_age` gets it while it is at most that old.
//! - **Budget-aware degradation**: a caller that gave `max_age` and finds the budget short gets the
//!   newest kept answer (whatever its age, which the answer carries) instead of waiting.
//! - **Savings**: per strategy, how many calls were answered without a request and the weight that saved.
//!
//! Ages are measured on tokio's clock, so tests can pause time and step it to the millisecond.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::types::{ApiError, Depth, ErrorCode, Kline, Quote, StrategyId, Ticker, Trade};

/// The largest `max_age` a caller may give: a day (beyond it a cached market answer is meaningless,
/// and a typo such as a timestamp is caught).
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(86_400);

/// Answers kept at most; beyond it the oldest are dropped (a strategy looping over many limits must not
/// grow memory without bound).
const MAX_ENTRIES: usize = 4096;

/// One REST market-data request, by endpoint and parameters (market data is the same for every account).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MarketRequest {
    Ticker {
        symbol: String,
    },
    BookTicker {
        symbol: String,
    },
    Depth {
        symbol: String,
        limit: u32,
    },
    Klines {
        symbol: String,
        interval: String,
        limit: u32,
    },
    Trades {
        symbol: String,
        limit: u32,
    },
}

impl MarketRequest {
    pub fn symbol(&self) -> &str {
        match self {
            MarketRequest::Ticker { symbol }
            | MarketRequest::BookTicker { symbol }
            | MarketRequest::Depth { symbol, .. }
            | MarketRequest::Klines { symbol, .. }
            | MarketRequest::Trades { symbol, .. } => symbol,
        }
    }
}

/// An answer to a [`MarketRequest`]; shared (`Arc`) because one answer may go to many callers.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketData {
    Ticker(Arc<Ticker>),
    Quote(Arc<Quote>),
    Depth(Arc<Depth>),
    Klines(Arc<Vec<Kline>>),
    Trades(Arc<Vec<Trade>>),
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This call's own request.
    Exchange,
    /// An identical request already in flight.
    Joined,
    /// A kept answer within the caller's `max_age`.
    Cache,
    /// A kept answer served because the budget was short (it may be older than `max_age`).
    Stale,
    /// The process's live stream state (local book, latest bookTicker).
    Stream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Exchange => "exchange",
            Source::Joined => "joined",
            Source::Cache => "cache",
            Source::Stale => "stale",
            Source::Stream => "stream",
        }
    }
}

/// A market-data answer with its age: milliseconds since its request was started (0 for a stream answer,
/// which is the stream's state at the time of the call).
#[derive(Debug, Clone, PartialEq)]
pub struct MarketAnswer {
    pub data: MarketData,
    pub age_ms: u64,
    pub source: Source,
}

/// What a caller accepts instead of a new request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// A kept answer at most this old may be served; `None`: only a new (or shared in-flight) request.
    pub max_age: Option<Duration>,
    /// A live stream's state may answer (weight 0).
    pub stream: bool,
}

/// One strategy's market-data calls and what coalescing saved it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MarketSavings {
    /// Market-data calls answered (with data or an error).
    pub calls: u64,
    /// Calls that sent their own request (charged to this strategy in the ledger).
    pub requests_sent: u64,
    pub joined: u64,
    pub cache_hits: u64,
    pub stream_hits: u64,
    pub stale_served: u64,
    /// Request weight the calls answered without a request would have cost.
    pub weight_saved: u64,
}

impl MarketSavings {
    /// Calls answered without a request of their own.
    pub fn requests_saved(&self) -> u64 {
        self.joined + self.cache_hits + self.stream_hits + self.stale_served
    }

    /// Fraction of calls answered without a request of their own (0 with no calls).
    pub fn hit_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.requests_saved() as f64 / self.calls as f64
        }
    }

    pub fn add(&mut self, other: &MarketSavings) {
        self.calls += other.calls;
        self.requests_sent += other.requests_sent;
        self.joined += other.joined;
        self.cache_hits += other.cache_hits;
        self.stream_hits += other.stream_hits;
        self.stale_served += other.stale_served;
        self.weight_saved += other.weight_saved;
    }

    fn record(&mut self, source: Source, weight: u32) {
        self.calls += 1;
        let counter = match source {
            Source::Exchange => {
                self.requests_sent += 1;
                return;
            }
            Source::Joined => &mut self.joined,
            Source::Cache => &mut self.cache_hits,
            Source::Stream => &mut self.stream_hits,
            Source::Stale => &mut self.stale_served,
        };
        *counter += 1;
        self.weight_saved += u64::from(weight);
    }
}

#[derive(Clone)]
struct Entry {
    data: MarketData,
    /// When the request behind it was started: its age never understates.
    at: Instant,
}

impl Entry {
    fn answer(&self, source: Source, now: Instant) -> MarketAnswer {
        MarketAnswer {
            data: self.data.clone(),
            age_ms: now.saturating_duration_since(self.at).as_millis() as u64,
            source,
        }
    }
}

/// How a flight ended, as its joiners see it.
#[derive(Clone)]
enum FlightEnd {
    Done(Result<Entry, ApiError>),
    /// The leader was served a kept answer (or went away): joiners ask again themselves.
    Abandoned,
}

#[derive(Default)]
struct State {
    entries: HashMap<MarketRequest, Entry>,
    flights: HashMap<MarketRequest, watch::Receiver<Option<FlightEnd>>>,
}

/// The kept answers, the requests in flight and the savings of every strategy.
#[derive(Default)]
pub struct MarketCache {
    state: Mutex<State>,
    savings: Mutex<HashMap<StrategyId, MarketSavings>>,
}

enum Role {
    Lead(watch::Sender<Option<FlightEnd>>, Option<Entry>),
    Join(watch::Receiver<Option<FlightEnd>>),
}

/// Ends the flight when the leader finishes or is dropped mid-way (joiners then ask again).
struct Flight<'c> {
    cache: &'c MarketCache,
    request: &'c MarketRequest,
    sender: watch::Sender<Option<FlightEnd>>,
    end: FlightEnd,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.state.lock();
        if let FlightEnd::Done(Ok(entry)) = &self.end {
            // Requests can overlap (a new flight may start once this one is removed): keep the newest.
            if state.entries.get(self.request).is_none_or(|kept| kept.at <= entry.at) {
                state.entries.insert(self.request.clone(), entry.clone());
                evict(&mut state.entries);
            }
        }
        state.flights.remove(self.request);
        drop(state);
        self.sender.send_replace(Some(self.end.clone()));
    }
}

fn evict(entries: &mut HashMap<MarketRequest, Entry>) {
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    let now = Instant::now();
    entries.retain(|_, e| now.saturating_duration_since(e.at) <= MAX_AGE_LIMIT);
    while entries.len() > MAX_ENTRIES {
        let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) else {
            return;
        };
        entries.remove(&oldest);
    }
}

/// Errors that mean "not sent for lack of budget": a kept answer beats waiting them out.
fn short_of_budget(error: &ApiError) -> bool {
    matches!(
        error.code,
        ErrorCode::RateLimited | ErrorCode::Backoff | ErrorCode::Banned
    )
}

impl MarketCache {
    pub fn new() -> MarketCache {
        MarketCache::default()
    }

    /// The kept answer to `request` if it is at most `max_age` old (no request, no waiting).
    pub fn fresh(&self, request: &MarketRequest, max_age: Duration) -> Option<MarketAnswer> {
        let state = self.state.lock();
        let entry = state.entries.get(request)?;
        let now = Instant::now();
        (now.saturating_duration_since(entry.at) <= max_age).then(|| entry.answer(Source::Cache, now))
    }

    /// Answers `request`: from a kept answer within `max_age`, by joining an identical request in flight,
    /// or by sending it with `fetch(wait)` (the budget wait to use). With `max_age` given and an answer
    /// kept, the request is first tried without waiting and, if the budget is short, the kept answer is
    /// served instead (source [`Source::Stale`]). Savings are recorded for `strategy`, `weight` being what
    /// the request costs.
    pub async fn get<F, Fut>(
        &self,
        strategy: &StrategyId,
        weight: u32,
        request: &MarketRequest,
        max_age: Option<Duration>,
        wait: Duration,
        fetch: F,
    ) -> Result<MarketAnswer, ApiError>
    where
        F: Fn(Duration) -> Fut,
        Fut: Future<Output = Result<MarketData, ApiError>>,
    {
        let (source, result) = self.answer(request, max_age, wait, fetch).await;
        self.record(strategy, source, weight);
        result
    }

    async fn answer<F, Fut>(
        &self,
        request: &MarketRequest,
        max_age: Option<Duration>,
        wait: Duration,
        fetch: F,
    ) -> (Source, Result<MarketAnswer, ApiError>)
    where
        F: Fn(Duration) -> Fut,
        Fut: Future<Output = Result<MarketData, ApiError>>,
    {
        loop {
            let role = {
                let mut guard = self.state.lock();
                let state = &mut *guard;
                let now = Instant::now();
                let kept = max_age.and_then(|max_age| {
                    let entry = state.entries.get(request)?;
                    Some((now.saturating_duration_since(entry.at) <= max_age, entry))
                });
                match kept {
                    Some((true, entry)) => return (Source::Cache, Ok(entry.answer(Source::Cache, now))),
                    _ if state.flights.contains_key(request) => Role::Join(state.flights[request].clone()),
                    _ => {
                        let stale = kept.map(|(_, entry)| entry.clone());
                        let (sender, receiver) = watch::channel(None);
                        state.flights.insert(request.clone(), receiver);
                        Role::Lead(sender, stale)
                    }
                }
            };
            match role {
                Role::Join(mut receiver) => {
                    let end = match receiver.wait_for(Option::is_some).await {
                        Ok(end) => end.clone(),
                        Err(_) => None,
                    };
                    match end {
                        Some(FlightEnd::Done(Ok(entry))) => {
                            return (Source::Joined, Ok(entry.answer(Source::Joined, Instant::now())))
                        }
                        Some(FlightEnd::Done(Err(error))) => return (Source::Joined, Err(error)),
                        Some(FlightEnd::Abandoned) | None => continue,
                    }
                }
                Role::Lead(sender, stale) => {
                    let mut flight = Flight {
                        cache: self,
                        request,
                        sender,
                        end: FlightEnd::Abandoned,
                    };
                    let started = Instant::now();
                    let result = match stale {
                        Some(stale) => match fetch(Duration::ZERO).await {
                            Err(error) if short_of_budget(&error) => {
                                tracing::debug!(?request, age_ms = ?started.saturating_duration_since(stale.at), "budget short; serving a kept answer: {error}");
                                return (Source::Stale, Ok(stale.answer(Source::Stale, Instant::now())));
                            }
                            other => other,
                        },
                        None => fetch(wait).await,
                    };
                    let result = result.map(|data| Entry { data, at: started });
                    flight.end = FlightEnd::Done(result.clone());
                    drop(flight);
                    let answer = result.map(|entry| entry.answer(Source::Exchange, Instant::now()));
                    return (Source::Exchange, answer);
                }
            }
        }
    }

    /// Counts one call of `strategy` answered from `source`; `weight` is what its request costs.
    pub fn record(&self, strategy: &StrategyId, source: Source, weight: u32) {
        let mut savings = self.savings.lock();
        match savings.get_mut(strategy) {
            Some(counters) => counters.record(source, weight),
            None => savings.entry(Arc::clone(strategy)).or_default().record(source, weight),
        }
    }

    /// Every strategy's savings, by name.
    pub fn savings(&self) -> Vec<(StrategyId, MarketSavings)> {
        let mut all: Vec<_> = self.savings.lock().iter().map(|(k, v)| (Arc::clone(k), *v)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn depth_request() -> MarketRequest {
        MarketRequest::Depth {
            symbol: "BTCUSDT".into(),
            limit: 100,
        }
    }

    fn depth(update_id: u64) -> MarketData {
        MarketData::Depth(Arc::new(Depth {
            symbol: "BTCUSDT".into(),
            update_id,
            bids: vec![(100.0, 1.0)],
            asks: vec![(101.0, 1.0)],
        }))
    }

    fn update_id(answer: &MarketAnswer) -> u64 {
        match &answer.data {
            MarketData::Depth(d) => d.update_id,
            other => panic!("not a depth: {other:?}"),
        }
    }

    fn strategy(name: &str) -> StrategyId {
        Arc::from(name)
    }

    /// A fetch that counts its requests and answers with their number after `delay`.
    fn counting<'a>(
        sent: &'a AtomicU32,
        delay: Duration,
    ) -> impl Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = Result<MarketData, ApiError>> + 'a>> + 'a {
        move |_wait| {
            Box::pin(async move {
                let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                Ok(depth(u64::from(n)))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn identical_requests_in_flight_share_one_request() {
        let cache = MarketCache::new();
        let sent = AtomicU32::new(0);
        let fetch = counting(&sent, Duration::from_millis(50));
        let request = depth_request();
        let names: Vec<StrategyId> = (0..20).map(|i| strategy(&format!("s{i}"))).collect();
        let calls = names
            .iter()
            .map(|name| cache.get(name, 5, &request, None, Duration::from_secs(1), &fetch));
        let answers = futures_util::future::join_all(calls).await;
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        let sources: Vec<Source> = answers.iter().map(|a| a.as_ref().unwrap().source).collect();
        assert_eq!(sources.iter().filter(|s| **s == Source::Exchange).count(), 1);
        assert_eq!(sources.iter().filter(|s| **s == Source::Joined).count(), 19);
        assert!(answers.iter().all(|a| update_id(a.as_ref().unwrap()) == 1));
        let savings = cache.savings();
        let total = savings.iter().fold(MarketSavings::default(), |mut t, (_, s)| {
            t.add(s);
            t
        });
        assert_eq!(total.calls, 20);
        assert_eq!(total.requests_sent, 1);
        assert_eq!(total.requests_saved(), 19);
        assert_eq!(total.weight_saved, 19 * 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_shared_by_every_caller_in_flight() {
        let cache = MarketCache::new();
        let sent = AtomicU32::new(0);
        let fetch = |_wait: Duration| {
            let sent = &sent;
            async move {
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err::<MarketData, _>(ApiError::new(ErrorCode::Rejected, "invalid symbol"))
            }
        };
        let request = depth_request();
        let names: Vec<StrategyId> = (0..5).map(|i| strategy(&format!("s{i}"))).collect();
        let answers = futures_util::future::join_all(
            names
                .iter()
                .map(|n| cache.get(n, 5, &request, None, Duration::ZERO, fetch)),
        )
        .await;
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        for answer in answers {
            let error = answer.unwrap_err();
            assert_eq!(
                (error.code, error.message.as_str()),
                (ErrorCode::Rejected, "invalid symbol")
            );
        }
        // An error is never kept: the next caller asks again.
        let _ = cache
            .get(&names[0], 5, &request, Some(MAX_AGE_LIMIT), Duration::ZERO, fetch)
            .await;
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_is_respected_to_the_millisecond() {
        let cache = MarketCache::new();
        let sent = AtomicU32::new(0);
        let fetch = counting(&sent, Duration::ZERO);
        let request = depth_request();
        let me = strategy("s");
        let max_age = Some(Duration::from_millis(250));
        let first = cache
            .get(&me, 5, &request, max_age, Duration::ZERO, &fetch)
            .await
            .unwrap();
        assert_eq!(
            (first.source, first.age_ms, update_id(&first)),
            (Source::Exchange, 0, 1)
        );

        tokio::time::advance(Duration::from_millis(250)).await;
        let at_limit = cache
            .get(&me, 5, &request, max_age, Duration::ZERO, &fetch)
            .await
            .unwrap();
        assert_eq!(
            (at_limit.source, at_limit.age_ms, update_id(&at_limit)),
            (Source::Cache, 250, 1)
        );
        assert_eq!(cache.fresh(&request, Duration::from_millis(250)).unwrap().age_ms, 250);
        assert!(cache.fresh(&request, Duration::from_millis(249)).is_none());

        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(cache.fresh(&request, Duration::from_millis(250)).is_none());
        let past_limit = cache
            .get(&me, 5, &request, max_age, Duration::ZERO, &fetch)
            .await
            .unwrap();
        assert_eq!(
            (past_limit.source, past_limit.age_ms, update_id(&past_limit)),
            (Source::Exchange, 0, 2)
        );

        // Without max_age nothing kept is served, however fresh.
        let no_cache = cache.get(&me, 5, &request, None, Duration::ZERO, &fetch).await.unwrap();
        assert_eq!((no_cache.source, update_id(&no_cache)), (Source::Exchange, 3));
        assert_eq!(sent.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_age_counts_from_when_the_request_started() {
        let cache = MarketCache::new();
        let sent = AtomicU32::new(0);
        // The request takes 40 ms (budget wait and round trip): its answer is 40 ms old when it lands.
        let fetch = counting(&sent, Duration::from_millis(40));
        let request = depth_request();
        let answer = cache
            .get(&strategy("s"), 5, &request, None, Duration::ZERO, &fetch)
            .await
            .unwrap();
        assert_eq!(answer.age_ms, 40);
        assert!(cache.fresh(&request, Duration::from_millis(39)).is_none());
        assert!(cache.fresh(&request, Duration::from_millis(40)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_budget_serves_the_kept_answer_to_callers_who_gave_max_age() {
        let cache = MarketCache::new();
        let request = depth_request();
        let me = strategy("s");
        let ok = |_wait: Duration| async { Ok(depth(7)) };
        cache.get(&me, 5, &request, None, Duration::ZERO, ok).await.unwrap();
        tokio::time::advance(Duration::from_millis(900)).await;

        let waits = Mutex::new(Vec::new());
        let refused = |wait: Duration| {
            waits.lock().push(wait);
            async { Err::<MarketData, _>(ApiError::new(ErrorCode::RateLimited, "no budget")) }
        };
        let served = cache
            .get(
                &me,
                5,
                &request,
                Some(Duration::from_millis(100)),
                Duration::from_secs(5),
                refused,
            )
            .await
            .unwrap();
        assert_eq!(
            (served.source, served.age_ms, update_id(&served)),
            (Source::Stale, 900, 7)
        );
        // It was tried without waiting, and not waited for.
        assert_eq!(*waits.lock(), vec![Duration::ZERO]);

        // Without max_age the caller waits (its own wait) and gets the error.
        let error = cache
            .get(&me, 5, &request, None, Duration::from_secs(5), refused)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::RateLimited);
        assert_eq!(waits.lock().last(), Some(&Duration::from_secs(5)));
        let mine = cache.savings()[0].1;
        assert_eq!((mine.stale_served, mine.requests_sent, mine.weight_saved), (1, 2, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn joiners_ask_again_when_the_leader_is_served_a_kept_answer() {
        let cache = Arc::new(MarketCache::new());
        let request = depth_request();
        let me = strategy("s");
        cache
            .get(&me, 5, &request, None, Duration::ZERO, |_| async { Ok(depth(1)) })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        // The leader (max_age 1 s, budget short) is served the kept answer after 10 ms; a joiner without
        // max_age must not get that 2 s old answer but send its own request.
        let leader = cache.get(
            &me,
            5,
            &request,
            Some(Duration::from_secs(1)),
            Duration::ZERO,
            |_| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err::<MarketData, _>(ApiError::new(ErrorCode::Backoff, "429"))
            },
        );
        let joiner = async {
            tokio::task::yield_now().await;
            cache
                .get(&me, 5, &request, None, Duration::ZERO, |_| async { Ok(depth(2)) })
                .await
        };
        let (leader, joiner) = tokio::join!(leader, joiner);
        assert_eq!(
            (leader.unwrap().source, joiner.as_ref().unwrap().source),
            (Source::Stale, Source::Exchange)
        );
        assert_eq!(update_id(&joiner.unwrap()), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_leader_does_not_strand_its_joiners() {
        let cache = MarketCache::new();
        let request = depth_request();
        let me = strategy("s");
        let slow = cache.get(&me, 5, &request, None, Duration::ZERO, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(depth(1))
        });
        let joiner = async {
            tokio::task::yield_now().await;
            cache
                .get(&me, 5, &request, None, Duration::ZERO, |_| async { Ok(depth(2)) })
                .await
        };
        // The leader is cut short after 10 ms; the joiner then sends its own request.
        let leader = tokio::time::timeout(Duration::from_millis(10), slow);
        let (leader, joiner) = tokio::join!(leader, joiner);
        assert!(leader.is_err());
        assert_eq!(update_id(&joiner.unwrap()), 2);
    }

    #[test]
    fn the_kept_answers_are_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = MarketCache::new();
            let me = strategy("s");
            for limit in 1..=(MAX_ENTRIES as u32 + 10) {
                let request = MarketRequest::Depth {
                    symbol: "BTCUSDT".into(),
                    limit,
                };
                tokio::time::advance(Duration::from_millis(1)).await;
                cache
                    .get(&me, 1, &request, None, Duration::ZERO, |_| async { Ok(depth(1)) })
                    .await
                    .unwrap();
            }
            assert_eq!(cache.state.lock().entries.len(), MAX_ENTRIES);
            let oldest = MarketRequest::Depth {
                symbol: "BTCUSDT".into(),
                limit: 1,
            };
            assert!(cache.fresh(&oldest, MAX_AGE_LIMIT).is_none());
        });
    }
}
