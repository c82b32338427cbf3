//! What one caller cannot do to another through the process or the HTTP
//! side (docs/security.md, "What a worker shares with the supervisor, and
//! the connections"): a worker inherits no environment, working directory or
//! stderr from omnid and dies with it, a stopped worker costs no request and
//! no quarantine, and connections that never read their answers neither
//! starve other clients nor stay open past the write timeout.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A configuration with `extra` sections (the harness's defaults otherwise).
fn config(extra: &str) -> String {
    format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\nworkers = 2\n\
         [rate_limit]\nenabled = false\n{extra}\n",
        sandbox_setting()
    )
}

fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new("iso");
    let path = dir.path("omnid.toml");
    std::fs::write(&path, config(extra)).unwrap();
    Server::start_in_env(dir, path, env)
}

fn link(path: String) -> String {
    std::fs::read_link(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|s| s == "Z"),
    }
}

fn stop(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a worker of the omnid this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn workers_inherit_no_environment_cwd_or_stderr() {
    let srv = start_with_env(
        "[worker]\ntimeout_ms = 5000\n",
        &[
            ("OMNI_TEST_PLANTED_SECRET", "hunter2"),
            ("OMNID_LOG_LEVEL", "info"),
        ],
    );
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    let supervisor_out = link(format!("/proc/{}/fd/1", srv.pid()));
    let supervisor_err = link(format!("/proc/{}/fd/2", srv.pid()));
    for pid in workers {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<String> = environ
            .split(|&b| b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        // The allow-list of docs/security.md: only what spawn_worker sets.
        assert_eq!(vars, ["RUST_BACKTRACE=0"], "worker {pid}'s environment");
        assert_eq!(link(format!("/proc/{pid}/cwd")), "/", "worker {pid}'s cwd");
        let err = link(format!("/proc/{pid}/fd/2"));
        assert!(err.starts_with("pipe:"), "worker {pid}'s fd 2 is {err}");
        assert_ne!(err, supervisor_err, "worker {pid} shares omnid's stderr");
        assert_ne!(err, supervisor_out, "worker {pid} writes omnid's log");
    }
    // Still serving.
    assert_eq!(srv.validate(&good_body()).status, 200);
}

#[test]
fn sigkill_of_omnid_leaves_no_worker_a_stopped_one_included() {
    let mut srv = Server::start("");
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    stop(workers[0], libc::SIGSTOP);
    srv.signal(libc::SIGKILL);
    assert!(srv.wait_exit(Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(1));
    for pid in &workers {
        assert!(dead(*pid), "worker {pid} outlived omnid");
    }
}

#[test]
fn a_stopped_worker_under_load_fails_no_request_and_quarantines_nothing() {
    // A short deadline, so the code before this fix (which waited for the
    // deadline and blamed the policy) fails quickly.
    let srv = Server::start("[worker]\ntimeout_ms = 3000\n");
    let stopped_all = std::sync::atomic::AtomicBool::new(false);
    let resps = std::thread::scope(|s| {
        let load: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !stopped_all.load(std::sync::atomic::Ordering::Acquire) {
                        out.push(srv.validate(&good_body()));
                    }
                    out
                })
            })
            .collect();
        // Three times: as many kills as quarantine the policy, if they were
        // charged to it.
        for round in 0..3 {
            std::thread::sleep(Duration::from_millis(300));
            let victim = srv.workers()[0];
            stop(victim, libc::SIGSTOP);
            let until = Instant::now() + Duration::from_secs(15);
            while srv.workers().contains(&victim) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !srv.workers().contains(&victim),
                "round {round}: the stopped worker {victim} was not replaced"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        stopped_all.store(true, std::sync::atomic::Ordering::Release);
        load.into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(resps.len() > 10, "only {} requests", resps.len());
    for r in &resps {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let m = srv.metrics_json();
    assert_eq!(m["workerRestarts"]["timeout"], 0, "{m}");
    assert!(
        m["workerRestarts"]["stalled"].as_u64().unwrap_or(0) >= 3,
        "{m}"
    );
    assert_eq!(m["quarantinedPolicies"], 0, "{m}");
    assert_eq!(m["rejected"]["policy_quarantined"], serde_json::Value::Null);
    assert_eq!(srv.validate(&good_body()).status, 200);
}

/// A connection from `source` (any 127.0.0.0/8 address is local).
fn connect_from(source: &str, to: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let std = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            // Before connect, so the advertised window stays small and a
            // stalled response needs few bytes.
            s.set_recv_buffer_size(n).unwrap();
        }
        s.bind(format!("{source}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    });
    std.set_nonblocking(false).unwrap();
    std
}

/// `/api/health` on a fresh connection from 127.0.0.2; how long it took.
fn probe_health(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let mut s = connect_from("127.0.0.2", addr, None);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: omnid\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let took = t.elapsed();
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "health after {took:?}: {}",
        String::from_utf8_lossy(&body)
    );
    took
}

/// Open sockets of `pid`.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `pid` has used no CPU for 300 ms (at most `max`).
fn wait_quiet(pid: u32, max: Duration) {
    let until = Instant::now() + max;
    let mut last = cpu_ticks(pid);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
        let now = cpu_ticks(pid);
        if now == last {
            return;
        }
        last = now;
    }
}

#[test]
fn connections_that_never_read_neither_starve_others_nor_stay_open() {
    let write_timeout = Duration::from_millis(5000);
    let srv = Server::start(&format!(
        "playground = true\n[http]\nmax_connections = 36\nmax_connections_per_client = 32\n\
         write_timeout_ms = {}\n",
        write_timeout.as_millis()
    ));
    // The harness's own first connection may still be closing.
    let baseline = (0..6)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            sockets(srv.pid())
        })
        .min()
        .unwrap_or(0);
    // 32 connections from one address, each pipelining more answers (a
    // static 17 KB asset, cheap to serve) than the socket buffers hold
    // (about 3 MB on loopback), reading none.
    let pipelined = b"GET /playground/app.js HTTP/1.1\r\nHost: omnid\r\n\r\n".repeat(256);
    let opened = Instant::now();
    let stuck: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut s = connect_from("127.0.0.1", srv.addr, Some(4096));
            s.write_all(&pipelined).unwrap();
            s
        })
        .collect();
    // Until omnid has written all it can and every write waits.
    wait_quiet(srv.pid(), Duration::from_secs(20));
    let stalled = Instant::now();
    // More from the same address: past its cap, closed at accept (without
    // the cap they would take the last free slots).
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.1", srv.addr, Some(4096));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&pipelined);
        let mut buf = [0u8; 64];
        let t = Instant::now();
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0) | Err(_)) && t.elapsed() < Duration::from_secs(2),
            "a connection over the per-client cap was served: {r:?} after {:?}",
            t.elapsed()
        );
    }
    // Another address is served at once while they are stuck.
    let mut took = Vec::new();
    while stalled.elapsed() < Duration::from_secs(1) || took.len() < 5 {
        took.push(probe_health(srv.addr));
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = sockets(srv.pid());
    assert!(
        open >= baseline + 32,
        "{open} sockets, {baseline} before: the stuck connections were closed before the probes ended \
         ({:?} after they were opened)",
        opened.elapsed()
    );
    took.sort();
    let median = took[took.len() / 2];
    assert!(median < Duration::from_millis(100), "health took {took:?}");
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "{took:?}");

    // After the write timeout omnid has closed them: its sockets are back
    // to the baseline, and each client sees the end of the stream.
    let until = stalled + write_timeout + Duration::from_secs(10);
    while sockets(srv.pid()) > baseline + 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = sockets(srv.pid());
    assert!(
        left <= baseline + 2,
        "{left} sockets open, {baseline} before: the stuck connections were not closed"
    );
    for mut s in stuck {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = Vec::new();
        if let Err(e) = s.read_to_end(&mut sink) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ),
                "a stuck connection was not closed: {e}"
            );
        }
    }
    // Their slots are free again: the address may hold as many once more.
    let held: Vec<TcpStream> = (0..31)
        .map(|_| connect_from("127.0.0.1", srv.addr, None))
        .collect();
    let r = raw_request(srv.addr, "GET", "/api/health", &[], None).unwrap();
    assert_eq!(r.status, 200);
    drop(held);
    assert!(probe_health(srv.addr) < Duration::from_secs(1));
}
