//! `log` and `print`: `string.format`-style logging, tagged with the strategy's name.
//!
//! Every line is bounded ([`MAX_LINE_BYTES`]): a strategy printing a huge string (in a loop) costs the host a
//! short line, not a copy of the string, and cannot flood the log.

use std::rc::Rc;
use std::time::Instant;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{host_function, publish, usage, ApiCtx};

/// The longest line, in bytes, a strategy can log; a longer one is cut and ends with [`cut_marker`].
pub const MAX_LINE_BYTES: usize = 8 * 1024;

#[derive(Clone, Copy)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let string: Table = lua.globals().raw_get("string")?;
    let format: Function = string.raw_get("format")?;
    let tostring: Function = lua.globals().raw_get("tostring")?;
    let m = lua.create_table()?;
    for (name, func, level) in [
        ("debug", "log.debug", Level::Debug),
        ("info", "log.info", Level::Info),
        ("warn", "log.warn", Level::Warn),
        ("error", "log.error", Level::Error),
    ] {
        let (format, tostring) = (format.clone(), tostring.clone());
        m.raw_set(
            name,
            host_function(lua, ctx, func, move |lua, c, args| {
                let line = render(lua, &format, &tostring, args.into_values())?;
                emit(c, level, &line);
                Ok(())
            })?,
        )?;
    }
    // `print` goes to the log at info level, tagged like `log`: the same name, the same bound.
    let print = host_function(lua, ctx, "print", move |_, c, args| {
        emit(c, Level::Info, &tab_joined(&tostring, &args.into_values()));
        Ok(())
    })?;
    lua.globals().raw_set("print", print)?;
    publish(lua, "log", m)
}

/// Bytes per second a strategy may write to the log, on average.
pub const LOG_BYTES_PER_SEC: f64 = 64.0 * 1024.0;
/// Bytes a strategy may write in one burst above the average.
pub const LOG_BURST_BYTES: f64 = 512.0 * 1024.0;
/// What a short line costs: a flood of empty lines is a flood too.
const MIN_LINE_COST: f64 = 128.0;

/// A token bucket over bytes: lines beyond it are counted, not written, and the count is
/// written with the next line that fits (or when the VM goes).
pub struct LogBudget {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl LogBudget {
    pub fn new() -> LogBudget {
        LogBudget {
            tokens: LOG_BURST_BYTES,
            refilled: Instant::now(),
            suppressed: 0,
        }
    }

    /// Whether a line of `len` bytes may be written now.
    fn admit(&mut self, len: usize) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * LOG_BYTES_PER_SEC;
        self.tokens = (self.tokens + refill).min(LOG_BURST_BYTES);
        self.refilled = now;
        let cost = (len as f64).max(MIN_LINE_COST);
        if self.tokens < cost {
            self.suppressed += 1;
            return false;
        }
        self.tokens -= cost;
        true
    }

    /// Writes the count of lines left out since the last one written, if any.
    pub fn flush(&mut self, strategy: &str) {
        if self.suppressed > 0 {
            tracing::warn!(
                strategy = %strategy,
                "{} log lines suppressed (over {} KiB/s)",
                self.suppressed,
                LOG_BYTES_PER_SEC / 1024.0
            );
            self.suppressed = 0;
        }
    }
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new()
    }
}

fn emit(c: &ApiCtx, level: Level, line: &str) {
    let strategy = c.strategy();
    {
        let mut budget = c.log_budget.borrow_mut();
        if !budget.admit(line.len()) {
            return;
        }
        budget.flush(&strategy);
    }
    match level {
        Level::Debug => tracing::debug!(strategy = %strategy, "{line}"),
        Level::Info => tracing::info!(strategy = %strategy, "{line}"),
        Level::Warn => tracing::warn!(strategy = %strategy, "{line}"),
        Level::Error => tracing::error!(strategy = %strategy, "{line}"),
    }
}

/// `string.format(fmt, ...)` when the first argument is a string, else the values' `tostring`s.
fn render(lua: &Lua, format: &Function, tostring: &Function, args: MultiValue) -> mlua::Result<String> {
    match args.front() {
        Some(Value::String(_)) if args.len() > 1 => {
            let text = format
                .call::<mlua::String>(args)
                .map_err(|err| usage(lua, format!("log: {}", crate::host::sandbox::error_text(&err))))?;
            let mut line = BoundedLine::default();
            line.push(&text.as_bytes());
            Ok(line.finish())
        }
        _ => Ok(tab_joined(tostring, &args)),
    }
}

/// The values' `tostring`s joined by tabs, as `print` writes them (a value whose `__tostring` fails shows its
/// type name), bounded.
fn tab_joined(tostring: &Function, values: &MultiValue) -> String {
    let mut line = BoundedLine::default();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            line.push(b"\t");
        }
        match value {
            // Strings are read in place: only the part that fits is copied.
            Value::String(s) => line.push(&s.as_bytes()),
            other => match tostring.call::<mlua::String>(other) {
                Ok(text) => line.push(&text.as_bytes()),
                Err(_) => line.push(other.type_name().as_bytes()),
            },
        }
    }
    line.finish()
}

/// A log line built from byte pieces, keeping the first [`MAX_LINE_BYTES`] and counting the rest.
#[derive(Default)]
struct BoundedLine {
    text: String,
    total: usize,
}

impl BoundedLine {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        let room = MAX_LINE_BYTES.saturating_sub(self.text.len());
        if room == 0 {
            return;
        }
        let mut kept = &bytes[..bytes.len().min(room)];
        if let Err(err) = std::str::from_utf8(kept) {
            if err.error_len().is_none() {
                // A character cut in two by the bound: leave it out rather than show a replacement mark.
                kept = &kept[..err.valid_up_to()];
            }
        }
        let piece = String::from_utf8_lossy(kept);
        // Replacement characters can make the piece longer than the bytes it came from.
        let mut end = piece.len().min(room);
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&piece[..end]);
    }

    fn finish(mut self) -> String {
        if self.total > self.text.len() {
            self.text.push_str(&cut_marker(self.total));
        }
        self.text
    }
}

/// What ends a line that was cut: how long it was.
pub fn cut_marker(total_bytes: usize) -> String {
    format!(" … [log line cut: {total_bytes} bytes in all]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(pieces: &[&[u8]]) -> String {
        let mut line = BoundedLine::default();
        for piece in pieces {
            line.push(piece);
        }
        line.finish()
    }

    #[test]
    fn short_lines_are_kept_whole() {
        assert_eq!(bounded(&[b"a", b"\t", b"b"]), "a\tb");
        assert_eq!(bounded(&[&[b'x'; MAX_LINE_BYTES]]).len(), MAX_LINE_BYTES);
    }

    #[test]
    fn long_lines_are_cut_with_their_length() {
        let huge = vec![b'x'; MAX_LINE_BYTES * 3];
        let line = bounded(&[b"start ", &huge]);
        assert!(line.starts_with("start xxx"));
        assert!(
            line.ends_with(&cut_marker(MAX_LINE_BYTES * 3 + 6)),
            "{}",
            &line[line.len() - 60..]
        );
        assert_eq!(line.len(), MAX_LINE_BYTES + cut_marker(MAX_LINE_BYTES * 3 + 6).len());
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "😀".repeat(MAX_LINE_BYTES); // four bytes each
        let line = bounded(&[b"x", text.as_bytes()]);
        let kept = line.split(" … [").next().unwrap();
        assert!(kept.len() <= MAX_LINE_BYTES && kept.len() >= MAX_LINE_BYTES - 3);
        assert!(!kept.contains('\u{fffd}'));
    }
}
