//! TLS on the service listeners (rustls with the `ring` provider, no
//! OpenSSL): the cipher policy, loading the certificate, key, client CA
//! bundle and CRLs from the `[tls]` files into one immutable
//! [`TlsMaterial`] (built at start and again on every SIGHUP; a connection
//! keeps the material it was accepted with, so a reload drops nothing), and
//! what a client certificate says about its holder ([`CertNames`]).

use crate::config::{AuthMode, Config};
use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why the TLS files could not be used; each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{key}`: cannot read {path}: {reason}")]
    Read {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{key}`: {path} holds no {what} in PEM form")]
    Empty {
        key: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("`{key}`: {path} is not valid PEM ({reason})")]
    Pem {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`tls.key_file`: {0}")]
    Key(String),
    #[error("`tls.client_ca_file`: {path}: {reason}")]
    ClientCa { path: String, reason: String },
    #[error("`tls.crl_file`: {path}: {reason}")]
    Crl { path: String, reason: String },
    #[error("TLS: {0}")]
    Config(String),
}

/// The application protocol offered in ALPN: omnid speaks HTTP/1.1 only.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The protocol versions: TLS 1.3 and 1.2, nothing older.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cipher policy: AEAD suites with forward secrecy only (rustls has no
/// CBC, RC4, 3DES, static-RSA or export suite at all); TLS 1.3 first,
/// AES-GCM before ChaCha20-Poly1305.
pub fn provider() -> CryptoProvider {
    use ring_provider::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        // X25519, P-256, P-384.
        kx_groups: ring_provider::default_provider().kx_groups,
        ..ring_provider::default_provider()
    }
}

/// Everything a TLS handshake needs, loaded from the `[tls]` files at one
/// moment. Swapped whole on reload.
pub struct TlsMaterial {
    pub server: Arc<ServerConfig>,
    /// The client-certificate verifier (auth.mode mtls/both), kept to check
    /// certificates of connections accepted before a reload again.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Increases with every load: a connection whose certificate was last
    /// checked under an older generation is checked again.
    pub generation: u64,
    /// One line for the log: what was loaded.
    pub summary: String,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Reads the `[tls]` files of `c`: `None` when TLS is off.
pub fn load(c: &Config) -> Result<Option<Arc<TlsMaterial>>, TlsError> {
    let t = &c.tls;
    if !t.enabled() {
        return Ok(None);
    }
    let chain = read_certs("tls.cert_file", &t.cert_file)?;
    let key_pem = read_file("tls.key_file", &t.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "tls.key_file",
            path: t.key_file.clone(),
            what: "private key",
        },
        other => TlsError::Pem {
            key: "tls.key_file",
            path: t.key_file.clone(),
            reason: other.to_string(),
        },
    })?;
    let provider = Arc::new(provider());
    let mode = if c.auth.enabled {
        c.auth.mode
    } else {
        AuthMode::Token
    };
    let (verifier, client_summary) = if mode.uses_certificates() {
        let (v, s) = client_verifier(c, &provider, mode)?;
        (Some(v), s)
    } else {
        (None, "no client certificates".to_string())
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let n_certs = chain.len();
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Key(key_error(&e, &t.key_file, &t.cert_file)))?;
    server.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    // No TLS-level renegotiation or early data exist in rustls; session
    // resumption stays on its defaults (an in-memory cache, tickets off).
    Ok(Some(Arc::new(TlsMaterial {
        server: Arc::new(server),
        client_verifier: verifier,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        summary: format!("TLS 1.3/1.2 on, certificate chain of {n_certs}, {client_summary}"),
    })))
}

fn client_verifier(
    c: &Config,
    provider: &Arc<CryptoProvider>,
    mode: AuthMode,
) -> Result<(Arc<dyn ClientCertVerifier>, String), TlsError> {
    let t = &c.tls;
    let mut roots = RootCertStore::empty();
    let cas = read_certs("tls.client_ca_file", &t.client_ca_file)?;
    let n_cas = cas.len();
    for ca in cas {
        roots.add(ca).map_err(|e| TlsError::ClientCa {
            path: t.client_ca_file.clone(),
            reason: format!("not a usable CA certificate ({e})"),
        })?;
    }
    let mut crls = Vec::new();
    if !t.crl_file.is_empty() {
        let pem = read_file("tls.crl_file", &t.crl_file)?;
        for item in CertificateRevocationListDer::pem_slice_iter(&pem) {
            crls.push(item.map_err(|e| TlsError::Pem {
                key: "tls.crl_file",
                path: t.crl_file.clone(),
                reason: e.to_string(),
            })?);
        }
        if crls.is_empty() {
            return Err(TlsError::Empty {
                key: "tls.crl_file",
                path: t.crl_file.clone(),
                what: "certificate revocation list (BEGIN X509 CRL)",
            });
        }
    }
    let n_crls = crls.len();
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        // The client's own certificate is checked against the CRLs; a
        // client whose issuer has no CRL in the file is refused (an unknown
        // status is not taken as good).
        .only_check_end_entity_revocation();
    if mode == AuthMode::Both {
        // A client may authenticate with a token instead.
        b = b.allow_unauthenticated();
    }
    let v = b.build().map_err(|e| TlsError::Crl {
        path: t.crl_file.clone(),
        reason: e.to_string(),
    })?;
    let need = if mode == AuthMode::Both {
        "optional"
    } else {
        "required"
    };
    Ok((
        v,
        format!(
            "client certificates {need} ({n_cas} CA, {n_crls} CRL; tenant from {})",
            t.client_identity.as_str()
        ),
    ))
}

