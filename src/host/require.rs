//! `require` for strategies: modules come only from the strategy's own folder and the
//! stdlib folder, are cached per VM, and every file loaded is recorded so hot reload
//! can watch it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlua::{ChunkMode, Lua, Value};
use parking_lot::Mutex;

/// Files a VM has loaded (the strategy file first); shared with the host for watching.
pub type LoadedFiles = Arc<Mutex<Vec<PathBuf>>>;

/// Installs the `require` global. `roots` are searched in order.
pub fn install(lua: &Lua, roots: Vec<PathBuf>, files: LoadedFiles) -> mlua::Result<()> {
    let cache = lua.create_table()?;
    let roots: Vec<PathBuf> = roots
        .into_iter()
        .filter_map(|root| match root.canonicalize() {
            Ok(root) => Some(root),
            Err(err) => {
                tracing::warn!(root = %root.display(), "require: module folder left out: {err}");
                None
            }
        })
        .collect();
    let require = lua.create_function(move |lua, name: String| {
        if let Some(module) = cache.raw_get::<Option<Value>>(name.as_str())? {
            return Ok(module);
        }
        if !is_valid_module_name(&name) {
            return Err(mlua::Error::runtime(format!(
                "require: invalid module name '{name}' (expected names like \"indicators\" or \"books.local\")"
            )));
        }
        let path = resolve(&roots, &name).ok_or_else(|| {
            let searched: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            mlua::Error::runtime(format!("require: module '{name}' not found in {}", searched.join(", ")))
        })?;
        let source = read_source(&path)
            .map_err(|err| mlua::Error::runtime(format!("require: cannot read {}: {err}", path.display())))?;
        files.lock().push(path.clone());
        let chunk = lua
            .load(source)
            .set_name(format!("@{}", path.display()))
            .set_mode(ChunkMode::Text)
            .into_function()?;
        let module = match chunk.call::<Value>(name.as_str())? {
            Value::Nil => Value::Boolean(true),
            other => other,
        };
        cache.raw_set(name.as_str(), module.clone())?;
        Ok(module)
    })?;
    lua.globals().raw_set("require", require)
}

/// Largest Lua source file a strategy or module may be (a bigger one is refused, never read whole).
pub const MAX_SOURCE_BYTES: u64 = 8 << 20;

/// Reads a strategy or module file of at most [`MAX_SOURCE_BYTES`].
pub fn read_source(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |err: std::io::Error| err.to_string();
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut source = Vec::new();
    // Reading one byte past the bound tells a file that grew after a size check apart.
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut source)
        .map_err(cannot)?;
    if source.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!(
            "larger than {} MiB, the limit for a Lua source file",
            MAX_SOURCE_BYTES >> 20
        ));
    }
    Ok(source)
}

/// `^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$`
pub fn is_valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The first root holding `name` as a file that, once canonicalised (symlinks followed),
/// still lies inside that root.
fn resolve(roots: &[PathBuf], name: &str) -> Option<PathBuf> {
    let relative: PathBuf = format!("{}.lua", name.replace('.', "/")).into();
    roots.iter().find_map(|root| {
        let candidate = root.join(&relative).canonicalize().ok()?;
        (candidate.starts_with(root) && candidate.is_file()).then_some(candidate)
    })
}

/// The folder a strategy's own modules live in.
pub fn strategy_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_validated() {
        assert!(is_valid_module_name("indicators"));
        assert!(is_valid_module_name("books.local_2"));
        assert!(!is_valid_module_name("../etc/passwd"));
        assert!(!is_valid_module_name("Socket"));
        assert!(!is_valid_module_name("a..b"));
        assert!(!is_valid_module_name("a/b"));
        assert!(!is_valid_module_name(""));
        assert!(!is_valid_module_name("1abc"));
    }
}
