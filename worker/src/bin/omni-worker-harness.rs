//! Test harness: drives the worker without the supervisor.
//!
//! ```text
//! omni-worker-harness --worker-config JSON               # the real worker loop on fd 3
//! omni-worker-harness --probe NAME --worker-config JSON  # sandbox self-test
//! ```
//!
//! A probe applies the sandbox exactly as the worker does, sends `Ready` on
//! fd 3, then performs one action: a forbidden system call (the test expects
//! `SIGSYS`), a resource exhaustion (`alloc`, `spin`), a failure path that
//! must keep working under the filter (`panic`, `abort`, `stack_overflow`), or
//! `allowed`, which calls every allowed system call once and exits 0.
//! A forbidden call that returns exits 1 ("survived") instead.

use omni_worker::protocol::{write_frame, Reply, EXIT_SANDBOX_FAILED, EXIT_USAGE};
use omni_worker::{apply_sandbox, config_from_args, run_worker, WORKER_FD};
use std::ffi::CStr;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg = match config_from_args(&args) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("omni-worker-harness: {e}");
            std::process::exit(EXIT_USAGE);
        }
        None => {
            eprintln!("usage: omni-worker-harness [--probe NAME] --worker-config JSON");
            std::process::exit(EXIT_USAGE);
        }
    };
    let probe = args
        .iter()
        .position(|a| a == "--probe")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let Some(probe) = probe else {
        run_worker(WORKER_FD, cfg);
    };
    if !PROBES.contains(&probe.as_str()) {
        eprintln!("omni-worker-harness: unknown probe {probe:?}; known: {PROBES:?}");
        std::process::exit(EXIT_USAGE);
    }
    omni_worker::worker::install_panic_hook();
    let report = match apply_sandbox(
        &cfg.sandbox,
        &[WORKER_FD],
        omni_worker::worker::warm_up_evaluator,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("omni-worker-harness: sandbox: {e}");
            std::process::exit(EXIT_SANDBOX_FAILED);
        }
    };
    // SAFETY: spawn_worker put this process's socket on WORKER_FD; nothing
    // else owns it.
    let mut stream = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    let mut buf = Vec::new();
    if write_frame(&mut stream, &Reply::Ready(report), &mut buf).is_err() {
        std::process::exit(EXIT_USAGE);
    }
    let code = run_probe(&probe);
    std::process::exit(code);
}

const PROBES: &[&str] = &[
    "open",
    "openat",
    "file",
    "socket",
    "connect",
    "execve",
    "fork",
    "clone",
    "thread",
    "ptrace",
    "mount",
    "mmap_exec",
    "write_stdout",
    "kill",
    "setuid",
    "unshare",
    "alloc",
    "spin",
    "abort",
    "panic",
    "panic_uncaught",
    "stack_overflow",
    "allowed",
];

/// "The call returned": the filter did not stop it.
fn survived(what: &str, rc: i64) -> i32 {
    eprintln!(
        "omni-worker-harness: {what} returned {rc} ({})",
        std::io::Error::last_os_error()
    );
    1
}

const ETC_PASSWD: &CStr = c"/etc/passwd";

fn run_probe(name: &str) -> i32 {
    // SAFETY (every block below): each call is a plain system call with valid
    // pointers to live locals or static C strings; the point of the probe is
    // that the kernel kills the process before the call does anything.
    match name {
        "open" => {
            #[cfg(target_arch = "x86_64")]
            let rc = unsafe { libc::syscall(libc::SYS_open, ETC_PASSWD.as_ptr(), libc::O_RDONLY) };
            // aarch64 has no open(2); openat is what libc's open() calls.
            #[cfg(not(target_arch = "x86_64"))]
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    ETC_PASSWD.as_ptr(),
                    libc::O_RDONLY,
                )
            };
            survived("open", rc)
        }
        "openat" => {
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    ETC_PASSWD.as_ptr(),
                    libc::O_RDONLY,
                )
            };
            survived("openat", rc)
        }
        "file" => {
            let r = std::fs::read("/etc/passwd");
            survived("std::fs::read", r.map(|v| v.len() as i64).unwrap_or(-1))
        }
        "socket" => {
            let rc = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            survived("socket", rc as i64)
        }
        "connect" => {
            let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (d, s) in addr.sun_path.iter_mut().zip(b"/run/omni-test.sock") {
                *d = *s as libc::c_char;
            }
            let rc = unsafe {
                libc::connect(
                    WORKER_FD,
                    &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                )
            };
            survived("connect", rc as i64)
        }
        "execve" => {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            let rc = unsafe { libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            survived("execve", rc as i64)
        }
        "fork" => {
            let rc = unsafe { libc::fork() };
            if rc == 0 {
                std::process::exit(0);
            }
            survived("fork", rc as i64)
        }
        "clone" => {
            // A raw clone of a process (no CLONE_VM): like fork.
            let rc = unsafe {
                libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0)
            };
            if rc == 0 {
                std::process::exit(0);
            }
            survived("clone", rc)
        }
        "thread" => {
            let r = std::thread::Builder::new().spawn(|| {});
            survived("thread spawn", r.map(|_| 0).unwrap_or(-1))
        }
        "ptrace" => {
            let rc = unsafe {
                libc::ptrace(
                    libc::PTRACE_TRACEME,
                    0,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            };
            survived("ptrace", rc)
        }
        "mount" => {
            let rc = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            survived("mount", rc as i64)
        }
        "mmap_exec" => {
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            survived("mmap(PROT_EXEC)", p as i64)
        }
        "write_stdout" => {
            let rc = unsafe { libc::write(1, b"x".as_ptr().cast(), 1) };
            survived("write(1)", rc as i64)
        }
        "kill" => {
            let rc = unsafe { libc::kill(std::process::id() as libc::pid_t, 0) };
            survived("kill", rc as i64)
        }
        "setuid" => {
            let rc = unsafe { libc::setuid(0) };
            survived("setuid", rc as i64)
        }
        "unshare" => {
            let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
            survived("unshare", rc as i64)
        }
        "alloc" => {
            // Grow until the allocator fails under RLIMIT_AS: Rust's
            // allocation-error handler writes to stderr and aborts (SIGABRT).
            // RLIMIT_AS caps address space, so the blocks need not be
            // faulted in: one byte each keeps them real without making the
            // test's time depend on how busy the machine is.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = Vec::<u8>::with_capacity(8 << 20);
                block.push(1);
                hoard.push(block);
                std::hint::black_box(&hoard);
            }
        }
        "spin" => {
            // Burn CPU until RLIMIT_CPU: SIGXCPU, then SIGKILL.
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "abort" => std::process::abort(),
        "panic" => {
            // The panic path (hook, unwinding, catch) must work under the filter.
            let caught = std::panic::catch_unwind(|| panic!("probe panic"));
            if caught.is_err() {
                0
            } else {
                1
            }
        }
        "panic_uncaught" => panic!("probe panic"),
        "stack_overflow" => {
            fn deep(n: u64) -> u64 {
                let pad = std::hint::black_box([n; 64]);
                if std::hint::black_box(n) == u64::MAX {
                    return 0;
                }
                deep(n + 1) + pad[3]
            }
            std::hint::black_box(deep(0)) as i32
        }
        "allowed" => allowed_calls(),
        _ => EXIT_USAGE,
    }
}

