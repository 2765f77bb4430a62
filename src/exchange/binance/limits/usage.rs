//! Binance rate-limit announcements, usage headers and 429/418 classification.
//!
//! Everything here reads input from the network, so it is lenient in what it
//! accepts but never in what it concludes: a malformed value is skipped with a
//! warning, and a missing one falls back to the safe side (a documented limit, a
//! longer wait), never to "unlimited" or "no wait".

use std::time::Duration;

use serde_json::Value;

use crate::ledger::limits::{Interval, IntervalUnit, PoolKind, RateLimit};
use crate::ledger::{ServerUsage, Verdict};

use super::pools::{scope_of, spot_defaults};
use crate::exchange::binance::wire::WsApiResponse;

/// No real Binance pool comes near this; a bigger figure is a corrupt announcement.
pub const MAX_SANE_LIMIT: u64 = 100_000_000;
/// A window longer than this (e.g. "400 DAY") is not a real announcement either.
const MAX_INTERVAL_NUM: u64 = 1_000;
/// Counts in headers above this are garbage, not usage.
const MAX_SANE_USAGE: u64 = 1_000_000_000;
/// Wait after a 429 whose Retry-After is missing or unreadable.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Ban assumed after a 418 that says nothing about its length: the documented minimum.
pub const DEFAULT_BAN: Duration = Duration::from_secs(120);
/// Longest wait we believe (bans top out at three days).
const MAX_WAIT: Duration = Duration::from_secs(3 * 86_400);

const USED_WEIGHT_PREFIX: &str = "x-mbx-used-weight-";
const ORDER_COUNT_PREFIX: &str = "x-mbx-order-count-";

fn parse_entry(entry: &Value) -> Result<RateLimit, String> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str).ok_or(format!("missing {key}"));
    let kind = text("rateLimitType")?;
    let kind = PoolKind::parse(kind).ok_or(format!("unknown rateLimitType {kind}"))?;
    let unit = text("interval")?;
    let unit = IntervalUnit::parse(unit).ok_or(format!("unknown interval {unit}"))?;
    let num = entry
        .get("intervalNum")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_INTERVAL_NUM).contains(n))
        .ok_or("intervalNum missing or out of range")?;
    let limit = entry
        .get("limit")
        .and_then(Value::as_u64)
        .ok_or("limit missing or not a whole number")?;
    if limit == 0 || limit > MAX_SANE_LIMIT {
        return Err(format!("implausible limit {limit}"));
    }
    Ok(RateLimit::new(kind, unit, num as u32, limit).scoped(scope_of(kind)))
}

/// Pools from `exchangeInfo.rateLimits`. A kind with no valid entry keeps the
/// documented defaults for that kind.
pub fn parse_rate_limits(entries: &[Value]) -> Vec<RateLimit> {
    let mut limits: Vec<RateLimit> = entries
        .iter()
        .filter_map(|entry| match parse_entry(entry) {
            Ok(limit) => Some(limit),
            Err(reason) => {
                tracing::warn!(%entry, %reason, "skipping a rateLimits entry");
                None
            }
        })
        .collect();
    let announced: Vec<PoolKind> = limits.iter().map(|l| l.kind).collect();
    limits.extend(spot_defaults().into_iter().filter(|d| !announced.contains(&d.kind)));
    limits
}

