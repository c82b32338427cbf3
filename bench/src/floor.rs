//! The HTTP floor: a minimal `hyper` 1.x server that reads each request
//! body and answers `200` with a fixed JSON body. It runs on the same kind
//! of runtime as `omnid` (multi-threaded tokio, HTTP/1.1 keep-alive,
//! `TCP_NODELAY`), so its throughput is what HTTP alone costs on this
//! machine with this client, and `omnid`'s throughput is quoted against it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use tokio::net::TcpListener;

/// Serves `body` to every request on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, body: Bytes) {
    crate::server::serve(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move {
                // Read the request body, as a real endpoint must.
                let _ = req.into_body().collect().await;
                let mut r = Response::new(Full::new(body));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
        },
    )
    .await;
}
