//! The HTTP side on hyper 1.x: the accept loop (bounded connections, in all
//! and per client address, header, body and stalled-write timeouts,
//! graceful close on drain), routing, the small
//! endpoints, and the envelope every response gets: `X-Request-Id`, the
//! request-count metric and one log line per evaluation (`/api/validate`
//! and evaluate-by-name). The stored policies' API is in
//! [`crate::registry::routes`].

use crate::api::{error_body, ApiError, CertProblem};
use crate::app::App;
use crate::body::Body;
use crate::ids::{new_request_id, valid_request_id};
use crate::listen::{Listener, Peer, Socket};
use crate::playground::Asset;
use crate::registry::routes::{self as policies, Resource};
use crate::tls::{ClientCert, TlsMaterial};
use crate::validate::{self, ValidateInput, ValidateLog};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, Semaphore};

/// Bounded set of endpoint names for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Validate,
    Health,
    Readiness,
    Metrics,
    MetricsProm,
    OpenApi,
    Playground(Asset),
    /// Stored policies, `/api/v1/policies…`.
    Policies(Resource),
    Unknown,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Health => "health",
            Endpoint::Readiness => "readiness",
            Endpoint::Metrics => "metrics",
            Endpoint::MetricsProm => "metrics_prom",
            Endpoint::OpenApi => "openapi",
            Endpoint::Playground(_) => "playground",
            Endpoint::Policies(r) => r.name(),
            Endpoint::Unknown => "other",
        }
    }

    fn route(path: &str) -> Endpoint {
        if let Some(r) = Resource::of(path) {
            return Endpoint::Policies(r);
        }
        match path {
            "/api/validate" => Endpoint::Validate,
            "/api/health" | "/healthz" => Endpoint::Health,
            "/api/readiness" | "/readyz" => Endpoint::Readiness,
            "/api/metrics" => Endpoint::Metrics,
            "/api/metrics-prom" | "/metrics" => Endpoint::MetricsProm,
            "/api/openapi.json" => Endpoint::OpenApi,
            _ => Asset::from_path(path).map_or(Endpoint::Unknown, Endpoint::Playground),
        }
    }

    /// The probe listener's few routes.
    fn probe_route(path: &str) -> Endpoint {
        match path {
            "/healthz" => Endpoint::Health,
            "/readyz" => Endpoint::Readiness,
            "/metrics" => Endpoint::MetricsProm,
            _ => Endpoint::Unknown,
        }
    }

    /// Whether the endpoint takes `m` (HEAD wherever GET).
    fn allows(self, m: &Method) -> bool {
        match self {
            Endpoint::Validate => *m == Method::POST,
            Endpoint::Policies(r) => r.op(m).is_some(),
            Endpoint::Unknown => false,
            _ => *m == Method::GET || *m == Method::HEAD,
        }
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> Option<&'static str> {
        match self {
            Endpoint::Validate => Some("POST"),
            Endpoint::Policies(r) => Some(r.allow()),
            Endpoint::Unknown => None,
            _ => Some("GET, HEAD"),
        }
    }

    /// An evaluation: its log line and its refusals are counted as such.
    fn evaluates(self) -> bool {
        matches!(
            self,
            Endpoint::Validate | Endpoint::Policies(Resource::Evaluate)
        )
    }
}

/// Counts open connections, so a drain can wait for their last bytes.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

