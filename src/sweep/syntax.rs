//! Sweep-file values beyond the shared TOML reader (`train::toml`): labels for result tables
//! and the seed list.

use crate::train::Value;

/// What a result table shows for a grid value: strings without their quotes.
pub(super) fn label_of(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        v => v.to_string(),
    }
}

pub(super) fn seed_list(value: Value) -> std::result::Result<Vec<u64>, String> {
    let items = match value {
        Value::List(items) => items,
        single @ Value::Int(_) => vec![single],
        v => {
            return Err(format!(
                "seeds must be a list of non-negative integers, got {v}"
            ));
        }
    };
    if items.is_empty() {
        return Err("seeds is empty".into());
    }
    let mut seeds = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Int(i) if i >= 0 && !seeds.contains(&(i as u64)) => seeds.push(i as u64),
            Value::Int(i) if i >= 0 => return Err(format!("seed {i} is listed twice")),
            v => return Err(format!("seeds must be non-negative integers, got {v}")),
        }
    }
    Ok(seeds)
}
