//! The sandbox, shown on real processes: forbidden system calls end the
//! process with SIGSYS, /proc shows the filter, no_new_privs, the limits and
//! the dropped privileges, and the rlimits end runaway memory and CPU.

use crate::common::*;
use omni_worker::{classify_exit, SandboxConfig, WorkerExit};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

fn sandboxed() -> SandboxConfig {
    SandboxConfig::default()
}

/// Runs `probe` under the default sandbox; returns its wait status.
fn probe_status(probe: &str) -> std::process::ExitStatus {
    let (mut w, report) = start_probe(probe, &config(sandboxed()));
    assert!(
        report.seccomp,
        "probe {probe}: seccomp not applied: {report:?}"
    );
    let (st, _) = wait_for(&mut w, Duration::from_secs(10));
    st
}

fn assert_sigsys(probe: &str) {
    let st = probe_status(probe);
    println!("probe {probe}: {}", describe(&st));
    assert_eq!(classify_exit(st), WorkerExit::SeccompViolation);
    assert_eq!(
        st.signal(),
        Some(libc::SIGSYS),
        "probe {probe} should be killed by SIGSYS, got {}",
        describe(&st)
    );
}

#[test]
fn open_is_killed_by_sigsys() {
    assert_sigsys("open");
}

#[test]
fn openat_is_killed_by_sigsys() {
    assert_sigsys("openat");
    assert_sigsys("file"); // std::fs::read
}

#[test]
fn socket_is_killed_by_sigsys() {
    assert_sigsys("socket");
}

#[test]
fn connect_is_killed_by_sigsys() {
    assert_sigsys("connect");
}

#[test]
fn execve_is_killed_by_sigsys() {
    assert_sigsys("execve");
}

#[test]
fn fork_and_clone_are_killed_by_sigsys() {
    assert_sigsys("fork");
    assert_sigsys("clone");
    assert_sigsys("thread");
}

#[test]
fn ptrace_is_killed_by_sigsys() {
    assert_sigsys("ptrace");
}

#[test]
fn mount_is_killed_by_sigsys() {
    assert_sigsys("mount");
}

#[test]
fn argument_filters_and_other_calls_are_killed_by_sigsys() {
    // mmap with PROT_EXEC, write to an fd that is not ours, signals to
    // anything, setuid, new namespaces.
    for probe in ["mmap_exec", "write_stdout", "kill", "setuid", "unshare"] {
        assert_sigsys(probe);
    }
}

#[test]
fn every_allowed_call_works_under_the_filter() {
    let st = probe_status("allowed");
    assert_eq!(st.code(), Some(0), "allowed calls: {}", describe(&st));
}

#[test]
fn panic_path_works_under_the_filter() {
    // A caught panic (hook, unwinding) returns normally.
    let st = probe_status("panic");
    assert_eq!(st.code(), Some(0), "caught panic: {}", describe(&st));
    // An uncaught panic in main ends with Rust's exit code 101, not SIGSYS.
    let st = probe_status("panic_uncaught");
    assert_eq!(st.code(), Some(101), "uncaught panic: {}", describe(&st));
    // abort() (panic=abort, allocation failure) ends with SIGABRT, not SIGSYS.
    let st = probe_status("abort");
    assert_eq!(st.signal(), Some(libc::SIGABRT), "abort: {}", describe(&st));
    // A stack overflow is reported by std's handler, then aborts.
    let st = probe_status("stack_overflow");
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "stack overflow: {}",
        describe(&st)
    );
}

