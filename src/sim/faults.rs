//! Fault knobs: set in process through [`FaultControl`] or over HTTP (`POST /sim/faults`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How an injected server failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// 503 with `{"code":-1007,...}`: the outcome is unknown.
    #[default]
    Unknown1007,
    /// A plain 502 from the front end.
    BadGateway,
    /// A plain 503.
    Unavailable,
    /// Processed, then answered 400 with `{"code":-1006,...}`: execution status unknown (the
    /// code alone says so, whatever the HTTP status).
    Unknown1006,
    /// A 403 from the exchange's firewall (WAF), which also enforces rate limits; never processed.
    Firewall403,
}

/// How order answers (successful places and cancels, REST and WebSocket API) are mangled while
/// the orders themselves are processed as usual: the exchange changing its answer's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerMangle {
    /// Fields removed.
    pub drop: Vec<String>,
    /// Fields renamed, `[from, to]`.
    pub rename: Vec<(String, String)>,
    /// Fields given another type: a string becomes a number (or `true` when it is not one), a
    /// number a string, anything else a string.
    pub retype: Vec<String>,
    /// Fields added (unknown to the client).
    pub add: serde_json::Map<String, serde_json::Value>,
}

impl AnswerMangle {
    /// Applies the mangling to an answer object (anything else is left alone).
    pub fn apply(&self, answer: &mut serde_json::Value) {
        use serde_json::Value;
        let Value::Object(fields) = answer else { return };
        for name in &self.drop {
            fields.remove(name);
        }
        for (from, to) in &self.rename {
            if let Some(value) = fields.remove(from) {
                fields.insert(to.clone(), value);
            }
        }
        for name in &self.retype {
            if let Some(value) = fields.get_mut(name) {
                let retyped = match &*value {
                    Value::String(text) => text
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::Bool(true), Value::Number),
                    Value::Number(n) => Value::String(n.to_string()),
                    other => Value::String(other.to_string()),
                };
                *value = retyped;
            }
        }
        for (name, value) in &self.add {
            fields.insert(name.clone(), value.clone());
        }
    }
}

/// The knobs as they are right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultState {
    /// Added before every REST and WebSocket API answer.
    pub latency_ms: u64,
    /// The next N REST requests, and WebSocket API requests that change orders, are answered with
    /// `fail_kind`: a 502/503 is never processed, a -1007 is processed and its answer lost.
    pub fail_next: u32,
    pub fail_kind: FailKind,
    /// Fraction (0..1) of those requests answered with `fail_kind`.
    pub fail_rate: f64,
    /// Until this wall-clock time (epoch ms), every one of those requests is answered with
    /// `fail_kind`: an outage that ends by itself.
    pub outage_until_ms: Option<i64>,
    /// Order placements are processed at once but answered this much later.
    pub order_answer_delay_ms: u64,
    /// The next depth diff skips this many update ids (a sequence gap).
    pub skip_depth: u64,
    /// The next request is answered 429 with this Retry-After (seconds).
    pub force_429_secs: Option<u64>,
    /// Only a request from this client address takes the forced 429 (`None`: any request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_429_ip: Option<IpAddr>,
    /// Added to the exchange clock (ms).
    pub clock_skew_ms: i64,
    /// Every successful order answer is mangled so (the orders are processed as usual).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mangle_order_answers: Option<AnswerMangle>,
    /// The next new order is answered 429 `-1015` (too many new orders) with this Retry-After
    /// (seconds); a new order sent before it ends is banned, as the exchange's order limit does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_limit_secs: Option<u64>,
    /// Stream names refused as invalid (in a connection URL or a SUBSCRIBE), as the exchange
    /// refuses a stream it does not offer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refuse_streams: Vec<String>,
}

/// One `POST /sim/faults` body: every field optional; `drop_ws` and `external_weight` are actions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    pub latency_ms: Option<u64>,
    pub fail_next: Option<u32>,
    pub fail_kind: Option<FailKind>,
    pub fail_rate: Option<f64>,
    /// Start an outage now, lasting this many ms (see [`FaultState::outage_until_ms`]).
    pub outage_ms: Option<u64>,
    pub order_answer_delay_ms: Option<u64>,
    pub skip_depth: Option<u64>,
    pub force_429_secs: Option<u64>,
    /// With `force_429_secs`: only a request from this client address takes it.
    pub force_429_ip: Option<IpAddr>,
    /// Ban the IP now for this many seconds.
    pub force_418_secs: Option<u64>,
    /// Add this much weight to the current windows, as another process on the same IP would.
    pub external_weight: Option<u64>,
    pub clock_skew_ms: Option<i64>,
    pub mangle_order_answers: Option<AnswerMangle>,
    pub order_limit_secs: Option<u64>,
    pub refuse_streams: Option<Vec<String>>,
    /// Drop every WebSocket connection now.
    #[serde(default)]
    pub drop_ws: bool,
    /// Reset every knob first.
    #[serde(default)]
    pub clear: bool,
}

/// Actions that act on other parts of the simulator (the limiter, the sockets).
pub(crate) trait FaultActions: Send + Sync {
    fn ban_now(&self, secs: u64);
    fn add_external_weight(&self, weight: u64);
}

