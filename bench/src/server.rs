//! What the two baseline servers (`floor`, `inprocess`) share: a runtime
//! like omnid's (multi-threaded tokio) and the HTTP/1.1 keep-alive
//! connection loop with `TCP_NODELAY`, so they differ only in their answer.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use tokio::net::TcpListener;

/// Binds `listen` on a runtime of `threads` threads named `name`, prints
/// `listening on ADDR` on the first line of stdout, then runs `serve` on
/// the listener until the process is killed.
pub fn run<F, Fut>(listen: &str, threads: usize, name: &str, serve: F)
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().expect("local address");
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
        serve(listener).await;
    });
}

/// Answers every request of every connection on `listener` with `answer`,
/// until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let answer = answer.clone();
                async move { Ok::<_, Infallible>(answer(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
