//! Bearer-token authentication: a tokens file maps tenants to the SHA-256 of
//! their tokens (the file never holds a token itself), each with an optional
//! name that the change history records as who made a change. Lookups hash
//! the presented token and compare it with every entry in constant time, so
//! neither the match nor its position leaks through timing.

use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("tokens file {path}, line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// The loaded tokens file.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    tenant: String,
    /// The token's name: the file's third column, or `token-` and the first
    /// 8 hex digits of its hash (which identify it without revealing it).
    name: String,
    hash: [u8; 32],
}

/// Who a known token is: its tenant and its name (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub token_name: String,
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// A known token: its tenant and name.
    Tenant(Caller),
    /// No usable `Authorization: Bearer` header.
    Missing,
    /// A token that is not in the file.
    Unknown,
}

impl TokenTable {
    pub fn load(path: &Path) -> Result<TokenTable, TokensError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TokensError::Read {
            path: name.clone(),
            reason: e.kind().to_string(),
        })?;
        Self::parse(&text).map_err(|(line, message)| TokensError::Line {
            path: name,
            line,
            message,
        })
    }

    /// Lines `tenant sha256hex [name]`; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<TokenTable, (usize, String)> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(tenant), Some(hex), name, None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err((i + 1, "expected `tenant sha256hex [name]`".into()));
            };
            if !crate::config::valid_tenant_name(tenant) {
                return Err((
                    i + 1,
                    "tenant names are 1-64 characters of [A-Za-z0-9._-]".into(),
                ));
            }
            let hash = parse_hex32(hex).ok_or_else(|| {
                (
                    i + 1,
                    "the hash must be 64 hex digits (SHA-256)".to_string(),
                )
            })?;
            let name = match name {
                Some(n) if valid_token_name(n) => n.to_string(),
                Some(_) => {
                    return Err((
                        i + 1,
                        "token names are 1-64 characters of [A-Za-z0-9._@-]".into(),
                    ))
                }
                None => format!("token-{}", hex[..8].to_ascii_lowercase()),
            };
            entries.push(Entry {
                tenant: tenant.to_string(),
                name,
                hash,
            });
        }
        Ok(TokenTable { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Checks the value of an `Authorization` header.
    pub fn check(&self, header: Option<&[u8]>) -> AuthResult {
        let Some(token) = header.and_then(bearer_token) else {
            return AuthResult::Missing;
        };
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            // Visit every entry whatever matched, so timing does not reveal
            // which (or whether an early) entry matched.
            if ct_eq(&digest, &e.hash) && found.is_none() {
                found = Some(e);
            }
        }
        match found {
            Some(e) => AuthResult::Tenant(Caller {
                tenant: e.tenant.clone(),
                token_name: e.name.clone(),
            }),
            None => AuthResult::Unknown,
        }
    }
}

/// A token's name in the tokens file: it ends up in the change history.
fn valid_token_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let s = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token.as_bytes())
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Hex SHA-256 of a token, as stored in the tokens file.
pub fn token_hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_tenants() {
        let text = format!(
            "# comment\n\nacme {}\nbeta {}\n",
            token_hash_hex("s3cret"),
            token_hash_hex("other")
        );
        let t = TokenTable::parse(&text).unwrap();
        assert_eq!(t.len(), 2);
        let caller = |tenant: &str, token_name: &str| {
            AuthResult::Tenant(Caller {
                tenant: tenant.into(),
                token_name: token_name.into(),
            })
        };
        // Unnamed: `token-` and the first 8 hex digits of the hash.
        let h = token_hash_hex("s3cret");
        assert_eq!(
            t.check(Some(b"Bearer s3cret")),
            caller("acme", &format!("token-{}", &h[..8]))
        );
        let h = token_hash_hex("other");
        assert_eq!(
            t.check(Some(b"bearer other")),
            caller("beta", &format!("token-{}", &h[..8]))
        );
        let named = format!("acme {} ci-deploy@ops\n", token_hash_hex("s3cret"));
        let t2 = TokenTable::parse(&named).unwrap();
        assert_eq!(
            t2.check(Some(b"Bearer s3cret")),
            caller("acme", "ci-deploy@ops")
        );
        assert_eq!(t.check(Some(b"Bearer nope")), AuthResult::Unknown);
        assert_eq!(t.check(Some(b"Basic abc")), AuthResult::Missing);
        assert_eq!(t.check(None), AuthResult::Missing);
    }

    #[test]
    fn bad_lines_are_reported() {
        assert_eq!(TokenTable::parse("acme xyz\n").unwrap_err().0, 1);
        assert_eq!(TokenTable::parse("\nacme\n").unwrap_err().0, 2);
        let h = token_hash_hex("x");
        let e = TokenTable::parse(&format!("acme {h} bad/name\n")).unwrap_err();
        assert!(e.1.contains("token names"), "{}", e.1);
        let e = TokenTable::parse(&format!("acme {h} a b\n")).unwrap_err();
        assert!(e.1.contains("[name]"), "{}", e.1);
    }
}