fn parse_header(name: &str, value: &str) -> Option<ServerUsage> {
    let lower = name.to_ascii_lowercase();
    let (kind, suffix) = if let Some(s) = lower.strip_prefix(USED_WEIGHT_PREFIX) {
        (PoolKind::RequestWeight, s)
    } else if let Some(s) = lower.strip_prefix(ORDER_COUNT_PREFIX) {
        (PoolKind::Orders, s)
    } else {
        return None;
    };
    let letter = suffix.chars().last()?;
    let interval = IntervalUnit::from_letter(letter).and_then(|unit| {
        let num: u32 = suffix[..suffix.len() - letter.len_utf8()].parse().ok()?;
        (1..=MAX_INTERVAL_NUM as u32)
            .contains(&num)
            .then(|| Interval::new(unit, num))
    });
    let Some(interval) = interval else {
        tracing::warn!(header = name, "usage header with an unreadable interval; ignored");
        return None;
    };
    match value.trim().parse::<u64>() {
        Ok(used) if used <= MAX_SANE_USAGE => Some(ServerUsage {
            scope: scope_of(kind),
            kind,
            interval,
            used,
        }),
        _ => {
            tracing::warn!(header = name, value, "usage header with an unreadable count; ignored");
            None
        }
    }
}

/// The exchange's counts from `X-MBX-USED-WEIGHT-<n><S|M|H|D>` and
/// `X-MBX-ORDER-COUNT-<n><S|M|H|D>` headers (names case-insensitive).
pub fn parse_usage_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<ServerUsage> {
    headers
        .into_iter()
        .filter_map(|(name, value)| parse_header(name, value))
        .collect()
}

/// Retry-After in seconds (an integer, or a decimal); `None` if unreadable.
fn retry_after_secs(header: Option<&str>) -> Option<Duration> {
    let secs: f64 = header?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

/// `IP banned until <epoch ms>` in an error message.
fn banned_until_in(text: &str) -> Option<i64> {
    let at = text.find("banned until")? + "banned until".len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The exchange error code and message of a response body, if it has them.
fn body_error(body: &[u8]) -> (Option<i64>, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => (
            v.get("code").and_then(Value::as_i64),
            v.get("msg").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ),
        Err(_) => (None, String::from_utf8_lossy(body).into_owned()),
    }
}

fn throttled(retry_after: Option<Duration>, source: &str) -> Verdict {
    let retry_after = retry_after.unwrap_or_else(|| {
        tracing::warn!(source, "429 without a readable Retry-After; waiting the default");
        DEFAULT_RETRY_AFTER
    });
    Verdict::Throttled {
        retry_after: retry_after.max(Duration::from_secs(1)),
    }
}

fn banned(candidates: [Option<i64>; 2], now_ms: i64, source: &str) -> Verdict {
    let until_ms = match candidates.into_iter().flatten().max() {
        Some(until) => until.min(now_ms + MAX_WAIT.as_millis() as i64),
        None => {
            tracing::warn!(source, "418 without a ban end; assuming the documented minimum");
            now_ms + DEFAULT_BAN.as_millis() as i64
        }
    };
    Verdict::Banned {
        until_ms: until_ms.max(now_ms + 1_000),
    }
}

/// Classifies an HTTP response: 429 → throttled for Retry-After seconds; 403 (the
/// exchange's firewall, which enforces rate limits too) → the same; 418 → banned until
/// the later of Retry-After and the body's "banned until"; a body with -1003 on any
/// other failed status is treated as the 429 it stands for. -1015 (too many new orders)
/// is an account's order limit, not the IP's: it stops new orders only (see
/// [`order_limit_wait`]), never cancels or reads, so it is no verdict here.
pub fn classify(status: u16, retry_after_header: Option<&str>, body: &[u8], now_ms: i64) -> Verdict {
    if (200..300).contains(&status) {
        // A success carries no error code; its body (up to megabytes of depth) is not read twice.
        return Verdict::Ok;
    }
    let retry_after = retry_after_secs(retry_after_header);
    if retry_after_header.is_some() && retry_after.is_none() {
        tracing::warn!(value = retry_after_header, "unreadable Retry-After header");
    }
    let (code, message) = body_error(body);
    let ban_in_body = banned_until_in(&message);
    match (status, code) {
        (418, _) => {
            let from_header = retry_after.map(|d| now_ms + d.as_millis() as i64);
            banned([from_header, ban_in_body], now_ms, "http 418")
        }
        (_, Some(-1003)) if ban_in_body.is_some() => banned([ban_in_body, None], now_ms, "code -1003"),
        (_, Some(-1015)) => Verdict::Ok,
        (429, _) | (_, Some(-1003)) => throttled(retry_after, "http 429"),
        (403, _) => throttled(retry_after, "http 403 (firewall)"),
        _ => Verdict::Ok,
    }
}

/// How long new orders must wait after a -1015 answer ("too many new orders"), from its
/// Retry-After (seconds, REST) or `retryAfter` (epoch ms, WebSocket API); the safe default
/// when neither is readable. `None` when the answer is not a -1015.
pub fn order_limit_wait(code: Option<i64>, retry_after: Option<Duration>) -> Option<Duration> {
    if code != Some(-1015) {
        return None;
    }
    Some(retry_after.unwrap_or_else(|| {
        tracing::warn!("-1015 without a readable Retry-After; holding new orders for the default");
        DEFAULT_RETRY_AFTER
    }))
}

/// [`order_limit_wait`] of an HTTP answer.
pub fn http_order_limit_wait(retry_after_header: Option<&str>, body: &[u8]) -> Option<Duration> {
    let (code, _) = body_error(body);
    order_limit_wait(code, retry_after_secs(retry_after_header))
}

/// [`order_limit_wait`] of a WebSocket API answer.
pub fn ws_order_limit_wait(response: &WsApiResponse, now_ms: i64) -> Option<Duration> {
    let error = response.error.as_ref()?;
    let retry_at = error
        .data
        .as_ref()
        .and_then(|d| d.get("retryAfter"))
        .and_then(Value::as_i64);
    let wait = retry_at.map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64).min(MAX_WAIT));
    order_limit_wait(Some(error.code), wait)
}

