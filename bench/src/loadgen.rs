//! A bounded HTTP/1.1 load generator on the `hyper` 1.x client.
//!
//! `connections` keep-alive connections each run one request at a time.
//! Closed loop: each connection sends its next request as soon as the
//! previous answer has arrived (the maximum throughput). Open loop: requests
//! are due at a constant total `rate`, spread over the connections; a
//! request whose connection was still busy at its due time is timed from
//! that due time, so waiting behind a slow answer counts (no coordinated
//! omission), while the client's own timer lateness does not.
//!
//! Every run is bounded: by `duration` after `warmup`, optionally by a
//! request count, and each request by `timeout`. Latencies go into HDR
//! histograms (1 µs … 60 s, 3 significant digits), per request template.
//! With `tls` set each connection is HTTPS (rustls), its handshake made
//! when the connection opens, outside any request's time.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Back to back on each connection.
    Closed,
    /// A constant total rate in requests per second.
    Open { rate: f64 },
}

/// A request body: fixed, or with a per-request counter spliced in (for a
/// new policy on every request).
#[derive(Debug, Clone)]
pub enum Body {
    Fixed(Bytes),
    Unique { prefix: Vec<u8>, suffix: Vec<u8> },
}

impl Body {
    fn bytes(&self, seq: u64) -> Bytes {
        match self {
            Body::Fixed(b) => b.clone(),
            Body::Unique { prefix, suffix } => {
                let n = seq.to_string();
                let mut v = Vec::with_capacity(prefix.len() + n.len() + suffix.len());
                v.extend_from_slice(prefix);
                v.extend_from_slice(n.as_bytes());
                v.extend_from_slice(suffix);
                Bytes::from(v)
            }
        }
    }

