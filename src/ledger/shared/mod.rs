//! The ledger shared through Redis by every process on one egress IP.
//!
//! Each process keeps spending through its own local ledger; what is shared is who
//! may spend how much of each window. A process leases a slice of every shared
//! window it needs from Redis — all pools a request touches at once, in one Lua
//! script (`lease.lua`, run with EVALSHA) — spends it locally, and gives back what it
//! left unused. Windows are keyed by their start in exchange time as this process
//! measures it. A 429/418 seen anywhere is stored and published at once with its
//! scope (the egress IP group it stops); every process joins it for that scope only.
//! Scopes are keyed by name (an IP group's configured name), not by the number this
//! process happens to give them, so processes may list their groups in any order. Without Redis a process spends a conservative share (the limit
//! divided by the processes last seen alive) and says so, loudly, until Redis is back.
//! See docs/shared-ledger.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, IntoConnectionInfo, Script};
use tokio::task::JoinHandle;

use super::lease::{LeaseView, ShareRule, Sharing};
use super::limits::{RateLimit, Scope};
use super::{BackoffState, Ledger};

/// Environment variable holding the Redis password (kept out of the URL and the config).
pub const PASSWORD_ENV: &str = "RUNNER_REDIS_PASSWORD";
/// The key layout this build writes; a budget holding another refuses to start. 2: scopes by
/// name, a back-off per scope (1: scopes by number, one back-off for the budget).
const FORMAT: &str = "2";
/// A process not heard from for this long is taken to be gone; so is a hungry one's claim (see
/// `lease.lua`) not renewed for this long.
const ALIVE_FOR_MS: i64 = 3_000;
/// How often a process says it is alive, trims idle leases and retries a lost Redis.
const TICK: Duration = Duration::from_millis(200);
/// A Redis answer slower than this counts as Redis being unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest one step of the keeper (a tick, a lease) may take before Redis counts as lost.
const STEP_LIMIT: Duration = Duration::from_millis(1000);
/// After Redis lost its state or came back: how long the others get to re-register (they
/// retry every tick) before this process leases again.
const SETTLE: Duration = Duration::from_millis(500);
/// Share of a limit the leases of all processes may hold unused at once.
const LEASE_SHARE: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("invalid ledger URL {url}: {source}")]
    Url {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot reach the shared ledger at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the shared ledger at {url} holds keys of another format ({found}); refusing to use it")]
    UnknownFormat { url: String, found: String },
}

/// Where and how to share.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    /// `redis://host:port/db` or `rediss://...`.
    pub url: String,
    /// The budget's name: one per egress IP.
    pub group: String,
    /// Start on the conservative local share if Redis cannot be reached at start.
    pub fallback_on_start: bool,
}

/// A running lease keeper; stops (giving its leases back) when dropped.
pub struct SharedLedger {
    ledger: Ledger,
    task: JoinHandle<()>,
    shares: JoinHandle<()>,
}

impl SharedLedger {
    /// The local ledger every request still goes through.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

impl Drop for SharedLedger {
    fn drop(&mut self) {
        self.task.abort();
        self.shares.abort();
    }
}

/// The URL as it may be shown: without user or password.
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// What the processes sharing a budget call a scope in its keys and messages: a scope given a
/// name here (an egress IP group or an account: its configured name) by that name, any other as the ledger
/// writes it (`ip0`, `account0`). Two processes naming their groups alike share each group's
/// pools and back-off whatever order they list them in.
#[derive(Debug, Clone, Default)]
pub struct ScopeNames(Vec<(Scope, String)>);

impl ScopeNames {
    pub fn new(names: impl IntoIterator<Item = (Scope, String)>) -> Self {
        ScopeNames(names.into_iter().collect())
    }

