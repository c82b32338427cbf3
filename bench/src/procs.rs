//! Processes under test: start `omnid` or `floor` on 127.0.0.1 with a free
//! port (both print `listening on ADDR`), read their CPU time (the whole
//! process tree: `omnid`'s workers are its children), and small blocking
//! HTTP requests for set-up and metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process started by the load test; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where its standard output (the log) goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `cmd` with stdout into `log` and waits (up to 30 s) for the
    /// `listening on ADDR` line, or, when `known` is given, until that
    /// address accepts connections.
    pub fn start(
        mut cmd: Command,
        log: &Path,
        known: Option<SocketAddr>,
    ) -> Result<Server, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let found = match known {
                Some(a) => TcpStream::connect_timeout(&a, Duration::from_millis(200))
                    .is_ok()
                    .then_some(a),
                None => listening_addr(log),
            };
            if let Some(addr) = found {
                return Ok(Server {
                    child,
                    addr,
                    log: log.to_path_buf(),
                });
            }
            if let Ok(Some(st)) = child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{cmd:?} exited with {st}:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("{cmd:?} did not report its address"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time of the process and all its descendants (reaped ones
    /// included), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        tree_cpu_seconds(self.pid())
    }

    /// Stops the process (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_local_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address")
}

/// The address of the first `listening on ADDR` line of a log file.
fn listening_addr(log: &Path) -> Option<SocketAddr> {
    let f = std::fs::File::open(log).ok()?;
    for line in BufReader::new(f).lines() {
        let line = line.ok()?;
        if let Some(i) = line.find("listening on ") {
            let addr: String = line[i + "listening on ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            if let Ok(a) = addr.parse() {
                return Some(a);
            }
        }
    }
    None
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}

/// Fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime + cutime + cstime of `pid` plus the same for its live
/// descendants, in seconds (children's time moves into `cutime` when
/// they are reaped, so nothing is lost or counted twice).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = |f: &[String]| -> u64 {
        // After the comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
        [11, 12, 13, 14]
            .iter()
            .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
            .sum()
    };
    let Some(root) = stat_fields(pid) else {
        return 0.0;
    };
    let mut ticks = own(&root);
    let mut parents = vec![pid];
    while let Some(p) = parents.pop() {
        for c in children(p) {
            if let Some(f) = stat_fields(c) {
                ticks += own(&f);
            }
            parents.push(c);
        }
    }
    ticks as f64 / clock_ticks()
}

/// Live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(c) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if stat_fields(c)
            .and_then(|f| f.get(1)?.parse::<u32>().ok())
            .is_some_and(|pp| pp == pid)
        {
            out.push(c);
        }
    }
    out
}

/// Busy CPU time of the whole machine (all CPUs: user, nice, system, irq,
/// softirq, steal), in seconds, from `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / clock_ticks()
}

/// CPU time of this process (all threads), in seconds.
pub fn self_cpu_seconds() -> f64 {
    stat_fields(std::process::id())
        .map(|f| {
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
                .sum::<u64>() as f64
                / clock_ticks()
        })
        .unwrap_or(0.0)
}

/// One HTTP/1.1 request on its own connection; `(status, body)`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Option<(u16, Vec<u8>)> {
    http_with(addr, method, path, body, &[])
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    if let Some(b) = body {
        s.write_all(b).ok()?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[head_end + 4..].to_vec();
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        body = dechunk(&body)?;
    }
    Some((status, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

/// `GET /api/metrics` as JSON.
pub fn metrics(addr: SocketAddr) -> Option<serde_json::Value> {
    let (status, body) = http(addr, "GET", "/api/metrics", None)?;
    (status == 200)
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
}