    /// Splits `text` at the first `marker`; the counter replaces it.
    pub fn unique(text: &str, marker: &str) -> Body {
        match text.split_once(marker) {
            Some((a, b)) => Body::Unique {
                prefix: a.as_bytes().to_vec(),
                suffix: b.as_bytes().to_vec(),
            },
            None => Body::Fixed(Bytes::from(text.to_string())),
        }
    }
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// Benign requests must succeed; hostile ones are only counted.
    pub benign: bool,
    /// Share of the mix (the pattern repeats every sum-of-weights requests).
    pub weight: u32,
    pub method: Method,
    pub path: String,
    pub content_type: String,
    pub body: Body,
    /// The status that counts as success (`None`: any HTTP answer).
    pub expect_status: Option<u16>,
    /// Bytes a successful answer must contain.
    pub expect_contains: Option<Vec<u8>>,
    /// Extra request headers (e.g. a tenant's `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl Template {
    /// A benign `POST` of JSON that must answer 200.
    pub fn post_json(name: &str, path: &str, body: Body) -> Template {
        Template {
            name: name.into(),
            benign: true,
            weight: 1,
            method: Method::POST,
            path: path.into(),
            content_type: "application/json".into(),
            body,
            expect_status: Some(200),
            expect_contains: None,
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub connections: usize,
    pub mode: Mode,
    /// Requests started during the warm-up are sent but not recorded.
    pub warmup: Duration,
    /// The measured window after the warm-up.
    pub duration: Duration,
    /// Stop after this many requests (warm-up included).
    pub max_requests: Option<u64>,
    /// Per request; past it the request is an error and its connection is dropped.
    pub timeout: Duration,
    pub templates: Vec<Template>,
    /// Client runtime threads.
    pub threads: usize,
    /// HTTPS with this client configuration (server name `127.0.0.1`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Requests recorded (started in the measured window).
    pub count: u64,
    /// Of those, answered as expected.
    pub ok: u64,
    pub failed: u64,
    /// Recorded requests per second of the measured window.
    pub rps: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateReport {
    pub name: String,
    pub benign: bool,
    pub summary: Summary,
    /// HTTP status → count.
    pub statuses: BTreeMap<String, u64>,
    /// Transport errors (`connect`, `io`, `timeout`) → count.
    pub errors: BTreeMap<String, u64>,
    /// Answers with the expected status whose body lacked the expected bytes.
    pub unexpected_body: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    /// Target rate (open loop), requests per second.
    pub target_rps: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub measured_s: f64,
    pub all: Summary,
    /// The answers that were as expected only (e.g. without fast refusals).
    pub all_ok: Summary,
    pub benign: Summary,
    pub hostile: Option<Summary>,
    pub templates: Vec<TemplateReport>,
    /// Connections opened after the first one of each connection slot.
    pub reconnects: u64,
}

struct Stats {
    hist: Histogram<u64>,
    /// Latencies of the answers that were as expected.
    hist_ok: Histogram<u64>,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    unexpected_body: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            hist: new_hist(),
            hist_ok: new_hist(),
            ok: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            unexpected_body: 0,
        }
    }

    fn merge(&mut self, o: &Stats) {
        let _ = self.hist.add(&o.hist);
        let _ = self.hist_ok.add(&o.hist_ok);
        self.ok += o.ok;
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.unexpected_body += o.unexpected_body;
    }

    fn failed(&self) -> u64 {
        self.hist.len() - self.ok
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn summarize(hist: &Histogram<u64>, ok: u64, window: Duration) -> Summary {
    let count = hist.len();
    if count == 0 {
        return Summary::default();
    }
    Summary {
        count,
        ok,
        failed: count - ok,
        rps: count as f64 / window.as_secs_f64(),
        mean_us: hist.mean(),
        p50_us: hist.value_at_quantile(0.50),
        p90_us: hist.value_at_quantile(0.90),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
    }
}

struct Shared {
    seq: AtomicU64,
    reconnects: AtomicU64,
    /// Template index for each position of the repeating mix.
    pattern: Vec<usize>,
}

/// The mix: each template `weight` times, shuffled with a fixed seed so
/// that hostile requests are spread out, and the same in every run.
fn pattern(templates: &[Template]) -> Vec<usize> {
    let mut p: Vec<usize> = templates
        .iter()
        .enumerate()
        .flat_map(|(i, t)| std::iter::repeat_n(i, t.weight as usize))
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..p.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.swap(i, (x % (i as u64 + 1)) as usize);
    }
    p
}

async fn connect(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<SendRequest<Full<Bytes>>, &'static str> {
    let stream = TcpStream::connect(addr).await.map_err(|_| "connect")?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return handshake(stream).await;
    };
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|_| "connect")?;
    handshake(stream).await
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, &'static str>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A client configuration trusting the CA certificates of a PEM file
/// (TLS 1.3 and 1.2, ALPN `http/1.1`).
pub fn tls_client(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

struct Window {
    t0: Instant,
    measure_from: Instant,
    end: Instant,
}

async fn connection(
    slot: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    w: Arc<Window>,
) -> Vec<Stats> {
    let mut stats: Vec<Stats> = cfg.templates.iter().map(|_| Stats::new()).collect();
    let host = HeaderValue::from_str(&cfg.addr.to_string()).expect("host header");
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut opened = 0u64;
    let mut k: u64 = 0;
    let mut prev_done = w.t0;
    let n = cfg.connections as u64;
    tokio::time::sleep_until(w.t0.into()).await;
    loop {
        let start = match cfg.mode {
            Mode::Closed => Instant::now(),
            Mode::Open { rate } => {
                let due = w.t0 + Duration::from_secs_f64((k * n + slot as u64) as f64 / rate);
                k += 1;
                if due >= w.end {
                    break;
                }
                if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                }
                // Late because our previous answer came after the due time:
                // the server's delay, counted. Late by our own timer: not.
                if prev_done > due {
                    due
                } else {
                    Instant::now()
                }
            }
        };
        if Instant::now() >= w.end {
            break;
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        if cfg.max_requests.is_some_and(|m| seq >= m) {
            break;
        }
        let ti = shared.pattern[(seq % shared.pattern.len() as u64) as usize];
        let t = &cfg.templates[ti];
        let record = start >= w.measure_from;
        if sender.as_ref().is_some_and(|s| s.is_closed()) {
            sender = None;
        }
        if sender.is_none() {
            match connect(cfg.addr, cfg.tls.as_ref()).await {
                Ok(s) => {
                    if opened > 0 {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    opened += 1;
                    sender = Some(s);
                }
                Err(e) => {
                    if record {
                        let st = &mut stats[ti];
                        *st.errors.entry(e).or_default() += 1;
                        let _ = st.hist.record(micros(start.elapsed()));
                    }
                    prev_done = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let mut req = Request::new(Full::new(t.body.bytes(seq)));
        *req.method_mut() = t.method.clone();
        *req.uri_mut() = t.path.parse().expect("path");
        req.headers_mut().insert(HOST, host.clone());
        if let Ok(v) = HeaderValue::from_str(&t.content_type) {
            req.headers_mut().insert(CONTENT_TYPE, v);
        }
        for (k, v) in &t.headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                req.headers_mut().insert(k, v);
            }
        }
        let exchange = async {
            s.ready().await.map_err(|_| "io")?;
            let resp = s.send_request(req).await.map_err(|_| "io")?;
            let status = resp.status().as_u16();
            let close = resp
                .headers()
                .get(CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let body = resp.into_body().collect().await.map_err(|_| "io")?;
            Ok::<_, &'static str>((status, close, body.to_bytes()))
        };
        let got = tokio::time::timeout(cfg.timeout, exchange).await;
        let done = Instant::now();
        prev_done = done;
        let st = &mut stats[ti];
        match got {
            Ok(Ok((status, close, body))) => {
                if close {
                    sender = None;
                }
                if record {
                    let _ = st.hist.record(micros(done - start));
                    *st.statuses.entry(status).or_default() += 1;
                    if t.expect_status.is_none_or(|e| e == status) {
                        match &t.expect_contains {
                            Some(needle) if !contains(&body, needle) => st.unexpected_body += 1,
                            _ => {
                                st.ok += 1;
                                let _ = st.hist_ok.record(micros(done - start));
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                sender = None;
                if record {
                    let _ = st.hist.record(micros(done - start));
                    *st.errors.entry(e).or_default() += 1;
                }
            }
            Err(_) => {
                sender = None;
                if record {
                    let _ = st.hist.record(micros(done - start));
                    *st.errors.entry("timeout").or_default() += 1;
                }
            }
        }
    }
    stats
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Runs the load described by `cfg` on its own runtime and reports.
pub fn run(cfg: Config) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .thread_name("loadgen")
        .enable_all()
        .build()
        .expect("client runtime");
    let report = rt.block_on(run_async(cfg));
    rt.shutdown_timeout(Duration::from_secs(1));
    report
}

/// Runs the load on the current runtime.
pub async fn run_async(cfg: Config) -> Report {
    assert!(!cfg.templates.is_empty(), "no request templates");
    assert!(cfg.connections > 0, "no connections");
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        seq: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        pattern: pattern(&cfg.templates),
    });
    let t0 = Instant::now() + Duration::from_millis(20);
    let w = Arc::new(Window {
        t0,
        measure_from: t0 + cfg.warmup,
        end: t0 + cfg.warmup + cfg.duration,
    });
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|i| tokio::spawn(connection(i, cfg.clone(), shared.clone(), w.clone())))
        .collect();
    // Hard bound: the window, one request timeout, and a margin.
    let hard = w.end + cfg.timeout + Duration::from_secs(5);
    let mut per: Vec<Stats> = cfg.templates.iter().map(|_| Stats::new()).collect();
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(hard.into(), t).await {
            Ok(Ok(stats)) => {
                for (a, b) in per.iter_mut().zip(&stats) {
                    a.merge(b);
                }
            }
            _ => abort.abort(),
        }
    }
    let measured_end = Instant::now().min(w.end);
    let window = measured_end
        .saturating_duration_since(w.measure_from)
        .max(Duration::from_millis(1));
    // A run cut short by `max_requests` is measured until it ended.
    let window = if cfg.max_requests.is_some() {
        window
    } else {
        cfg.duration
    };
    let mut all = Stats::new();
    let mut benign = Stats::new();
    let mut hostile = Stats::new();
    for (t, s) in cfg.templates.iter().zip(&per) {
        all.merge(s);
        if t.benign {
            benign.merge(s);
        } else {
            hostile.merge(s);
        }
    }
    let templates = cfg
        .templates
        .iter()
        .zip(&per)
        .map(|(t, s)| TemplateReport {
            name: t.name.clone(),
            benign: t.benign,
            summary: summarize(&s.hist, s.ok, window),
            statuses: s
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: s.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            unexpected_body: s.unexpected_body,
        })
        .collect();
    let _ = all.failed();
    Report {
        mode: match cfg.mode {
            Mode::Closed => "closed".into(),
            Mode::Open { .. } => "open".into(),
        },
        target_rps: match cfg.mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed => None,
        },
        connections: cfg.connections,
        threads: cfg.threads,
        measured_s: window.as_secs_f64(),
        all: summarize(&all.hist, all.ok, window),
        all_ok: summarize(&all.hist_ok, all.ok, window),
        benign: summarize(&benign.hist, benign.ok, window),
        hostile: cfg
            .templates
            .iter()
            .any(|t| !t.benign)
            .then(|| summarize(&hostile.hist, hostile.ok, window)),
        templates,
        reconnects: shared.reconnects.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_keeps_the_weights() {
        let mut ts = vec![Template::post_json("a", "/", Body::Fixed(Bytes::new())); 3];
        ts[0].weight = 90;
        ts[1].weight = 8;
        ts[2].weight = 2;
        let p = pattern(&ts);
        assert_eq!(p.len(), 100);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 8);
        assert_eq!(p.iter().filter(|&&i| i == 2).count(), 2);
        // Spread, not bunched at the end.
        assert!(p[90..].contains(&0));
    }

    #[test]
    fn unique_bodies_differ() {
        let b = Body::unique("{\"n\": @@N@@}", "@@N@@");
        assert_eq!(&b.bytes(7)[..], b"{\"n\": 7}");
        assert_ne!(b.bytes(1), b.bytes(2));
    }
}
