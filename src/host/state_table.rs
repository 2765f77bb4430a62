//! The `state` table: carried across hot reloads and persisted as JSON.
//!
//! Only numbers, strings, booleans and nested tables are kept; anything else (functions,
//! userdata, coroutines) is dropped with a warning. A cycle, or more than [`MAX_VALUES`] values
//! or [`MAX_TEXT_BYTES`] of text, is an error naming where: the copy never walks more than that, however
//! tables are shared (a table reached by several paths is copied, and counted, once per path). Tables that are sequences
//! become JSON arrays; other tables become objects, with non-string keys written as
//! `[key]` so they come back as numbers.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number};

/// Deepest nesting kept.
const MAX_DEPTH: usize = 64;
/// Most values (of any kind, tables included) a saved `state` may hold.
pub const MAX_VALUES: usize = 1_000_000;
/// Most bytes of text (keys and strings) a saved `state` may hold.
pub const MAX_TEXT_BYTES: usize = 64 << 20;
/// Longest path shown in an error.
const MAX_PATH_SHOWN: usize = 200;

/// Why `state` cannot be copied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("{path} refers back to {ancestor}, a cycle: state must be plain data (it is saved as JSON)")]
    Cycle { path: String, ancestor: String },
    #[error(
        "state is too large: over {MAX_VALUES} values or {} MiB of text (reached at {path}; a table reached by several paths counts once per path)",
        MAX_TEXT_BYTES >> 20
    )]
    TooLarge { path: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateKey {
    Int(i64),
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Table(Vec<(StateKey, StateValue)>),
}

impl StateValue {
    pub fn empty() -> StateValue {
        StateValue::Table(Vec::new())
    }

    /// Copies a Lua value, dropping what cannot be kept (reported in `warnings`).
    pub fn from_lua(value: &Value, warnings: &mut Vec<String>) -> Result<StateValue, StateError> {
        let mut copy = Copy {
            warnings,
            ancestors: Vec::new(),
            values: 0,
            text: 0,
        };
        Ok(copy.value(value, "state")?.unwrap_or_else(StateValue::empty))
    }

    pub fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            StateValue::Bool(b) => Value::Boolean(*b),
            StateValue::Int(i) => Value::Integer(*i),
            StateValue::Num(n) => Value::Number(*n),
            StateValue::Str(s) => Value::String(lua.create_string(s)?),
            StateValue::Table(entries) => {
                let table = lua.create_table_with_capacity(0, entries.len())?;
                for (key, value) in entries {
                    let key = match key {
                        StateKey::Int(i) => Value::Integer(*i),
                        StateKey::Num(n) => Value::Number(*n),
                        StateKey::Str(s) => Value::String(lua.create_string(s)?),
                    };
                    table.raw_set(key, value.to_lua(lua)?)?;
                }
                Value::Table(table)
            }
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            StateValue::Bool(b) => serde_json::Value::Bool(*b),
            StateValue::Int(i) => serde_json::Value::from(*i),
            StateValue::Num(n) => Number::from_f64(*n).map_or(serde_json::Value::Null, serde_json::Value::Number),
            StateValue::Str(s) => serde_json::Value::String(s.clone()),
            StateValue::Table(entries) => {
                if let Some(items) = as_sequence(entries) {
                    return serde_json::Value::Array(items.iter().map(|v| v.to_json()).collect());
                }
                let mut map = Map::new();
                for (key, value) in entries {
                    let key = match key {
                        StateKey::Str(s) => s.clone(),
                        StateKey::Int(i) => format!("[{i}]"),
                        StateKey::Num(n) => format!("[{n}]"),
                    };
                    map.insert(key, value.to_json());
                }
                serde_json::Value::Object(map)
            }
        }
    }

    pub fn from_json(json: &serde_json::Value) -> Option<StateValue> {
        Some(match json {
            serde_json::Value::Null => return None,
            serde_json::Value::Bool(b) => StateValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => StateValue::Int(i),
                None => StateValue::Num(n.as_f64()?),
            },
            serde_json::Value::String(s) => StateValue::Str(s.clone()),
            serde_json::Value::Array(items) => StateValue::Table(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((StateKey::Int(i as i64 + 1), StateValue::from_json(v)?)))
                    .collect(),
            ),
            serde_json::Value::Object(map) => StateValue::Table(
                map.iter()
                    .filter_map(|(k, v)| Some((parse_key(k), StateValue::from_json(v)?)))
                    .collect(),
            ),
        })
    }
}

