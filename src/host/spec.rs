//! What a strategy file declares, and its validation before anything trades.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlua::{Function, Table, Value};

use super::error::LoadError;
use crate::exchange::{StreamKey, StreamKind};

pub const DEFAULT_MARKET_WAIT: Duration = Duration::from_millis(5000);
pub const DEFAULT_ORDER_WAIT: Duration = Duration::from_millis(1000);

/// The callbacks a strategy may define, in the order the contract lists them.
pub const CALLBACKS: &[&str] = &[
    "on_start",
    "on_book",
    "on_depth",
    "on_trade",
    "on_kline",
    "on_order",
    "on_timer",
    "on_reload",
    "on_stop",
];
const SETTINGS: &[&str] = &[
    "name",
    "symbols",
    "streams",
    "max_wait_ms",
    "order_wait_ms",
    "stream_answers",
];
const KLINE_INTERVALS: &[&str] = &[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
];

/// A validated strategy declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyMeta {
    pub name: String,
    pub path: PathBuf,
    pub symbols: Vec<String>,
    pub streams: Vec<StreamKind>,
    /// Names of the callbacks it defines.
    pub callbacks: Vec<&'static str>,
    pub max_wait: Duration,
    pub order_wait: Duration,
    /// Market-data calls may be answered from the process's live streams (weight 0) unless a call says
    /// otherwise (`stream_answers = true` in the strategy table; default false).
    pub stream_answers: bool,
    /// Non-fatal findings (likely typos, dropped state values).
    pub warnings: Vec<String>,
    /// The strategy file and every module it loaded.
    pub files: Vec<PathBuf>,
}

impl StrategyMeta {
    /// Every (symbol, stream) pair the strategy subscribes to.
    pub fn stream_keys(&self) -> Vec<StreamKey> {
        let mut keys = Vec::with_capacity(self.symbols.len() * self.streams.len());
        for symbol in &self.symbols {
            for kind in &self.streams {
                keys.push(StreamKey {
                    symbol: symbol.clone(),
                    kind: kind.clone(),
                });
            }
        }
        keys
    }
}

/// The strategy's callbacks, as Lua functions of its VM.
#[derive(Default, Clone)]
pub struct Callbacks {
    pub on_start: Option<Function>,
    pub on_book: Option<Function>,
    pub on_depth: Option<Function>,
    pub on_trade: Option<Function>,
    pub on_kline: Option<Function>,
    pub on_order: Option<Function>,
    pub on_timer: Option<Function>,
    pub on_reload: Option<Function>,
    pub on_stop: Option<Function>,
}

impl Callbacks {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Function>> {
        Some(match name {
            "on_start" => &mut self.on_start,
            "on_book" => &mut self.on_book,
            "on_depth" => &mut self.on_depth,
            "on_trade" => &mut self.on_trade,
            "on_kline" => &mut self.on_kline,
            "on_order" => &mut self.on_order,
            "on_timer" => &mut self.on_timer,
            "on_reload" => &mut self.on_reload,
            "on_stop" => &mut self.on_stop,
            _ => return None,
        })
    }
}

/// Validates what a strategy chunk returned.
pub fn validate(
    path: &Path,
    returned: Value,
    known_symbol: &dyn Fn(&str) -> bool,
) -> Result<(StrategyMeta, Callbacks), LoadError> {
    let Value::Table(table) = returned else {
        return Err(LoadError::NotATable {
            path: path.to_path_buf(),
            got: super::lua_values::lua_type(&returned).to_owned(),
        });
    };
    let bad = |field: &str, expected: &'static str, got: &Value| LoadError::BadField {
        path: path.to_path_buf(),
        field: field.to_owned(),
        expected,
        got: super::lua_values::lua_type(got).to_owned(),
    };
    let mut warnings = Vec::new();
    let mut callbacks = Callbacks::default();
    for pair in table.clone().pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| LoadError::from_lua(&e))?;
        let Value::String(key) = key else {
            warnings.push(format!(
                "{}: ignoring non-string key in the strategy table",
                path.display()
            ));
            continue;
        };
        let key = key.to_string_lossy();
        if let Some(slot) = callbacks.slot(&key) {
            match value {
                Value::Function(f) => *slot = Some(f),
                other => return Err(bad(&key, "a function", &other)),
            }
        } else if !SETTINGS.contains(&key.as_str()) {
            let hint = suggest(&key, CALLBACKS.iter().chain(SETTINGS).copied())
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            warnings.push(format!("{}: unknown field '{key}'{hint}", path.display()));
        }
    }

    let name = match table.raw_get::<Value>("name").map_err(|e| LoadError::from_lua(&e))? {
        Value::Nil => default_name(path),
        Value::String(s) if !s.to_string_lossy().trim().is_empty() => s.to_string_lossy(),
        other => return Err(bad("name", "a non-empty string", &other)),
    };
    let symbols = string_list(&table, "symbols").map_err(|got| bad("symbols", "a list of strings", &got))?;
    for symbol in &symbols {
        if !known_symbol(symbol) {
            return Err(LoadError::UnknownSymbol {
                path: path.to_path_buf(),
                symbol: symbol.clone(),
            });
        }
    }
    let declared = string_list(&table, "streams").map_err(|got| bad("streams", "a list of strings", &got))?;
    let streams = if table.contains_key("streams").unwrap_or(false) {
        declared
            .iter()
            .map(|s| parse_stream(s).ok_or_else(|| unknown_stream(path, s)))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        inferred_streams(&callbacks)
    };
    let max_wait = wait_field(&table, "max_wait_ms", DEFAULT_MARKET_WAIT)
        .map_err(|got| bad("max_wait_ms", "a number of milliseconds from 0 to 30 days", &got))?;
    let order_wait = wait_field(&table, "order_wait_ms", DEFAULT_ORDER_WAIT)
        .map_err(|got| bad("order_wait_ms", "a number of milliseconds from 0 to 30 days", &got))?;
    let stream_answers = match table
        .raw_get::<Value>("stream_answers")
        .map_err(|e| LoadError::from_lua(&e))?
    {
        Value::Nil => false,
        Value::Boolean(allowed) => allowed,
        other => return Err(bad("stream_answers", "a boolean", &other)),
    };
    let defined = CALLBACKS
        .iter()
        .copied()
        .filter(|name| table.raw_get::<Value>(*name).is_ok_and(|v| v.is_function()))
        .collect();
    Ok((
        StrategyMeta {
            name,
            path: path.to_path_buf(),
            symbols,
            streams,
            callbacks: defined,
            max_wait,
            order_wait,
            stream_answers,
            warnings,
            files: Vec::new(),
        },
        callbacks,
    ))
}

