//! Who a caller is: the [`Principal`] (tenant and the credential that
//! proved it). Bearer tokens: a tokens file maps tenants to the SHA-256 of
//! their tokens (the file never holds a token itself), each with an optional
//! name that the change history records as who made a change; lookups hash
//! the presented token and compare it with every entry in constant time, so
//! neither the match nor its position leaks through timing. Client
//! certificates: the identity `tls.client_identity` picks is mapped through
//! the tenants table ([`CertIdentities`]).

use crate::config::{ClientIdentity, Config};
use crate::tls::CertNames;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// What authenticated it, for logs, audit records and the change
    /// history: the token's name in the tokens file (else `token-` and the
    /// first 8 hex digits of its hash), or `cert:` and the certificate
    /// identity (e.g. a SPIFFE id). Never a secret.
    pub credential: String,
}

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

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// A known token: its tenant and name.
    Tenant(Principal),
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
            Some(e) => AuthResult::Tenant(Principal {
                tenant: e.tenant.clone(),
                credential: e.name.clone(),
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

/// Why a verified client certificate authenticates no tenant (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRefusal {
    /// Its identity is listed for no tenant and names none.
    NoTenant,
    /// Its identities map to more than one tenant.
    Ambiguous,
}

/// Client-certificate identities → tenant, from the tenants table: each
/// tenant's `client_identities`, and each tenant's own name.
#[derive(Debug, Clone, Default)]
pub struct CertIdentities {
    kind: ClientIdentity,
    map: HashMap<String, String>,
}

impl CertIdentities {
    pub fn new(c: &Config) -> CertIdentities {
        let mut map = HashMap::new();
        for name in c.tenants.keys() {
            map.insert(name.clone(), name.clone());
        }
        // Listed identities win over a tenant name that happens to equal
        // one (validation refuses that case anyway).
        for (name, t) in &c.tenants {
            for id in &t.client_identities {
                map.insert(id.clone(), name.clone());
            }
        }
        CertIdentities {
            kind: c.tls.client_identity,
            map,
        }
    }

    /// The tenant a verified certificate authenticates.
    pub fn principal(&self, names: &CertNames) -> Result<Principal, CertRefusal> {
        let mut found: Option<(&str, &str)> = None;
        for id in names.of_kind(self.kind) {
            let Some(tenant) = self.map.get(id) else {
                continue;
            };
            match found {
                None => found = Some((tenant, id)),
                Some((t, _)) if t == tenant => {}
                Some(_) => return Err(CertRefusal::Ambiguous),
            }
        }
        let (tenant, id) = found.ok_or(CertRefusal::NoTenant)?;
        Ok(Principal {
            tenant: tenant.to_string(),
            credential: format!("cert:{id}"),
        })
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
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            AuthResult::Tenant(Principal {
                tenant: tenant.into(),
                credential: token_name.into(),
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
    fn certificate_identities_map_through_the_tenants_table() {
        let mut c = Config::default();
        let listed = crate::config::TenantSection {
            client_identities: vec!["spiffe://example.org/a".into()],
            ..Default::default()
        };
        c.tenants.insert("acme".into(), listed);
        c.tenants.insert("beta".into(), Default::default());
        let ids = CertIdentities::new(&c);
        let uri = |u: &[&str]| CertNames {
            uris: u.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let p = ids.principal(&uri(&["spiffe://example.org/a"])).unwrap();
        assert_eq!(p.tenant, "acme");
        assert_eq!(p.credential, "cert:spiffe://example.org/a");
        // The tenant's own name identifies it too.
        assert_eq!(ids.principal(&uri(&["beta"])).unwrap().tenant, "beta");
        assert_eq!(
            ids.principal(&uri(&["spiffe://example.org/zz"])),
            Err(CertRefusal::NoTenant)
        );
        assert_eq!(
            ids.principal(&uri(&["spiffe://example.org/a", "beta"])),
            Err(CertRefusal::Ambiguous)
        );
        // Another kind than the configured one is not looked at.
        let cn = CertNames {
            cn: Some("acme".into()),
            ..Default::default()
        };
        assert_eq!(ids.principal(&cn), Err(CertRefusal::NoTenant));
        c.tls.client_identity = ClientIdentity::Cn;
        assert_eq!(
            CertIdentities::new(&c).principal(&cn).unwrap().tenant,
            "acme"
        );
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