fn parse_key(key: &str) -> StateKey {
    if let Some(inner) = key.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
        if let Ok(i) = inner.parse::<i64>() {
            return StateKey::Int(i);
        }
        if let Ok(n) = inner.parse::<f64>() {
            return StateKey::Num(n);
        }
    }
    StateKey::Str(key.to_owned())
}

/// The values of a table whose keys are exactly 1..n.
fn as_sequence(entries: &[(StateKey, StateValue)]) -> Option<Vec<&StateValue>> {
    if entries.is_empty() {
        return None;
    }
    let mut items: Vec<Option<&StateValue>> = vec![None; entries.len()];
    for (key, value) in entries {
        let StateKey::Int(i) = key else { return None };
        let slot = items.get_mut(usize::try_from(*i).ok()?.checked_sub(1)?)?;
        *slot = Some(value);
    }
    items.into_iter().collect()
}

/// One copy of `state`: where it is, and how much it has copied so far.
struct Copy<'a> {
    warnings: &'a mut Vec<String>,
    /// The tables enclosing the value being copied, with their paths.
    ancestors: Vec<(*const c_void, String)>,
    values: usize,
    text: usize,
}

impl Copy<'_> {
    fn count(&mut self, path: &str, text: usize) -> Result<(), StateError> {
        self.values += 1;
        self.text += text;
        if self.values > MAX_VALUES || self.text > MAX_TEXT_BYTES {
            return Err(StateError::TooLarge { path: shown(path) });
        }
        Ok(())
    }

    fn value(&mut self, value: &Value, path: &str) -> Result<Option<StateValue>, StateError> {
        Ok(Some(match value {
            Value::Boolean(b) => StateValue::Bool(*b),
            Value::Integer(i) => StateValue::Int(*i),
            Value::Number(n) => StateValue::Num(*n),
            Value::String(s) => {
                let bytes = s.as_bytes();
                self.count(path, bytes.len())?;
                return Ok(Some(StateValue::Str(String::from_utf8_lossy(&bytes).into_owned())));
            }
            Value::Table(table) => {
                let id = table.to_pointer();
                if let Some((_, ancestor)) = self.ancestors.iter().find(|(t, _)| *t == id) {
                    return Err(StateError::Cycle {
                        path: shown(path),
                        ancestor: shown(ancestor),
                    });
                }
                if self.ancestors.len() >= MAX_DEPTH {
                    self.warnings.push(format!("{}: nested too deep; dropped", shown(path)));
                    return Ok(None);
                }
                self.ancestors.push((id, path.to_owned()));
                let copied = self.table(table, path);
                self.ancestors.pop();
                copied?
            }
            other => {
                self.warnings.push(format!(
                    "{}: a {} cannot be kept in state; dropped",
                    shown(path),
                    other.type_name()
                ));
                return Ok(None);
            }
        }))
    }

    fn table(&mut self, table: &Table, path: &str) -> Result<StateValue, StateError> {
        self.count(path, 0)?;
        let mut entries = Vec::new();
        for pair in table.clone().pairs::<Value, Value>() {
            let Ok((key, value)) = pair else { continue };
            let (key, label) = match &key {
                Value::String(s) => {
                    let text = s.to_string_lossy();
                    self.count(path, text.len())?;
                    let label = format!("{path}.{text}");
                    (StateKey::Str(text), label)
                }
                Value::Integer(i) => (StateKey::Int(*i), format!("{path}[{i}]")),
                Value::Number(n) => (StateKey::Num(*n), format!("{path}[{n}]")),
                other => {
                    self.warnings.push(format!(
                        "{}: a {} key cannot be kept in state; dropped",
                        shown(path),
                        other.type_name()
                    ));
                    continue;
                }
            };
            self.count(&label, 0)?;
            if let Some(value) = self.value(&value, &label)? {
                entries.push((key, value));
            }
        }
        Ok(StateValue::Table(entries))
    }
}

