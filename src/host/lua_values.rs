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

/// Every number of milliseconds from Lua that becomes a `Duration` goes through here: NaN,
/// negative and huge values (which would panic in `Duration` or in `Instant` arithmetic) are
/// refused with a message naming the limits.
pub fn duration_ms(value: &Value) -> Result<Duration, String> {
    let ms = match value {
        Value::Integer(ms) => *ms as f64,
        Value::Number(ms) => *ms,
        other => return Err(format!("a number of milliseconds expected, got {}", lua_type(other))),
    };
    if !(0.0..=MAX_DURATION_MS).contains(&ms) {
        return Err(format!(
            "milliseconds must be from 0 to {MAX_DURATION_MS} (30 days), got {ms}"
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}
