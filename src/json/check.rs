//! A strict check that bytes are exactly one JSON value (RFC 8259, as
//! `serde_json`'s `RawValue` accepts it: UTF-8, any nesting depth, nothing
//! after the value but whitespace), without building anything. Used on the
//! JSON a worker returns, which the response embeds as it is.
//!
//! It lives beside the context reader because both scan string bodies with
//! the same `scan_plain`; the service checks a worker's JSON with it.

use super::scan::scan_plain;

/// Bytes that are exactly one JSON value, UTF-8 included (tests only:
/// the worker's JSON arrives as decoded, hence valid, `String`s).
#[cfg(test)]
pub fn is_one_value(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && check(b)
}

/// Text that is exactly one JSON value.
pub fn is_one_value_str(s: &str) -> bool {
    check(s.as_bytes())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Iterative, with the open containers on a stack (`true`: an object).
fn check(b: &[u8]) -> bool {
    let mut stack: Vec<bool> = Vec::new();
    let mut i = skip_ws(b, 0);
    'value: loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'{') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    stack.push(true);
                    if !key(b, &mut i) {
                        return false;
                    }
                    continue 'value;
                }
            }
            Some(b'[') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(false);
                    continue 'value;
                }
            }
            Some(b'"') => {
                if !string(b, &mut i) {
                    return false;
                }
            }
            Some(b't') => {
                if !literal(b, &mut i, b"true") {
                    return false;
                }
            }
            Some(b'f') => {
                if !literal(b, &mut i, b"false") {
                    return false;
                }
            }
            Some(b'n') => {
                if !literal(b, &mut i, b"null") {
                    return false;
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                if !number(b, &mut i) {
                    return false;
                }
            }
            _ => return false,
        }
        // After a value: close containers or go on to the next element.
        loop {
            i = skip_ws(b, i);
            let Some(&object) = stack.last() else {
                return i == b.len();
            };
            match (b.get(i), object) {
                (Some(b','), true) => {
                    i = skip_ws(b, i + 1);
                    if !key(b, &mut i) {
                        return false;
                    }
                    continue 'value;
                }
                (Some(b','), false) => {
                    i = skip_ws(b, i + 1);
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    i += 1;
                    stack.pop();
                }
                _ => return false,
            }
        }
    }
}

/// `"key" :` and the whitespace after it.
fn key(b: &[u8], i: &mut usize) -> bool {
    if b.get(*i) != Some(&b'"') || !string(b, i) {
        return false;
    }
    *i = skip_ws(b, *i);
    if b.get(*i) != Some(&b':') {
        return false;
    }
    *i = skip_ws(b, *i + 1);
    true
}

fn literal(b: &[u8], i: &mut usize, word: &[u8]) -> bool {
    if b.get(*i..*i + word.len()) == Some(word) {
        *i += word.len();
        true
    } else {
        false
    }
}

/// From the opening quote to after the closing one.
fn string(b: &[u8], i: &mut usize) -> bool {
    let mut j = *i + 1;
    loop {
        // Plain bytes: the scan stops at `"`, `\\` or a control byte.
        j = scan_plain(b, j);
        match b.get(j) {
            None => return false,
            Some(b'"') => {
                *i = j + 1;
                return true;
            }
            Some(b'\\') => match b.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                Some(b'u') => {
                    let hex = b.get(j + 2..j + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return false;
                    }
                    j += 6;
                }
                _ => return false,
            },
            Some(&c) if c < 0x20 => return false,
            Some(_) => j += 1,
        }
    }
}

fn digits(b: &[u8], i: &mut usize) -> bool {
    let s = *i;
    while b.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    *i > s
}

fn number(b: &[u8], i: &mut usize) -> bool {
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(b, i);
        }
        _ => return false,
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(b, i) {
            return false;
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !digits(b, i) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{is_one_value, is_one_value_str};

    #[test]
    fn agrees_with_serde_json() {
        let docs = [
            "{}",
            "[]",
            "null",
            "true",
            "0",
            "-0.5e+3",
            "\"\"",
            " [1, {\"a\": [null]}] ",
            "{\"a\":\"\\u00e9\\n\\\"x\"}",
            "\"\u{e9}\u{1F600}\"",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "[1] 2",
            "\"a\u{1}\"",
            "\"\\x\"",
            "\"\\u12\"",
            "nul",
            "{",
            "[[",
            "\"abc",
            "{\"a\":1,}",
            "{1:2}",
            "[1 2]",
            "",
        ];
        for d in docs {
            let serde = serde_json::from_str::<&serde_json::value::RawValue>(d).is_ok();
            assert_eq!(is_one_value(d.as_bytes()), serde, "{d:?}");
            assert_eq!(is_one_value_str(d), serde, "{d:?}");
        }
        let deep = format!("{}{}", "[{\"a\":".repeat(5000), "}]".repeat(5000));
        let unbalanced = format!("{}{}", "[".repeat(5000), "]".repeat(4999));
        for d in [&deep, &unbalanced] {
            let serde = serde_json::from_str::<&serde_json::value::RawValue>(d).is_ok();
            assert_eq!(is_one_value(d.as_bytes()), serde, "depth {}", d.len() / 2);
        }
        assert!(!is_one_value(b"\"\xff\""));
        // Every one-byte change and deletion of a document agrees too.
        let doc =
            r#"{"a": [1, -2.5e3, true, null, "x\"\\u00e9y"], "b": {"c": false, "d": []}, "e": 0}"#;
        let subs = b" {}[],:\"\\-+.0159eEtfnux\x01";
        for at in 0..doc.len() {
            let mut variants: Vec<Vec<u8>> = subs
                .iter()
                .map(|&c| {
                    let mut v = doc.as_bytes().to_vec();
                    v[at] = c;
                    v
                })
                .collect();
            let mut del = doc.as_bytes().to_vec();
            del.remove(at);
            variants.push(del);
            for v in variants {
                let Ok(text) = std::str::from_utf8(&v) else {
                    continue;
                };
                let serde = serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
                assert_eq!(is_one_value(&v), serde, "{text}");
                assert_eq!(is_one_value_str(text), serde, "{text}");
            }
        }
    }
}
