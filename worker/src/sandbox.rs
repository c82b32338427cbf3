//! The worker's sandbox, applied by the worker to itself before it reads its
//! first request (`docs/api.md#workers`, `docs/security.md`; `docs/security.md`).
//!
//! [`apply_sandbox`] runs these steps in order and returns what it actually
//! applied as a [`SandboxReport`]:
//!
//! 1. close every file descriptor but the kept ones (the socket) and stderr;
//! 2. `oom_score_adj` 1000, so the kernel's OOM killer picks a worker first;
//! 3. new network and IPC namespaces where permitted (needs `CAP_SYS_ADMIN`,
//!    so this comes before privileges are dropped; skipped on `EPERM`);
//! 4. when started as root: clear the capability bounding set, drop the
//!    supplementary groups, switch to the configured group and user; in every
//!    case clear the ambient, permitted and effective capabilities, and check
//!    in `/proc/self/status` that none is left;
//! 5. `PR_SET_NO_NEW_PRIVS` and `PR_SET_DUMPABLE` 0;
//! 6. rlimits: `RLIMIT_AS`, `RLIMIT_CPU`, `RLIMIT_NOFILE`, `RLIMIT_FSIZE` 0,
//!    `RLIMIT_CORE` 0, `RLIMIT_NPROC` 0;
//! 7. warm-up of everything that would otherwise make a system call lazily
//!    (allocator, hash seeds, clocks, the panic machinery, and the warm-up
//!    the caller passes in: for the worker, the evaluator's own paths);
//! 8. the seccomp-bpf allow-list of [`allow_list`], with `SECCOMP_RET_KILL_PROCESS`
//!    for anything else, so a refused call ends the process with `SIGSYS`.

use crate::protocol::SandboxReport;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// How a worker confines itself (`docs/api.md#workers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `false` only when the operator set `sandbox = "off"` explicitly.
    pub enabled: bool,
    /// User and group to switch to when started as root: names, or numbers
    /// taken as they are (the supervisor passes a tenant's own uid this way
    /// for `worker.uid_range`).
    pub user: String,
    pub group: String,
    /// `RLIMIT_AS` in bytes.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` in seconds (a backstop; deadlines are the supervisor's job).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
    /// Try new network and IPC namespaces (skipped where not permitted).
    pub namespaces: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            user: "nobody".into(),
            group: "nogroup".into(),
            memory_bytes: 256 << 20,
            cpu_seconds: 10,
            max_open_files: 16,
            namespaces: true,
        }
    }
}

