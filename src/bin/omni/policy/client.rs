//! The HTTP side of `omni policy`: where omnid is and how to authenticate
//! (flags, then environment), one blocking `ureq` agent, and [`ClientError`]
//! — the one place that turns a transport failure or an API error into a
//! message in the user's terms and an exit code.

use super::exit;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where omnid listens by default (its built-in `listen`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The environment variables the connection flags fall back to.
pub const ENV_SERVER: &str = "OMNI_SERVER";
pub const ENV_TOKEN: &str = "OMNI_TOKEN";
pub const ENV_TOKEN_FILE: &str = "OMNI_TOKEN_FILE";
pub const ENV_CACERT: &str = "OMNI_CACERT";

/// A connection may take this long to open; a whole request (a push runs a
/// full check in a worker) this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: far above any policy a server accepts.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// The connection flags of every `omni policy` command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// omnid's address, e.g. http://127.0.0.1:8080 or https://omni.example.org
    /// [env: OMNI_SERVER; default: http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// The bearer token (visible to other local users in the process list;
    /// prefer --token-file or OMNI_TOKEN) [env: OMNI_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace ignored)
    /// [env: OMNI_TOKEN_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file for https:// (a private CA)
    /// instead of the built-in public roots [env: OMNI_CACERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `scheme://authority[/prefix]`, without a trailing `/`.
    pub base: String,
    pub token: Option<String>,
    pub cacert: Option<PathBuf>,
}

/// Resolves flags and environment: a flag wins over the environment; a
/// token given directly wins over a token file at the same level.
pub fn resolve(
    args: &ConnArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, ClientError> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    if args.token.is_some() && args.token_file.is_some() {
        return Err(ClientError::Usage(
            "give either --token or --token-file, not both".into(),
        ));
    }
    let server = args
        .server
        .clone()
        .or_else(|| env(ENV_SERVER))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let base = parse_server(&server)?;
    let token = if let Some(t) = &args.token {
        Some(check_token(t.trim(), "--token")?)
    } else if let Some(f) = &args.token_file {
        Some(read_token_file(f)?)
    } else if let Some(t) = env(ENV_TOKEN) {
        Some(check_token(t.trim(), ENV_TOKEN)?)
    } else if let Some(f) = env(ENV_TOKEN_FILE) {
        Some(read_token_file(Path::new(&f))?)
    } else {
        None
    };
    let cacert = args
        .cacert
        .clone()
        .or_else(|| env(ENV_CACERT).map(PathBuf::from));
    Ok(Target {
        base,
        token,
        cacert,
    })
}

/// `http://…` or `https://…` (a bare `host:port` means http), checked and
/// without a trailing `/`.
pub fn parse_server(s: &str) -> Result<String, ClientError> {
    let bad = || {
        ClientError::Usage(format!(
            "the server address `{s}` is not a URL like http://127.0.0.1:8080"
        ))
    };
    let s = s.trim();
    let url = if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else if s.contains("://") {
        return Err(ClientError::Usage(format!(
            "the server address `{s}` must start with http:// or https://"
        )));
    } else {
        format!("http://{s}")
    };
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let url = url.trim_end_matches('/').to_string();
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad())?;
    if authority.is_empty() || uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
        return Err(bad());
    }
    Ok(url)
}

fn check_token(t: &str, from: &str) -> Result<String, ClientError> {
    if t.is_empty() {
        return Err(ClientError::Usage(format!(
            "the token from {from} is empty"
        )));
    }
    // A bearer token is sent in a header: visible ASCII only.
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::Usage(format!(
            "the token from {from} has spaces or characters other than visible ASCII"
        )));
    }
    Ok(t.to_string())
}

fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text = crate::input::read_input(path).map_err(|e| ClientError::Usage(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| {
        ClientError::Usage(format!("the token file {} is not text", path.display()))
    })?;
    check_token(text.trim(), &format!("the file {}", path.display()))
}