    /// `scope` as it appears in keys: `ip:<name>` / `account:<name>` for a named IP / account scope (any byte of the name
    /// but a letter, a digit, `_`, `-` or `.` written `%XX`, so a name cannot break a key apart).
    pub fn key(&self, scope: Scope) -> String {
        match self.0.iter().find(|(s, _)| *s == scope) {
            Some((Scope::Ip(_), name)) => format!("ip:{}", escape(name)),
            Some((Scope::Account(_), name)) => format!("account:{}", escape(name)),
            Some((_, name)) => format!("{scope}:{}", escape(name)),
            None => scope.to_string(),
        }
    }
}

fn escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Shares `ledger`'s pools of egress IP and account scope through the Redis at
/// `config.url`, each scope keyed as the ledger writes it. Fails if the URL is malformed, or
/// Redis is out of reach (unless `fallback_on_start`), or it holds keys of another format.
pub async fn share(ledger: Ledger, config: SharedConfig) -> Result<SharedLedger, SharedError> {
    share_named(ledger, config, ScopeNames::default()).await
}

/// As [`share`], with scopes keyed by `names` (see [`ScopeNames`]).
pub async fn share_named(ledger: Ledger, config: SharedConfig, names: ScopeNames) -> Result<SharedLedger, SharedError> {
    let shown = display_url(&config.url);
    let url_error = |source| SharedError::Url {
        url: shown.clone(),
        source,
    };
    let mut info = config.url.as_str().into_connection_info().map_err(url_error)?;
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        if info.redis_settings().password().is_none() {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
    }
    let client = Client::open(info).map_err(url_error)?;
    let keys = Keys::new(&config.group, names.clone());
    let mut keeper = Keeper {
        ledger: ledger.clone(),
        client,
        conn: None,
        keys,
        shown: shown.clone(),
        group: config.group.clone(),
        process: format!("{}-{:x}", std::process::id(), rand::random::<u64>()),
        epoch: String::new(),
        processes: 1,
        connected: false,
        lease_script: Script::new(include_str!("lease.lua")),
        raise_script: Script::new(RAISE),
        give_back_script: Script::new(GIVE_BACK),
        ban_script: Script::new(BAN),
        short_window: HashMap::new(),
        settle_until: None,
        fallback: Arc::new(Mutex::new(Fallback::default())),
        last_used: HashMap::new(),
    };
    let wake = ledger.share_pools(ShareRule::new(|l| {
        matches!(l.scope, super::Scope::Ip(_) | super::Scope::Account(_)).then(|| lease_chunk(l.limit, 1) / 2)
    }));
    // Subscribed before the shared state is read and before this returns: a back-off published
    // from then on reaches this process, one published before is read by `rejoin`.
    let mut events = None;
    let joined = match keeper.connect().await {
        Ok(()) => {
            keeper.check_format().await?;
            events = keeper.subscribe().await;
            keeper.rejoin().await
        }
        Err(e) => Err(e),
    };
    match joined {
        Ok(()) => keeper.connected = true,
        Err(source) if !config.fallback_on_start => {
            return Err(SharedError::Unreachable { url: shown, source });
        }
        Err(e) => {
            tracing::error!(url = %shown, error = %e, "SHARED LEDGER OUT OF REACH at start: spending a conservative local share until it answers");
        }
    }
    keeper.publish_sharing();
    if !keeper.connected {
        keeper.fallback.lock().active = true;
    }
    let shares = tokio::spawn(grant_local_shares(
        ledger.clone(),
        Keys::new(&config.group, names),
        keeper.fallback.clone(),
    ));
    let task = tokio::spawn(async move { keeper.run(wake, events).await });
    Ok(SharedLedger { ledger, task, shares })
}

/// Units leased at a time: small enough that the leases all processes hold unused stay
/// within `LEASE_SHARE` of the limit, large enough to save round trips.
fn lease_chunk(limit: u64, processes: u32) -> u64 {
    ((limit as f64 * LEASE_SHARE / f64::from(processes.max(1))) as u64).max(1)
}

/// Raises a window's shared count to the exchange's (never lowers it).
const RAISE: &str = r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > count then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1";

/// Gives unused units of a window back (never below zero), off the window's count (KEYS[1])
/// and the caller's (ARGV[2]) holding (KEYS[3]), and tells the others (KEYS[2]).
const GIVE_BACK: &str = r"
local units = tonumber(ARGV[1])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  redis.call('SET', KEYS[1], math.max(0, count - units), 'KEEPTTL')
end
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if held > 0 then
  redis.call('HSET', KEYS[3], ARGV[2], math.max(0, held - units))
end
redis.call('PUBLISH', KEYS[2], 'credit')
return 1";

/// Records a scope's back-off (only ever extended) and tells every process at once:
/// `backoff <scope> <state> <until>`.
const BAN: &str = r"
local known = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > known then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
redis.call('PUBLISH', KEYS[2], 'backoff ' .. ARGV[4] .. ' ' .. ARGV[2] .. ' ' .. ARGV[1])
return 1";

/// Key names: one hash tag per budget, so a Redis Cluster keeps them in one slot.
struct Keys {
    prefix: String,
    names: ScopeNames,
}

impl Keys {
    fn new(group: &str, names: ScopeNames) -> Self {
        Keys {
            prefix: format!("runner:{{{group}}}:"),
            names,
        }
    }
    fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    fn pool(&self, l: &RateLimit) -> String {
        format!(
            "{}{}:{}:{}",
            self.prefix,
            self.names.key(l.scope),
            l.kind,
            l.interval.millis()
        )
    }
    /// Exchange ms until which nothing drawing on `scope` is sent.
    fn ban(&self, scope: Scope) -> String {
        format!("{}ban:{}", self.prefix, self.names.key(scope))
    }
    fn window(&self, l: &RateLimit, window_start_ms: i64) -> String {
        format!("w:{}:{window_start_ms}", self.pool(l))
    }
    fn limit(&self, l: &RateLimit) -> String {
        format!("limit:{}", self.pool(l))
    }
    /// Units of a window leased to each process (for the fair share under contention).
    fn holders(&self, l: &RateLimit, window_start_ms: i64) -> String {
        format!("h:{}:{window_start_ms}", self.pool(l))
    }
    /// Processes turned away from a pool and not served since, by when they first were.
    fn hungry(&self, l: &RateLimit) -> String {
        format!("hungry:{}", self.pool(l))
    }
    /// When each hungry process was last turned away (one that stops asking is dropped).
    fn hungry_lately(&self, l: &RateLimit) -> String {
        format!("hungry-seen:{}", self.pool(l))
    }
}

struct Keeper {
    ledger: Ledger,
    client: Client,
    conn: Option<ConnectionManager>,
    keys: Keys,
    shown: String,
    group: String,
    process: String,
    /// The shared state's id as this process last knew it; another one means Redis lost it.
    epoch: String,
    processes: u32,
    connected: bool,
    lease_script: Script,
    raise_script: Script,
    give_back_script: Script,
    ban_script: Script,
    /// Pools Redis had no room in, by window: not asked again until a credit or the next window.
    short_window: HashMap<String, i64>,
    /// After Redis lost its state, or came back while processes spent local shares, the
    /// others' holdings are unknown until they re-register (within a tick of Redis answering
    /// them): until then nothing more is leased and what is held is spent.
    settle_until: Option<tokio::time::Instant>,
    /// Without Redis: the local shares, granted by their own task so that no wait on Redis
    /// (a paused server, a hung reconnection) holds them up.
    fallback: Arc<Mutex<Fallback>>,
    /// Window and use of each pool at the last tick, to find idle leases and new windows.
    last_used: HashMap<String, (i64, u64)>,
}

type Redis<T> = Result<T, redis::RedisError>;

impl Keeper {
    async fn connect(&mut self) -> Redis<()> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let mut conn = self.client.get_connection_manager_with_config(config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        self.conn = Some(conn);
        Ok(())
    }

