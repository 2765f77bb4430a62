//! What plain Lua values mean to the host: a value's type name as Lua names it, and a number of
//! milliseconds as a `Duration`. A leaf: both the strategy API (`api/`) and the spec check use it.

use std::time::Duration;

use mlua::Value;

/// The type name Lua's own `type()` gives (integers are numbers).
pub fn lua_type(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "number",
        other => other.type_name(),
    }
}

/// Longest duration, in milliseconds, a strategy may give (waits, timer periods): 30 days.
pub const MAX_DURATION_MS: f64 = 30.0 * 24.0 * 3600.0 * 1000.0;

/// A number of milliseconds from Lua as a `Duration`, up to 30 days (see [`duration_ms_up_to`]).
pub fn duration_ms(value: &Value) -> Result<Duration, String> {
    duration_ms_up_to(value, MAX_DURATION_MS, "30 days")
}

/// Every number of milliseconds from Lua that becomes a `Duration` goes through here: NaN,
/// negative and values above `max_ms` (huge ones would panic in `Duration` or in `Instant`
/// arithmetic) are refused with a message naming the limits (`max_name` says `max_ms` in words).
pub fn duration_ms_up_to(value: &Value, max_ms: f64, max_name: &str) -> Result<Duration, String> {
    let ms = match value {
        Value::Integer(ms) => *ms as f64,
        Value::Number(ms) => *ms,
        other => return Err(format!("a number of milliseconds expected, got {}", lua_type(other))),
    };
    if !(0.0..=max_ms).contains(&ms) {
        return Err(format!(
            "milliseconds must be from 0 to {max_ms} ({max_name}), got {ms}"
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}