/// Why the sandbox could not be applied. The worker exits with
/// [`crate::protocol::EXIT_SANDBOX_FAILED`] on any of these.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("closing inherited file descriptors failed: {0}")]
    CloseFds(io::Error),
    #[error("refusing to run the worker as root (user {0:?} resolves to uid 0 or gid 0)")]
    RootTarget(String),
    #[error("dropping privileges failed at {step}: {source}")]
    DropPrivileges {
        step: &'static str,
        source: io::Error,
    },
    #[error("capabilities remain after dropping them ({0})")]
    CapabilitiesRemain(String),
    #[error("prctl({0}) failed: {1}")]
    Prctl(&'static str, io::Error),
    #[error("setting {0} failed: {1}")]
    Rlimit(&'static str, io::Error),
    #[error("the process has {0} threads; the sandbox needs a single-threaded process (seccomp filters are per thread)")]
    MultiThreaded(u64),
    #[error("seccomp is not supported on {0}")]
    UnsupportedArch(&'static str),
    #[error("building the seccomp filter failed: {0}")]
    Filter(String),
    #[error("installing the seccomp filter failed: {0}")]
    InstallFilter(String),
}

/// The fd every worker keeps besides its socket.
pub const STDERR_FD: i32 = 2;

/// Applies the sandbox of `cfg` to the calling process; `keep_fds` are the
/// descriptors the worker talks on (its socket). stderr is always kept.
///
/// `warm_up` runs at step 7, after the generic warm-up: what the caller
/// itself will do under the filter (the worker passes its evaluator's
/// warm-up), so its lazy first system calls happen while they are still
/// allowed. The sandbox knows nothing of it.
///
/// Must be called while the process has a single thread: seccomp filters are
/// per thread, and a thread started later would not be confined (it cannot
/// be started after the filter anyway: `clone` is refused).
pub fn apply_sandbox(
    cfg: &SandboxConfig,
    keep_fds: &[i32],
    warm_up: impl FnOnce(),
) -> Result<SandboxReport, SandboxError> {
    let mut report = SandboxReport {
        enabled: cfg.enabled,
        ..SandboxReport::default()
    };
    if !cfg.enabled {
        report.uid = nix::unistd::getuid().as_raw();
        report.gid = nix::unistd::getgid().as_raw();
        report
            .skipped
            .push("sandbox disabled by configuration".into());
        return Ok(report);
    }
    let arch = target_arch()?;
    // The parent now: step 4 must find it unchanged (see there).
    let parent = nix::unistd::getppid().as_raw();
    // A thread started before this call would escape the filter and every
    // per-thread step: refuse rather than confine half the process.
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => match status_dec(&status, "Threads") {
            Some(1) => {}
            Some(n) => return Err(SandboxError::MultiThreaded(n)),
            None => report.skipped.push("thread count: unreadable".into()),
        },
        Err(e) => report.skipped.push(format!("thread count: {e}")),
    }

    // 1. File descriptors.
    report.closed_fds = close_fds(keep_fds)?;

    // 2. Be the OOM killer's first choice (a worker, never the supervisor).
    //    Raising one's own score needs no privilege; it must happen while
    //    /proc/self is still ours (before the uid change and DUMPABLE 0).
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", b"1000") {
        report.skipped.push(format!("oom_score_adj: {e}"));
    }

    // 3. Namespaces: needs CAP_SYS_ADMIN, so before privileges are dropped.
    if cfg.namespaces {
        use nix::sched::{unshare, CloneFlags};
        match unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC) {
            Ok(()) => report.namespaces = vec!["net".into(), "ipc".into()],
            Err(e) => report
                .skipped
                .push(format!("namespaces net+ipc: not permitted ({e})")),
        }
    } else {
        report
            .skipped
            .push("namespaces: disabled by configuration".into());
    }

    // 4. User, groups and capabilities.
    drop_privileges(cfg, &mut report)?;
    // A uid change clears the parent-death signal set at spawn: set it
    // again, and leave if the supervisor died in between (no signal then).
    if !crate::process::die_with_parent(parent) {
        std::process::exit(0);
    }

    // 5. No new privileges (execve of a setuid binary, file capabilities),
    //    and no core dumps / ptrace attach by processes of the same user.
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    report.no_new_privs = true;
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    report.dumpable_off = true;

    // RLIMIT_FSIZE 0 would turn a write to a stderr that is a regular file
    // into SIGXFSZ; ignored, such a write fails with EFBIG instead.
    // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }

    // 6. Resource limits.
    apply_rlimits(cfg, &mut report)?;

    // 7. Everything that would otherwise make its first system call later.
    warm_up_process(warm_up);

    // 8. The filter. Built before it is installed (building allocates).
    let program = build_filter(arch, keep_fds, std::process::id())?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError::InstallFilter(e.to_string()))?;
    report.seccomp = true;
    Ok(report)
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        other => Err(SandboxError::UnsupportedArch(other)),
    }
}

fn prctl(
    option: libc::c_int,
    value: libc::c_ulong,
    name: &'static str,
) -> Result<(), SandboxError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS / PR_SET_DUMPABLE take integer arguments only.
    let rc = unsafe {
        libc::prctl(
            option,
            value,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(SandboxError::Prctl(name, io::Error::last_os_error()));
    }
    Ok(())
}

// ----- 1. file descriptors ---------------------------------------------------

