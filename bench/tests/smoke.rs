//! Keeps the load tooling honest without a load test: `loadgen` sends 100
//! requests to an in-process `floor` server, closed and open loop, and
//! every one must come back as expected. (The full run is
//! `bench/run-load.sh`, never part of `cargo test`.)

use bytes::Bytes;
use omni_bench::loadgen::{self, Body, Config, Mode, Template};
use std::time::Duration;

fn floor() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            omni_bench::floor::serve(l, Bytes::from_static(br#"{"ok":true}"#)).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("floor started")
}

fn config(addr: std::net::SocketAddr, mode: Mode) -> Config {
    let mut t = Template::post_json(
        "smoke",
        "/api/validate",
        Body::unique("{\"n\": @@N@@}", "@@N@@"),
    );
    t.expect_contains = Some(b"\"ok\":true".to_vec());
    Config {
        addr,
        connections: 4,
        mode,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(20),
        max_requests: Some(100),
        timeout: Duration::from_secs(5),
        templates: vec![t],
        threads: 1,
        tls: None,
    }
}

#[test]
fn loadgen_against_floor_100_requests() {
    let addr = floor();
    for mode in [Mode::Closed, Mode::Open { rate: 2000.0 }] {
        let r = loadgen::run(config(addr, mode));
        assert_eq!(r.all.count, 100, "{r:?}");
        assert_eq!(r.all.ok, 100, "{r:?}");
        assert_eq!(r.templates[0].statuses.get("200"), Some(&100));
        assert!(r.all.p50_us > 0 && r.all.p50_us <= r.all.p99_us && r.all.p99_us <= r.all.max_us);
        assert!(r.all.rps > 0.0);
    }
}
