//! Binance rate-limit announcements, usage headers and 429/418 classification.
//!
//! PLACEHOLDER so the client compiles before the full version lands from the
//! ledger branch (which owns this file).

use std::time::Duration;

use crate::ledger::{Interval, IntervalUnit, PoolKind, RateLimit, ServerUsage, Verdict};

pub fn parse_rate_limits(entries: &[serde_json::Value]) -> Vec<RateLimit> {
    entries
        .iter()
        .filter_map(|e| {
            Some(RateLimit {
                kind: PoolKind::parse(e.get("rateLimitType")?.as_str()?)?,
                interval: Interval::new(
                    IntervalUnit::parse(e.get("interval")?.as_str()?)?,
                    u32::try_from(e.get("intervalNum")?.as_u64()?).ok()?,
                ),
                limit: e.get("limit")?.as_u64()?,
            })
        })
        .collect()
}

pub fn parse_usage_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<ServerUsage> {
    headers
        .into_iter()
        .filter_map(|(name, value)| {
            let upper = name.to_ascii_uppercase();
            let (kind, suffix) = if let Some(s) = upper.strip_prefix("X-MBX-USED-WEIGHT-") {
                (PoolKind::RequestWeight, s.to_string())
            } else if let Some(s) = upper.strip_prefix("X-MBX-ORDER-COUNT-") {
                (PoolKind::Orders, s.to_string())
            } else {
                return None;
            };
            let unit = IntervalUnit::from_letter(suffix.chars().last()?)?;
            let num: u32 = suffix[..suffix.len() - 1].parse().ok()?;
            Some(ServerUsage {
                kind,
                interval: Interval::new(unit, num),
                used: value.trim().parse().ok()?,
            })
        })
        .collect()
}

pub fn classify(status: u16, retry_after_header: Option<&str>, _body: &[u8], now_ms: i64) -> Verdict {
    let secs = retry_after_header.and_then(|v| v.trim().parse::<u64>().ok());
    match status {
        429 => Verdict::Throttled {
            retry_after: Duration::from_secs(secs.unwrap_or(60)),
        },
        418 => Verdict::Banned {
            until_ms: now_ms + 1000 * secs.unwrap_or(120) as i64,
        },
        _ => Verdict::Ok,
    }
}

/// WebSocket API errors: `error.data.retryAfter` is an epoch-ms timestamp.
pub fn classify_ws_error(status: u16, error: &serde_json::Value, now_ms: i64) -> Verdict {
    let until = error
        .get("data")
        .and_then(|d| d.get("retryAfter"))
        .and_then(|v| v.as_i64());
    match status {
        429 => Verdict::Throttled {
            retry_after: Duration::from_millis(until.map(|u| (u - now_ms).max(0) as u64).unwrap_or(60_000)),
        },
        418 => Verdict::Banned {
            until_ms: until.unwrap_or(now_ms + 120_000),
        },
        _ => Verdict::Ok,
    }
}