/// A path short enough for a log line.
fn shown(path: &str) -> String {
    if path.len() <= MAX_PATH_SHOWN {
        return path.to_owned();
    }
    let mut end = MAX_PATH_SHOWN;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// `state_dir/strategies/<name>.json`, with every byte of the name other than ASCII letters,
/// digits, `-` and `_` written as `%XX`: distinct names get distinct files (`acct.main` and
/// `acct_main` no longer share one), and names made of those characters only keep the file
/// they always had.
pub fn file_for(state_dir: &Path, name: &str) -> PathBuf {
    let mut safe = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            safe.push(byte as char);
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    state_dir.join("strategies").join(format!("{safe}.json"))
}

/// The saved state, if there is a readable one.
pub fn load(file: &Path) -> Result<Option<StateValue>, String> {
    match std::fs::read(file) {
        Ok(bytes) => {
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            Ok(StateValue::from_json(&json))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("{}: {err}", file.display())),
    }
}

/// Writes atomically (temporary file, then rename) so a crash never leaves half a file.
pub fn save(file: &Path, state: &StateValue) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&state.to_json())?)?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| format!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_lua_and_json() {
        let lua = Lua::new();
        let value: Value = lua
            .load(r#"return { n = 1, x = 2.5, s = "hi", list = {1, 2, 3}, map = {[7] = true}, f = print }"#)
            .eval()
            .unwrap();
        let mut warnings = Vec::new();
        let state = StateValue::from_lua(&value, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("state.f"));
        let json = state.to_json();
        assert_eq!(json["list"], serde_json::json!([1, 2, 3]));
        assert_eq!(json["map"]["[7]"], serde_json::json!(true));
        let back = StateValue::from_json(&json).unwrap();
        let table = back.to_lua(&lua).unwrap();
        lua.globals().set("t", table).unwrap();
        let ok: bool = lua
            .load(r#"return t.n == 1 and t.x == 2.5 and t.s == "hi" and t.list[3] == 3 and t.map[7] == true"#)
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn a_cycle_is_an_error_naming_its_path() {
        let lua = Lua::new();
        let value: Value = lua
            .load(r#"local s = { a = { b = {} } } s.a.b.c = s.a return s"#)
            .eval()
            .unwrap();
        let err = StateValue::from_lua(&value, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            StateError::Cycle {
                path: "state.a.b.c".into(),
                ancestor: "state.a".into()
            }
        );
    }

    #[test]
    fn shared_tables_are_copied_but_the_copy_is_bounded() {
        let lua = Lua::new();
        // One shared table, copied at both paths.
        let value: Value = lua
            .load(r#"local t = { 1, 2 } return { x = t, y = t }"#)
            .eval()
            .unwrap();
        let copy = StateValue::from_lua(&value, &mut Vec::new()).unwrap();
        assert_eq!(copy.to_json()["y"], serde_json::json!([1, 2]));
        // 2^60 paths through 60 levels of two references to the same table: refused in bounded time.
        let value: Value = lua
            .load(r#"local t = {} for i = 1, 60 do t = { a = t, b = t } end return t"#)
            .eval()
            .unwrap();
        let started = std::time::Instant::now();
        let err = StateValue::from_lua(&value, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, StateError::TooLarge { ref path } if path.starts_with("state.")),
            "{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn file_names_are_distinct_for_distinct_names_and_unchanged_for_plain_ones() {
        let dir = Path::new("/s");
        assert_eq!(file_for(dir, "acct_main"), dir.join("strategies/acct_main.json"));
        assert_eq!(file_for(dir, "grid-1"), dir.join("strategies/grid-1.json"));
        assert_eq!(file_for(dir, "acct.main"), dir.join("strategies/acct%2Emain.json"));
        assert_ne!(file_for(dir, "a%2E"), file_for(dir, "a."));
    }
}
