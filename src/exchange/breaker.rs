//! Circuit breakers: one per endpoint class of a venue, so that an exchange that is broken
//! (5xx, internal errors, timeouts, answers far slower than usual) is not hammered by every
//! strategy waiting for its own timeout.
//!
//! - **Closed**: calls go out; each outcome lands in a sliding time window. Once the window holds
//!   at least `min_calls` outcomes and the share of failures reaches `failure_rate`, it opens.
//! - **Open**: calls fail at once (nothing is sent, nothing is charged) until the cool-down, with
//!   jitter so that many clients do not come back in step, has passed.
//! - **Half-open**: only the runner's own requests go out, at most `probes` of them; one failure
//!   opens it again, `probes` successes close it.
//!
//! Venue-neutral: the venue adapter decides what a failure is and which class a request belongs to.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a request is for; each class has its own breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointClass {
    MarketData,
    Orders,
    Account,
    Streams,
}

impl EndpointClass {
    pub const ALL: [EndpointClass; 4] = [
        EndpointClass::MarketData,
        EndpointClass::Orders,
        EndpointClass::Account,
        EndpointClass::Streams,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointClass::MarketData => "market_data",
            EndpointClass::Orders => "orders",
            EndpointClass::Account => "account",
            EndpointClass::Streams => "streams",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The breakers' thresholds (`[breaker]` in the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Off: every call goes out, whatever the exchange answers.
    pub enabled: bool,
    /// How far back outcomes count.
    pub window: Duration,
    /// Fewer outcomes than this in the window never open the breaker.
    pub min_calls: u32,
    /// Share of failures (0 < rate ≤ 1) in the window that opens the breaker.
    pub failure_rate: f64,
    /// How long an open breaker refuses calls before it lets probes through.
    pub cool_down: Duration,
    /// The cool-down varies by up to this fraction either way (0 ≤ jitter < 1).
    pub jitter: f64,
    /// Requests let through when half-open; this many successes close the breaker.
    pub probes: u32,
    /// An answer slower than this counts as a failure.
    pub slow_call: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            window: Duration::from_secs(10),
            min_calls: 5,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
            jitter: 0.2,
            probes: 2,
            slow_call: Duration::from_secs(2),
        }
    }
}

impl BreakerConfig {
    /// Refuses thresholds that make no sense, naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, why: String| Err(format!("breaker.{key} {why}"));
        if self.window.is_zero() {
            return fail("window", "must be longer than zero".into());
        }
        if self.min_calls == 0 {
            return fail("min_calls", "must be at least 1".into());
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return fail(
                "failure_rate",
                format!("is {}: it must be above 0 and at most 1", self.failure_rate),
            );
        }
        if self.cool_down.is_zero() {
            return fail("cool_down", "must be longer than zero".into());
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return fail(
                "jitter",
                format!("is {}: it must be from 0 up to (not including) 1", self.jitter),
            );
        }
        if self.probes == 0 {
            return fail("probes", "must be at least 1".into());
        }
        if self.slow_call.is_zero() {
            return fail("slow_call", "must be longer than zero".into());
        }
        Ok(())
    }

    fn jittered_cool_down(&self) -> Duration {
        if self.jitter == 0.0 {
            return self.cool_down;
        }
        self.cool_down
            .mul_f64(rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Who sends a request: only the runner's own requests may probe a half-open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The runner itself (health probes, order lookups, resyncs, stream connections).
    Own,
    Strategy,
}

/// How a request went, as far as the exchange's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// A call refused because the breaker is not closed; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub class: EndpointClass,
    pub state: BreakerState,
    /// When the caller may try again (the end of the cool-down, or the probes' answers).
    pub retry_after: Duration,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the exchange is failing: the {} circuit breaker is {}; nothing was sent",
            self.class.as_str(),
            self.state.as_str()
        )
    }
}

/// While half-open, a strategy's call is refused for about the time the probes take to answer.
const HALF_OPEN_RETRY: Duration = Duration::from_millis(200);

/// Buckets per window: the window slides in steps of a tenth of its length.
const BUCKETS: u32 = 10;

/// Outcomes over the last `window`, in buckets (bounded memory at any call rate).
#[derive(Debug)]
struct Window {
    length: Duration,
    bucket: Duration,
    /// (bucket start, calls, failures), oldest first.
    buckets: VecDeque<(Instant, u32, u32)>,
}