    fn conn(&mut self) -> Redis<ConnectionManager> {
        self.conn
            .clone()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "not connected")))
    }

    async fn check_format(&mut self) -> Result<(), SharedError> {
        let key = self.keys.named("format");
        let found: Option<String> = match self.conn() {
            Ok(mut c) => c.get(&key).await.unwrap_or(None),
            Err(_) => None,
        };
        match found {
            Some(f) if f != FORMAT => Err(SharedError::UnknownFormat {
                url: self.shown.clone(),
                found: f,
            }),
            _ => Ok(()),
        }
    }

    fn publish_sharing(&self) {
        self.ledger.set_sharing(Sharing {
            backend: self.shown.clone(),
            group: self.group.clone(),
            connected: self.connected,
            processes: self.processes,
        });
    }

    async fn run(mut self, wake: std::sync::Arc<tokio::sync::Notify>, mut events: Option<redis::aio::PubSubStream>) {
        if events.is_none() && self.connected {
            events = self.subscribe().await;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                message = next_event(&mut events) => match message {
                    Some(text) => self.on_event(&text),
                    None => events = None,
                },
                _ = tick.tick() => {
                    if let Err(e) = bounded(self.on_tick()).await {
                        self.lost(&e);
                    }
                    if events.is_none() && self.connected {
                        events = tokio::time::timeout(STEP_LIMIT, self.subscribe()).await.ok().flatten();
                    }
                }
            }
            if let Err(e) = bounded(self.pass()).await {
                self.lost(&e);
            }
        }
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSubStream> {
        let mut pubsub = self.client.get_async_pubsub().await.ok()?;
        pubsub.subscribe(self.keys.named("events")).await.ok()?;
        Some(pubsub.into_on_message())
    }

    fn on_event(&mut self, text: &str) {
        let mut words = text.split(' ');
        match words.next() {
            Some("credit") => self.short_window.clear(),
            Some("backoff") => {
                let scope = words.next().and_then(|key| self.scope_of(key));
                let state = match words.next() {
                    Some("banned") => BackoffState::Banned,
                    _ => BackoffState::Throttled,
                };
                match (scope, words.next().and_then(|w| w.parse::<i64>().ok())) {
                    (Some(scope), Some(until)) => self.ledger.join_backoff(scope, state, until),
                    // A scope this process has no pools of (another process's IP group).
                    (None, Some(_)) => tracing::debug!(event = text, "a back-off of a scope not used here"),
                    _ => tracing::warn!(
                        event = text,
                        "unreadable back-off on the shared ledger's channel; ignored"
                    ),
                }
            }
            _ => tracing::warn!(event = text, "unknown event on the shared ledger's channel; ignored"),
        }
    }

    /// The scope of this ledger's pools that `key` names in keys and messages.
    fn scope_of(&self, key: &str) -> Option<Scope> {
        self.shared_scopes()
            .into_iter()
            .find(|s| self.keys.names.key(*s) == key)
    }

    /// The scopes of the shared pools, each once.
    fn shared_scopes(&self) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = self.ledger.leases().iter().map(|v| v.limit.scope).collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    fn set_connected(&mut self, connected: bool) {
        if connected != self.connected {
            self.connected = connected;
            if connected {
                tracing::warn!(url = %self.shown, "shared ledger reachable again; leasing from it");
            }
        }
        self.publish_sharing();
    }

    fn lost(&mut self, e: &redis::RedisError) {
        if !self.connected {
            // Still out of reach (a failed retry): the windows it was lost in stay as they
            // were marked then. Marking them again would take the share of a window that
            // began since.
            tracing::debug!(error = %e, "shared ledger still out of reach");
            self.fallback.lock().active = true;
            return;
        }
        tracing::error!(
            url = %self.shown,
            error = %e,
            processes = self.processes,
            "SHARED LEDGER UNAVAILABLE: spending only 1/{} of each limit until it answers",
            self.processes
        );
        // The current windows keep what is held: the others' holdings there are unknown.
        // Shares start with the next windows. "Current" is the exchange's window under way,
        // even while this process's pool still finishes the previous one (the boundary guard):
        // what was leased in the new one before the loss may already exceed a share.
        let now = self.ledger.now_ms();
        let granted = self
            .ledger
            .leases()
            .into_iter()
            .map(|v| {
                let current = v.window_start_ms.max(v.limit.interval.window_start(now));
                (self.keys.pool(&v.limit), current)
            })
            .collect();
        *self.fallback.lock() = Fallback {
            active: true,
            processes: self.processes,
            granted,
        };
        self.set_connected(false);
    }

    /// Takes `count` as the processes now sharing the budget (logged when it changes): the
    /// share each one spends without Redis.
    fn count_processes(&mut self, count: u32) {
        let count = count.max(1);
        if count != self.processes {
            self.processes = count;
            tracing::info!(group = %self.group, "processes sharing this budget: {count}");
            self.publish_sharing();
        }
    }

    /// Says this process is alive and counts the processes alive.
    async fn heartbeat(&mut self, c: &mut ConnectionManager) -> Redis<()> {
        let now = self.ledger.now_ms();
        let alive = self.keys.named("alive");
        let (_, _, count): (i64, i64, u32) = redis::pipe()
            .atomic()
            .zadd(&alive, &self.process, now)
            .zrembyscore(&alive, "-inf", now - ALIVE_FOR_MS)
            .zcard(&alive)
            .query_async(c)
            .await?;
        self.count_processes(count);
        Ok(())
    }

    /// Heartbeat, process count, idle leases; a lost Redis is retried.
    async fn on_tick(&mut self) -> Redis<()> {
        if !self.connected {
            if self.conn.is_none() {
                self.connect().await?;
            }
            let mut c = self.conn()?;
            let _: String = redis::cmd("PING").query_async(&mut c).await?;
            self.rejoin().await?;
            self.set_connected(true);
        }
        let mut c = self.conn()?;
        self.heartbeat(&mut c).await?;
        self.renew_hunger(&mut c).await?;
        for view in self.ledger.leases() {
            let before = self
                .last_used
                .insert(self.keys.pool(&view.limit), (view.window_start_ms, view.used));
            let idle = before == Some((view.window_start_ms, view.used));
            // One chunk stays held, and a window that just began is leased a chunk at once if
            // the last one was used: should Redis go, the window under way keeps only what is
            // held, and holding nothing of a long window (5-minute raw requests and
            // connections, the day's orders) would stop this process until it ends.
            let keep = lease_chunk(view.limit.limit, self.processes);
            let rolled = before.is_some_and(|(start, used)| start != view.window_start_ms && used > 0);
            if rolled && view.lease < view.used.saturating_add(keep) {
                self.ledger.want_lease(&view.limit, view.window_start_ms);
            }
            if idle && view.lease > view.used.saturating_add(keep) {
                let spare = self.ledger.trim(&view.limit, view.window_start_ms, keep);
                if spare > 0 {
                    self.give_back(&mut c, &view.limit, view.window_start_ms, spare).await?;
                }
            }
        }
        Ok(())
    }

    /// Renews this process's claim to be served first on each pool Redis turned it away from in
    /// the window under way while a request still waits on it (it asks again only on a credit
    /// or the next window, which may be minutes away); a claim not renewed lapses.
    async fn renew_hunger(&self, c: &mut ConnectionManager) -> Redis<()> {
        let now = self.ledger.now_ms();
        let mut pipe = redis::pipe();
        let mut renewed = false;
        for view in self.ledger.leases() {
            let pool = self.keys.pool(&view.limit);
            if view.wanted_by_request && self.short_window.get(&pool) == Some(&view.window_start_ms) {
                let key = self.keys.hungry_lately(&view.limit);
                pipe.hset(&key, &self.process, now).ignore();
                pipe.pexpire(&key, ttl_ms(&view)).ignore();
                renewed = true;
            }
        }
        if renewed {
            pipe.query_async::<()>(c).await?;
        }
        Ok(())
    }

    /// Gives `units` of a window back to the others.
    async fn give_back(
        &self,
        c: &mut ConnectionManager,
        limit: &RateLimit,
        window_start_ms: i64,
        units: u64,
    ) -> Redis<()> {
        self.give_back_script
            .key(self.keys.window(limit, window_start_ms))
            .key(self.keys.named("events"))
            .key(self.keys.holders(limit, window_start_ms))
            .arg(units)
            .arg(&self.process)
            .invoke_async::<i64>(c)
            .await?;
        Ok(())
    }

    /// After a start or a reconnect: adopt the shared state, put back what this process
    /// holds if Redis lost it, and read a backoff another process recorded.
    async fn rejoin(&mut self) -> Redis<()> {
        let mut c = self.conn()?;
        let epoch_key = self.keys.named("epoch");
        let fresh = format!("{:x}", rand::random::<u64>());
        let _: bool = c.set_nx(&epoch_key, &fresh).await?;
        let _: bool = c.set_nx(self.keys.named("format"), FORMAT).await?;
        let epoch: String = c.get(&epoch_key).await?;
        // Registered before anything is leased, so whoever leases next counts this process.
        self.heartbeat(&mut c).await?;
        // New to this state (a start, or Redis restarted empty), what this process holds in
        // the current windows counts there too; back from a fallback, what it was granted
        // locally does.
        let lost_state = epoch != self.epoch;
        // No local share from here on: what was granted is put back below. Should this fail,
        // `lost` turns the shares back on.
        let local_shares = {
            let mut fallback = self.fallback.lock();
            fallback.active = false;
            std::mem::take(&mut fallback.granted)
        };
        let known_before = !self.epoch.is_empty();
        let mut pipe = redis::pipe();
        let mut held = 0;
        let mut spent_locally = false;
        for view in self.ledger.leases().into_iter().filter(|v| v.lease > 0) {
            let local_only = local_shares.get(&self.keys.pool(&view.limit)) == Some(&view.window_start_ms);
            spent_locally |= local_only;
            if lost_state || local_only {
                let key = self.keys.window(&view.limit, view.window_start_ms);
                pipe.incr(&key, view.lease).ignore();
                pipe.pexpire(&key, ttl_ms(&view)).ignore();
                let holders = self.keys.holders(&view.limit, view.window_start_ms);
                pipe.hincr(&holders, &self.process, view.lease).ignore();
                pipe.pexpire(&holders, ttl_ms(&view)).ignore();
                held += 1;
            }
        }
        if spent_locally || (lost_state && known_before) {
            // Whoever re-registers later than this process would find its holdings spent again.
            self.settle_until = Some(tokio::time::Instant::now() + SETTLE);
        }
        if held > 0 {
            pipe.query_async::<()>(&mut c).await?;
        }
        self.epoch = epoch;
        for scope in self.shared_scopes() {
            let ban: Option<String> = c.get(self.keys.ban(scope)).await?;
            if let Some(until) = ban.and_then(|b| b.parse::<i64>().ok()) {
                self.ledger.join_backoff(scope, BackoffState::Throttled, until);
            }
        }
        Ok(())
    }

    /// Passes on news, then leases what is wanted.
    async fn pass(&mut self) -> Redis<()> {
        let news = self.ledger.take_news();
        if !self.connected {
            self.fallback.lock().grant(&self.ledger, &self.keys);
            return Ok(());
        }
        let mut c = self.conn()?;
        for backoff in news.backoffs {
            let until = backoff.resume_at_ms;
            let ttl = (until - self.ledger.now_ms()).max(1) + 60_000;
            self.ban_script
                .key(self.keys.ban(backoff.scope))
                .key(self.keys.named("events"))
                .arg(until)
                .arg(backoff.state.as_str())
                .arg(ttl)
                .arg(self.keys.names.key(backoff.scope))
                .invoke_async::<i64>(&mut c)
                .await?;
        }
        for report in news.reports {
            let ttl = report.limit.interval.millis() * 2;
            self.raise_script
                .key(self.keys.window(&report.limit, report.window_start_ms))
                .arg(report.used)
                .arg(ttl)
                .invoke_async::<i64>(&mut c)
                .await?;
        }
        if self.settle_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            return Ok(());
        }
        let wanted: Vec<LeaseView> = self
            .ledger
            .leases()
            .into_iter()
            .filter(|v| v.wanted > 0)
            .filter(|v| self.short_window.get(&self.keys.pool(&v.limit)) != Some(&v.window_start_ms))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut invocation = self.lease_script.prepare_invoke();
        invocation
            .key(self.keys.named("epoch"))
            .key(self.keys.named("alive"))
            .key(self.keys.named("events"))
            .arg(&self.epoch)
            .arg(self.ledger.now_ms())
            .arg(ALIVE_FOR_MS)
            .arg(&self.process);
        for v in &wanted {
            let cap = if v.wanted_full { v.limit.limit } else { v.market_cap };
            let need = v.wanted;
            let want = need.max(lease_chunk(v.limit.limit, self.processes));
            invocation
                .key(self.keys.window(&v.limit, v.window_start_ms))
                .key(self.keys.limit(&v.limit))
                .key(self.keys.ban(v.limit.scope))
                .key(self.keys.holders(&v.limit, v.window_start_ms))
                .key(self.keys.hungry(&v.limit))
                .key(self.keys.hungry_lately(&v.limit))
                .arg(need)
                .arg(want)
                .arg(v.limit.limit)
                .arg(cap)
                .arg(ttl_ms(v))
                .arg(ALIVE_FOR_MS)
                .arg(i32::from(v.wanted_by_request));
        }
        let reply: Vec<redis::Value> = invocation.invoke_async(&mut c).await?;
        let number = |i: usize| {
            reply
                .get(i)
                .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
        };
        match number(0) {
            Some(1) => {
                if let Some(alive) = number(wanted.len() + 1) {
                    self.count_processes(u32::try_from(alive).unwrap_or(u32::MAX));
                }
                for (i, v) in wanted.iter().enumerate() {
                    let granted = number(i + 1).unwrap_or(0).max(0) as u64;
                    if !self.ledger.grant(&v.limit, v.window_start_ms, granted) {
                        // The window rolled meanwhile: hand the slice straight back.
                        self.give_back(&mut c, &v.limit, v.window_start_ms, granted).await?;
                    }
                }
            }
            Some(0) => {
                let short = number(1).unwrap_or(1).max(1) as usize - 1;
                if let (Some(v), Some(limit)) = (wanted.get(short), number(3)) {
                    if (limit as u64) < v.limit.limit {
                        tracing::warn!(
                            pool = %self.keys.pool(&v.limit),
                            ours = v.limit.limit,
                            shared = limit,
                            "another process runs with a lower limit for this pool; the lower one applies"
                        );
                    }
                }
                // Only the short pool waits for a credit or its next window. Marking every pool
                // of the request would keep a long window (5-minute raw requests, connections)
                // from being leased until it ends, long after the short one has room again.
                if let Some(v) = wanted.get(short) {
                    self.short_window.insert(self.keys.pool(&v.limit), v.window_start_ms);
                }
            }
            Some(-1) => {
                tracing::error!(url = %self.shown, "the shared ledger lost its state (Redis restarted?); putting back what this process holds");
                self.rejoin().await?;
            }
            Some(-2) => {
                let pool = number(1).and_then(|i| usize::try_from(i).ok()?.checked_sub(1));
                if let (Some(v), Some(until)) = (pool.and_then(|i| wanted.get(i)), number(2)) {
                    self.ledger.join_backoff(v.limit.scope, BackoffState::Throttled, until);
                }
            }
            _ => tracing::warn!(?reply, "unexpected answer from the lease script"),
        }
        Ok(())
    }
}