/// Why a command failed, in the user's terms; each has one exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach omnid at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the TLS connection to omnid at {server} failed: {reason} (for a private CA, pass --cacert FILE)")]
    Tls { server: String, reason: String },
    #[error("the server refused the token")]
    Unauthorized,
    #[error("omnid at {server} needs a token: pass --token-file FILE or set OMNI_TOKEN")]
    TokenRequired { server: String },
    #[error("the server refused the request: {0}")]
    Forbidden(String),
    #[error("policy {0} not found")]
    PolicyNotFound(String),
    #[error("policy {name} has no revision {revision}")]
    RevisionNotFound { name: String, revision: String },
    #[error("someone else changed {name} (active is now {}); re-run to retry", active_text(*.active))]
    Conflict { name: String, active: Option<u64> },
    #[error("{message}")]
    Refused { code: String, message: String },
    #[error("omnid cannot do this now: {message}")]
    Unavailable { code: String, message: String },
    #[error(
        "omnid at {server} has no policy API (/api/v1/policies); it may be older than this omni"
    )]
    NoApi { server: String },
    #[error("omnid at {server} gave an unexpected answer: {what}")]
    Unexpected { server: String, what: String },
}

fn active_text(a: Option<u64>) -> String {
    a.map_or_else(|| "none".to_string(), |n| n.to_string())
}

