//! Transport security against the real omnid: TLS with certificates made
//! at test time (rcgen), curl as the client, client certificates as
//! tenants, CRL revocation and certificate rotation by SIGHUP, the unix
//! socket, socket activation and the probe listener. Tests that need an
//! outside tool skip with one line unless its variable is 1:
//! `OMNI_REQUIRE_CURL` (curl), `OMNI_REQUIRE_SYSTEMD_SOCKET`
//! (systemd-socket-activate, Debian's `systemd`), `OMNI_REQUIRE_SSLSCAN`
//! (sslscan).

use crate::common::{good_body, omnid, raw_request, sandbox_setting, TempDir};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ----- certificates ----------------------------------------------------------

/// A test CA that issues server and client certificates and CRLs.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A certificate and its key, PEM.
struct Pair {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost; `expired` puts
    /// its validity in 2000-2001.
    fn server(&self, serial: u64, expired: bool) -> Pair {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        p.distinguished_name.push(DnType::CommonName, "omnid test");
        p.serial_number = Some(SerialNumber::from(serial));
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            p.not_before = date_time_ymd(2000, 1, 1);
            p.not_after = date_time_ymd(2001, 1, 1);
        }
        self.sign(p)
    }

    /// A client certificate whose URI SAN is `uri`.
    fn client(&self, uri: &str, serial: u64) -> Pair {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "client");
        p.serial_number = Some(SerialNumber::from(serial));
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A CRL revoking `serials` (possibly none).
    fn crl(&self, serials: &[u64]) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(serials.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 6, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// Writes `text` to `path` atomically (a reader never sees half a file).
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn first_cert_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

// ----- the server ------------------------------------------------------------

/// A running omnid: its log lines, the `listening on` value and the probe
/// listener's address when it has one.
struct Omnid {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    listen: String,
    probe: Option<SocketAddr>,
    _dir: TempDir,
}

impl Omnid {
    /// Starts omnid with `config` (written to the directory's omnid.toml).
    fn start(dir: TempDir, config: &str) -> Omnid {
        let path = dir.path("omnid.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = omnid();
        cmd.arg("--config").arg(&path);
        Self::spawn(cmd, dir)
    }

    fn spawn(mut cmd: Command, dir: TempDir) -> Omnid {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start omnid");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let l2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        let mut s = Omnid {
            child,
            logs,
            listen: String::new(),
            probe: None,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(60);
        let line = loop {
            if let Some(l) = s.wait_log("\"listening on ", Duration::from_millis(50)) {
                break l;
            }
            let exited = s.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > until {
                let _ = s.child.kill();
                panic!(
                    "omnid did not start ({exited:?}); logs:\n{}",
                    s.logs().join("\n")
                );
            }
        };
        s.listen = after(&line, "listening on ", '"');
        // The probe listener is logged after the service's, before this.
        s.wait_log("workers ready", Duration::from_secs(10));
        if let Some(line) = s
            .logs()
            .iter()
            .find(|l| l.contains("probe listener on "))
            .cloned()
        {
            s.probe = Some(after(&line, "probe listener on ", ' ').parse().unwrap());
        }
        s
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The first log line containing `needle`, waiting for it.
    fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until `needle` has been logged `n` times.
    fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.logs().iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn addr(&self) -> SocketAddr {
        self.listen.parse().unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGHUP, then waits for the `n`th line saying how the reload ended.
    fn reload(&self, needle: &str, n: usize) {
        self.signal(libc::SIGHUP);
        assert!(
            self.wait_log_count(needle, n, Duration::from_secs(30)),
            "no {needle:?} (#{n}) after SIGHUP; logs:\n{}",
            self.logs().join("\n")
        );
    }

    /// A metric of the probe listener's `/metrics`.
    fn metric(&self, line_prefix: &str) -> u64 {
        let probe = self.probe.expect("a probe listener");
        let r = raw_request(probe, "GET", "/metrics", &[], None).unwrap();
        r.text()
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {line_prefix}:\n{}", r.text()))
    }
}

impl Drop for Omnid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text after `marker` up to `end`.
fn after(line: &str, marker: &str, end: char) -> String {
    let i = line.find(marker).unwrap() + marker.len();
    line[i..].chars().take_while(|c| *c != end).collect()
}

/// The `[tls]` files of a test server, in its directory.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    crl: PathBuf,
}

impl TlsFiles {
    fn write(dir: &TempDir, server: &Pair, client_ca: Option<&Pki>) -> TlsFiles {
        let f = TlsFiles {
            cert: dir.path("server.crt"),
            key: dir.path("server.key"),
            ca: dir.path("clients-ca.pem"),
            crl: dir.path("clients.crl"),
        };
        std::fs::write(&f.cert, &server.cert).unwrap();
        std::fs::write(&f.key, &server.key).unwrap();
        if let Some(ca) = client_ca {
            std::fs::write(&f.ca, &ca.ca_pem).unwrap();
        }
        f
    }

    fn section(&self, with_ca: bool, with_crl: bool) -> String {
        let mut s = format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        );
        if with_ca {
            s.push_str(&format!("client_ca_file = \"{}\"\n", self.ca.display()));
        }
        if with_crl {
            s.push_str(&format!("crl_file = \"{}\"\n", self.crl.display()));
        }
        s
    }
}

/// A test configuration: one worker, no rate limit, generous deadline.
fn config(extra_top: &str, sections: &str) -> String {
    format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nprobe_listen = \"127.0.0.1:0\"\nworkers = 1\nsandbox = \"{}\"\n{extra_top}\n\
         [rate_limit]\nenabled = false\n[worker]\ntimeout_ms = 5000\n{sections}\n",
        sandbox_setting()
    )
}

// ----- outside tools ---------------------------------------------------------

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The tool, or `None` after one line on stderr (a failure when `var` is 1).
fn tool(name: &str, var: &str, package: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        assert!(
            std::env::var(var).as_deref() != Ok("1"),
            "{var}=1 but {name} is not on PATH (apt-get install {package})"
        );
        eprintln!(
            "skipped: {name} not found (apt-get install {package}; {var}=1 makes this a failure)"
        );
    }
    found
}