/// The local shares spent while Redis is out of reach.
#[derive(Default)]
struct Fallback {
    /// Whether Redis is out of reach and shares are granted.
    active: bool,
    /// Processes last seen alive when Redis was lost: each one's share is 1/processes.
    processes: u32,
    /// The window of each pool a share was granted for (or, for the window under way when
    /// Redis was lost, nothing beyond what was held).
    granted: HashMap<String, i64>,
}

impl Fallback {
    /// Each shared pool's window gets this process's share of the limit, once.
    fn grant(&mut self, ledger: &Ledger, keys: &Keys) {
        if !self.active {
            return;
        }
        for v in ledger.leases() {
            let key = keys.pool(&v.limit);
            // A window up to the one under way when Redis was lost keeps what is held.
            if self.granted.get(&key).is_some_and(|w| v.window_start_ms <= *w) {
                continue;
            }
            let share = v.limit.limit / u64::from(self.processes.max(1));
            if share > v.lease {
                let granted = ledger.grant(&v.limit, v.window_start_ms, share - v.lease);
                tracing::debug!(pool = %key, window = v.window_start_ms, share, granted, "local share");
            }
            self.granted.insert(key, v.window_start_ms);
        }
    }
}

/// Grants the local shares while Redis is out of reach, at each window's start (a pool's
/// window rolls at its end plus the guard; this wakes just after).
async fn grant_local_shares(ledger: Ledger, keys: Keys, fallback: Arc<Mutex<Fallback>>) {
    const AFTER_ROLL: Duration = Duration::from_millis(1);
    loop {
        let next = {
            let mut f = fallback.lock();
            f.grant(&ledger, &keys);
            let now = ledger.now_ms();
            let next_roll = ledger.leases().iter().map(|v| v.window_end_ms).min();
            match next_roll {
                Some(end) if f.active => Duration::from_millis(u64::try_from(end - now).unwrap_or(0)).min(TICK),
                _ => TICK,
            }
        };
        tokio::time::sleep(next + AFTER_ROLL).await;
    }
}