impl ClientError {
    /// The exit code (see `omni policy --help` and docs/cli.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) => exit::USAGE,
            ClientError::Unauthorized
            | ClientError::TokenRequired { .. }
            | ClientError::Forbidden(_)
            | ClientError::PolicyNotFound(_)
            | ClientError::RevisionNotFound { .. }
            | ClientError::Refused { .. } => exit::REFUSED,
            ClientError::Conflict { .. } => exit::CONFLICT,
            ClientError::Unreachable { .. }
            | ClientError::Tls { .. }
            | ClientError::Unavailable { .. }
            | ClientError::NoApi { .. }
            | ClientError::Unexpected { .. } => exit::UNAVAILABLE,
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `{"error":{"code","message"}}` of an error answer, if it has one.
    pub fn api_error(&self) -> Option<ApiErrorBody> {
        #[derive(Deserialize)]
        struct Envelope {
            error: ApiErrorBody,
        }
        serde_json::from_slice::<Envelope>(&self.body)
            .ok()
            .map(|e| e.error)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// What a request was about, to name it in errors.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub name: Option<&'a str>,
    pub revision: Option<u64>,
}

/// One omnid, reached with one agent.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Client {
    pub fn new(target: &Target) -> Result<Client, ClientError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &target.cacert {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_cacert(path)?));
        }
        let config = ureq::Agent::config_builder()
            // Error answers carry the reason in their body.
            .http_status_as_error(false)
            // A redirect is reported, not followed: it would drop the token.
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(format!("omni/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base: target.base.clone(),
            token: target.token.clone(),
        })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    /// `/api/v1/policies[/{name}[/rest]]` under the server's base.
    pub fn url(&self, name: Option<&str>, rest: &str) -> String {
        let mut u = format!("{}/api/v1/policies", self.base);
        if let Some(n) = name {
            u.push('/');
            u.push_str(&encode_segment(n));
        }
        u.push_str(rest);
        u
    }

    /// Sends one request and reads the whole answer; only transport
    /// failures are errors here (statuses are the caller's to judge).
    pub fn send(
        &self,
        method: Method,
        url: &str,
        if_match: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> Result<Reply, ClientError> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        macro_rules! headers {
            ($rb:expr) => {{
                let mut rb = $rb;
                if let Some(a) = &auth {
                    rb = rb.header("Authorization", a.as_str());
                }
                if let Some(m) = if_match {
                    rb = rb.header("If-Match", m);
                }
                rb
            }};
        }
        let result = match method {
            Method::Get => headers!(self.agent.get(url)).call(),
            Method::Delete => headers!(self.agent.delete(url)).call(),
            Method::Put | Method::Post => {
                let rb = match method {
                    Method::Put => self.agent.put(url),
                    _ => self.agent.post(url),
                };
                let rb = headers!(rb);
                match body {
                    Some((ctype, bytes)) => rb.content_type(ctype).send(bytes),
                    None => rb.send_empty(),
                }
            }
        };
        let mut resp = result.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("elsewhere")
                .to_string();
            return Err(ClientError::Unexpected {
                server: self.base.clone(),
                what: format!("a redirect to {to}; give that address with --server"),
            });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        Ok(Reply { status, body })
    }

    fn transport_error(&self, e: ureq::Error) -> ClientError {
        let server = self.base.clone();
        let unreachable = |reason: String| ClientError::Unreachable {
            server: server.clone(),
            reason,
        };
        match e {
            ureq::Error::Io(io) => {
                use std::io::ErrorKind as K;
                match io.kind() {
                    K::ConnectionRefused => {
                        unreachable("connection refused (is omnid running there?)".into())
                    }
                    K::ConnectionReset
                    | K::ConnectionAborted
                    | K::UnexpectedEof
                    | K::BrokenPipe => {
                        unreachable("the connection was closed before an answer came".into())
                    }
                    K::TimedOut => unreachable("no answer in time".into()),
                    // rustls reports a failed handshake as invalid data.
                    K::InvalidData if server.starts_with("https://") => ClientError::Tls {
                        server,
                        reason: tls_reason(&io),
                    },
                    _ => unreachable(io.to_string()),
                }
            }
            ureq::Error::HostNotFound => unreachable("the host name does not resolve".into()),
            ureq::Error::Timeout(_) => unreachable("no answer in time".into()),
            ureq::Error::ConnectionFailed => unreachable("the connection failed".into()),
            ureq::Error::Tls(reason) => ClientError::Tls {
                server,
                reason: reason.to_string(),
            },
            ureq::Error::Rustls(r) => ClientError::Tls {
                server,
                reason: rustls_reason(&r),
            },
            ureq::Error::Protocol(_) if server.starts_with("http://") => unreachable(
                "the answer is not HTTP (if omnid serves TLS, use an https:// address)".into(),
            ),
            ureq::Error::BodyExceedsLimit(_) => ClientError::Unexpected {
                server,
                what: "an answer larger than 256 MiB".into(),
            },
            other => ClientError::Unexpected {
                server,
                what: other.to_string(),
            },
        }
    }

    /// The error for an answer that is not a success, in the user's terms.
    pub fn error_for(&self, reply: &Reply, subject: &Subject) -> ClientError {
        let api = reply.api_error();
        let code = api.as_ref().map(|e| e.code.as_str()).unwrap_or("");
        let message = api
            .as_ref()
            .map(|e| e.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP status {}", reply.status));
        let name = subject.name.unwrap_or("?").to_string();
        use omni::ErrorCode as E;
        match (reply.status, E::parse(code)) {
            (401, _) if self.token.is_some() => ClientError::Unauthorized,
            (401, _) => ClientError::TokenRequired {
                server: self.base.clone(),
            },
            (403, _) => ClientError::Forbidden(message),
            (_, Some(E::PolicyNotFound)) => ClientError::PolicyNotFound(name),
            (_, Some(E::RevisionNotFound)) => ClientError::RevisionNotFound {
                name,
                revision: subject
                    .revision
                    .map_or_else(|| "asked for".to_string(), |r| r.to_string()),
            },
            (404, _) => ClientError::NoApi {
                server: self.base.clone(),
            },
            (412, _) | (_, Some(E::PreconditionFailed)) => {
                ClientError::Conflict { name, active: None }
            }
            (429 | 500..=599, _) => ClientError::Unavailable {
                code: code.to_string(),
                message,
            },
            (400..=499, _) if !code.is_empty() => ClientError::Refused {
                code: code.to_string(),
                message,
            },
            (status, _) => ClientError::Unexpected {
                server: self.base.clone(),
                what: format!("HTTP status {status}"),
            },
        }
    }
}

