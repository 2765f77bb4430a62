//! The `state` table: carried across hot reloads and persisted as JSON.
//!
//! Only numbers, strings, booleans and nested tables are kept; anything else (functions,
//! userdata, coroutines, cycles) is dropped with a warning. Tables that are sequences
//! become JSON arrays; other tables become objects, with non-string keys written as
//! `[key]` so they come back as numbers.

use std::path::{Path, PathBuf};

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number};

/// Deepest nesting kept (also stops cycles).
const MAX_DEPTH: usize = 64;

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
    pub fn from_lua(value: &Value, warnings: &mut Vec<String>) -> StateValue {
        capture(value, "state", 0, warnings).unwrap_or_else(StateValue::empty)
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

fn capture(value: &Value, path: &str, depth: usize, warnings: &mut Vec<String>) -> Option<StateValue> {
    Some(match value {
        Value::Boolean(b) => StateValue::Bool(*b),
        Value::Integer(i) => StateValue::Int(*i),
        Value::Number(n) => StateValue::Num(*n),
        Value::String(s) => StateValue::Str(s.to_string_lossy()),
        Value::Table(table) if depth < MAX_DEPTH => capture_table(table, path, depth, warnings),
        Value::Table(_) => {
            warnings.push(format!("{path}: nested too deep (or a cycle); dropped"));
            return None;
        }
        other => {
            warnings.push(format!(
                "{path}: a {} cannot be kept in state; dropped",
                other.type_name()
            ));
            return None;
        }
    })
}

fn capture_table(table: &Table, path: &str, depth: usize, warnings: &mut Vec<String>) -> StateValue {
    let mut entries = Vec::new();
    for pair in table.clone().pairs::<Value, Value>() {
        let Ok((key, value)) = pair else { continue };
        let (key, label) = match &key {
            Value::String(s) => (
                StateKey::Str(s.to_string_lossy()),
                format!("{path}.{}", s.to_string_lossy()),
            ),
            Value::Integer(i) => (StateKey::Int(*i), format!("{path}[{i}]")),
            Value::Number(n) => (StateKey::Num(*n), format!("{path}[{n}]")),
            other => {
                warnings.push(format!(
                    "{path}: a {} key cannot be kept in state; dropped",
                    other.type_name()
                ));
                continue;
            }
        };
        if let Some(value) = capture(&value, &label, depth + 1, warnings) {
            entries.push((key, value));
        }
    }
    StateValue::Table(entries)
}

/// `state_dir/strategies/<name>.json`
pub fn file_for(state_dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
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
        let state = StateValue::from_lua(&value, &mut warnings);
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
}
