//! The TOML value syntax that run configurations and sweep files share: basic strings `"…"`
//! with TOML's escapes, literal strings `'…'`, lists (nested, items split at top-level commas,
//! a trailing comma allowed), and bare scalars as [`Value::parse`] reads them; `#` comments.
//! One reader, so a value means the same in a config, a `--set` and a sweep, and the writer
//! ([`quote`]) is its inverse: a checkpoint's configuration reads back to itself.

use super::config::Value;

/// Tracks whether a scan is inside a string: `"…"` (where `\"` does not close it) or `'…'`.
#[derive(Default)]
struct Strings {
    quote: Option<char>,
    escaped: bool,
}

impl Strings {
    /// Feeds the next character; true when it belongs to a string (its quotes included).
    fn feed(&mut self, c: char) -> bool {
        match self.quote {
            Some('"') if self.escaped => self.escaped = false,
            Some('"') if c == '\\' => self.escaped = true,
            Some(q) if c == q => self.quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => self.quote = Some(c),
            None => return false,
        }
        true
    }
}

/// The line without a trailing `#` comment (a `#` inside a string is kept; `\"` does not end a
/// basic string).
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut strings = Strings::default();
    for (i, c) in line.char_indices() {
        if !strings.feed(c) && c == '#' {
            return &line[..i];
        }
    }
    line
}

/// Reads a written value: a string, a list or a bare scalar. Errors say what is malformed and
/// quote the text: an unterminated or stray quote, an unclosed bracket, an empty list item,
/// an unknown escape.
pub(crate) fn read_value(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("missing value after `=`".into());
    }
    if let Some(inner) = t.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unclosed list {t}"))?;
        return split_top_level(inner)?
            .into_iter()
            .map(read_value)
            .collect::<Result<_, _>>()
            .map(Value::List);
    }
    if let Some(body) = t.strip_prefix('"') {
        return basic_string(body, t).map(Value::Str);
    }
    if let Some(body) = t.strip_prefix('\'') {
        return match body.strip_suffix('\'') {
            Some(inner) if !inner.contains('\'') => Ok(Value::Str(inner.to_string())),
            _ => Err(format!("unterminated or stray quote in {t}")),
        };
    }
    if t.contains(['"', '\'', '[', ']']) {
        return Err(format!("a stray quote or bracket in {t}"));
    }
    Ok(Value::parse(t))
}

/// The contents of a basic string whose opening quote is gone (`body` ends with the closing
/// one), escapes resolved.
fn basic_string(body: &str, whole: &str) -> Result<String, String> {
    let unterminated = || format!("unterminated or stray quote in {whole}");
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' if i + 1 == body.len() => return Ok(out),
            '"' => return Err(unterminated()),
            '\\' => {
                let (_, e) = chars.next().ok_or_else(unterminated)?;
                let hex = match e {
                    // `\'`, `\0` and `\u{…}` are Rust's escapes, in which configurations
                    // stored in checkpoints before TOML's were written: still read.
                    '"' | '\\' | '\'' => {
                        out.push(e);
                        continue;
                    }
                    '0' => {
                        out.push('\0');
                        continue;
                    }
                    'u' if body[i + 2..].starts_with('{') => {
                        let digits: String = chars
                            .by_ref()
                            .skip(1)
                            .take_while(|&(_, d)| d != '}')
                            .map(|(_, d)| d)
                            .collect();
                        let code = u32::from_str_radix(&digits, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad \\u{{…}} escape in {whole}"))?;
                        out.push(code);
                        continue;
                    }
                    'n' | 't' | 'r' | 'b' | 'f' => {
                        out.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            _ => '\u{c}',
                        });
                        continue;
                    }
                    'u' => 4,
                    'U' => 8,
                    other => return Err(format!("unknown escape \\{other} in {whole}")),
                };
                let digits: String = chars.by_ref().take(hex).map(|(_, d)| d).collect();
                let code = u32::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == hex)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad \\{e} escape in {whole}"))?;
                out.push(code);
            }
            _ => out.push(c),
        }
    }
    Err(unterminated())
}

/// `s` as a TOML basic string, the inverse of [`read_value`] (TOML's basic-string escapes are
/// JSON's).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::nn::json::write_string(&mut out, s);
    out
}

/// Splits a list's inside at commas outside strings and brackets; a trailing comma is allowed,
/// an empty item is not.
fn split_top_level(inner: &str) -> Result<Vec<&str>, String> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    let mut strings = Strings::default();
    for (i, c) in inner.char_indices() {
        if strings.feed(c) {
            continue;
        }
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ']' in [{inner}]"))?
            }
            ',' if depth == 0 => {
                items.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if strings.quote.is_some() || depth != 0 {
        return Err(format!("unbalanced quotes or brackets in [{inner}]"));
    }
    let last = inner[start..].trim();
    if !last.is_empty() {
        items.push(last);
    }
    if items.iter().any(|s| s.is_empty()) {
        return Err(format!("an empty item in [{inner}]"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_quote_and_read_value() {
        for s in [
            "",
            "plain",
            r"C:\data\digits",
            "say \"hi\" # not a comment",
            "tab\tnew\nline\r",
            "bell\u{7}",
            "ünïcode ∂ 数据",
        ] {
            let written = quote(s);
            assert_eq!(
                read_value(&written),
                Ok(Value::Str(s.to_string())),
                "{written}"
            );
            assert_eq!(
                strip_comment(&format!("k = {written} # c")).trim(),
                format!("k = {written}")
            );
        }
    }

    #[test]
    fn escapes_literal_strings_lists_and_errors() {
        assert_eq!(
            read_value(r#""\u00e9\U0001F600""#),
            Ok(Value::Str("é😀".into()))
        );
        assert_eq!(
            read_value(r"'C:\raw\n'"),
            Ok(Value::Str(r"C:\raw\n".into()))
        );
        // What Rust's `{:?}` wrote (checkpoints made before TOML escapes) still reads.
        let old = "e\u{301} \0 it's";
        assert_eq!(read_value(&format!("{old:?}")), Ok(Value::Str(old.into())));
        assert_eq!(
            read_value(r#"["a,b", 'c', [1, 2], ]"#),
            Ok(Value::List(vec![
                Value::Str("a,b".into()),
                Value::Str("c".into()),
                Value::List(vec![Value::Int(1), Value::Int(2)]),
            ]))
        );
        for (bad, says) in [
            (r#""supcon"#, "unterminated"),
            (r#"supcon""#, "stray"),
            (r#""a"b""#, "unterminated or stray"),
            (r#""\q""#, "unknown escape"),
            (r#""\u12""#, "bad \\u escape"),
            (r#""\uD800""#, "bad \\u escape"),
            ("[1, 2", "unclosed list"),
            ("1, 2]", "stray"),
            ("[1,,2]", "empty item"),
            ("", "missing value"),
        ] {
            let e = read_value(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
