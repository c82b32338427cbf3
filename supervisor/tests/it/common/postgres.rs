//! A throwaway PostgreSQL cluster for tests: Debian's `initdb` and
//! `pg_ctl` (`/usr/lib/postgresql/*/bin`), a data directory in a temporary
//! directory, listening on 127.0.0.1 on a free port and on a unix socket
//! in that directory, with trust authentication for the user `omni`.
//! Started as root (as CI is), the server runs as the unprivileged
//! `postgres` user (`runuser`), which owns the directory. Dropping it stops
//! the server and removes the directory.
//!
//! Without PostgreSQL, [`PgCluster::start`] prints one line and returns
//! `None`, unless `OMNI_REQUIRE_POSTGRES=1` (then it panics). This file is
//! also compiled into omnid's unit tests (`store::testing`), so it uses
//! nothing but std.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The database superuser the tests connect as.
pub const PG_USER: &str = "omni";

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run the server tools as `postgres` (we are root).
    as_postgres: bool,
    running: bool,
}

/// The newest installed PostgreSQL's `bin` directory.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl PgCluster {
    /// A new cluster, started; `None` (after one line on stderr) when
    /// PostgreSQL is not installed and not required.
    pub fn start() -> Option<PgCluster> {
        let required = std::env::var("OMNI_REQUIRE_POSTGRES").as_deref() == Ok("1");
        let Some(bin) = find_bin() else {
            assert!(
                !required,
                "OMNI_REQUIRE_POSTGRES=1 but PostgreSQL is not installed \
                 (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)"
            );
            eprintln!("skipped (no PostgreSQL)");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "omni-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sockets"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let as_postgres = is_root();
        let mut cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            as_postgres,
            running: false,
        };
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&cluster.dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
            assert!(
                out.status.success(),
                "{}",
                describe("chown to the postgres user", &out)
            );
        }
        let data = cluster.data_dir();
        let out = cluster
            .server_tool("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(out.status.success(), "{}", describe("initdb", &out));
        cluster.start_again();
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sockets")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A server tool (`initdb`, `pg_ctl`), as `postgres` when we are root.
    fn server_tool(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The URL of the `postgres` database, over TCP.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database and returns its URL (each test its own).
    pub fn create_database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
                name,
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run createdb: {e}"));
        assert!(out.status.success(), "{}", describe("createdb", &out));
        self.url_for(name)
    }

    /// Starts the server again on the same data directory and port.
    pub fn start_again(&mut self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.socket_dir().display()
        );
        let log = self.dir.join("server.log");
        let out = self
            .server_tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        assert!(
            out.status.success(),
            "{}\nserver log:\n{}",
            describe("pg_ctl start", &out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stops the server (fast: open connections are closed, in-flight
    /// transactions roll back).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let out = self
            .server_tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        assert!(out.status.success(), "{}", describe("pg_ctl stop", &out));
        self.running = false;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .server_tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