/// What curl did: its exit code, the HTTP status (0 for none) and body, and
/// its error output.
struct Curl {
    code: i32,
    status: u16,
    body: String,
    stderr: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn curl(bin: &Path, args: &[&str]) -> Curl {
    let out = Command::new(bin)
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        code: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl arguments for POST /api/validate with `body`.
fn post_args(body: &Value) -> Vec<String> {
    vec![
        "-H".into(),
        "Content-Type: application/json".into(),
        "--data-binary".into(),
        body.to_string(),
    ]
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ----- a keep-alive TLS client in Rust ----------------------------------------

fn client_config(ca_pem: &str, client: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        Some(p) => {
            let chain = CertificateDer::pem_slice_iter(p.cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One keep-alive HTTPS connection.
struct TlsConn {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsConn {
    fn open(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsConn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn =
            rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(TlsConn { s })
    }

    fn server_cert(&self) -> Vec<u8> {
        self.s.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// POST /api/validate; `(status, body)`.
    fn validate(&mut self, body: &[u8]) -> std::io::Result<(u16, Value)> {
        let head = format!(
            "POST /api/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.s.write_all(head.as_bytes())?;
        self.s.write_all(body)?;
        self.s.flush()?;
        read_http(&mut self.s)
    }
}

/// One HTTP/1.1 response with a Content-Length body.
fn read_http(s: &mut impl Read) -> std::io::Result<(u16, Value)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

// ----- the tests ---------------------------------------------------------------

#[test]
fn curl_gets_200_over_tls_and_plain_http_to_the_tls_port_is_refused() {
    let Some(curl_bin) = tool("curl", "OMNI_REQUIRE_CURL", "curl") else {
        return;
    };
    let pki = Pki::new("omni test CA");
    let dir = TempDir::new("tls-basic");
    let files = TlsFiles::write(&dir, &pki.server(1, false), None);
    std::fs::write(dir.path("ca.pem"), &pki.ca_pem).unwrap();
    let cacert = dir.path("ca.pem");
    let srv = Omnid::start(dir, &config("", &files.section(false, false)));
    assert!(
        srv.wait_log("TLS 1.3/1.2 on", Duration::from_secs(5))
            .is_some(),
        "no TLS summary line"
    );
    let base = format!("https://127.0.0.1:{}", srv.addr().port());

    // The real client, verifying the server against the CA.
    let r = curl(
        &curl_bin,
        &["--cacert", path_str(&cacert), &format!("{base}/api/health")],
    );
    assert_eq!((r.code, r.status), (0, 200), "{}", r.stderr);
    assert_eq!(r.json()["status"], "ok");
    let mut args = vec!["--cacert".to_string(), path_str(&cacert).to_string()];
    args.extend(post_args(&good_body()));
    args.push(format!("{base}/api/validate"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(&curl_bin, &args);
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
    assert_eq!(r.json()["actions"], serde_json::json!(["ReturnToHome"]));

    // ALPN says HTTP/1.1; TLS 1.3 by default, and TLS 1.2 works too.
    let cfg = client_config(&pki.ca_pem, None);
    let conn = TlsConn::open(srv.addr(), &cfg).unwrap();
    assert_eq!(conn.s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        conn.s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(first_cert_der(&pki.ca_pem)))
        .unwrap();
    let tls12 = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut c12 = TlsConn::open(srv.addr(), &tls12).unwrap();
    assert_eq!(
        c12.s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = c12
        .validate(&serde_json::to_vec(&good_body()).unwrap())
        .unwrap();
    assert_eq!(status, 200);

    // Plain HTTP to the TLS port: a 400 that says why, then the close.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    s.read_to_end(&mut out).expect("closed, not hanging");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("https://"));
    // curl's own plain-HTTP attempt gets the same 400.
    let r = curl(
        &curl_bin,
        &[&format!(
            "http://127.0.0.1:{}/api/health",
            srv.addr().port()
        )],
    );
    assert_eq!(r.status, 400, "{} {}", r.stderr, r.body);
    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x00, 0x01, 0x02]).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("closed, not hanging (and not reset)");
    assert!(out.is_empty());

    // The probe listener: plain HTTP, three routes only.
    let probe = srv.probe.unwrap();
    assert_eq!(
        raw_request(probe, "GET", "/healthz", &[], None)
            .unwrap()
            .status,
        200
    );
    let ready = raw_request(probe, "GET", "/readyz", &[], None).unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    for path in ["/api/validate", "/api/health", "/", "/api/openapi.json"] {
        assert_eq!(
            raw_request(probe, "GET", path, &[], None).unwrap().status,
            404,
            "{path}"
        );
    }
    assert_eq!(
        srv.metric("omnid_tls_handshake_failures_total{reason=\"plain_http\"}"),
        3
    );
}

#[test]
fn clients_reject_a_wrong_ca_or_expired_certificate_and_a_bad_new_pair_keeps_the_old_one() {
    let Some(curl_bin) = tool("curl", "OMNI_REQUIRE_CURL", "curl") else {
        return;
    };
    let pki = Pki::new("omni test CA");
    let other = Pki::new("some other CA");
    let dir = TempDir::new("tls-negative");
    let good = pki.server(10, false);
    let files = TlsFiles::write(&dir, &good, None);
    std::fs::write(dir.path("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path("other-ca.pem"), &other.ca_pem).unwrap();
    let cacert = dir.path("ca.pem");
    let other_ca = dir.path("other-ca.pem");
    let srv = Omnid::start(dir, &config("", &files.section(false, false)));
    let url = format!("https://127.0.0.1:{}/api/health", srv.addr().port());

    // A CA that did not issue the server's certificate: curl refuses.
    let r = curl(&curl_bin, &["--cacert", path_str(&other_ca), &url]);
    assert_eq!(
        r.code, 60,
        "curl accepted a certificate of another CA: {}",
        r.stderr
    );
    assert_eq!(r.status, 0);
    // The right CA (the positive control).
    let r = curl(&curl_bin, &["--cacert", path_str(&cacert), &url]);
    assert_eq!((r.code, r.status), (0, 200), "{}", r.stderr);

    // A key that does not belong to the new certificate: the reload fails,
    // says why, and the old certificate is still served.
    let stranger = pki.server(11, false);
    write_atomic(&files.cert, &pki.server(12, false).cert);
    write_atomic(&files.key, &stranger.key);
    srv.reload("reload failed", 1);
    let why = srv
        .wait_log("reload failed", Duration::from_secs(1))
        .unwrap();
    assert!(
        why.contains("tls.key_file") && why.contains("does not belong"),
        "{why}"
    );
    let cfg = client_config(&pki.ca_pem, None);
    let conn = TlsConn::open(srv.addr(), &cfg).unwrap();
    assert_eq!(conn.server_cert(), first_cert_der(&good.cert));
    let r = curl(&curl_bin, &["--cacert", path_str(&cacert), &url]);
    assert_eq!((r.code, r.status), (0, 200), "{}", r.stderr);
    // An unreadable file: the same.
    std::fs::remove_file(&files.key).unwrap();
    srv.reload("reload failed", 2);
    assert_eq!(
        TlsConn::open(srv.addr(), &cfg).unwrap().server_cert(),
        first_cert_der(&good.cert)
    );

    // An expired certificate (a valid pair): served after the reload, and
    // curl refuses it.
    let expired = pki.server(13, true);
    write_atomic(&files.cert, &expired.cert);
    write_atomic(&files.key, &expired.key);
    srv.reload("TLS material reloaded", 1);
    let r = curl(&curl_bin, &["--cacert", path_str(&cacert), &url]);
    assert_eq!(
        r.code, 60,
        "curl accepted an expired certificate: {}",
        r.stderr
    );
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
}

#[test]
fn client_certificates_are_tenants_with_their_own_limits() {
    let Some(curl_bin) = tool("curl", "OMNI_REQUIRE_CURL", "curl") else {
        return;
    };
    let pki = Pki::new("omni test CA");
    let stranger_ca = Pki::new("unknown CA");
    let dir = TempDir::new("tls-mtls");
    let files = TlsFiles::write(&dir, &pki.server(1, false), Some(&pki));
    let certs = [
        ("a", pki.client("spiffe://omni.test/a", 101)),
        ("b", pki.client("b", 102)),
        ("nobody", pki.client("spiffe://omni.test/nobody", 103)),
        (
            "unknown-ca",
            stranger_ca.client("spiffe://omni.test/a", 104),
        ),
    ];
    let mut paths = std::collections::HashMap::new();
    for (name, p) in &certs {
        let (c, k) = (
            dir.path(&format!("{name}.crt")),
            dir.path(&format!("{name}.key")),
        );
        std::fs::write(&c, &p.cert).unwrap();
        std::fs::write(&k, &p.key).unwrap();
        paths.insert(*name, (c, k));
    }
    std::fs::write(dir.path("ca.pem"), &pki.ca_pem).unwrap();
    let cacert = dir.path("ca.pem");
    let sections = format!(
        "[auth]\nenabled = true\nmode = \"mtls\"\n{}\n\
         [tenants.a]\nclient_identities = [\"spiffe://omni.test/a\"]\nmax_body_bytes = 400\n\
         [tenants.b]\n",
        files.section(true, false)
    );
    let srv = Omnid::start(dir, &config("", &sections));
    let url = format!("https://127.0.0.1:{}/api/validate", srv.addr().port());
    let as_client = |who: &str, body: &Value| {
        let (c, k) = &paths[who];
        let mut args = vec![
            "--cacert".to_string(),
            path_str(&cacert).into(),
            "--cert".into(),
            path_str(c).into(),
            "--key".into(),
            path_str(k).into(),
        ];
        args.extend(post_args(body));
        args.push(url.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&curl_bin, &args)
    };
    // About 700 bytes: over A's max_body_bytes (400), under the global one.
    let big = serde_json::json!({
        "code": crate::common::GOOD_POLICY,
        "context": { "Battery": 15, "Pad": "x".repeat(300) }
    });
    assert!(big.to_string().len() > 400);

    let r = as_client("a", &good_body());
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
    let r = as_client("a", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    // B (its URI SAN is its tenant name) has no such limit.
    let r = as_client("b", &big);
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
    // Verified, but its identity is no tenant's: 403.
    let r = as_client("nobody", &good_body());
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert!(r.body.contains("belongs to no tenant"), "{}", r.body);

    // The log line names the tenant and the certificate identity.
    let line = srv
        .wait_log(
            "\"credential\":\"cert:spiffe://omni.test/a\"",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no log line with A's identity:\n{}", srv.logs().join("\n")));
    assert!(line.contains("\"tenant\":\"a\""), "{line}");

    let before = srv.metric("omnid_tls_handshake_failures_total{reason=\"client_certificate\"}");
    // An unknown CA's certificate, or none: refused in the handshake, no
    // HTTP answer at all.
    let r = as_client("unknown-ca", &good_body());
    assert!(
        r.code != 0 && r.status == 0,
        "{} {} {}",
        r.code,
        r.status,
        r.body
    );
    let mut args = vec!["--cacert".to_string(), path_str(&cacert).into()];
    args.extend(post_args(&good_body()));
    args.push(url.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(&curl_bin, &args);
    assert!(
        r.code != 0 && r.status == 0,
        "{} {} {}",
        r.code,
        r.status,
        r.body
    );
    assert_eq!(
        srv.metric("omnid_tls_handshake_failures_total{reason=\"client_certificate\"}"),
        before + 2
    );
}

#[test]
fn a_revoked_client_is_refused_after_sighup_with_a_new_crl() {
    let Some(curl_bin) = tool("curl", "OMNI_REQUIRE_CURL", "curl") else {
        return;
    };
    let pki = Pki::new("omni test CA");
    let dir = TempDir::new("tls-crl");
    let files = TlsFiles::write(&dir, &pki.server(1, false), Some(&pki));
    std::fs::write(&files.crl, pki.crl(&[])).unwrap();
    let a = pki.client("spiffe://omni.test/a", 201);
    let b = pki.client("spiffe://omni.test/b", 202);
    for (n, p) in [("a", &a), ("b", &b)] {
        std::fs::write(dir.path(&format!("{n}.crt")), &p.cert).unwrap();
        std::fs::write(dir.path(&format!("{n}.key")), &p.key).unwrap();
    }
    std::fs::write(dir.path("ca.pem"), &pki.ca_pem).unwrap();
    let p = |n: &str| dir.path(n).to_str().unwrap().to_string();
    let (cacert, a_crt, a_key, b_crt, b_key) =
        (p("ca.pem"), p("a.crt"), p("a.key"), p("b.crt"), p("b.key"));
    let sections = format!(
        "[auth]\nenabled = true\nmode = \"mtls\"\n{}\n\
         [tenants.a]\nclient_identities = [\"spiffe://omni.test/a\"]\n\
         [tenants.b]\nclient_identities = [\"spiffe://omni.test/b\"]\n",
        files.section(true, true)
    );
    let srv = Omnid::start(dir, &config("", &sections));
    let url = format!("https://127.0.0.1:{}/api/validate", srv.addr().port());
    let as_client = |crt: &str, key: &str| {
        let mut args = vec![
            "--cacert".to_string(),
            cacert.clone(),
            "--cert".into(),
            crt.into(),
            "--key".into(),
            key.into(),
        ];
        args.extend(post_args(&good_body()));
        args.push(url.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&curl_bin, &args)
    };
    let r = as_client(&a_crt, &a_key);
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
    // A keep-alive connection of A opened before the revocation.
    let body = serde_json::to_vec(&good_body()).unwrap();
    let mut kept = TlsConn::open(srv.addr(), &client_config(&pki.ca_pem, Some(&a))).unwrap();
    assert_eq!(kept.validate(&body).unwrap().0, 200);

    write_atomic(&files.crl, &pki.crl(&[201]));
    srv.reload("TLS material reloaded", 1);

    // New connections of A: refused in the handshake.
    let r = as_client(&a_crt, &a_key);
    assert!(
        r.code != 0 && r.status == 0,
        "a revoked client got in: {} {}",
        r.status,
        r.body
    );
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    // A's open connection: its certificate is checked again, 401.
    let (status, v) = kept.validate(&body).unwrap();
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no longer accepted"));
    // B is not revoked.
    let r = as_client(&b_crt, &b_key);
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
}

#[test]
fn certificate_rotation_by_sighup_fails_no_request_on_eight_busy_connections() {
    let pki = Pki::new("omni test CA");
    let dir = TempDir::new("tls-rotate");
    let old = pki.server(1, false);
    let files = TlsFiles::write(&dir, &old, None);
    let srv = Omnid::start(
        dir,
        &config("", &files.section(false, false)).replace("workers = 1", "workers = 2"),
    );
    let addr = srv.addr();
    let cfg = client_config(&pki.ca_pem, None);
    let body = Arc::new(serde_json::to_vec(&good_body()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    // Half the clients keep one connection for the whole run; the other
    // half open a new one every 10 requests, so handshakes happen before,
    // during and after the reload.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (cfg, body, stop, done, reloaded) = (
                cfg.clone(),
                body.clone(),
                stop.clone(),
                done.clone(),
                reloaded.clone(),
            );
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut certs_after_reload = Vec::new();
                let mut conn = TlsConn::open(addr, &cfg).expect("connect");
                let first_cert = conn.server_cert();
                let mut n = 0usize;
                let mut after_reload_on_first = 0usize;
                let mut first_conn = true;
                while !stop.load(Ordering::Acquire) && n < 5000 {
                    if i % 2 == 1 && n > 0 && n.is_multiple_of(10) {
                        let was_reloaded = reloaded.load(Ordering::Acquire);
                        match TlsConn::open(addr, &cfg) {
                            Ok(c) => {
                                conn = c;
                                first_conn = false;
                                if was_reloaded {
                                    certs_after_reload.push(conn.server_cert());
                                }
                            }
                            Err(e) => failures.push(format!("connect: {e}")),
                        }
                    }
                    let was_reloaded = reloaded.load(Ordering::Acquire);
                    match conn.validate(&body) {
                        Ok((200, _)) => {}
                        Ok((s, v)) => failures.push(format!("status {s}: {v}")),
                        Err(e) => failures.push(format!("io: {e}")),
                    }
                    if first_conn && was_reloaded {
                        after_reload_on_first += 1;
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::AcqRel);
                }
                (
                    n,
                    failures,
                    first_cert,
                    certs_after_reload,
                    after_reload_on_first,
                )
            })
        })
        .collect();
    let wait_done = |at_least: usize| {
        let until = Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::Acquire) < at_least && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_done(80);
    let new = pki.server(2, false);
    write_atomic(&files.cert, &new.cert);
    write_atomic(&files.key, &new.key);
    srv.reload("TLS material reloaded", 1);
    reloaded.store(true, Ordering::Release);
    let at_reload = done.load(Ordering::Acquire);
    wait_done(at_reload + 160);
    stop.store(true, Ordering::Release);
    let old_der = first_cert_der(&old.cert);
    let new_der = first_cert_der(&new.cert);
    let mut total = 0;
    for (i, c) in clients.into_iter().enumerate() {
        let (n, failures, first_cert, after, kept) = c.join().unwrap();
        total += n;
        assert!(failures.is_empty(), "client {i}: {failures:?}");
        assert_eq!(
            first_cert, old_der,
            "client {i} started before the rotation"
        );
        if i % 2 == 0 {
            // The kept connections went on across the reload.
            assert!(kept > 0, "client {i} made no request after the reload");
        } else {
            assert!(
                after.iter().all(|c| *c == new_der),
                "client {i}: an old certificate after the reload"
            );
        }
    }
    assert!(total >= 240, "{total} requests");
    // A new connection now sees the new certificate.
    assert_eq!(TlsConn::open(addr, &cfg).unwrap().server_cert(), new_der);
}

#[test]
fn a_unix_socket_serves_curl_with_its_mode_and_is_removed_at_exit() {
    let Some(curl_bin) = tool("curl", "OMNI_REQUIRE_CURL", "curl") else {
        return;
    };
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = TempDir::new("unix");
    let sock = dir.path("omnid.sock");
    // A stale socket file from an earlier run (nobody accepts on it).
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let cfg = config("listen_mode = \"0600\"\n", "").replace(
        "\nlisten = \"127.0.0.1:0\"",
        &format!("\nlisten = \"unix:{}\"", sock.display()),
    );
    let mut srv = Omnid::start(dir, &cfg);
    assert_eq!(srv.listen, format!("unix:{}", sock.display()));
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let s = path_str(&sock);
    let r = curl(
        &curl_bin,
        &["--unix-socket", s, "http://localhost/api/health"],
    );
    assert_eq!((r.code, r.status), (0, 200), "{}", r.stderr);
    let mut args = vec!["--unix-socket".to_string(), s.to_string()];
    args.extend(post_args(&good_body()));
    args.push("http://localhost/api/validate".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(&curl_bin, &args);
    assert_eq!((r.code, r.status), (0, 200), "{}{}", r.stderr, r.body);
    assert_eq!(r.json()["ok"], true);

    // A second omnid on the same path refuses to take it over.
    let dir2 = TempDir::new("unix2");
    let path2 = dir2.path("omnid.toml");
    std::fs::write(&path2, &cfg).unwrap();
    let out = omnid().arg("--config").arg(&path2).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is listening"), "{err}");

    // SIGTERM: drained, exit 0, and the socket file is gone.
    srv.signal(libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "omnid did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    assert!(!sock.exists(), "the socket file was left behind");
}

#[test]
fn systemd_socket_activation_serves_the_passed_socket_and_workers_do_not_inherit_it() {
    let Some(activate) = tool(
        "systemd-socket-activate",
        "OMNI_REQUIRE_SYSTEMD_SOCKET",
        "systemd",
    ) else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = TempDir::new("activate");
    // `listen` names another address: the passed socket wins.
    let mut cfg = config("", "").replace("probe_listen = \"127.0.0.1:0\"\n", "");
    // Its own store file: never the built-in relative path (a file in the
    // repository), whatever environment systemd-socket-activate passes on.
    cfg.push_str(&format!(
        "\n[store]\npath = \"{}\"\n",
        dir.path("store.db").display()
    ));
    std::fs::write(dir.path("omnid.toml"), &cfg).unwrap();
    let mut cmd = Command::new(activate);
    for (k, _) in std::env::vars() {
        if k.starts_with("OMNID_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("-l")
        .arg(addr.to_string())
        .arg(env!("CARGO_BIN_EXE_omnid"))
        .arg("--config")
        .arg(dir.path("omnid.toml"));
    // systemd-socket-activate execs omnid at the first connection.
    let first = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match raw_request(addr, "GET", "/api/health", &[], None) {
                Ok(r) => return r,
                Err(e) if Instant::now() < until => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("no answer on the activated socket: {e}"),
            }
        }
    });
    let srv = Omnid::spawn(cmd, dir);
    assert_eq!(srv.listen, addr.to_string());
    assert!(srv
        .wait_log("socket activation", Duration::from_secs(1))
        .is_some());
    assert_eq!(first.join().unwrap().status, 200);
    let r = crate::common::post_validate(addr, &serde_json::to_vec(&good_body()).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // The listening socket is omnid's alone: no worker holds it.
    let inode = listening_inode(port).expect("the listening socket in /proc/net/tcp");
    let link = format!("socket:[{inode}]");
    let holds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_link(e.path())
                        .map(|l| l.to_string_lossy() == link)
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    };
    assert!(holds(srv.child.id()), "omnid itself does not hold {link}");
    let workers = crate::common::children_of(srv.child.id());
    assert!(!workers.is_empty());
    for w in workers {
        assert!(!holds(w), "worker {w} inherited the listening socket");
    }
}

/// The inode of the socket listening on 127.0.0.1:`port`.
fn listening_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")).then(|| f[9].to_string())
    })
}

#[test]
fn sslscan_finds_only_tls12_and_tls13_with_strong_ciphers() {
    let Some(sslscan) = tool("sslscan", "OMNI_REQUIRE_SSLSCAN", "sslscan") else {
        return;
    };
    let pki = Pki::new("omni test CA");
    let dir = TempDir::new("sslscan");
    let files = TlsFiles::write(&dir, &pki.server(1, false), None);
    let srv = Omnid::start(dir, &config("", &files.section(false, false)));
    let out = Command::new(sslscan)
        .args(["--no-colour", &srv.listen])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (proto, state) in [
        ("SSLv2", "disabled"),
        ("SSLv3", "disabled"),
        ("TLSv1.0", "disabled"),
        ("TLSv1.1", "disabled"),
        ("TLSv1.2", "enabled"),
        ("TLSv1.3", "enabled"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(proto) && l.contains(state)),
            "{proto} not {state}:\n{text}"
        );
    }
    let accepted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted"))
        .collect();
    assert!(accepted.len() >= 3, "{text}");
    for l in accepted {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (proto, bits, cipher) = (f[1], f[2].parse::<u32>().unwrap_or(0), f[4]);
        assert!(proto == "TLSv1.2" || proto == "TLSv1.3", "{l}");
        assert!(bits >= 128, "{l}");
        assert!(
            cipher.contains("GCM") || cipher.contains("CHACHA20"),
            "not an AEAD suite: {l}"
        );
        for weak in ["CBC", "RC4", "DES", "NULL", "EXP", "MD5", "ANON"] {
            assert!(!cipher.to_ascii_uppercase().contains(weak), "weak: {l}");
        }
    }
}
