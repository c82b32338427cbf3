//! The process's life: `--version`, `--check-config`, environment
//! overrides, the sandbox-off warning, SIGTERM/SIGINT drains, SIGHUP reloads
//! with a worker roll, and crash-loop back-off with not-ready answers.

use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const SLOW_CONFIG: &str = "[worker]\ntimeout_ms = 10000\n[limits]\nfuel = 2000000000\n";

#[test]
fn version_and_check_config() {
    let out = omnid().arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(
        v.starts_with(&format!("omnid {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );

    // Defaults need no file; the effective configuration is printed as TOML.
    let out = omnid().arg("--check-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(t["version"].as_integer(), Some(1));
    assert_eq!(t["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(t["worker"]["timeout_ms"].as_integer(), Some(250));
    assert_eq!(t["worker"]["memory_mib"].as_integer(), Some(256));
    assert_eq!(t["worker"]["cpu_seconds"].as_integer(), Some(10));
    assert_eq!(t["worker"]["max_requests"].as_integer(), Some(10_000));
    assert_eq!(t["pool"]["queue"].as_integer(), Some(1024));
    assert_eq!(t["limits"]["fuel"].as_integer(), Some(1_000_000));
    assert_eq!(t["limits"]["strict"].as_bool(), Some(true));
    assert_eq!(t["sandbox"].as_str(), Some("on"));

    // Environment overrides.
    let out = omnid()
        .arg("--check-config")
        .env("OMNID_WORKERS", "3")
        .env("OMNID_LIMITS_FUEL", "5000")
        .env("OMNID_LISTEN", "0.0.0.0:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let t: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(t["workers"].as_integer(), Some(3));
    assert_eq!(t["limits"]["fuel"].as_integer(), Some(5000));
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:9999"));

    // Errors name the key and exit 1.
    let dir = TempDir::new("check");
    let bad = [
        ("version = 1\n[limits]\nfule = 3\n", "limits.fule"),
        ("version = 2\n", "version"),
        ("version = 1\n[pool]\nqueue = 0\n", "pool.queue"),
        ("version = 1\nsandbox = \"maybe\"\n", "sandbox"),
        ("version = 1\n[auth]\nenabled = true\n", "auth.tokens_file"),
        (
            "version = 1\n[tenants.acme]\nfuel = \"lots\"\n",
            "tenants.acme.fuel",
        ),
    ];
    for (i, (text, key)) in bad.iter().enumerate() {
        let p = dir.path(&format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let out = omnid()
            .arg("--config")
            .arg(&p)
            .arg("--check-config")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(key),
            "error for {text:?} does not name {key}: {err}"
        );
    }
    let out = omnid()
        .arg("--check-config")
        .env("OMNID_LIMITS_FULE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("OMNID_LIMITS_FULE"));
    // A tokens file that cannot be read is a configuration error.
    let p = dir.path("auth.toml");
    std::fs::write(
        &p,
        "version = 1\n[auth]\nenabled = true\ntokens_file = \"/nonexistent/tokens\"\n",
    )
    .unwrap();
    let out = omnid()
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("auth.tokens_file"));
}

#[test]
fn sandbox_off_is_a_warning_at_every_start() {
    for _ in 0..2 {
        let srv = Server::start_full(
            "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 1\nsandbox = \"off\"\n",
        );
        let logs = srv.logs();
        assert!(
            logs.iter()
                .any(|l| l.contains("\"WARN\"") && l.contains("sandbox = \\\"off\\\"")),
            "{logs:#?}"
        );
        assert_eq!(srv.validate(&good_body()).status, 200);
    }
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    let mut srv = Server::start(SLOW_CONFIG);
    let addr = srv.addr;
    let mut keep = Conn::open(addr);
    assert_eq!(
        keep.request("GET", "/api/health", &[], None)
            .unwrap()
            .status,
        200
    );
    let slow = std::thread::spawn(move || {
        let body = serde_json::to_vec(&slow_body(150)).unwrap();
        let t = Instant::now();
        let r = post_validate(addr, &body);
        (r, t.elapsed())
    });
    assert!(srv.wait_ready_where(Duration::from_secs(5), |v| v["workers"]["busy"] == 1));
    let workers = srv.workers();
    srv.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));

    // While draining: readiness 503, new work refused, new connections refused.
    let r = keep.request("GET", "/api/readiness", &[], None).unwrap();
    check_response(srv.openapi(), "GET", "/api/readiness", &r);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    let body = serde_json::to_vec(&good_body()).unwrap();
    let r = keep
        .request(
            "POST",
            "/api/validate",
            &[("Content-Type", "application/json")],
            Some(&body),
        )
        .unwrap();
    check_response(srv.openapi(), "POST", "/api/validate", &r);
    assert_eq!((r.status, r.error_code().as_str()), (503, "draining"));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener still open"
    );

    // The slow request finishes normally, then the process exits 0.
    let (r, took) = slow.join().unwrap();
    let r = r.expect("the in-flight request got an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    eprintln!("slow request took {took:?}");
    let st = srv
        .wait_exit(Duration::from_secs(10))
        .expect("omnid exited");
    assert_eq!(st.code(), Some(0));
    // Workers are gone too.
    std::thread::sleep(Duration::from_millis(50));
    for w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists()
                || std::fs::read_to_string(format!("/proc/{w}/stat"))
                    .map(|s| s.contains(") Z"))
                    .unwrap_or(true),
            "worker {w} still running"
        );
    }
    assert!(srv.logs().iter().any(|l| l.contains("draining")));
}

#[test]
fn sigint_drains_and_exits_0() {
    let mut srv = Server::start("");
    assert_eq!(srv.validate(&good_body()).status, 200);
    srv.signal(libc::SIGINT);
    let st = srv
        .wait_exit(Duration::from_secs(10))
        .expect("omnid exited");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn sighup_applies_a_changed_limit_and_rolls_workers_without_errors() {
    let base = "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 2\n";
    let sb = format!("sandbox = \"{}\"\n", sandbox_setting());
    let rest = "[worker]\ntimeout_ms = 5000\n[rate_limit]\nenabled = false\n";
    let srv = Server::start_full(&format!(
        "{base}{sb}{rest}[limits]\nmax_context_bytes = 100000\n"
    ));
    let big = json!({ "code": GOOD_POLICY, "context": { "Battery": 15, "Pad": "x".repeat(2000) } });
    assert_eq!(srv.validate(&big).status, 200);
    let before = srv.workers();
    let ((), good) = with_good_load(&srv, 3, 30, || {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(
            &srv.config_path,
            format!("{base}{sb}{rest}[limits]\nmax_context_bytes = 1000\n"),
        )
        .unwrap();
        srv.signal(libc::SIGHUP);
        let until = Instant::now() + Duration::from_secs(5);
        while srv.restarts("recycled") < 2 {
            assert!(Instant::now() < until, "workers were not rolled");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Zero errors under load while every worker was rolled.
    assert_all_ok(&good);
    let r = srv.validate(&big);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "context_too_large")
    );
    let after = srv.workers();
    assert_eq!(after.len(), 2);
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "{before:?} {after:?}"
    );
    assert!(srv
        .logs()
        .iter()
        .any(|l| l.contains("configuration reloaded")));
    assert_eq!(srv.restarts("crash"), 0);

    // A configuration whose workers cannot start is refused as a whole.
    std::fs::write(
        &srv.config_path,
        format!("{base}{sb}{rest}[limits]\nmax_context_bytes = 100000\n").replace(
            "[worker]\ntimeout_ms = 5000\n",
            "[worker]\ntimeout_ms = 5000\nmemory_mib = 1\n",
        ),
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(3);
    while !srv.logs().iter().any(|l| l.contains("reload failed")) {
        assert!(Instant::now() < until, "no reload failure logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(srv.validate(&good_body()).status, 200);
    assert_eq!(
        srv.validate(&big).status,
        413,
        "the old limit still applies"
    );

    // A broken file on reload keeps the running configuration.
    let failures = |srv: &Server| {
        srv.logs()
            .iter()
            .filter(|l| l.contains("reload failed"))
            .count()
    };
    std::fs::write(&srv.config_path, "version = 1\nbogus = 1\n").unwrap();
    srv.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(3);
    while failures(&srv) < 2 {
        assert!(Instant::now() < until, "no reload failure logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(srv.validate(&good_body()).status, 200);
    let r = srv.validate(&big);
    assert_eq!(r.status, 413);
}

#[test]
fn crash_loop_backs_off_and_reports_not_ready() {
    let srv = Server::start(
        // Back-off long enough that a loaded 2-core machine still sees it.
        "workers = 2\n[pool]\nrestart_intensity = 1\nrestart_period_s = 5\nbackoff_initial_ms = 4000\nbackoff_max_ms = 4000\n",
    );
    let full = |srv: &Server| {
        srv.wait_ready_where(Duration::from_secs(2), |v| {
            v["workers"]["idle"].as_u64().unwrap_or(0) == 2
        }) && srv.workers().len() == 2
    };
    let kill = |pid: u32| {
        // SAFETY: SIGKILL to a worker of the server we started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    };
    // A worker killed while idle is replaced without any request failing.
    let w = srv.workers();
    kill(w[0]);
    let until = Instant::now() + Duration::from_secs(2);
    while srv.restarts("crash") < 1 {
        assert!(Instant::now() < until, "idle worker death not noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(full(&srv), "idle worker not replaced");
    assert_eq!(srv.workers().len(), 2);
    assert_eq!(srv.validate(&good_body()).status, 200);

    // A second restart within the period exceeds the intensity: that slot
    // backs off, readiness reports the crash loop, the other worker serves.
    let w2 = srv.workers();
    let fresh = *w2.iter().find(|p| !w.contains(p)).unwrap();
    kill(fresh);
    assert!(srv.wait_ready_where(Duration::from_secs(2), |v| v["workers"]["down"] == 1));
    let r = srv.get("/api/readiness");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "crash_loop");
    assert_eq!(srv.validate(&good_body()).status, 200);

    // With every worker down, requests get 503 not_ready at once.
    let other = *srv.workers().iter().find(|p| **p != fresh).unwrap();
    kill(other);
    assert!(srv.wait_ready_where(Duration::from_secs(2), |v| v["workers"]["down"] == 2));
    let r = srv.validate(&good_body());
    assert_eq!((r.status, r.error_code().as_str()), (503, "not_ready"));
    assert!(r.header("retry-after").is_some());
    let r = srv.get("/api/readiness");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (503, Some("not_ready"))
    );

    // After the back-off the pool recovers and readiness returns.
    assert!(srv.wait_ready_where(Duration::from_secs(8), |v| v["status"] == "ready"));
    assert_eq!(srv.validate(&good_body()).status, 200);
    assert_eq!(srv.restarts("crash"), 3);
}

#[test]
fn workers_that_cannot_start_are_a_start_up_error() {
    let dir = TempDir::new("nostart");
    let p = dir.path("omnid.toml");
    // 1 MiB of address space: a worker cannot even report ready.
    std::fs::write(
        &p,
        "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[worker]\nmemory_mib = 1\n",
    )
    .unwrap();
    let out = omnid()
        .arg("--config")
        .arg(&p)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start-up failed"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening on"),
        "the listener must not open"
    );
}

#[test]
fn systemd_notifications_when_notify_socket_is_set() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let sock_path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cfg = dir.path("omnid.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 1\nsandbox = \"{}\"\n",
            sandbox_setting()
        ),
    )
    .unwrap();
    let notify = sock_path.to_str().unwrap().to_string();
    let mut srv = Server::start_in_env(dir, cfg, &[("NOTIFY_SOCKET", &notify)]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(msg.contains("STATUS=listening on 127.0.0.1:"), "{msg}");
    srv.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert_eq!(
        srv.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn repeated_failed_worker_starts_stop_the_service_with_exit_1() {
    let dir = TempDir::new("failstart");
    let cfg = dir.path("omnid.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 1\nsandbox = \"{}\"\n\
             [pool]\nmax_failed_starts = 5\nfailed_start_period_s = 10\n",
            sandbox_setting()
        ),
    )
    .unwrap();
    let mut srv = Server::start_in(dir, cfg);
    assert_eq!(srv.validate(&good_body()).status, 200);
    // Leave the supervisor no file descriptors to spare: every respawn then
    // fails to create the worker's socket pair. (Workers re-execute the
    // running image, so deleting the binary would not stop them.)
    let pid = srv.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let lim = libc::rlimit {
        rlim_cur: open,
        rlim_max: open,
    };
    // SAFETY: prlimit on the server process we started, with a valid struct.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit");
    let worker = srv.workers()[0];
    // SAFETY: SIGKILL to the worker of the server we started.
    unsafe {
        libc::kill(worker as i32, libc::SIGKILL);
    }
    let st = srv
        .wait_exit(Duration::from_secs(15))
        .expect("omnid gave up and exited");
    assert_eq!(st.code(), Some(1));
    let logs = srv.logs().join("\n");
    assert!(logs.contains("worker start failed"), "{logs}");
    assert!(logs.contains("cannot recover"), "{logs}");
}
