//! Environment overrides: `CAIRN_<SECTION>__<KEY>=value` replaces `section.key`, nesting with
//! further `__` (`CAIRN_P2P__LIMITS__MAX_CONNECTIONS`); `CAIRN_DATA_DIR` replaces `data_dir`.
//! A value is read as TOML when it parses as such (numbers, booleans, arrays) and as a string
//! otherwise. An override naming a key that does not exist is an error, never ignored.

use toml::{Table, Value};

use crate::error::ConfigError;

const PREFIX: &str = "CAIRN_";

/// One `CAIRN_…` variable, checked against the schema.
#[derive(Debug)]
pub(crate) struct Override {
    pub var: String,
    path: Vec<String>,
    value: Value,
}

/// The overrides in `vars`, in a deterministic order. `schema` is the default config as a table:
/// the set of keys that exist.
pub(crate) fn overrides(
    schema: &Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| is_config_override(name))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(var, raw)| {
            let path = key_path(&var);
            check_key_exists(&var, &path, schema)?;
            Ok(Override {
                var,
                path,
                value: parse_value(&raw),
            })
        })
        .collect()
}

impl Override {
    pub(crate) fn apply(&self, table: &mut Table) -> Result<(), ConfigError> {
        set(table, &self.path, self.value.clone(), &self.var)
    }
}

/// Other `CAIRN_` variables (the CLI's `CAIRN_API`, say) are not config keys.
fn is_config_override(name: &str) -> bool {
    name == "CAIRN_DATA_DIR" || (name.starts_with(PREFIX) && name.contains("__"))
}

fn key_path(var: &str) -> Vec<String> {
    var[PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect()
}

fn check_key_exists(var: &str, path: &[String], schema: &Table) -> Result<(), ConfigError> {
    let mut level = schema;
    for (depth, part) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        match level.get(part) {
            Some(Value::Table(inner)) if !last => level = inner,
            Some(Value::Table(_)) => {
                return Err(ConfigError::Env {
                    var: var.to_owned(),
                    message: format!("`{}` is a section; name one of its keys", path.join(".")),
                });
            }
            Some(_) if last => return Ok(()),
            _ => {
                return Err(ConfigError::Env {
                    var: var.to_owned(),
                    message: format!(
                        "there is no config key `{}`; see `cairn config show` for the keys",
                        path.join(".")
                    ),
                });
            }
        }
    }
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    let wrapped = format!("v = {raw}");
    match wrapped.parse::<Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn set(table: &mut Table, path: &[String], value: Value, var: &str) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut level = table;
    for part in parents {
        let entry = level
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        level = match entry {
            Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Env {
                    var: var.to_owned(),
                    message: format!("`{part}` in the config file is not a section"),
                });
            }
        };
    }
    level.insert(last.clone(), value);
    Ok(())
}
