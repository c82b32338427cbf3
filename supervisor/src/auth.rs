//! Bearer-token authentication: a tokens file maps tenants to the SHA-256 of
//! their tokens (the file never holds a token itself). Lookups hash the
//! presented token and compare it with every entry in constant time, so
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
    entries: Vec<(String, [u8; 32])>,
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// A known token: the tenant it belongs to.
    Tenant(String),
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

    /// Lines `tenant sha256hex`; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<TokenTable, (usize, String)> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(tenant), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err((i + 1, "expected `tenant sha256hex`".into()));
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
            entries.push((tenant.to_string(), hash));
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
        let mut found: Option<&str> = None;
        for (tenant, hash) in &self.entries {
            // Visit every entry whatever matched, so timing does not reveal
            // which (or whether an early) entry matched.
            if ct_eq(&digest, hash) && found.is_none() {
                found = Some(tenant);
            }
        }
        match found {
            Some(t) => AuthResult::Tenant(t.to_string()),
            None => AuthResult::Unknown,
        }
    }
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
        assert_eq!(
            t.check(Some(b"Bearer s3cret")),
            AuthResult::Tenant("acme".into())
        );
        assert_eq!(
            t.check(Some(b"bearer other")),
            AuthResult::Tenant("beta".into())
        );
        assert_eq!(t.check(Some(b"Bearer nope")), AuthResult::Unknown);
        assert_eq!(t.check(Some(b"Basic abc")), AuthResult::Missing);
        assert_eq!(t.check(None), AuthResult::Missing);
    }

    #[test]
    fn bad_lines_are_reported() {
        assert_eq!(TokenTable::parse("acme xyz\n").unwrap_err().0, 1);
        assert_eq!(TokenTable::parse("\nacme\n").unwrap_err().0, 2);
    }
}
