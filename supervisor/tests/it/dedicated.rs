//! Dedicated workers (`pool.tenant_isolation = "dedicated"`, issue 14)
//! against the real server: with one worker slot and two tenants whose
//! requests alternate, no worker process ever serves both tenants; with
//! `worker.uid_range` their workers run under different uids. Shared mode,
//! the control, serves both from the one worker.
//!
//! Which worker served a request is read from /proc, not from anything the
//! server reports: once omnid's children have settled, the one whose
//! context-switch count moved during the request served it (an idle worker
//! or spare sleeps in `recv` and does not move).

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// omnid with auth on (tenants `a` and `b`), one worker slot, and `extra`
/// (`[pool]` and `[worker]` keys, given as `pool.x = ...` lines).
fn start(pool: &str, worker: &str) -> Server {
    let dir = TempDir::new("dedicated");
    let tokens = dir.path("tokens");
    let file = format!(
        "{}{}",
        token_line("a", "token-a"),
        token_line("b", "token-b")
    );
    std::fs::write(&tokens, file).unwrap();
    let cfg = format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 1\nsandbox = \"{}\"\n\
         [worker]\ntimeout_ms = 5000\n{worker}\n\
         [pool]\n{pool}\n\
         [rate_limit]\nenabled = false\n\
         [auth]\nenabled = true\ntokens_file = \"{}\"\n",
        sandbox_setting(),
        tokens.display()
    );
    let path = dir.path("omnid.toml");
    std::fs::write(&path, cfg).unwrap();
    Server::start_in(dir, path)
}

/// Context switches of a process so far (voluntary + involuntary).
fn switches(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut n = 0;
    for l in status.lines() {
        if let Some(v) = l
            .strip_prefix("voluntary_ctxt_switches:")
            .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            n += v.trim().parse::<u64>().ok()?;
        }
    }
    Some(n)
}

/// omnid's workers once `expected` of them exist and none has come or gone
/// (or moved) for 150 ms: a retired worker has exited, a spare is ready.
fn settled(srv: &Server, expected: usize) -> BTreeMap<u32, u64> {
    let until = Instant::now() + Duration::from_secs(20);
    let mut last: Option<BTreeMap<u32, u64>> = None;
    let mut stable_since = Instant::now();
    loop {
        let now: BTreeMap<u32, u64> = srv
            .workers()
            .into_iter()
            .filter_map(|p| Some((p, switches(p)?)))
            .collect();
        if now.len() != expected || last.as_ref() != Some(&now) {
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(150) {
            return now;
        }
        assert!(
            Instant::now() < until,
            "omnid's workers did not settle at {expected}: {now:?}"
        );
        last = Some(now);
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends one request as `tenant` and returns the pid of the worker that
/// served it. `workers`: how many worker processes omnid keeps (slots +
/// spares).
fn served_by(srv: &Server, tenant: &str, workers: usize) -> u32 {
    let before = settled(srv, workers);
    let auth = format!("Bearer token-{tenant}");
    let r = srv.validate_with(&good_body(), &[("Authorization", auth.as_str())]);
    assert_eq!(r.status, 200, "{}", r.text());
    let after = settled(srv, workers);
    let moved: Vec<u32> = after
        .iter()
        .filter(|(p, n)| before.get(p).is_some_and(|b| *n > b))
        .map(|(p, _)| *p)
        .collect();
    if moved.len() == 1 {
        return moved[0];
    }
    // No spares: the worker started for this request is the only new one.
    let new: Vec<u32> = after
        .keys()
        .filter(|p| !before.contains_key(p))
        .copied()
        .collect();
    assert!(
        moved.is_empty() && new.len() == 1,
        "cannot tell which worker served {tenant}: before {before:?}, after {after:?}"
    );
    new[0]
}

/// Alternates a, b, a, b, a, b, then a, a; returns the serving pids of
/// each tenant in order.
fn alternate(srv: &Server, workers: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(served_by(srv, "a", workers));
        b.push(served_by(srv, "b", workers));
    }
    a.push(served_by(srv, "a", workers));
    a.push(served_by(srv, "a", workers));
    (a, b)
}

/// The `Uid:` line of a process: real, effective, saved, filesystem.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

#[test]
fn shared_mode_serves_both_tenants_from_the_one_worker() {
    // The control: what dedicated mode changes.
    let srv = start("tenant_isolation = \"shared\"", "");
    let (a, b) = alternate(&srv, 1);
    let all: BTreeSet<u32> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 1, "a {a:?} b {b:?}");
}

#[test]
fn dedicated_mode_never_serves_two_tenants_from_one_worker() {
    // One slot and one spare: each switch of tenant takes the spare and
    // retires the other tenant's worker.
    let srv = start("tenant_isolation = \"dedicated\"\nspare_workers = 1", "");
    let (a, b) = alternate(&srv, 2);
    let sa: BTreeSet<u32> = a.iter().copied().collect();
    let sb: BTreeSet<u32> = b.iter().copied().collect();
    assert!(
        sa.is_disjoint(&sb),
        "a worker served both tenants: a {a:?} b {b:?}"
    );
    // A tenant's worker stays its own while it keeps sending.
    assert_eq!(a[a.len() - 1], a[a.len() - 2], "a {a:?}");
    // Every switch was a fresh worker.
    assert_eq!(sb.len(), 3, "b {b:?}");
    assert_eq!(srv.validate(&good_body()).status, 401);
}

#[test]
fn dedicated_mode_with_a_uid_range_runs_each_tenant_under_its_own_uid() {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let required = std::env::var("OMNI_REQUIRE_ROOT").as_deref() == Ok("1");
    if !root && !required {
        eprintln!("skipped: worker.uid_range needs omnid started as root (set OMNI_REQUIRE_ROOT=1 to fail instead)");
        return;
    }
    assert!(root, "OMNI_REQUIRE_ROOT=1 but the tests do not run as root");
    if sandbox_setting() == "off" {
        eprintln!("skipped: worker.uid_range needs the sandbox (OMNI_TEST_SANDBOX=off)");
        return;
    }
    let first = 61_000u32;
    let srv = start(
        "tenant_isolation = \"dedicated\"",
        &format!("uid_range = [{first}, {}]", first + 9),
    );
    // With uid_range there are no spares: one worker, the slot's.
    let (a, b) = alternate(&srv, 1);
    let sa: BTreeSet<u32> = a.iter().copied().collect();
    let sb: BTreeSet<u32> = b.iter().copied().collect();
    assert!(sa.is_disjoint(&sb), "a {a:?} b {b:?}");
    // The last worker of `a` is alive: its uid (all four) is a's.
    let ua = uids(a[a.len() - 1]);
    assert!(ua.iter().all(|u| *u == ua[0]), "{ua:?}");
    assert!((first..=first + 9).contains(&ua[0]), "{ua:?}");
    // Switch to b: its worker has another uid, and a's comes back the same.
    let pb = served_by(&srv, "b", 1);
    let ub = uids(pb);
    assert!(ub.iter().all(|u| *u == ub[0]), "{ub:?}");
    assert!((first..=first + 9).contains(&ub[0]), "{ub:?}");
    assert_ne!(ua[0], ub[0], "tenants a and b share uid {}", ua[0]);
    let pa = served_by(&srv, "a", 1);
    assert_eq!(uids(pa)[0], ua[0], "a's uid is stable");
    assert!(!sb.contains(&pa));
}