/// Why a TLS handshake failed, in words (rustls's own text names enum
/// variants).
fn tls_reason(io: &std::io::Error) -> String {
    match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(e) => rustls_reason(e),
        None => io.to_string(),
    }
}

fn rustls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "its certificate is not signed by a trusted CA".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "its certificate is not valid for this host name".into()
            }
            C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "its certificate is not valid yet (check the clocks)".into()
            }
            C::Revoked => "its certificate was revoked".into(),
            _ => "its certificate is not acceptable".into(),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "it does not answer in TLS (for a plain-HTTP omnid use http://)".into()
        }
        rustls::Error::AlertReceived(_) => {
            "the server ended the handshake (does it require a client certificate?)".into()
        }
        other => other.to_string(),
    }
}

/// The CA certificates of a PEM file.
fn read_cacert(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let bad = |why: &str| ClientError::Usage(format!("--cacert {}: {why}", path.display()));
    let pem = crate::input::read_input(path).map_err(|e| ClientError::Usage(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(_) => return Err(bad("not a readable PEM file")),
        }
    }
    if certs.is_empty() {
        return Err(bad(
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// Percent-encodes a path segment: names are checked by the server (one
/// place for the rule), but whatever the user typed stays one segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server("127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            parse_server("https://omni.example.org/").unwrap(),
            "https://omni.example.org"
        );
        assert_eq!(
            parse_server("https://proxy.example.org/omni/").unwrap(),
            "https://proxy.example.org/omni"
        );
        let e = parse_server("ftp://x").unwrap_err().to_string();
        assert!(e.contains("must start with http:// or https://"), "{e}");
        let e = parse_server("http://").unwrap_err().to_string();
        assert!(e.contains("is not a URL"), "{e}");
        let e = parse_server("http://h/?q=1").unwrap_err().to_string();
        assert!(e.contains("is not a URL"), "{e}");
    }

    #[test]
    fn flags_win_over_environment() {
        let env = env_of(&[("OMNI_SERVER", "10.9.8.7:1"), ("OMNI_TOKEN", "envtok")]);
        let t = resolve(&ConnArgs::default(), &env).unwrap();
        assert_eq!(t.base, "http://10.9.8.7:1");
        assert_eq!(t.token.as_deref(), Some("envtok"));
        let args = ConnArgs {
            server: Some("https://a.example".into()),
            token: Some("flagtok\n".into()),
            ..ConnArgs::default()
        };
        let t = resolve(&args, &env).unwrap();
        assert_eq!(t.base, "https://a.example");
        assert_eq!(t.token.as_deref(), Some("flagtok"));
        let none = resolve(&ConnArgs::default(), &|_: &str| None).unwrap();
        assert_eq!(none.base, DEFAULT_SERVER);
        assert_eq!(none.token, None);
    }

    #[test]
    fn token_file_and_its_problems() {
        let dir = std::env::temp_dir().join(format!("omni-policy-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tok");
        std::fs::write(&f, "  s3cret-token\n").unwrap();
        let args = ConnArgs {
            token_file: Some(f.clone()),
            ..ConnArgs::default()
        };
        // The file flag wins over a token in the environment.
        let t = resolve(&args, &env_of(&[("OMNI_TOKEN", "envtok")])).unwrap();
        assert_eq!(t.token.as_deref(), Some("s3cret-token"));
        // The environment's file is used when nothing else is given.
        let path: &'static str = Box::leak(f.display().to_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("OMNI_TOKEN_FILE", path)].into_boxed_slice());
        let t = resolve(&ConnArgs::default(), &env_of(pairs)).unwrap();
        assert_eq!(t.token.as_deref(), Some("s3cret-token"));

        std::fs::write(&f, "\n").unwrap();
        let e = resolve(&args, &|_: &str| None).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        assert_eq!(e.exit_code(), exit::USAGE);
        std::fs::write(&f, "two words").unwrap();
        let e = resolve(&args, &|_: &str| None).unwrap_err().to_string();
        assert!(e.contains("visible ASCII"), "{e}");
        let missing = ConnArgs {
            token_file: Some(dir.join("absent")),
            ..ConnArgs::default()
        };
        let e = resolve(&missing, &|_: &str| None).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        let both = ConnArgs {
            token: Some("a".into()),
            token_file: Some(f),
            ..ConnArgs::default()
        };
        let e = resolve(&both, &|_: &str| None).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cacert_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("omni-policy-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let t = Target {
            base: "https://h".into(),
            token: None,
            cacert: Some(f),
        };
        let e = Client::new(&t).err().expect("refused").to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(encode_segment("fleet.v2-a_b"), "fleet.v2-a_b");
        assert_eq!(encode_segment("../x"), "%2E.%2Fx");
        assert_eq!(encode_segment("a b?c"), "a%20b%3Fc");
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn api_errors_in_user_terms() {
        let c = Client::new(&Target {
            base: "http://h:1".into(),
            token: None,
            cacert: None,
        })
        .unwrap();
        let s = Subject {
            name: Some("fleet"),
            revision: Some(7),
        };
        let e = c.error_for(&reply(401, "{}"), &s);
        assert_eq!(
            e.to_string(),
            "omnid at http://h:1 needs a token: pass --token-file FILE or set OMNI_TOKEN"
        );
        let with_token = Client::new(&Target {
            base: "http://h:1".into(),
            token: Some("t".into()),
            cacert: None,
        })
        .unwrap();
        let e = with_token.error_for(&reply(401, "{}"), &s);
        assert_eq!(e.to_string(), "the server refused the token");
        let e = c.error_for(
            &reply(
                404,
                r#"{"error":{"code":"policy_not_found","message":"x"}}"#,
            ),
            &s,
        );
        assert_eq!(e.to_string(), "policy fleet not found");
        assert_eq!(e.exit_code(), exit::REFUSED);
        let e = c.error_for(
            &reply(
                404,
                r#"{"error":{"code":"revision_not_found","message":"x"}}"#,
            ),
            &s,
        );
        assert_eq!(e.to_string(), "policy fleet has no revision 7");
        let e = c.error_for(&reply(404, r#"{"error":{"code":"not_found"}}"#), &s);
        assert!(e.to_string().contains("has no policy API"), "{e}");
        let e = c.error_for(&reply(412, "{}"), &s);
        assert_eq!(e.exit_code(), exit::CONFLICT);
        let e = c.error_for(
            &reply(
                503,
                r#"{"error":{"code":"store_unavailable","message":"the policy store is unavailable"}}"#,
            ),
            &s,
        );
        assert_eq!(
            e.to_string(),
            "omnid cannot do this now: the policy store is unavailable"
        );
        assert_eq!(e.exit_code(), exit::UNAVAILABLE);
        let e = c.error_for(
            &reply(
                409,
                r#"{"error":{"code":"revision_quota_exceeded","message":"policy fleet has 100 revisions; the limit is 100"}}"#,
            ),
            &s,
        );
        assert_eq!(
            e.to_string(),
            "policy fleet has 100 revisions; the limit is 100"
        );
        assert_eq!(e.exit_code(), exit::REFUSED);
        let e = c.error_for(&reply(418, "teapot"), &s);
        assert!(e.to_string().contains("HTTP status 418"), "{e}");
    }

    #[test]
    fn conflict_message_names_the_active_revision() {
        let e = ClientError::Conflict {
            name: "fleet".into(),
            active: Some(4),
        };
        assert_eq!(
            e.to_string(),
            "someone else changed fleet (active is now 4); re-run to retry"
        );
        let e = ClientError::Conflict {
            name: "fleet".into(),
            active: None,
        };
        assert!(e.to_string().contains("active is now none"));
    }
}
