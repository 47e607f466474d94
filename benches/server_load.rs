//! Load benchmark of the HTTP server against the library and PostgreSQL, in
//! one run, all at the same durability (fsync before acknowledging):
//!
//! 1. the library: 64 threads appending through `MissionBus::append`
//!    (`Durability::Sync`);
//! 2. the server: N concurrent HTTP agents (default 1, 8, 32, 64) posting
//!    messages to one mission over loopback (`Durability::Sync`);
//! 3. PostgreSQL, when installed: `pgbench`, one fsynced INSERT per
//!    transaction (`synchronous_commit=on`, `fsync=on`), 1 and 64 clients,
//!    on a throwaway cluster in a temporary directory, run as the `postgres`
//!    user (the server refuses root). Prints n/a and why when it cannot.
//!
//! Then PASS/FAIL lines for the targets: server at 64 agents >= 0.6x the
//! library at 64 writers and >= 1.5x PostgreSQL at 64 clients, and p99 at
//! 64 agents under 10 ms. Every figure is printed with the 1-minute load
//! average read right after it.
//!
//! Run: `cargo bench --bench server_load`
//!
//! Knobs (environment):
//! - `SERVER_LOAD_AGENTS`: comma-separated concurrency levels (default `1,8,32,64`)
//! - `SERVER_LOAD_EVENTS`: events per level (default 20000)
//! - `SERVER_LOAD_PAYLOAD`: payload bytes per event (default 100)
//! - `SERVER_LOAD_PG_SECONDS`: seconds per pgbench run (default 10)
//!
//! The load generator is cheap on purpose (it shares the machine's cores with
//! the server): every agent is a task on ONE separate current-thread tokio
//! runtime, with its own keep-alive HTTP/1.1 connection, sending one
//! pre-encoded request at a time and parsing only the status line and
//! `Content-Length` of the answer. The server runs in this process on its
//! own 2-worker runtime with the default limits. Every level uses a fresh
//! data directory.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::server;
use mission_bus::{Durability, MissionBus, NewMission};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
/// No level runs longer than this, whatever the event count.
const MAX_LEVEL_TIME: Duration = Duration::from_secs(120);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn open_sync(dir: &Path) -> MissionBus {
    MissionBus::builder(dir)
        .durability(Durability::Sync)
        .open()
        .unwrap()
}