impl Window {
    fn new(length: Duration) -> Self {
        Window {
            length,
            bucket: (length / BUCKETS).max(Duration::from_millis(1)),
            buckets: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(start, _, _)) = self.buckets.front() {
            if now.duration_since(start) >= self.length {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    fn record(&mut self, now: Instant, failed: bool) {
        self.expire(now);
        match self.buckets.back_mut() {
            Some((start, calls, failures)) if now.duration_since(*start) < self.bucket => {
                *calls += 1;
                *failures += u32::from(failed);
            }
            _ => self.buckets.push_back((now, 1, u32::from(failed))),
        }
    }

    /// (calls, failures) in the window.
    fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.expire(now);
        self.buckets
            .iter()
            .fold((0, 0), |(c, f), &(_, calls, failures)| (c + calls, f + failures))
    }

    fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every change of state: a ticket from an earlier episode changes nothing.
    episode: u64,
    window: Window,
    times_opened: u64,
    refused: u64,
}

/// One endpoint class's breaker.
#[derive(Debug)]
pub struct Breaker {
    class: EndpointClass,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    changed: watch::Sender<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TicketKind {
    /// Sent while closed: the outcome counts in the window.
    Counted,
    /// A half-open probe.
    Probe,
    /// Sent whatever the state (a cancel): the outcome only counts while closed.
    Bypass,
}

/// Permission to send one request; report its outcome with [`Ticket::finish`]. A ticket dropped
/// unfinished (the call was abandoned) frees its probe slot.
#[must_use = "report the outcome with `finish`"]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    kind: TicketKind,
    episode: u64,
    done: bool,
}

impl Ticket<'_> {
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.settle(self.kind, self.episode, outcome);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done && self.kind == TicketKind::Probe {
            self.breaker.release_probe(self.episode);
        }
    }
}

/// A breaker as strategies and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerStatus {
    pub class: EndpointClass,
    pub state: BreakerState,
    /// While open: how long until probes are let through.
    pub retry_after_ms: Option<u64>,
    /// Outcomes and failures in the current window.
    pub calls: u32,
    pub failures: u32,
    pub times_opened: u64,
    /// Calls refused without being sent.
    pub refused: u64,
}

impl Breaker {
    pub fn new(class: EndpointClass, config: BreakerConfig) -> Self {
        Breaker {
            class,
            inner: Mutex::new(Inner {
                state: State::Closed,
                episode: 0,
                window: Window::new(config.window),
                times_opened: 0,
                refused: 0,
            }),
            config,
            changed: watch::channel(BreakerState::Closed).0,
        }
    }

    pub fn class(&self) -> EndpointClass {
        self.class
    }