/// Closes every fd but `keep` and stderr; returns how many were open.
fn close_fds(keep: &[i32]) -> Result<u32, SandboxError> {
    let kept = |fd: i32| fd == STDERR_FD || keep.contains(&fd);
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect(),
        // No /proc: try every number up to the fd limit (capped: a huge
        // RLIMIT_NOFILE would make this slow, and fds that high are rare).
        Err(_) => {
            let (soft, _) =
                rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(SandboxError::CloseFds)?;
            (0..soft.min(1 << 16) as i32).collect()
        }
    };
    // The directory's own fd was in the listing; it is closed by now and
    // `close` reports EBADF for it, which is not counted.
    let mut closed = 0;
    for fd in fds.into_iter().filter(|fd| !kept(*fd)) {
        // SAFETY: closing an fd this process does not use any more; nothing
        // in the process holds these (the worker owns only `keep` and stderr).
        if unsafe { libc::close(fd) } == 0 {
            closed += 1;
        }
    }
    Ok(closed)
}

// ----- 4. user, groups, capabilities -----------------------------------------

/// A user or group given by name or by number; 65534 when the lookup fails.
fn resolve_id(
    name: &str,
    lookup: impl Fn(&str) -> Option<u32>,
    what: &str,
    report: &mut SandboxReport,
) -> u32 {
    if let Ok(n) = name.parse::<u32>() {
        return n;
    }
    match lookup(name) {
        Some(id) => id,
        None => {
            report
                .skipped
                .push(format!("{what} {name:?} not found; using 65534"));
            65534
        }
    }
}

fn drop_privileges(cfg: &SandboxConfig, report: &mut SandboxReport) -> Result<(), SandboxError> {
    use nix::unistd::{
        getresgid, getresuid, setgroups, setresgid, setresuid, Gid, Group, Uid, User,
    };
    let step = |step: &'static str| {
        move |e: nix::Error| SandboxError::DropPrivileges {
            step,
            source: io::Error::from(e),
        }
    };
    let ruid = getresuid().map_err(step("getresuid"))?;
    let was_root = ruid.real.is_root() || ruid.effective.is_root() || ruid.saved.is_root();
    if was_root {
        let uid = resolve_id(
            &cfg.user,
            |n| User::from_name(n).ok().flatten().map(|u| u.uid.as_raw()),
            "user",
            report,
        );
        let gid = resolve_id(
            &cfg.group,
            |n| Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw()),
            "group",
            report,
        );
        if uid == 0 || gid == 0 {
            return Err(SandboxError::RootTarget(format!(
                "{}:{}",
                cfg.user, cfg.group
            )));
        }
        // The bounding set limits what any later execve could regain; needs
        // CAP_SETPCAP, which root normally has (skipped otherwise).
        let mut bounding_dropped = true;
        for cap in 0..64 {
            // SAFETY: integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINVAL) {
                    break; // past the last capability this kernel knows
                }
                bounding_dropped = false;
            }
        }
        if !bounding_dropped {
            report
                .skipped
                .push("capability bounding set: not permitted".into());
        }
        setgroups(&[]).map_err(step("setgroups"))?;
        let g = Gid::from_raw(gid);
        setresgid(g, g, g).map_err(step("setresgid"))?;
        let u = Uid::from_raw(uid);
        // With all three uids non-zero (and no SECBIT_KEEP_CAPS) the kernel
        // clears the permitted, effective and ambient capabilities here.
        setresuid(u, u, u).map_err(step("setresuid"))?;
        let now = getresuid().map_err(step("getresuid"))?;
        let nowg = getresgid().map_err(step("getresgid"))?;
        if [now.real, now.effective, now.saved]
            .iter()
            .any(|x| x.as_raw() != uid)
            || [nowg.real, nowg.effective, nowg.saved]
                .iter()
                .any(|x| x.as_raw() != gid)
        {
            return Err(SandboxError::DropPrivileges {
                step: "verify ids",
                source: io::Error::other("the ids did not change"),
            });
        }
        report.dropped_privileges = true;
    }
    // Whether or not we were root: no ambient, inheritable, permitted or
    // effective capability may remain (a non-root process can hold file or
    // inherited capabilities too). Lowering needs no privilege.
    // SAFETY: integer arguments only. EINVAL on kernels before 4.3 (no
    // ambient capabilities) is fine.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    clear_capabilities().map_err(|e| SandboxError::DropPrivileges {
        step: "capset",
        source: e,
    })?;
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| SandboxError::DropPrivileges {
            step: "read /proc/self/status",
            source: e,
        })?;
    for key in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        match status_hex(&status, key) {
            Some(0) => {}
            Some(v) => return Err(SandboxError::CapabilitiesRemain(format!("{key} {v:016x}"))),
            None if key == "CapAmb" => {} // older kernels
            None => {
                return Err(SandboxError::CapabilitiesRemain(format!(
                    "{key} unreadable"
                )))
            }
        }
    }
    report.uid = nix::unistd::getuid().as_raw();
    report.gid = nix::unistd::getgid().as_raw();
    Ok(())
}