/// Calls every system call of the allow-list once with harmless arguments
/// (Firecracker's check: an allow-list entry that does not work is found
/// here, not in production). Exits 0 when every call returned as expected.
fn allowed_calls() -> i32 {
    let mut failures = 0;
    let mut check = |what: &str, ok: bool| {
        if !ok {
            eprintln!(
                "omni-worker-harness: allowed call {what} failed: {}",
                std::io::Error::last_os_error()
            );
            failures += 1;
        }
    };
    // SAFETY: every call below passes valid pointers to live locals, or
    // memory this function mapped itself, with matching lengths.
    unsafe {
        let len = 64 << 10;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        check("mmap", p != libc::MAP_FAILED);
        check("mprotect", libc::mprotect(p, 4096, libc::PROT_READ) == 0);
        check("madvise", libc::madvise(p, 4096, libc::MADV_DONTNEED) == 0);
        check(
            "mprotect",
            libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE) == 0,
        );
        let q = libc::mremap(p, len, 2 * len, libc::MREMAP_MAYMOVE);
        check("mremap", q != libc::MAP_FAILED);
        check("munmap", libc::munmap(q, 2 * len) == 0);
        check("brk", libc::syscall(libc::SYS_brk, 0) > 0);
        let word: u32 = 0;
        check(
            "futex",
            libc::syscall(
                libc::SYS_futex,
                &word as *const u32,
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            ) >= 0,
        );
        let mut rnd = [0u8; 16];
        check(
            "getrandom",
            libc::syscall(libc::SYS_getrandom, rnd.as_mut_ptr(), rnd.len(), 0) == 16,
        );
        let mut ts: libc::timespec = std::mem::zeroed();
        check(
            "clock_gettime",
            libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) == 0,
        );
        check("close", libc::close(-1) == -1);
        check("fcntl(F_GETFD)", libc::fcntl(WORKER_FD, libc::F_GETFD) >= 0);
        let mut ss: libc::stack_t = std::mem::zeroed();
        check(
            "sigaltstack",
            libc::sigaltstack(std::ptr::null(), &mut ss) == 0,
        );
        let mut set = [0u64; 16];
        check(
            "rt_sigprocmask",
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                std::ptr::null::<u64>(),
                set.as_mut_ptr(),
                8,
            ) == 0,
        );
        let mut act = [0u64; 16];
        check(
            "rt_sigaction",
            libc::syscall(
                libc::SYS_rt_sigaction,
                libc::SIGUSR1,
                std::ptr::null::<u64>(),
                act.as_mut_ptr(),
                8,
            ) == 0,
        );
        check("getpid", libc::syscall(libc::SYS_getpid) > 0);
        check("sched_yield", libc::sched_yield() == 0);
        check("gettid", libc::syscall(libc::SYS_gettid) > 0);
        check(
            "write(stderr)",
            libc::syscall(libc::SYS_write, 2, b"".as_ptr(), 0) == 0,
        );
        check(
            "write(socket)",
            libc::syscall(libc::SYS_write, WORKER_FD, b"".as_ptr(), 0) == 0,
        );
        let mut buf = [0u8; 1];
        check(
            "read(socket)",
            libc::syscall(libc::SYS_read, WORKER_FD, buf.as_mut_ptr(), 0) == 0,
        );
        let rc = libc::recvfrom(
            WORKER_FD,
            buf.as_mut_ptr().cast(),
            1,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        check(
            "recvfrom",
            rc >= 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN),
        );
        check(
            "sendto",
            libc::sendto(
                WORKER_FD,
                b"".as_ptr().cast(),
                0,
                libc::MSG_NOSIGNAL,
                std::ptr::null(),
                0,
            ) == 0,
        );
    }
    // tgkill (SIGABRT only) is exercised by the `abort` probe, exit_group
    // by exiting. rt_sigreturn only runs when a signal handler returns,
    // which nothing in the worker arranges on purpose.
    if failures == 0 {
        0
    } else {
        2
    }
}