    /// Asks to send one request now.
    pub fn admit(&self, caller: Caller) -> Result<Ticket<'_>, Refused> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !self.config.enabled {
            return Ok(self.ticket(TicketKind::Counted, inner.episode));
        }
        if let State::Open { until } = inner.state {
            if now < until {
                inner.refused += 1;
                return Err(self.refused(BreakerState::Open, until - now));
            }
            self.transition(
                &mut inner,
                State::HalfOpen {
                    admitted: 0,
                    succeeded: 0,
                },
            );
        }
        match &mut inner.state {
            State::Closed => Ok(self.ticket(TicketKind::Counted, inner.episode)),
            State::HalfOpen { admitted, .. } if caller == Caller::Own && *admitted < self.config.probes => {
                *admitted += 1;
                Ok(self.ticket(TicketKind::Probe, inner.episode))
            }
            _ => {
                inner.refused += 1;
                Err(self.refused(BreakerState::HalfOpen, HALF_OPEN_RETRY))
            }
        }
    }

    /// Lets a request through whatever the state (a cancel must always be attempted).
    pub fn bypass(&self) -> Ticket<'_> {
        let episode = self.inner.lock().episode;
        self.ticket(TicketKind::Bypass, episode)
    }

    pub fn state(&self) -> BreakerState {
        self.public_state(&self.inner.lock().state, Instant::now())
    }

    /// Tells of every change of state.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.changed.subscribe()
    }

    pub fn status(&self) -> BreakerStatus {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let (calls, failures) = inner.window.totals(now);
        let retry_after_ms = match inner.state {
            State::Open { until } if until > now => {
                Some(u64::try_from(until.duration_since(now).as_millis()).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        BreakerStatus {
            class: self.class,
            state: self.public_state(&inner.state, now),
            retry_after_ms,
            calls,
            failures,
            times_opened: inner.times_opened,
            refused: inner.refused,
        }
    }

    /// Changes with every state change and every successful probe.
    fn progress(&self) -> (u64, u32) {
        let inner = self.inner.lock();
        match inner.state {
            State::HalfOpen { succeeded, .. } => (inner.episode, succeeded),
            _ => (inner.episode, 0),
        }
    }

    fn public_state(&self, state: &State, now: Instant) -> BreakerState {
        match state {
            State::Closed => BreakerState::Closed,
            // Past its cool-down it lets probes through: half-open in all but name.
            State::Open { until } if now >= *until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn ticket(&self, kind: TicketKind, episode: u64) -> Ticket<'_> {
        Ticket {
            breaker: self,
            kind,
            episode,
            done: false,
        }
    }

    fn refused(&self, state: BreakerState, retry_after: Duration) -> Refused {
        Refused {
            class: self.class,
            state,
            retry_after: retry_after.max(Duration::from_millis(1)),
        }
    }

    fn settle(&self, kind: TicketKind, episode: u64, outcome: Outcome) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let failed = outcome == Outcome::Failure;
        match (kind, inner.state) {
            (TicketKind::Counted | TicketKind::Bypass, State::Closed) => {
                inner.window.record(now, failed);
                let (calls, failures) = inner.window.totals(now);
                let rate = f64::from(failures) / f64::from(calls.max(1));
                if self.config.enabled && calls >= self.config.min_calls && rate >= self.config.failure_rate {
                    tracing::warn!(
                        class = self.class.as_str(),
                        calls,
                        failures,
                        "the exchange is failing: circuit breaker open"
                    );
                    self.open(&mut inner, now);
                }
            }
            (TicketKind::Probe, State::HalfOpen { admitted, succeeded }) if episode == inner.episode => {
                if failed {
                    tracing::warn!(class = self.class.as_str(), "probe failed: circuit breaker open again");
                    self.open(&mut inner, now);
                } else if succeeded + 1 >= self.config.probes {
                    tracing::info!(class = self.class.as_str(), "probes answered: circuit breaker closed");
                    inner.window.clear();
                    self.transition(&mut inner, State::Closed);
                } else {
                    inner.state = State::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                    };
                }
            }
            // An answer from an earlier episode says nothing about the current one.
            _ => {}
        }
    }

    fn release_probe(&self, episode: u64) {
        let mut inner = self.inner.lock();
        if inner.episode != episode {
            return;
        }
        if let State::HalfOpen { admitted, .. } = &mut inner.state {
            *admitted = admitted.saturating_sub(1);
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.times_opened += 1;
        let until = now + self.config.jittered_cool_down();
        self.transition(inner, State::Open { until });
    }

    fn transition(&self, inner: &mut Inner, state: State) {
        inner.state = state;
        inner.episode += 1;
        let public = match state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        self.changed.send_replace(public);
    }
}

/// One breaker per endpoint class, for one venue.
#[derive(Debug)]
pub struct Breakers {
    by_class: [Breaker; 4],
}

impl Breakers {
    pub fn new(config: &BreakerConfig) -> Self {
        Breakers {
            by_class: EndpointClass::ALL.map(|class| Breaker::new(class, config.clone())),
        }
    }

    pub fn get(&self, class: EndpointClass) -> &Breaker {
        &self.by_class[class.index()]
    }

    /// Every breaker's status, in class order (a plain snapshot for status lines and metrics).
    pub fn snapshot(&self) -> Vec<BreakerStatus> {
        self.by_class.iter().map(Breaker::status).collect()
    }

    /// Keeps probing each breaker that is past its cool-down with `probe` (the runner's own cheap
    /// request, which goes through the breaker like any other) until it closes or opens again.
    /// Runs until `stop` resolves.
    pub async fn probe_until<P, F>(&self, probe: P, stop: impl std::future::Future<Output = ()>)
    where
        P: Fn(EndpointClass) -> F,
        F: std::future::Future<Output = ()>,
    {
        let mut receivers: Vec<_> = self.by_class.iter().map(Breaker::subscribe).collect();
        let work = async {
            loop {
                for receiver in &mut receivers {
                    receiver.borrow_and_update();
                }
                let now = Instant::now();
                let mut due = Vec::new();
                let mut next: Option<Instant> = None;
                for breaker in &self.by_class {
                    match breaker.inner.lock().state {
                        State::Open { until } if until > now => next = Some(next.map_or(until, |n| n.min(until))),
                        State::Open { .. } => due.push(breaker.class),
                        State::HalfOpen { admitted, .. } if admitted < breaker.config.probes => due.push(breaker.class),
                        // Every probe slot is taken (by order lookups, say): look again a little later.
                        State::HalfOpen { .. } => next = Some(now + HALF_OPEN_RETRY),
                        State::Closed => {}
                    }
                }
                if !due.is_empty() {
                    let before: Vec<_> = self.by_class.iter().map(Breaker::progress).collect();
                    // One probe at a time per class; the next round sends the next.
                    futures_util::future::join_all(due.into_iter().map(&probe)).await;
                    let after: Vec<_> = self.by_class.iter().map(Breaker::progress).collect();
                    if before != after {
                        continue;
                    }
                    // Nothing was learnt (the probe was not sent: a ledger back-off, say): do not spin.
                    next = Some(Instant::now() + HALF_OPEN_RETRY);
                }
                let changed = futures_util::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => {}
                            _ = changed => {}
                        }
                    }
                    None => {
                        let _ = changed.await;
                    }
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = stop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
            jitter: 0.0,
            probes: 2,
            slow_call: Duration::from_secs(1),
        }
    }

    fn call(breaker: &Breaker, caller: Caller, outcome: Outcome) -> Result<(), Refused> {
        breaker.admit(caller)?.finish(outcome);
        Ok(())
    }

    fn fail_n(breaker: &Breaker, n: u32) {
        for _ in 0..n {
            let _ = call(breaker, Caller::Strategy, Outcome::Failure);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_failure_does_not_open_it() {
        let b = Breaker::new(EndpointClass::MarketData, config());
        fail_n(&b, 1);
        assert_eq!(b.state(), BreakerState::Closed);
        // Below the minimum number of calls even a 100 % failure rate keeps it closed.
        fail_n(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        fail_n(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn it_opens_on_a_rate_not_a_count() {
        let b = Breaker::new(EndpointClass::Orders, config());
        // Ten failures among thirty successes: 25 %, under the 50 % threshold.
        for i in 0..40 {
            let outcome = if i % 4 == 0 { Outcome::Failure } else { Outcome::Success };
            call(&b, Caller::Strategy, outcome).unwrap();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!((b.status().calls, b.status().failures), (40, 10));
        // 19 more failures: 29 of 59, still under half although far more than `min_calls` failed.
        for _ in 0..19 {
            call(&b, Caller::Strategy, Outcome::Failure).unwrap();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // One more: 30 of 60.
        call(&b, Caller::Strategy, Outcome::Failure).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_slide_out_of_the_window() {
        let b = Breaker::new(EndpointClass::MarketData, config());
        for _ in 0..3 {
            call(&b, Caller::Strategy, Outcome::Failure).unwrap();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.status().calls, 0);
        // The three old failures no longer count: one new failure is one call of four.
        call(&b, Caller::Strategy, Outcome::Failure).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_fails_fast_with_the_time_left_then_lets_only_own_probes_through() {
        let b = Breaker::new(EndpointClass::MarketData, config());
        fail_n(&b, 4);
        let refused = b.admit(Caller::Own).err().expect("open");
        assert_eq!(refused.state, BreakerState::Open);
        assert_eq!(refused.retry_after, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            b.admit(Caller::Strategy).err().unwrap().retry_after,
            Duration::from_secs(3)
        );
        assert_eq!(b.status().retry_after_ms, Some(3000));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // A strategy's call is not a probe.
        let refused = b.admit(Caller::Strategy).err().expect("half-open refuses strategies");
        assert_eq!(refused.state, BreakerState::HalfOpen);
        let first = b.admit(Caller::Own).expect("probe 1");
        let second = b.admit(Caller::Own).expect("probe 2");
        assert!(b.admit(Caller::Own).is_err(), "no more than `probes` at once");
        first.finish(Outcome::Success);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        second.finish(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.status().calls, 0, "closing starts a fresh window");
        call(&b, Caller::Strategy, Outcome::Success).unwrap();
        assert_eq!(b.status().times_opened, 1);
        assert_eq!(b.status().refused, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_for_another_cool_down() {
        let b = Breaker::new(EndpointClass::Account, config());
        fail_n(&b, 4);
        tokio::time::advance(Duration::from_secs(5)).await;
        let late = b.admit(Caller::Own).unwrap();
        call(&b, Caller::Own, Outcome::Failure).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(Caller::Own).err().unwrap().retry_after, Duration::from_secs(5));
        // A probe of the earlier episode that answers late changes nothing.
        late.finish(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.status().times_opened, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let b = Breaker::new(EndpointClass::Streams, config());
        fail_n(&b, 4);
        tokio::time::advance(Duration::from_secs(5)).await;
        let first = b.admit(Caller::Own).unwrap();
        let second = b.admit(Caller::Own).unwrap();
        drop(first);
        let third = b.admit(Caller::Own).expect("the abandoned probe's slot");
        second.finish(Outcome::Success);
        third.finish(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn cancels_go_out_while_open_and_count_only_when_closed() {
        let b = Breaker::new(EndpointClass::Orders, config());
        fail_n(&b, 4);
        b.bypass().finish(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        call(&b, Caller::Own, Outcome::Success).unwrap();
        call(&b, Caller::Own, Outcome::Success).unwrap();
        for _ in 0..4 {
            b.bypass().finish(Outcome::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open, "cancels count once closed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cool_down_jitters_within_its_bounds() {
        let config = BreakerConfig {
            jitter: 0.2,
            ..config()
        };
        let mut seen = Vec::new();
        for _ in 0..50 {
            let b = Breaker::new(EndpointClass::MarketData, config.clone());
            fail_n(&b, 4);
            let wait = b.admit(Caller::Own).err().unwrap().retry_after;
            assert!(
                wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6),
                "{wait:?}"
            );
            seen.push(wait);
        }
        seen.dedup();
        assert!(seen.len() > 1, "the cool-down varies");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_it_never_opens() {
        let b = Breaker::new(
            EndpointClass::MarketData,
            BreakerConfig {
                enabled: false,
                ..config()
            },
        );
        fail_n(&b, 100);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(Caller::Strategy).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_prober_probes_each_breaker_once_its_cool_down_is_over() {
        let breakers = std::sync::Arc::new(Breakers::new(&config()));
        fail_n(breakers.get(EndpointClass::Orders), 4);
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let breakers = breakers.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                breakers
                    .probe_until(
                        |class| {
                            sent.lock().push((class, Instant::now()));
                            let _ = call(breakers.get(class), Caller::Own, Outcome::Success);
                            std::future::ready(())
                        },
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
            })
        };
        let opened = Instant::now();
        let mut changes = breakers.get(EndpointClass::Orders).subscribe();
        changes.wait_for(|s| *s == BreakerState::Closed).await.unwrap();
        let sent = sent.lock().clone();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent
            .iter()
            .all(|(class, at)| *class == EndpointClass::Orders && at.duration_since(opened) == Duration::from_secs(5)));
        let _ = stop.send(());
        task.await.unwrap();
    }

    #[test]
    fn nonsense_thresholds_are_refused_by_name() {
        let cases = [
            (
                BreakerConfig {
                    window: Duration::ZERO,
                    ..config()
                },
                "breaker.window",
            ),
            (
                BreakerConfig {
                    failure_rate: 1.5,
                    ..config()
                },
                "breaker.failure_rate",
            ),
            (
                BreakerConfig {
                    failure_rate: 0.0,
                    ..config()
                },
                "breaker.failure_rate",
            ),
            (
                BreakerConfig {
                    failure_rate: f64::NAN,
                    ..config()
                },
                "breaker.failure_rate",
            ),
            (
                BreakerConfig {
                    cool_down: Duration::ZERO,
                    ..config()
                },
                "breaker.cool_down",
            ),
            (
                BreakerConfig {
                    min_calls: 0,
                    ..config()
                },
                "breaker.min_calls",
            ),
            (BreakerConfig { probes: 0, ..config() }, "breaker.probes"),
            (
                BreakerConfig {
                    jitter: 1.0,
                    ..config()
                },
                "breaker.jitter",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().expect_err(key);
            assert!(error.starts_with(key), "{error}");
            assert!(!error.contains('\n'));
        }
        BreakerConfig::default().validate().unwrap();
    }
}