/// Classifies a WebSocket API error (`{"status": .., "error": {"code", "msg",
/// "data": {"retryAfter": <epoch ms>}}}`): `status` is the response's status,
/// `error` its `error` object.
pub fn classify_ws_error(status: u16, error: &Value, now_ms: i64) -> Verdict {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("msg").and_then(Value::as_str).unwrap_or_default();
    let retry_at = error
        .get("data")
        .and_then(|d| d.get("retryAfter"))
        .and_then(Value::as_i64);
    let ban_in_msg = banned_until_in(message);
    match (status, code) {
        (418, _) => banned([retry_at, ban_in_msg], now_ms, "websocket 418"),
        (_, Some(-1003)) if ban_in_msg.is_some() => banned([ban_in_msg, retry_at], now_ms, "websocket -1003"),
        (_, Some(-1015)) => Verdict::Ok,
        (429 | 403, _) | (_, Some(-1003)) => {
            let wait = retry_at.map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64));
            throttled(wait.map(|w| w.min(MAX_WAIT)), "websocket 429")
        }
        _ => Verdict::Ok,
    }
}

/// What a WebSocket API answer tells the ledger: the usage in its `rateLimits`, and its error's verdict.
pub fn ws_api_observation(response: &WsApiResponse, now_ms: i64) -> (Vec<ServerUsage>, Verdict) {
    let verdict = match &response.error {
        Some(error) => match serde_json::to_value(error) {
            Ok(error) => classify_ws_error(response.status, &error, now_ms),
            Err(_) => Verdict::Ok,
        },
        None => Verdict::Ok,
    };
    let usage = response
        .rate_limits
        .iter()
        .filter_map(|entry| {
            let kind = PoolKind::parse(&entry.rate_limit_type)?;
            Some(ServerUsage {
                scope: scope_of(kind),
                kind,
                interval: Interval::new(IntervalUnit::parse(&entry.interval)?, entry.interval_num),
                used: entry.count?,
            })
        })
        .collect();
    (usage, verdict)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use IntervalUnit::*;
    use PoolKind::*;

    #[test]
    fn rate_limits_parse_every_entry_and_interval() {
        let entries = vec![
            json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}),
            json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}),
            json!({"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000}),
            json!({"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000}),
            json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "HOUR", "intervalNum": 1, "limit": 100000}),
        ];
        let limits = parse_rate_limits(&entries);
        assert!(limits.contains(&RateLimit::new(Orders, Second, 10, 100)));
        assert!(limits.contains(&RateLimit::new(RequestWeight, Hour, 1, 100_000)));
        assert!(limits.contains(&RateLimit::new(Orders, Day, 1, 200_000)));
        // CONNECTIONS was not announced: the documented default stays.
        assert!(limits.contains(&RateLimit::new(Connections, Minute, 5, 300)));
        assert_eq!(limits.len(), 6);
    }

    #[test]
    fn bad_entries_are_skipped_and_their_kind_keeps_its_default() {
        let entries = vec![
            json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "FORTNIGHT", "intervalNum": 1, "limit": 10}),
            json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 0}),
            json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": "lots"}),
            json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 1_000_000_000_000u64}),
            json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 0, "limit": 5}),
            json!({"rateLimitType": "MYSTERY", "interval": "SECOND", "intervalNum": 1, "limit": 5}),
            json!("not an object"),
            json!({"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 1, "limit": 1000}),
        ];
        let mut limits = parse_rate_limits(&entries);
        limits.sort_by_key(|l| (l.kind, l.interval));
        let mut expected: Vec<RateLimit> = spot_defaults()
            .into_iter()
            .filter(|l| l.kind != RawRequests)
            .chain([RateLimit::new(RawRequests, Minute, 1, 1000)])
            .collect();
        expected.sort_by_key(|l| (l.kind, l.interval));
        assert_eq!(limits, expected);
        assert_eq!(parse_rate_limits(&[]), spot_defaults());
    }

    #[test]
    fn usage_headers_with_any_interval() {
        let usage = parse_usage_headers([
            ("X-MBX-USED-WEIGHT-1M", "1200"),
            ("x-mbx-used-weight-10s", "40"),
            ("X-Mbx-Order-Count-5M", "3"),
            ("X-MBX-ORDER-COUNT-1D", " 77 "),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(
            usage,
            vec![
                ServerUsage {
                    scope: scope_of(RequestWeight),
                    kind: RequestWeight,
                    interval: Interval::new(Minute, 1),
                    used: 1200
                },
                ServerUsage {
                    scope: scope_of(RequestWeight),
                    kind: RequestWeight,
                    interval: Interval::new(Second, 10),
                    used: 40
                },
                ServerUsage {
                    scope: scope_of(Orders),
                    kind: Orders,
                    interval: Interval::new(Minute, 5),
                    used: 3
                },
                ServerUsage {
                    scope: scope_of(Orders),
                    kind: Orders,
                    interval: Interval::new(Day, 1),
                    used: 77
                },
            ]
        );
    }

    #[test]
    fn bad_usage_headers_are_ignored() {
        let usage = parse_usage_headers([
            ("X-MBX-USED-WEIGHT-1M", "-5"),
            ("X-MBX-USED-WEIGHT-1M", "many"),
            ("X-MBX-USED-WEIGHT-1M", "99999999999999"),
            ("X-MBX-USED-WEIGHT-1X", "5"),
            ("X-MBX-USED-WEIGHT-M", "5"),
            ("X-MBX-USED-WEIGHT-", "5"),
            ("X-MBX-USED-WEIGHT-0S", "5"),
            ("X-MBX-ORDER-COUNT-1é", "5"),
        ]);
        assert!(usage.is_empty(), "{usage:?}");
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_429_waits_for_retry_after_or_a_safe_default() {
        let body = br#"{"code":-1003,"msg":"Too much request weight used"}"#;
        assert_eq!(
            classify(429, Some("7"), body, NOW),
            Verdict::Throttled {
                retry_after: Duration::from_secs(7)
            }
        );
        for bad in [None, Some("soon"), Some("-3"), Some("Wed, 21 Oct 2015 07:28:00 GMT")] {
            assert_eq!(
                classify(429, bad, body, NOW),
                Verdict::Throttled {
                    retry_after: DEFAULT_RETRY_AFTER
                },
                "{bad:?}"
            );
        }
        assert_eq!(
            classify(429, Some("0"), b"", NOW),
            Verdict::Throttled {
                retry_after: Duration::from_secs(1)
            },
            "never a zero wait"
        );
    }

    #[test]
    fn a_418_bans_until_the_later_of_header_and_body() {
        let body = br#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000600000. Please use WebSocket Streams."}"#;
        assert_eq!(
            classify(418, Some("120"), body, NOW),
            Verdict::Banned {
                until_ms: 1_700_000_600_000
            }
        );
        assert_eq!(
            classify(418, Some("900"), body, NOW),
            Verdict::Banned {
                until_ms: NOW + 900_000
            }
        );
        assert_eq!(
            classify(418, None, b"<html>teapot</html>", NOW),
            Verdict::Banned {
                until_ms: NOW + DEFAULT_BAN.as_millis() as i64
            }
        );
        // The banned body on another status still means banned.
        assert_eq!(
            classify(403, None, body, NOW),
            Verdict::Banned {
                until_ms: 1_700_000_600_000
            }
        );
    }

    #[test]
    fn body_codes_classify_without_the_status() {
        let orders = br#"{"code":-1015,"msg":"Too many new orders; current limit is 100 orders per 10 SECOND."}"#;
        // Too many new orders holds new orders only (not the IP): no verdict, an order wait.
        assert_eq!(classify(429, Some("3"), orders, NOW), Verdict::Ok);
        assert_eq!(http_order_limit_wait(Some("3"), orders), Some(Duration::from_secs(3)));
        assert_eq!(http_order_limit_wait(None, orders), Some(DEFAULT_RETRY_AFTER));
        assert_eq!(http_order_limit_wait(Some("3"), br#"{"code":-1003,"msg":"m"}"#), None);
        // The firewall's 403 backs off like a 429.
        assert_eq!(
            classify(403, Some("7"), b"<html>403 Forbidden</html>", NOW),
            Verdict::Throttled {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(
            classify(403, None, b"", NOW),
            Verdict::Throttled {
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
        assert_eq!(classify(400, None, br#"{"code":-2010,"msg":"no"}"#, NOW), Verdict::Ok);
        assert_eq!(classify(200, None, b"[]", NOW), Verdict::Ok);
        let quoted = br#"{"symbol":"BTCUSDT","note":"IP banned until 1700000000000","code":-1003}"#;
        assert_eq!(
            classify(200, None, quoted, NOW),
            Verdict::Ok,
            "a success is never a ban"
        );
    }

    #[test]
    fn websocket_errors_carry_epoch_ms() {
        let err = json!({"code": -1003, "msg": "Too much request weight used", "data": {"serverTime": NOW, "retryAfter": NOW + 4_000}});
        assert_eq!(
            classify_ws_error(429, &err, NOW),
            Verdict::Throttled {
                retry_after: Duration::from_secs(4)
            }
        );
        let ban = json!({"code": -1003, "msg": "Way too much request weight used; IP banned until 1700000300000.", "data": {"retryAfter": NOW + 300_000}});
        assert_eq!(
            classify_ws_error(418, &ban, NOW),
            Verdict::Banned {
                until_ms: NOW + 300_000
            }
        );
        assert_eq!(classify_ws_error(429, &json!({"code": -1015}), NOW), Verdict::Ok);
        assert_eq!(
            classify_ws_error(403, &json!({"code": -1, "msg": "WAF"}), NOW),
            Verdict::Throttled {
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
        assert_eq!(classify_ws_error(400, &json!({"code": -1100}), NOW), Verdict::Ok);
    }
}
