//! The canonical form quarantine keys a policy on, and the memo that keeps
//! admission from computing it twice for the same text.
//!
//! The form is lexical, not parsed: whole-line comments (`//`, `#`) are
//! dropped, and outside string literals every whitespace character
//! (including zero-width ones) is dropped and ASCII letters are lower-cased
//! (keywords are case-insensitive). String literals are kept byte for byte.
//! A linear scan with no recursion, so the supervisor can run it on hostile
//! text without the parser's risks; it is computed only when a policy killed
//! a worker, and at admission only for an owner that has quarantine records.
//! Two policies that differ only in layout, comments or keyword case share
//! a form; two that differ in any token do not (the owner's failure budget
//! covers those). Folding away whitespace can also join two different
//! policies (`a b` and `ab`); that only matters within one owner, whose own
//! kills are the only ones that count against its policies.

use crate::restart::Canon;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The canonical form's hash (128 bits of SHA-256).
pub fn canonical_hash(text: &str) -> Canon {
    let mut h = Sha256::new();
    let mut buf = [0u8; 4];
    for line in text.split('\n') {
        let t = line.trim_start_matches(is_blank);
        if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
            continue;
        }
        let mut in_string = false;
        let mut escaped = false;
        for c in t.chars() {
            if in_string {
                h.update(c.encode_utf8(&mut buf).as_bytes());
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if !is_blank(c) {
                if c == '"' {
                    in_string = true;
                }
                h.update(c.to_ascii_lowercase().encode_utf8(&mut buf).as_bytes());
            }
        }
        // A string never spans lines (the lexer reports it unterminated).
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Whitespace, control characters and the invisible format characters a
/// reformatting could add.
fn is_blank(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
        )
}

/// Policy id (`sha256:` of the text) → canonical hash, for recently seen
/// policies. Two generations: lookups hit the young one or promote from the
/// old one; when the young one is full it becomes the old one, so the memo
/// holds between `cap / 2` and `cap` entries and forgets the least used.
#[derive(Debug)]
pub struct CanonMemo {
    young: HashMap<String, Canon>,
    old: HashMap<String, Canon>,
    half: usize,
}

impl CanonMemo {
    pub fn new(cap: usize) -> CanonMemo {
        CanonMemo {
            young: HashMap::new(),
            old: HashMap::new(),
            half: (cap / 2).max(1),
        }
    }

    pub fn get(&mut self, policy_id: &str) -> Option<Canon> {
        if let Some(c) = self.young.get(policy_id) {
            return Some(*c);
        }
        let c = self.old.remove(policy_id)?;
        self.insert(policy_id, c);
        Some(c)
    }

    pub fn insert(&mut self, policy_id: &str, canon: Canon) {
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(policy_id.to_string(), canon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "INTENT: slow\nRULE:\n- IF a + b < 0 THEN Never\n- IF s == \"x  y\" THEN Log\n";

    #[test]
    fn layout_comments_and_keyword_case_do_not_count() {
        let base = canonical_hash(P);
        for variant in [
            format!("{P} "),
            format!("{P}\n\n"),
            P.replace("a + b", "a+b"),
            P.replace("IF a", "if   a"),
            P.replace("RULE:\n", "RULE:\n# a comment\n   // another\n"),
            P.replace('\n', "\r\n"),
            P.replace("- IF a", "-\u{200B} IF a"),
            format!("\t{P}"),
        ] {
            assert_eq!(canonical_hash(&variant), base, "{variant:?}");
        }
    }

    #[test]
    fn tokens_and_strings_count() {
        let base = canonical_hash(P);
        for variant in [
            P.replace("a + b", "a + c"),
            P.replace("\"x  y\"", "\"x y\""),
            P.replace("\"x  y\"", "\"X  y\""),
            P.replace("slow", "slow 2"),
        ] {
            assert_ne!(canonical_hash(&variant), base, "{variant:?}");
        }
    }

    #[test]
    fn memo_keeps_recent_entries() {
        let mut m = CanonMemo::new(4);
        m.insert("a", [1; 16]);
        m.insert("b", [2; 16]);
        m.insert("c", [3; 16]);
        assert_eq!(m.get("a"), Some([1; 16]));
        for i in 0..10 {
            m.insert(&i.to_string(), [0; 16]);
        }
        assert_eq!(m.get("b"), None);
    }
}