/// `capset` with every set empty.
fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: the header and the two data words are the layout capset(2)
    // expects for version 3; the kernel only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A decimal field of `/proc/<pid>/status` (`Threads:\t1`).
fn status_dec(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// A hexadecimal field of `/proc/<pid>/status` (`CapEff:\t0000…`).
pub fn status_hex(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    u64::from_str_radix(line.split(':').nth(1)?.trim(), 16).ok()
}

// ----- 6. rlimits --------------------------------------------------------------

fn apply_rlimits(cfg: &SandboxConfig, report: &mut SandboxReport) -> Result<(), SandboxError> {
    use rlimit::Resource;
    // (resource, name, soft, hard, required). `None` soft: left as is.
    let cpu = (cfg.cpu_seconds > 0).then_some(cfg.cpu_seconds);
    let mem = (cfg.memory_bytes > 0).then_some(cfg.memory_bytes);
    type Limit = (Resource, &'static str, Option<u64>, Option<u64>, bool);
    let limits: [Limit; 6] = [
        (Resource::AS, "RLIMIT_AS", mem, mem, true),
        // SIGXCPU at the soft limit, SIGKILL one second later if ignored.
        (Resource::CPU, "RLIMIT_CPU", cpu, cpu.map(|c| c + 1), true),
        (
            Resource::NOFILE,
            "RLIMIT_NOFILE",
            Some(cfg.max_open_files),
            Some(cfg.max_open_files),
            true,
        ),
        (Resource::FSIZE, "RLIMIT_FSIZE", Some(0), Some(0), true),
        (Resource::CORE, "RLIMIT_CORE", Some(0), Some(0), true),
        // "Where permitted": lowering is always permitted on Linux, but a
        // failure here is not fatal (fork is refused by seccomp anyway).
        (Resource::NPROC, "RLIMIT_NPROC", Some(0), Some(0), false),
    ];
    for (res, name, soft, hard, required) in limits {
        let (Some(soft), Some(hard)) = (soft, hard) else {
            report.skipped.push(format!("{name}: not configured"));
            continue;
        };
        // Without CAP_SYS_RESOURCE a hard limit can only be lowered: never ask
        // for more than the current hard limit.
        let (_, cur_hard) = res.get().map_err(|e| SandboxError::Rlimit(name, e))?;
        let hard = hard.min(cur_hard);
        let soft = soft.min(hard);
        match res.set(soft, hard) {
            Ok(()) => report.rlimits.push((name.to_string(), soft)),
            Err(e) if !required => report.skipped.push(format!("{name}: {e}")),
            Err(e) => return Err(SandboxError::Rlimit(name, e)),
        }
    }
    Ok(())
}

// ----- 7. warm-up ---------------------------------------------------------------

/// The process-wide warm-up, around the caller's own (`then`).
fn warm_up_process(then: impl FnOnce()) {
    // Allocator: grow the heap and the mmap threshold path, then give it back.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for size in [64usize, 4096, 128 << 10, 1 << 20, 4 << 20] {
        let mut v = vec![0u8; size];
        v[size - 1] = 1;
        blocks.push(v);
    }
    let mut grow = Vec::with_capacity(1024);
    for i in 0..(256 * 1024) {
        grow.push(i as u8); // exercises realloc / mremap
    }
    drop(grow);
    drop(blocks);
    // Hash seeds of std's RandomState come from getrandom once per thread.
    let mut m = std::collections::HashMap::new();
    m.insert(1u8, 1u8);
    drop(m);
    let _ = std::time::Instant::now().elapsed();
    let _ = std::time::SystemTime::now();
    // What the caller will do under the filter (for the worker: the language).
    then();
    // A panic caught here runs the panic machinery once (hook, unwinding
    // tables) before the filter, so a later panic needs nothing new.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(|| panic!("warm-up"));
    std::panic::set_hook(hook);
}

// ----- 8. seccomp ------------------------------------------------------------------

/// One entry of the allow-list: a system call, when its arguments qualify,
/// and why the worker needs it (the table of `docs/security.md`).
#[derive(Debug, Clone)]
pub struct AllowedSyscall {
    pub name: &'static str,
    pub nr: i64,
    /// Argument conditions, for the documentation (empty: any arguments).
    pub args: String,
    pub why: &'static str,
    rules: Vec<SeccompRule>,
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| SandboxError::Filter(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Filter(e.to_string()))
}

/// One rule per fd: `arg0 == fd`.
fn on_fds(fds: &[i32]) -> Result<Vec<SeccompRule>, SandboxError> {
    fds.iter()
        .map(|fd| rule(vec![cond(0, SeccompCmpOp::Eq, *fd as u64)?]))
        .collect()
}

/// The allow-list for a worker talking on `socket_fds`, with process id `pid`
/// (only `tgkill(pid, _, SIGABRT)` is allowed, for `abort`).
pub fn allow_list(socket_fds: &[i32], pid: u32) -> Result<Vec<AllowedSyscall>, SandboxError> {
    let fds: Vec<String> = socket_fds.iter().map(|f| f.to_string()).collect();
    let sock = fds.join(" or ");
    let mut write_fds: Vec<i32> = socket_fds.to_vec();
    write_fds.push(STDERR_FD);
    let no_exec = |arg: u8| cond(arg, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0);
    let anon = cond(
        3,
        SeccompCmpOp::MaskedEq(libc::MAP_ANONYMOUS as u64),
        libc::MAP_ANONYMOUS as u64,
    )?;
    let any = Vec::new;
    let e = |name, nr, args: String, why, rules| AllowedSyscall {
        name,
        nr,
        args,
        why,
        rules,
    };
    Ok(vec![
        e("recvfrom", libc::SYS_recvfrom, format!("fd = {sock}"),
          "reads requests: std's UnixStream::read is recv(2), which is recvfrom on x86_64 and aarch64",
          on_fds(socket_fds)?),
        e("sendto", libc::SYS_sendto, format!("fd = {sock}"),
          "writes replies: std's UnixStream::write is send(2) with MSG_NOSIGNAL, i.e. sendto",
          on_fds(socket_fds)?),
        e("read", libc::SYS_read, format!("fd = {sock}"),
          "not used by std today; allowed on the socket only so that a read(2)-based reader does not trap",
          on_fds(socket_fds)?),
        e("write", libc::SYS_write, format!("fd = {sock} or {STDERR_FD}"),
          "panic, allocation-failure and stack-overflow messages go to stderr with write(2)",
          on_fds(&write_fds)?),
        e("mmap", libc::SYS_mmap, "prot without PROT_EXEC, flags with MAP_ANONYMOUS".into(),
          "the allocator maps large blocks; never executable, never a file",
          vec![rule(vec![no_exec(2)?, anon])?]),
        e("munmap", libc::SYS_munmap, String::new(), "the allocator frees large blocks", any()),
        e("mremap", libc::SYS_mremap, String::new(), "realloc of large blocks (growing vectors and strings)", any()),
        e("brk", libc::SYS_brk, String::new(), "the allocator's main heap", any()),
        e("madvise", libc::SYS_madvise, String::new(), "the allocator returns freed pages to the kernel", any()),
        e("mprotect", libc::SYS_mprotect, "prot without PROT_EXEC".into(),
          "the allocator may change page protections; never to executable",
          vec![rule(vec![no_exec(2)?])?]),
        e("futex", libc::SYS_futex, String::new(),
          "std's locks (stderr, the panic machinery, one-time initialisation); uncontended in a single thread but not guaranteed syscall-free",
          any()),
        e("getrandom", libc::SYS_getrandom, String::new(),
          "hash seeds of std's HashMap (taken before the filter, allowed in case a library asks again)",
          any()),
        e("clock_gettime", libc::SYS_clock_gettime, String::new(),
          "phase timings (Instant::now); served by the vDSO, the system call is its fallback",
          any()),
        e("sched_yield", libc::SYS_sched_yield, String::new(),
          "polling for the next request (`poll_before_block_us`) yields the CPU between polls",
          any()),
        e("fcntl", libc::SYS_fcntl, "cmd = F_GETFD".into(),
          "std checks that a descriptor is still open when it is dropped (debug builds); a read-only query",
          vec![rule(vec![cond(1, SeccompCmpOp::Eq, libc::F_GETFD as u64)?])?]),
        e("close", libc::SYS_close, String::new(), "dropping a descriptor (the socket at exit)", any()),
        e("sigaltstack", libc::SYS_sigaltstack, String::new(),
          "std's stack-overflow handler manages the alternate signal stack", any()),
        e("rt_sigreturn", libc::SYS_rt_sigreturn, String::new(),
          "return from a signal handler (std's SIGSEGV/SIGBUS handler)", any()),
        e("rt_sigprocmask", libc::SYS_rt_sigprocmask, String::new(),
          "abort() blocks and unblocks signals before raising SIGABRT", any()),
        e("rt_sigaction", libc::SYS_rt_sigaction, String::new(),
          "abort() and std's SIGSEGV handler reset a handler to the default before re-raising", any()),
        e("getpid", libc::SYS_getpid, String::new(), "abort(): raise(SIGABRT) addresses its own process", any()),
        e("gettid", libc::SYS_gettid, String::new(), "abort() and the panic machinery (thread id)", any()),
        e("tgkill", libc::SYS_tgkill, format!("tgid = {pid} (own), sig = SIGABRT"),
          "abort() (allocation failure, stack overflow, panic=abort) delivers SIGABRT to itself; no other signal, no other process",
          vec![rule(vec![
              cond(0, SeccompCmpOp::Eq, pid as u64)?,
              cond(2, SeccompCmpOp::Eq, libc::SIGABRT as u64)?,
          ])?]),
        e("exit", libc::SYS_exit, String::new(), "thread exit", any()),
        e("exit_group", libc::SYS_exit_group, String::new(), "process exit (clean shutdown and protocol errors)", any()),
    ])
}

/// Compiles the allow-list to BPF: allowed calls pass, anything else kills
/// the whole process (`SECCOMP_RET_KILL_PROCESS`, seen as `SIGSYS`), and so
/// does any call made with a foreign architecture's calling convention.
pub fn build_filter(
    arch: TargetArch,
    socket_fds: &[i32],
    pid: u32,
) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for entry in allow_list(socket_fds, pid)? {
        rules.entry(entry.nr).or_default().extend(entry.rules);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SandboxError::Filter(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Filter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_builds_for_both_architectures() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            let prog = build_filter(arch, &[3], 1234).unwrap();
            assert!(!prog.is_empty() && prog.len() < 4096);
        }
    }

    #[test]
    fn allow_list_has_unique_entries_with_reasons() {
        let list = allow_list(&[3], 1).unwrap();
        let mut names: Vec<&str> = list.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), list.len());
        assert!(list.iter().all(|e| !e.why.is_empty()));
        for forbidden in [
            "open", "openat", "socket", "connect", "execve", "clone", "ptrace", "mount",
        ] {
            assert!(!names.contains(&forbidden), "{forbidden} is allowed");
        }
    }

    #[test]
    fn refuses_a_multi_threaded_process() {
        // The test harness runs tests on threads: this process has several.
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        let err = apply_sandbox(&SandboxConfig::default(), &[], || {}).unwrap_err();
        assert!(
            matches!(err, SandboxError::MultiThreaded(n) if n > 1),
            "{err}"
        );
    }

    #[test]
    fn status_hex_reads_fields() {
        let s = "Name:\tx\nCapEff:\t000001fffeffffff\nCapPrm:\t0000000000000000\n";
        assert_eq!(status_hex(s, "CapEff"), Some(0x1fffeffffff));
        assert_eq!(status_hex(s, "CapPrm"), Some(0));
        assert_eq!(status_hex(s, "CapBnd"), None);
        assert_eq!(status_dec("Threads:\t3\n", "Threads"), Some(3));
    }
}
