//! The HTTP side on hyper 1.x: the accept loop (bounded connections, in all
//! and per client address, header, body and stalled-write timeouts,
//! graceful close on drain), routing, the small
//! endpoints, and the envelope every response gets: `X-Request-Id`, the
//! request-count metric and one log line per evaluation (`/api/validate`
//! and evaluate-by-name). The stored policies' API is in
//! [`crate::registry::routes`].

use crate::api::{error_body, ApiError};
use crate::app::App;
use crate::body::Body;
use crate::ids::{new_request_id, valid_request_id};
use crate::playground::Asset;
use crate::registry::routes::{self as policies, Resource};
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
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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
            "/api/health" => Endpoint::Health,
            "/api/readiness" => Endpoint::Readiness,
            "/api/metrics" => Endpoint::Metrics,
            "/api/metrics-prom" | "/metrics" => Endpoint::MetricsProm,
            "/api/openapi.json" => Endpoint::OpenApi,
            _ => Asset::from_path(path).map_or(Endpoint::Unknown, Endpoint::Playground),
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
/// client that pipelines requests and reads nothing is not.
struct StallGuard {
    inner: TcpStream,
    timeout: Duration,
    /// Set while a write waits for room in the socket.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, timeout: Duration) -> StallGuard {
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

impl AsyncRead for StallGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
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

/// Accepts connections until `stop` turns true, then drops the listener.
/// Open connections are closed gracefully when `close` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    conns: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
) {
    let cfg = app.settings().config.clone();
    let limit = Arc::new(Semaphore::new(cfg.http.max_connections));
    let per_client = Arc::new(PerClient::default());
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = limit.clone().acquire_owned() => match p {
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
        let settings = app.settings();
        // Before anything is read (and so before auth): a trusted proxy
        // speaks for many clients and has only the overall cap.
        let ip = peer.ip().to_canonical();
        let client = if settings.trusted_proxies.contains(&ip) {
            None
        } else {
            match per_client.admit(ip, settings.config.http.max_connections_per_client) {
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
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut close = close.clone();
        conns.open.fetch_add(1, Ordering::AcqRel);
        let guard = ConnGuard(conns.clone());
        let header_timeout = Duration::from_millis(settings.config.http.header_timeout_ms);
        let write_timeout = Duration::from_millis(settings.config.http.write_timeout_ms);
        drop(settings);
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let _client = client;
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, peer, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(StallGuard::new(stream, write_timeout)), svc);
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
        });
    }
    drop(listener);
}

/// Handles one request: routing, the envelope, metrics and the log line.
async fn handle(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
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
    let mut endpoint = Endpoint::route(req.uri().path());
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
                    peer,
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
                            peer,
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
        ApiError::Unauthorized => {
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
