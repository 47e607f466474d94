//! A throwaway PostgreSQL cluster for tests and benches (one per process),
//! run as the `postgres` user in a temporary directory on 127.0.0.1 and a
//! free port, with its socket in that directory. Self-contained (benches
//! include this file by path).
//!
//! When the binaries or the `postgres` user are missing, [`cluster`] prints
//! `skipped: PostgreSQL half (REASON)` once and returns `None`, so the test
//! passes without PostgreSQL. A watchdog shell stops the cluster
//! (`-m immediate`) once the test process is gone, since statics are never
//! dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A running throwaway cluster.
pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
}

/// Run `cmd` through bash as the `postgres` user.
pub fn as_postgres(cmd: &str) -> std::io::Result<std::process::Output> {
    Command::new("su")
        .args(["postgres", "-s", "/bin/bash", "-c", cmd])
        .output()
}

/// The newest PostgreSQL's `bin` directory.
pub fn pg_bin() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root)
        .map_err(|_| "PostgreSQL is not installed (no /usr/lib/postgresql)".to_string())?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_string())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn check(out: std::io::Result<std::process::Output>, what: &str) -> Result<(), String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    /// A new directory owned by `postgres`, for one or more data dirs.
    pub fn workdir(tag: &str) -> Result<PathBuf, String> {
        pg_bin()?;
        let has_user = Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_user {
            return Err("there is no 'postgres' user to run the server as".into());
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mb-pg-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let chown = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().expect("utf-8 temp dir")])
            .status()
            .map_err(|e| e.to_string())?;
        if !chown.success() {
            return Err("cannot chown the cluster directory to postgres (not root?)".into());
        }
        Ok(dir)
    }

    /// initdb + start a cluster in `dir/d` with `extra` server settings
    /// (`-c name=value ...`), stopped by a watchdog when this process ends.
    pub fn start_in(dir: &Path, extra: &str) -> Result<Cluster, String> {
        let bin = pg_bin()?;
        let port = free_port();
        let (d, b) = (dir.display(), bin.display());
        check(
            as_postgres(&format!(
                "{b}/initdb -D {d}/d -A trust -U postgres >/dev/null"
            )),
            "initdb",
        )?;
        let c = Cluster {
            dir: dir.to_path_buf(),
            bin,
            port,
        };
        c.start(extra)?;
        Ok(c)
    }

    /// Start this cluster's server (again).
    pub fn start(&self, extra: &str) -> Result<(), String> {
        let (d, b, port) = (self.dir.display(), self.bin.display(), self.port);
        check(
            as_postgres(&format!(
                "{b}/pg_ctl -D {d}/d -l {d}/log -o \"-p {port} -k {d} \
                 -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
                 -c max_connections=200 {extra}\" -w start >/dev/null"
            )),
            "pg_ctl start",
        )?;
        // Stop the server once the test process is gone (statics are never
        // dropped); polling a pid is what such a watchdog does.
        let me = std::process::id();
        let _ = Command::new("su")
            .args([
                "postgres",
                "-s",
                "/bin/bash",
                "-c",
                &format!(
                    "nohup bash -c 'while [ -d /proc/{me} ]; do sleep 1; done; \
                     {b}/pg_ctl -D {d}/d -m immediate -w stop; rm -rf {d}' >/dev/null 2>&1 &"
                ),
            ])
            .status();
        Ok(())
    }

    /// Run SQL through psql on database `db` (as the superuser).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = as_postgres(&format!(
            "psql -X -A -t -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d {db} -c \"{}\"",
            self.dir.display(),
            self.port,
            sql.replace('"', "\\\"")
        ))
        .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        self.url(&name)
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stop the server (`mode`: immediate, fast).
    pub fn stop(&self, mode: &str) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/d -m {mode} -w stop >/dev/null",
            self.bin.display(),
            self.dir.display()
        ));
    }
}

/// This process's shared cluster, started on first use; `None` (after
/// printing why, once) when PostgreSQL cannot be started here.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let c = CLUSTER.get_or_init(|| {
        let dir = Cluster::workdir("t")?;
        Cluster::start_in(&dir, "")
    });
    match c {
        Ok(c) => Some(c),
        Err(why) => {
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| println!("skipped: PostgreSQL half ({why})"));
            None
        }
    }
}

/// This process's shared cluster, or why there is none (for benches that
/// print `n/a (why)`).
pub fn try_cluster() -> Result<&'static Cluster, String> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let dir = Cluster::workdir("b")?;
            Cluster::start_in(&dir, "")
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Cluster {
    /// The plain baseline: `pgbench` with `clients` clients for `seconds`,
    /// each transaction ONE insert of a 117-byte bytea into
    /// `bench_events (mission, seq bigserial, body)` of database `db`
    /// (created if missing). Returns transactions per second.
    pub fn pgbench_insert(&self, db: &str, clients: usize, seconds: u64) -> Result<f64, String> {
        self.psql(
            db,
            "CREATE TABLE IF NOT EXISTS bench_events (mission bigint NOT NULL, seq bigserial, \
             body bytea NOT NULL, PRIMARY KEY (mission, seq))",
        )?;
        let script = self.dir.join("insert.sql");
        std::fs::write(
            &script,
            "INSERT INTO bench_events (mission, body) VALUES (1, convert_to(repeat('x', 117), 'UTF8'));\n",
        )
        .map_err(|e| e.to_string())?;
        let out = as_postgres(&format!(
            "pgbench -n -c {clients} -j 2 -T {seconds} -f {} -h {} -p {} -U postgres {db}",
            script.display(),
            self.dir.display(),
            self.port
        ))
        .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l[6..].split_whitespace().next()?.parse().ok())
            .ok_or_else(|| {
                format!(
                    "pgbench printed no tps: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}