/// `rate` as a probability: clamped to 0..=1, and 0 when it is not a number.
fn probability(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Wall-clock epoch ms (outages are timed on the wall clock, unaffected by the clock skew knob).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Shared handle on the knobs. Cheap to clone.
#[derive(Clone)]
pub struct FaultControl {
    pub(crate) state: Arc<Mutex<FaultState>>,
    pub(crate) drop_ws: Arc<watch::Sender<u64>>,
    pub(crate) actions: Arc<dyn FaultActions>,
}

impl FaultControl {
    pub fn snapshot(&self) -> FaultState {
        self.state.lock().clone()
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().latency_ms = latency.as_millis() as u64;
    }

    pub fn fail_next(&self, n: u32, kind: FailKind) {
        let mut s = self.state.lock();
        s.fail_next = n;
        s.fail_kind = kind;
    }

    /// Every REST request, and WebSocket API request that changes orders, is answered with `kind`
    /// from now for `length`.
    pub fn outage(&self, length: Duration, kind: FailKind) {
        let mut s = self.state.lock();
        s.outage_until_ms = Some(wall_ms() + i64::try_from(length.as_millis()).unwrap_or(i64::MAX));
        s.fail_kind = kind;
    }

    pub fn delay_order_answers(&self, delay: Duration) {
        self.state.lock().order_answer_delay_ms = delay.as_millis() as u64;
    }

    pub fn skip_depth(&self, ids: u64) {
        self.state.lock().skip_depth = ids;
    }

    pub fn force_429(&self, retry_after_secs: u64) {
        let mut s = self.state.lock();
        s.force_429_secs = Some(retry_after_secs);
        s.force_429_ip = None;
    }

    /// The next request from `ip` only is answered 429 with this Retry-After (another address's
    /// requests go on as usual).
    pub fn force_429_from(&self, ip: IpAddr, retry_after_secs: u64) {
        let mut s = self.state.lock();
        s.force_429_secs = Some(retry_after_secs);
        s.force_429_ip = Some(ip);
    }

    pub fn force_418(&self, ban_secs: u64) {
        self.actions.ban_now(ban_secs);
    }

    pub fn add_external_weight(&self, weight: u64) {
        self.actions.add_external_weight(weight);
    }

    pub fn set_clock_skew_ms(&self, skew_ms: i64) {
        self.state.lock().clock_skew_ms = skew_ms;
    }

    pub fn mangle_order_answers(&self, mangle: AnswerMangle) {
        self.state.lock().mangle_order_answers = Some(mangle);
    }

    pub fn hit_order_limit(&self, retry_after_secs: u64) {
        self.state.lock().order_limit_secs = Some(retry_after_secs);
    }

    pub fn refuse_streams(&self, names: Vec<String>) {
        self.state.lock().refuse_streams = names;
    }

    pub(crate) fn refuses_stream(&self, name: &str) -> bool {
        self.state.lock().refuse_streams.iter().any(|n| n == name)
    }

    pub(crate) fn order_answer_mangle(&self) -> Option<AnswerMangle> {
        self.state.lock().mangle_order_answers.clone()
    }

    pub(crate) fn take_order_limit(&self) -> Option<u64> {
        self.state.lock().order_limit_secs.take()
    }

    pub fn drop_websockets(&self) {
        self.drop_ws.send_modify(|generation| *generation += 1);
    }

    pub fn clear(&self) {
        *self.state.lock() = FaultState::default();
    }

    pub fn apply(&self, update: &FaultUpdate) {
        if update.clear {
            self.clear();
        }
        {
            let mut s = self.state.lock();
            if let Some(v) = update.latency_ms {
                s.latency_ms = v;
            }
            if let Some(v) = update.fail_next {
                s.fail_next = v;
            }
            if let Some(v) = update.fail_kind {
                s.fail_kind = v;
            }
            if let Some(v) = update.fail_rate {
                s.fail_rate = probability(v);
            }
            if let Some(v) = update.outage_ms {
                s.outage_until_ms = Some(wall_ms() + i64::try_from(v).unwrap_or(i64::MAX));
            }
            if let Some(v) = update.order_answer_delay_ms {
                s.order_answer_delay_ms = v;
            }
            if let Some(v) = update.skip_depth {
                s.skip_depth = v;
            }
            if let Some(v) = update.force_429_secs {
                s.force_429_secs = Some(v);
                s.force_429_ip = update.force_429_ip;
            }
            if let Some(v) = update.clock_skew_ms {
                s.clock_skew_ms = v;
            }
            if let Some(v) = &update.mangle_order_answers {
                s.mangle_order_answers = Some(v.clone());
            }
            if let Some(v) = update.order_limit_secs {
                s.order_limit_secs = Some(v);
            }
            if let Some(v) = &update.refuse_streams {
                s.refuse_streams.clone_from(v);
            }
        }
        if let Some(secs) = update.force_418_secs {
            self.force_418(secs);
        }
        if let Some(w) = update.external_weight {
            self.add_external_weight(w);
        }
        if update.drop_ws {
            self.drop_websockets();
        }
    }

    /// Takes one injected failure for this request, if any is due.
    pub(crate) fn take_failure(&self, roll: f64) -> Option<FailKind> {
        let mut s = self.state.lock();
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Some(s.fail_kind);
        }
        if s.outage_until_ms.is_some_and(|until| wall_ms() < until) {
            return Some(s.fail_kind);
        }
        (roll < s.fail_rate).then_some(s.fail_kind)
    }

    /// The forced 429 for a request from `ip`, if one is due for it.
    pub(crate) fn take_forced_429(&self, ip: IpAddr) -> Option<u64> {
        let mut s = self.state.lock();
        if s.force_429_ip.is_some_and(|only| only != ip) {
            return None;
        }
        s.force_429_ip = None;
        s.force_429_secs.take()
    }

    pub(crate) fn take_depth_gap(&self) -> u64 {
        std::mem::take(&mut self.state.lock().skip_depth)
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.state.lock().latency_ms)
    }

    pub(crate) fn order_answer_delay(&self) -> Duration {
        Duration::from_millis(self.state.lock().order_answer_delay_ms)
    }

    pub(crate) fn clock_skew_ms(&self) -> i64 {
        self.state.lock().clock_skew_ms
    }
}