#[test]
fn proc_shows_seccomp_no_new_privs_limits_and_dropped_privileges() {
    let cfg = SandboxConfig {
        memory_bytes: 200 << 20,
        cpu_seconds: 7,
        max_open_files: 12,
        ..SandboxConfig::default()
    };
    let (mut w, report) = start_worker(&config(cfg.clone()));
    println!("sandbox report: {report:?}");
    let pid = w.pid();
    let status = proc_file(pid, "status");
    let limits = proc_file(pid, "limits");
    println!("{limits}");
    for key in [
        "Uid",
        "Gid",
        "Groups",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ] {
        println!("{key}: {}", status_field(&status, key));
    }
    assert_eq!(status_field(&status, "Seccomp"), "2");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");

    let bytes = (200u64 << 20).to_string();
    assert_eq!(limit(&limits, "Max address space"), (bytes.clone(), bytes));
    assert_eq!(limit(&limits, "Max cpu time"), ("7".into(), "8".into()));
    assert_eq!(limit(&limits, "Max open files"), ("12".into(), "12".into()));
    assert_eq!(limit(&limits, "Max file size"), ("0".into(), "0".into()));
    assert_eq!(
        limit(&limits, "Max core file size"),
        ("0".into(), "0".into())
    );
    assert_eq!(limit(&limits, "Max processes"), ("0".into(), "0".into()));

    assert!(report.enabled && report.seccomp && report.no_new_privs && report.dumpable_off);
    let names: Vec<&str> = report.rlimits.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "RLIMIT_AS",
        "RLIMIT_CPU",
        "RLIMIT_NOFILE",
        "RLIMIT_FSIZE",
        "RLIMIT_CORE",
        "RLIMIT_NPROC",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    // Only the socket and stderr are open.
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    assert_eq!(fds, vec![2, 3], "open fds of the worker");

    if is_root() {
        let uids: Vec<u32> = status_field(&status, "Uid")
            .split_whitespace()
            .map(|x| x.parse().expect("uid"))
            .collect();
        let gids: Vec<u32> = status_field(&status, "Gid")
            .split_whitespace()
            .map(|x| x.parse().expect("gid"))
            .collect();
        assert!(uids.iter().all(|u| *u != 0), "uids {uids:?}");
        assert!(gids.iter().all(|g| *g != 0), "gids {gids:?}");
        assert_eq!(status_field(&status, "Groups"), "");
        assert_eq!(status_field(&status, "CapBnd"), "0000000000000000");
        assert!(report.dropped_privileges);
        assert_ne!(report.uid, 0);
        // Debian's nobody/nogroup.
        assert_eq!((report.uid, report.gid), (65534, 65534));
    } else {
        println!(
            "note: not root, the uid switch is not exercised (uid {})",
            report.uid
        );
    }
    if report.namespaces.is_empty() {
        println!("note: namespaces not permitted here: {:?}", report.skipped);
    } else {
        assert_eq!(report.namespaces, vec!["net", "ipc"]);
        // A new network namespace: a different inode from ours.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("worker netns");
        assert_ne!(ours, theirs);
    }
    // Clean shutdown: closing the socket ends the worker with 0.
    w.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let (st, _) = wait_for(&mut w, Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "shutdown: {}", describe(&st));
}

#[test]
fn memory_beyond_rlimit_as_aborts_within_a_second() {
    let cfg = SandboxConfig {
        memory_bytes: 128 << 20,
        ..SandboxConfig::default()
    };
    let (mut w, report) = start_probe("alloc", &config(cfg));
    assert!(report.seccomp);
    let (st, took) = wait_for(&mut w, Duration::from_secs(10));
    println!("alloc probe: {} after {took:?}", describe(&st));
    assert_eq!(st.signal(), Some(libc::SIGABRT), "alloc: {}", describe(&st));
    assert_eq!(classify_exit(st).reason(), "memory_limit");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn cpu_beyond_rlimit_cpu_is_ended_by_the_kernel() {
    let cfg = SandboxConfig {
        cpu_seconds: 1,
        ..SandboxConfig::default()
    };
    let (mut w, report) = start_probe("spin", &config(cfg));
    assert!(report.rlimits.contains(&("RLIMIT_CPU".to_string(), 1)));
    let (st, took) = wait_for(&mut w, Duration::from_secs(10));
    println!("spin probe: {} after {took:?}", describe(&st));
    let sig = st.signal();
    assert!(
        sig == Some(libc::SIGXCPU) || sig == Some(libc::SIGKILL),
        "spin: {}",
        describe(&st)
    );
    if sig == Some(libc::SIGXCPU) {
        assert_eq!(classify_exit(st).reason(), "cpu_limit");
    }
    // One second of CPU (a second more if SIGXCPU were ignored), on a busy machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn disabled_sandbox_says_so() {
    let cfg = SandboxConfig {
        enabled: false,
        ..SandboxConfig::default()
    };
    let (w, report) = start_worker(&config(cfg));
    assert!(!report.enabled && !report.seccomp);
    assert!(!report.skipped.is_empty());
    let status = proc_file(w.pid(), "status");
    assert_eq!(status_field(&status, "Seccomp"), "0");
}