/// The file name without `.lua`.
pub fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "strategy".to_owned())
}

/// "book", "depth", "trade" or "kline_<interval>".
pub fn parse_stream(name: &str) -> Option<StreamKind> {
    match name {
        "book" => Some(StreamKind::Book),
        "depth" => Some(StreamKind::Depth),
        "trade" => Some(StreamKind::Trade),
        _ => {
            let interval = name.strip_prefix("kline_")?;
            KLINE_INTERVALS
                .contains(&interval)
                .then(|| StreamKind::Kline(interval.to_owned()))
        }
    }
}

fn unknown_stream(path: &Path, stream: &str) -> LoadError {
    let kline_names: Vec<String> = KLINE_INTERVALS.iter().map(|i| format!("kline_{i}")).collect();
    let candidates = ["book", "depth", "trade"]
        .iter()
        .copied()
        .chain(kline_names.iter().map(String::as_str));
    LoadError::UnknownStream {
        path: path.to_path_buf(),
        stream: stream.to_owned(),
        suggestion: suggest(stream, candidates)
            .map(|s| format!(", did you mean {s}?"))
            .unwrap_or_default(),
    }
}

/// Without a `streams` field, the callbacks say what the strategy listens to.
fn inferred_streams(callbacks: &Callbacks) -> Vec<StreamKind> {
    let mut streams = Vec::new();
    if callbacks.on_book.is_some() {
        streams.push(StreamKind::Book);
    }
    if callbacks.on_depth.is_some() {
        streams.push(StreamKind::Depth);
    }
    if callbacks.on_trade.is_some() {
        streams.push(StreamKind::Trade);
    }
    streams
}

fn string_list(table: &Table, field: &str) -> Result<Vec<String>, Value> {
    match table.raw_get::<Value>(field).unwrap_or(Value::Nil) {
        Value::Nil => Ok(Vec::new()),
        Value::Table(list) => {
            let mut out = Vec::new();
            for item in list.sequence_values::<Value>() {
                match item {
                    Ok(Value::String(s)) => {
                        let s = s.to_string_lossy();
                        if !out.contains(&s) {
                            out.push(s);
                        }
                    }
                    Ok(other) => return Err(other),
                    Err(_) => return Err(Value::Nil),
                }
            }
            Ok(out)
        }
        other => Err(other),
    }
}

fn wait_field(table: &Table, field: &str, default: Duration) -> Result<Duration, Value> {
    match table.raw_get::<Value>(field).unwrap_or(Value::Nil) {
        Value::Nil => Ok(default),
        ms @ (Value::Integer(_) | Value::Number(_)) => super::lua_values::duration_ms(&ms).map_err(|_| ms),
        other => Err(other),
    }
}

/// The closest candidate within a small edit distance, for "did you mean ...?".
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        // A missing suffix ("max_wait" for "max_wait_ms") counts as one edit.
        .map(|c| {
            (
                if word.len() >= 4 && c.starts_with(word) {
                    1
                } else {
                    edit_distance(word, c)
                },
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_suggestions() {
        assert_eq!(edit_distance("on_boook", "on_book"), 1);
        assert_eq!(suggest("on_boook", CALLBACKS.iter().copied()), Some("on_book"));
        assert_eq!(suggest("symbol", SETTINGS.iter().copied()), Some("symbols"));
        assert_eq!(suggest("completely_else", CALLBACKS.iter().copied()), None);
    }

    #[test]
    fn streams_parse() {
        assert_eq!(parse_stream("book"), Some(StreamKind::Book));
        assert_eq!(parse_stream("kline_1m"), Some(StreamKind::Kline("1m".into())));
        assert_eq!(parse_stream("kline_7m"), None);
        assert_eq!(parse_stream("books"), None);
    }
}