struct ConnGuard(Arc<Connections>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per client address (`http.max_connections_per_client`),
/// counted at accept, before anything is read: a client that opens
/// connections and never reads its answers can hold at most its own share
/// of `http.max_connections`, never all of it.
#[derive(Default)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// A slot for one more connection from `ip`, or `None` when it has `cap`.
    fn admit(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let mut open = crate::lock::lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One open connection of a client address; released on drop.
struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = crate::lock::lock(&self.table.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's socket whose writes may not stall: when the client does
/// not read (its receive window and our send buffer are full) and no byte
/// goes out for `timeout`, the write fails with `TimedOut` and hyper ends
/// the connection, freeing its slot. The clock restarts with every write
/// that makes progress, so a large answer to a slow reader is fine; a
/// client that pipelines requests and reads nothing is not. Under TLS it
/// wraps the socket, below the encryption.
struct StallGuard<S> {
    inner: S,
    timeout: Duration,
    /// Set while a write waits for room in the socket.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StallGuard<S> {
    fn new(inner: S, timeout: Duration) -> StallGuard<S> {
        StallGuard {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Starts or checks the stall clock when `r` is pending; stops it when
    /// the socket took the write.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, r)
    }
}

/// A stream whose first byte has been read to tell TLS from plain HTTP, and
/// is handed back on the first read.
struct FirstByte<S> {
    inner: S,
    first: Option<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FirstByte<S> {
    /// Reads the first byte (`None`: the client closed without one).
    async fn read_first(inner: S) -> io::Result<(FirstByte<S>, Option<u8>)> {
        let mut inner = inner;
        let mut b = [0u8; 1];
        let n = inner.read(&mut b).await?;
        let first = (n == 1).then_some(b[0]);
        Ok((FirstByte { inner, first }, first))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FirstByte<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0 {
            if let Some(b) = this.first.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FirstByte<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `listen` (or systemd's sockets): the whole API, with TLS when on.
    Service,
    /// `probe_listen`: plain HTTP, `/healthz`, `/readyz` and `/metrics` only.
    Probe,
}

/// Connections the probe listener holds at once: probes and scrapes are
/// few, and they must not wait behind the service's connections.
const PROBE_MAX_CONNECTIONS: usize = 32;

/// The TLS record type of a handshake: the first byte of every ClientHello.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a request knows about its connection.
pub struct ConnInfo {
    pub peer: Peer,
    pub role: Role,
    /// The verified client certificate (TLS with auth.mode mtls/both).
    pub client_cert: Option<ClientCert>,
}

/// What every connection of one `serve` shares.
struct Shared {
    app: Arc<App>,
    conns: Arc<Connections>,
    role: Role,
    limit: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

/// Accepts on `listeners` until `stop` turns true, then drops them. Open
/// connections are closed gracefully when `close` turns true.
pub async fn serve(
    listeners: Vec<Listener>,
    role: Role,
    app: Arc<App>,
    conns: Arc<Connections>,
    stop: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
) {
    let cfg = app.settings().config.clone();
    let cap = match role {
        Role::Service => cfg.http.max_connections,
        Role::Probe => PROBE_MAX_CONNECTIONS,
    };
    let shared = Arc::new(Shared {
        app,
        conns,
        role,
        limit: Arc::new(Semaphore::new(cap)),
        per_client: Arc::new(PerClient::default()),
    });
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, shared.clone(), stop.clone(), close.clone())))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = shared.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e.kind(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let settings = shared.app.settings();
        // Before anything is read (and so before auth): a trusted proxy
        // speaks for many clients and has only the overall cap, and so do
        // local callers on a unix socket (its file mode decides who they are).
        let client = match peer {
            Peer::Tcp(addr) if shared.role == Role::Service => {
                let ip = addr.ip().to_canonical();
                if settings.trusted_proxies.contains(&ip) {
                    None
                } else {
                    match shared
                        .per_client
                        .admit(ip, settings.config.http.max_connections_per_client)
                    {
                        Some(slot) => Some(slot),
                        None => {
                            tracing::debug!(
                                peer = %ip,
                                "connection refused: the address has http.max_connections_per_client open"
                            );
                            drop(stream);
                            continue;
                        }
                    }
                }
            }
            _ => None,
        };
        shared.conns.open.fetch_add(1, Ordering::AcqRel);
        let guard = ConnGuard(shared.conns.clone());
        let timeouts = Timeouts {
            header: Duration::from_millis(settings.config.http.header_timeout_ms),
            write: Duration::from_millis(settings.config.http.write_timeout_ms),
        };
        // The material at accept time: a reload changes it for connections
        // accepted later, never for this one.
        let tls = match shared.role {
            Role::Service => settings.tls.clone(),
            Role::Probe => None,
        };
        drop(settings);
        let app = shared.app.clone();
        let role = shared.role;
        let close = close.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let _client = client;
            connection(app, stream, peer, role, tls, timeouts, close).await;
        });
    }
    drop(listener);
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    write: Duration,
}

/// One connection: the TLS handshake when the listener has TLS (plain HTTP
/// sent to it gets a 400 and the connection closes), then HTTP/1.1.
async fn connection(
    app: Arc<App>,
    stream: Socket,
    peer: Peer,
    role: Role,
    tls: Option<Arc<TlsMaterial>>,
    timeouts: Timeouts,
    close: watch::Receiver<bool>,
) {
    let io = StallGuard::new(stream, timeouts.write);
    let Some(material) = tls else {
        let conn = ConnInfo {
            peer,
            role,
            client_cert: None,
        };
        return serve_http(app, io, conn, timeouts, close).await;
    };
    let (io, first) = match tokio::time::timeout(timeouts.header, FirstByte::read_first(io)).await {
        Ok(Ok(x)) => x,
        Ok(Err(_)) => return,
        Err(_) => {
            app.metrics.tls_failure("timeout");
            return;
        }
    };
    match first {
        Some(TLS_HANDSHAKE_RECORD) => {}
        // A closed connection (a port scan, a TCP health check) is nothing.
        None => return,
        Some(b) => {
            app.metrics.tls_failure("plain_http");
            refuse_plain_http(io, timeouts, b.is_ascii_uppercase()).await;
            return;
        }
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(material.server.clone());
    let stream = match tokio::time::timeout(timeouts.header, acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = handshake_failure(&e);
            app.metrics.tls_failure(reason);
            tracing::debug!(peer = ?peer, reason, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            app.metrics.tls_failure("timeout");
            return;
        }
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| ClientCert::new(chain, material.generation));
    let conn = ConnInfo {
        peer,
        role,
        client_cert,
    };
    serve_http(app, stream, conn, timeouts, close).await;
}

/// The metric reason of a failed handshake.
fn handshake_failure(e: &io::Error) -> &'static str {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            "client_certificate"
        }
        _ => "protocol",
    }
}

/// Neither TLS nor anything else on a TLS listener: read what was sent
/// (bounded: 16 KiB, a pause of 200 ms, 2 s in all), answer plain HTTP with
/// a 400 and the usual error body (`answer`, when it looks like HTTP), and
/// close. Reading first makes the close a FIN, not a reset that could eat
/// the answer.
async fn refuse_plain_http<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    timeouts: Timeouts,
    answer: bool,
) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + timeouts.header.min(Duration::from_secs(2));
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let pause = tokio::time::Instant::now() + Duration::from_millis(200);
        match tokio::time::timeout_at(until.min(pause), io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    if !answer {
        let _ = io.shutdown().await;
        return;
    }
    let request_id = new_request_id();
    let body = error_body(
        &request_id,
        &ApiError::InvalidRequest(
            "this port speaks HTTPS (TLS); send the request with https://".into(),
        ),
    );
    let mut out = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// HTTP/1.1 with keep-alive over `io` until the client closes, a timeout
/// ends it, or `close` asks for a graceful end.
async fn serve_http<I>(
    app: Arc<App>,
    io: I,
    conn: ConnInfo,
    timeouts: Timeouts,
    mut close: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| {
        let app = app.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(&app, &conn, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = *close.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        if closing {
            let _ = conn.as_mut().await;
            break;
        }
        tokio::select! {
            r = conn.as_mut() => {
                let _ = r;
                break;
            }
            c = close.changed() => {
                if c.is_err() || *close.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Handles one request: routing, the envelope, metrics and the log line.
async fn handle(app: &App, conn: &Arc<ConnInfo>, req: Request<Incoming>) -> Response<Body> {
    let received = Instant::now();
    let received_wall = SystemTime::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .map(|v| v.as_bytes())
        .filter(|v| valid_request_id(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let mut endpoint = match conn.role {
        Role::Service => Endpoint::route(req.uri().path()),
        Role::Probe => Endpoint::probe_route(req.uri().path()),
    };
    if matches!(endpoint, Endpoint::Playground(_)) && !app.settings().config.playground {
        endpoint = Endpoint::Unknown;
    }
    let method = req.method().clone();
    let allowed = endpoint.allow();
    let mut log = ValidateLog::default();
    let result: Result<Response<Body>, ApiError> = match allowed {
        None => Err(ApiError::NotFound),
        Some(_) if !endpoint.allows(&method) => Err(ApiError::MethodNotAllowed),
        Some(_) => match endpoint {
            Endpoint::Validate => {
                let (parts, body) = req.into_parts();
                let input = ValidateInput {
                    headers: parts.headers,
                    body,
                    peer: conn.peer.addr(),
                    conn: conn.clone(),
                    received,
                    received_wall,
                };
                validate::handle(app, &request_id, input, &mut log)
                    .await
                    .map(|b| json_response(StatusCode::OK, b))
            }
            Endpoint::Health => Ok(health(app, &request_id)),
            Endpoint::Readiness => Ok(readiness(app, &request_id)),
            Endpoint::Metrics => Ok(metrics_json(app, &request_id)),
            Endpoint::MetricsProm => Ok(metrics_prom(app)),
            Endpoint::OpenApi => Ok(openapi()),
            Endpoint::Playground(asset) => Ok(crate::playground::response(asset)),
            Endpoint::Policies(resource) => match resource.op(&method) {
                Some(op) => {
                    let path = req.uri().path().to_string();
                    let query = req.uri().query().map(str::to_string);
                    let (parts, body) = req.into_parts();
                    let input = policies::Input {
                        request: ValidateInput {
                            headers: parts.headers,
                            body,
                            peer: conn.peer.addr(),
                            conn: conn.clone(),
                            received,
                            received_wall,
                        },
                        path,
                        query,
                    };
                    policies::handle(app, op, &request_id, input, &mut log).await
                }
                None => Err(ApiError::MethodNotAllowed),
            },
            Endpoint::Unknown => Err(ApiError::NotFound),
        },
    };
    let (mut resp, code) = match result {
        Ok(r) => (r, None),
        Err(e) => (
            error_response(&request_id, &e, allowed),
            Some(e.code().as_str()),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    app.metrics.request(endpoint.name(), status);
    if let Some(code) = code {
        if endpoint.evaluates() && status != 500 {
            app.metrics.rejected(code);
        }
    }
    if endpoint.evaluates() {
        let total = received.elapsed();
        if endpoint == Endpoint::Validate {
            app.metrics.validate_latency(total);
        }
        // Evaluate-by-name only (absent from `/api/validate`'s lines).
        let policy = log.stored.as_ref().map(|(name, _)| name.as_str());
        let revision = log.stored.as_ref().map(|(_, n)| *n);
        let (q, p, c, e) = log.timings.unwrap_or_default();
        // One event with everything, no span: the JSON log has no use for
        // spans, and recording one cost about as much as the line itself.
        tracing::info!(
            requestId = %request_id,
            tenant = log.tenant.as_deref().unwrap_or("-"),
            credential = log.credential.as_deref().unwrap_or("-"),
            policyId = log.policy_id.as_deref().unwrap_or("-"),
            status,
            code = code.unwrap_or("ok"),
            cacheHit = log.cache_hit.unwrap_or(false),
            queueUs = q,
            parseUs = p,
            checkUs = c,
            evalUs = e,
            totalUs = total.as_micros() as u64,
            policy,
            revision,
            "{}",
            endpoint.name()
        );
    } else {
        tracing::debug!(
            requestId = %request_id,
            endpoint = endpoint.name(),
            status,
            "request"
        );
    }
    resp
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(request_id: &str, e: &ApiError, allowed: Option<&'static str>) -> Response<Body> {
    let mut r = json_response(e.status(), error_body(request_id, e));
    if let Some(s) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    match e {
        // A token would do: say which scheme. (A client certificate has no
        // HTTP authentication scheme to name.)
        ApiError::Unauthorized | ApiError::Certificate(CertProblem::MissingEither) => {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ApiError::MethodNotAllowed => {
            if let Some(v) = allowed {
                r.headers_mut().insert(ALLOW, HeaderValue::from_static(v));
            }
        }
        _ => {}
    }
    r
}

fn health(app: &App, request_id: &str) -> Response<Body> {
    let v = serde_json::json!({
        "requestId": request_id,
        "status": "ok",
        "uptimeSec": app.started.elapsed().as_secs(),
    });
    json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default())
}

fn readiness(app: &App, request_id: &str) -> Response<Body> {
    let s = app.snapshot();
    let store_down = !app.registry.available();
    // A store that does not answer leaves the replica able to evaluate
    // (the policies already loaded, and /api/validate): it stays in
    // service, 200, and says why it is degraded. Taking every replica out
    // of a load balancer when the database goes away would stop exactly
    // what must go on.
    let status = if app.draining() {
        "draining"
    } else if !app.pool.has_capacity() {
        "not_ready"
    } else if app.pool.in_backoff() {
        "crash_loop"
    } else if store_down {
        "degraded"
    } else {
        "ready"
    };
    let reasons: Vec<&str> = if store_down {
        vec![crate::api::ApiError::StoreUnavailable.code().as_str()]
    } else {
        Vec::new()
    };
    let v = serde_json::json!({
        "requestId": request_id,
        "status": status,
        "reasons": reasons,
        "store": app.registry.health_json(),
        "workers": s.workers_json(),
        "inflight": s.inflight,
        "maxInflight": app.settings().config.pool.max_inflight,
        "queueDepth": s.queue_depth,
        "buildVersion": env!("CARGO_PKG_VERSION"),
    });
    let code = if status == "ready" || status == "degraded" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, serde_json::to_vec(&v).unwrap_or_default())
}

fn metrics_json(app: &App, request_id: &str) -> Response<Body> {
    let mut v = app.metrics.render_json(&app.snapshot());
    v["requestId"] = serde_json::Value::String(request_id.to_string());
    json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default())
}

fn metrics_prom(app: &App) -> Response<Body> {
    let text = app.metrics.render_prometheus(&app.snapshot());
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn openapi() -> Response<Body> {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&crate::openapi::document()).unwrap_or_default(),
    )
}