/// A step of the keeper that has not finished in [`STEP_LIMIT`] (a Redis that accepts
/// connections but does not answer, a reconnection that hangs) counts as Redis lost, so the
/// fallback share is never held up behind it.
async fn bounded(step: impl std::future::Future<Output = Redis<()>>) -> Redis<()> {
    match tokio::time::timeout(STEP_LIMIT, step).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no answer within the step limit",
        ))),
    }
}

/// How long a window's count must outlive its start: the window, its guard, and a margin.
fn ttl_ms(v: &LeaseView) -> i64 {
    (v.window_end_ms - v.window_start_ms) + 10_000
}

async fn next_event(events: &mut Option<redis::aio::PubSubStream>) -> Option<String> {
    match events {
        Some(stream) => {
            let message = stream.next().await?;
            message.get_payload::<String>().ok()
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::limits::IntervalUnit::Minute;
    use crate::ledger::limits::PoolKind::RequestWeight;

    fn names(order: [&str; 2]) -> ScopeNames {
        ScopeNames::new([
            (Scope::Ip(0), order[0].to_string()),
            (Scope::Ip(1), order[1].to_string()),
        ])
    }

    #[test]
    fn an_ip_groups_keys_follow_its_name_not_its_place_in_the_list() {
        let a = Keys::new("office", names(["main", "spare"]));
        let b = Keys::new("office", names(["spare", "main"]));
        let weight = |n| RateLimit::new(RequestWeight, Minute, 1, 6000).scoped(Scope::Ip(n));
        assert_eq!(a.pool(&weight(0)), "runner:{office}:ip:main:REQUEST_WEIGHT:60000");
        assert_eq!(a.pool(&weight(0)), b.pool(&weight(1)));
        assert_eq!(a.window(&weight(1), 60_000), b.window(&weight(0), 60_000));
        assert_eq!(a.ban(Scope::Ip(0)), b.ban(Scope::Ip(1)));
        assert_ne!(a.ban(Scope::Ip(0)), a.ban(Scope::Ip(1)));
        // Unnamed scopes (the market source, accounts) keep the ledger's spelling.
        assert_eq!(a.ban(Scope::Ip(u16::MAX)), "runner:{office}:ban:ip65535");
        assert_eq!(a.names.key(Scope::Account(0)), "account0");
        // A name cannot break a key apart.
        let odd = ScopeNames::new([(Scope::Ip(0), "a:b c%".to_string())]);
        assert_eq!(odd.key(Scope::Ip(0)), "ip:a%3Ab%20c%25");
    }

    #[test]
    fn account_pools_are_keyed_by_the_accounts_name_when_named() {
        use crate::ledger::{IntervalUnit, PoolKind};
        let orders = |n| RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 100).scoped(Scope::Account(n));
        let named = Keys::new(
            "office",
            ScopeNames::new([
                (Scope::Account(0), "main".to_string()),
                (Scope::Account(1), "sub1".to_string()),
            ]),
        );
        assert_eq!(named.pool(&orders(1)), "runner:{office}:account:sub1:ORDERS:10000");
        // Another process listing `sub1` first shares its pools.
        let other = Keys::new("office", ScopeNames::new([(Scope::Account(0), "sub1".to_string())]));
        assert_eq!(other.pool(&orders(0)), named.pool(&orders(1)));
        let weight = RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000);
        assert_eq!(named.pool(&weight), "runner:{office}:ip0:REQUEST_WEIGHT:60000");
        let unnamed = Keys::new("office", ScopeNames::default());
        assert_eq!(unnamed.pool(&orders(0)), "runner:{office}:account0:ORDERS:10000");
    }
}