struct Outcome {
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

// ----- the library -------------------------------------------------------------

fn run_library(writers: usize, total: usize, payload: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_sync(dir.path());
    bus.create_mission(NewMission::new("load", "load").lead("lead"))
        .unwrap();
    for i in 0..writers {
        bus.join(
            "load",
            &format!("agent-{i}"),
            "write",
            serde_json::json!({}).into(),
        )
        .unwrap();
    }
    let per = total.div_ceil(writers);
    let gate = Arc::new(Barrier::new(writers + 1));
    let workers: Vec<_> = (0..writers)
        .map(|i| {
            let bus = bus.clone();
            let gate = Arc::clone(&gate);
            let payload = json!(payload);
            thread::spawn(move || {
                let me = format!("agent-{i}");
                let mut lat = Vec::with_capacity(per);
                gate.wait();
                for _ in 0..per {
                    let t = Instant::now();
                    bus.publish("load", &me, "load", payload.clone().into())
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    gate.wait();
    let began = Instant::now();
    let latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let elapsed = began.elapsed();
    bus.close();
    Outcome {
        events: latencies.len(),
        elapsed,
        latencies,
    }
}

// ----- the server ----------------------------------------------------------------

/// One blocking request on a fresh connection (set-up only).
fn setup_post(addr: std::net::SocketAddr, path: &str, token: &str, body: &Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Conn::connect(addr).await;
        let (status, body) = c
            .request(&encode_post(addr, path, token, &body.to_string()))
            .await;
        assert_eq!(status, 201, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    })
}

fn encode_post(addr: std::net::SocketAddr, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A minimal keep-alive HTTP/1.1 client: enough for `Content-Length` answers.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: std::net::SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn request(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        self.stream.write_all(req).await.unwrap();
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                let status: u16 = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    self.fill().await;
                }
                return (status, self.buf[end + 4..end + 4 + len].to_vec());
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn run_server(agents: usize, total: usize, payload: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_sync(dir.path());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_bus = bus.clone();
    let server = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            server::run(listener, server_bus, ADMIN.into(), async {
                let _ = stopped.await;
            })
            .await
        })
    });
    setup_post(
        addr,
        "/v1/missions",
        ADMIN,
        &json!({"mission_id": "load", "title": "load", "lead": "lead"}),
    );
    let tokens: Vec<String> = (0..agents)
        .map(|i| {
            let p = setup_post(
                addr,
                "/v1/missions/load/participants",
                ADMIN,
                &json!({"name": format!("agent-{i}"), "role": "write"}),
            );
            p["token"].as_str().unwrap().to_string()
        })
        .collect();
    let body = json!({"topic": "load", "payload": payload}).to_string();
    let per_agent = total.div_ceil(agents);
    // The load generator: one current-thread runtime, one task per agent.
    let generator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (elapsed, latencies) = generator.block_on(async {
        let gate = Arc::new(tokio::sync::Barrier::new(agents + 1));
        let mut tasks = Vec::new();
        for token in tokens {
            let req = encode_post(addr, "/v1/missions/load/messages", &token, &body);
            let gate = Arc::clone(&gate);
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::connect(addr).await;
                // Warm the connection outside the measurement.
                assert_eq!(c.request(&req).await.0, 201);
                gate.wait().await;
                let began = Instant::now();
                let mut lat = Vec::with_capacity(per_agent);
                for _ in 0..per_agent {
                    if began.elapsed() > MAX_LEVEL_TIME {
                        break;
                    }
                    let t = Instant::now();
                    let (status, answer) = c.request(&req).await;
                    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        gate.wait().await;
        let began = Instant::now();
        let mut all = Vec::with_capacity(per_agent * agents);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (began.elapsed(), all)
    });
    let head = bus.state("load").unwrap().head;
    assert_eq!(head as usize, 2 + agents * 2 + latencies.len());
    assert!(bus.verify("load").unwrap().is_intact());
    let _ = stop.send(());
    server.join().unwrap().unwrap();
    bus.close();
    Outcome {
        events: latencies.len(),
        elapsed,
        latencies,
    }
}

// ----- PostgreSQL ----------------------------------------------------------------

/// The throwaway cluster shared with the tests and the PostgreSQL bench.
#[path = "../tests/util/pg.rs"]
mod pg;

// ----- report --------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(what: &str, n: usize, out: &mut Outcome) {
    out.latencies.sort();
    let l = &out.latencies;
    println!(
        "{what:<10} {n:>7} {:>8} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}   load {}",
        out.events,
        out.rate(),
        ms(percentile(l, 0.50)),
        ms(percentile(l, 0.90)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or_default()),
        load()
    );
}

fn verdict(ok: bool, what: &str) {
    println!("{} {what}", if ok { "PASS" } else { "FAIL" });
}

fn main() {
    let levels: Vec<usize> = std::env::var("SERVER_LOAD_AGENTS")
        .unwrap_or_else(|_| "1,8,32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let events = env_or("SERVER_LOAD_EVENTS", 20_000usize).max(1);
    let payload = "x".repeat(env_or("SERVER_LOAD_PAYLOAD", 100usize));
    let pg_seconds = env_or("SERVER_LOAD_PG_SECONDS", 10u64);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "server_load: {events} durable (fsync) message events per run, {}-byte payload, {cpus} CPUs, \
         load average at start {}",
        payload.len(),
        load()
    );
    println!(
        "{:<10} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "system", "conc.", "events", "events/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let mut library = run_library(64, events, &payload);
    row("library", 64, &mut library);
    let mut server64: Option<Outcome> = None;
    for agents in levels {
        let mut out = run_server(agents, events, &payload);
        row("server", agents, &mut out);
        if agents == 64 {
            server64 = Some(out);
        }
    }
    let mut pg64 = None;
    match pg::try_cluster() {
        Err(why) => println!("postgres         n/a   ({why})"),
        Ok(pg) => {
            for clients in [1usize, 64] {
                match pg.pgbench_insert("postgres", clients, pg_seconds) {
                    Ok(tps) => {
                        println!(
                            "{:<10} {clients:>7} {:>8} {tps:>10.0} {:>8} {:>8} {:>8} {:>8}   load {}",
                            "postgres",
                            "-",
                            "-",
                            "-",
                            "-",
                            "-",
                            load()
                        );
                        if clients == 64 {
                            pg64 = Some(tps);
                        }
                    }
                    Err(why) => println!("postgres   {clients:>7}      n/a   ({why})"),
                }
            }
        }
    }
    println!();
    match &server64 {
        None => println!("n/a targets: the run did not include 64 agents"),
        Some(s) => {
            let ratio = s.rate() / library.rate();
            verdict(
                ratio >= 0.6,
                &format!(
                    "server at 64 agents >= 0.6x the library at 64 writers: {:.0} vs {:.0} ev/s = {ratio:.2}x",
                    s.rate(),
                    library.rate()
                ),
            );
            match pg64 {
                Some(pg) => {
                    let ratio = s.rate() / pg;
                    verdict(
                        ratio >= 1.5,
                        &format!(
                            "server at 64 agents >= 1.5x PostgreSQL at 64 clients: {:.0} vs {pg:.0} = {ratio:.2}x",
                            s.rate()
                        ),
                    );
                }
                None => println!("n/a  server vs PostgreSQL: PostgreSQL did not run"),
            }
            let p99 = percentile(&s.latencies, 0.99);
            verdict(
                p99 < Duration::from_millis(10),
                &format!(
                    "p99 at 64 agents < 10 ms: {:.2} ms (load {})",
                    ms(p99),
                    load()
                ),
            );
        }
    }
}