fn read_file(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        key,
        path: path.to_string(),
        reason: e.kind().to_string(),
    })
}

fn read_certs(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(key, path)?;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        out.push(item.map_err(|e| TlsError::Pem {
            key,
            path: path.to_string(),
            reason: e.to_string(),
        })?);
    }
    if out.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_string(),
            what: "certificate (BEGIN CERTIFICATE)",
        });
    }
    Ok(out)
}

fn key_error(e: &rustls::Error, key_file: &str, cert_file: &str) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("the key in {key_file} does not belong to the certificate in {cert_file}")
        }
        other => format!("{key_file}: unusable private key ({other})"),
    }
}

/// The names a client certificate carries, of each kind `tls.client_identity`
/// can pick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub cn: Option<String>,
}

impl CertNames {
    /// The names of an end-entity certificate (already verified by the
    /// handshake; a part that does not parse contributes no name).
    pub fn of(cert: &CertificateDer<'_>) -> CertNames {
        let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
            return CertNames::default();
        };
        CertNames {
            uris: ee.valid_uri_names().map(str::to_string).collect(),
            dns: ee.valid_dns_names().map(str::to_string).collect(),
            cn: common_name(ee.subject()),
        }
    }

    /// The candidates for `kind`, in certificate order.
    pub fn of_kind(&self, kind: crate::config::ClientIdentity) -> Vec<&str> {
        use crate::config::ClientIdentity::*;
        match kind {
            SanUri => self.uris.iter().map(String::as_str).collect(),
            SanDns => self.dns.iter().map(String::as_str).collect(),
            Cn => self.cn.iter().map(String::as_str).collect(),
        }
    }
}

/// The client certificate of one connection.
pub struct ClientCert {
    pub names: CertNames,
    chain: Vec<CertificateDer<'static>>,
    /// The TLS generation it was last verified under.
    checked: AtomicU64,
}

impl ClientCert {
    pub fn new(chain: &[CertificateDer<'_>], generation: u64) -> Option<ClientCert> {
        let first = chain.first()?;
        Some(ClientCert {
            names: CertNames::of(first),
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            checked: AtomicU64::new(generation),
        })
    }

    /// Whether the certificate still verifies under the current material:
    /// after a reload (a new CRL, another CA bundle), a connection accepted
    /// before it is checked again before its next request is served.
    pub fn still_valid(&self, current: &TlsMaterial) -> bool {
        if self.checked.load(Ordering::Acquire) == current.generation {
            return true;
        }
        let Some(verifier) = &current.client_verifier else {
            return false;
        };
        let Some((end_entity, intermediates)) = self.chain.split_first() else {
            return false;
        };
        let ok = verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok();
        if ok {
            self.checked.store(current.generation, Ordering::Release);
        }
        ok
    }
}

/// OID 2.5.4.3 (id-at-commonName), DER-encoded.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// The first common name of a DER `Name` (without its outer SEQUENCE
/// header, as webpki gives it): SEQUENCE OF SET OF SEQUENCE { OID, value }.
fn common_name(name: &[u8]) -> Option<String> {
    let mut rdns = name;
    while !rdns.is_empty() {
        let (tag, set, rest) = der_next(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, rest) = der_next(atvs)?;
            atvs = rest;
            if tag != 0x30 {
                return None;
            }
            let (tag, oid, value) = der_next(atv)?;
            if tag != 0x06 || oid != OID_CN {
                continue;
            }
            let (tag, text, _) = der_next(value)?;
            // UTF8String, PrintableString, IA5String; other string types
            // (BMPString, TeletexString) identify no tenant.
            return match tag {
                0x0c | 0x13 | 0x16 => std::str::from_utf8(text).ok().map(str::to_string),
                _ => None,
            };
        }
    }
    None
}

/// One DER element: (tag, contents, the rest). Single-byte tags and
/// definite lengths up to 4 bytes, which is all a certificate name uses.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_found_among_other_attributes() {
        // O=Acme, CN=tenant-a (as two RDNs).
        let name: Vec<u8> = [
            &[
                0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x04,
            ][..],
            b"Acme",
            &[
                0x31, 0x11, 0x30, 0x0f, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x08,
            ][..],
            b"tenant-a",
        ]
        .concat();
        assert_eq!(common_name(&name).as_deref(), Some("tenant-a"));
        // Truncated: no name, no panic.
        for cut in 0..name.len() {
            let _ = common_name(&name[..cut]);
        }
        assert_eq!(common_name(&name[..20]), None);
        assert_eq!(common_name(&[]), None);
    }

    #[test]
    fn the_policy_is_tls12_and_13_with_aead_suites_only() {
        let p = provider();
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
        }
        assert_eq!(PROTOCOL_VERSIONS.len(), 2);
    }
}
