//! The value syntax of sweep files: the config subset's scalars and lists, plus lists of quoted
//! strings that contain commas (`["tau=0.1,alpha=0.5", "tau=0.2"]`), which the config reader's
//! simpler list splitting cannot hold and a grid over `loss.params` needs.

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

/// Parses a value: a quoted string (commas allowed inside), a list (items split at top-level
/// commas, nested lists allowed) or a bare scalar as [`Value::parse`] reads it.
pub(super) fn parse_value(text: &str) -> std::result::Result<Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("missing value after `=`".into());
    }
    if let Some(inner) = t.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unclosed list '{t}'"))?;
        let items = split_top_level(inner)?;
        return items
            .into_iter()
            .map(parse_value)
            .collect::<std::result::Result<_, _>>()
            .map(Value::List);
    }
    if let Some(inner) = t.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unclosed string {t}"))?;
        if inner.contains('"') {
            return Err(format!(
                "a quote inside the string {t} (escapes are not supported)"
            ));
        }
        return Ok(Value::Str(inner.to_string()));
    }
    Ok(Value::parse(t))
}

/// Splits a list's inside at commas outside quotes and brackets; a trailing comma is allowed.
fn split_top_level(inner: &str) -> std::result::Result<Vec<&str>, String> {
    let (mut items, mut depth, mut quoted, mut start) = (Vec::new(), 0usize, false, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ']' in [{inner}]"))?
            }
            ',' if !quoted && depth == 0 => {
                items.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err(format!("unbalanced quotes or brackets in [{inner}]"));
    }
    let last = inner[start..].trim();
    if !last.is_empty() {
        items.push(last);
    }
    if items.iter().any(|s| s.is_empty()) {
        return Err(format!("empty item in [{inner}]"));
    }
    Ok(items)
}
