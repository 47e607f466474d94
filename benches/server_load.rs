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
//! The library at 64 writers and the server at 64 agents, which the targets
//! compare, run `SERVER_LOAD_ROUNDS` times, alternating, so that a change
//! in the machine's load hits both sides alike. Then PASS/FAIL lines for
//! the targets, on the medians over the rounds (each round is printed):
//! server at 64 agents >= 0.6x the library at 64 writers and >= 1.5x
//! PostgreSQL at 64 clients, and p99 at 64 agents under 10 ms. Every row
//! carries the 1-minute load average read right after it.
//!
//! Besides speed and latency, every row says where the time went: CPU and
//! run-queue wait per event of every thread but the load generator (from
//! `/proc/self/task/*/schedstat`, repeatable under load where wall-clock
//! figures are not), thread switches per event, events per commit group,
//! and the writer's flush latency (median and 99th percentile histogram
//! bucket, flushes over 25 ms).
//!
//! Run: `cargo bench --bench server_load`
//!
//! Knobs (environment):
//! - `SERVER_LOAD_AGENTS`: comma-separated concurrency levels (default `1,8,32,64`)
//! - `SERVER_LOAD_EVENTS`: events per level (default 20000)
//! - `SERVER_LOAD_ROUNDS`: alternating library/server rounds at 64 (default 3)
//! - `SERVER_LOAD_PAYLOAD`: payload bytes per event (default 100)
//! - `SERVER_LOAD_WORKERS`: the server runtime's worker threads (default 2)
//! - `SERVER_LOAD_PG_SECONDS`: seconds per pgbench run (default 10; 0 skips PostgreSQL)
//! - `SERVER_LOAD_LOG`: a log filter (e.g. `info`, as `mission-bus serve`
//!   uses by default): the server's request log lines go to stderr (default:
//!   no log subscriber at all)
//! - `SERVER_LOAD_FLUSH_EVERY_MS`: sled's background flusher period for both
//!   buses, or `off` (default: the library's default for `Durability::Sync`)
//!
//! The load generator is cheap on purpose (it shares the machine's cores with
//! the server): every agent is a task on ONE separate current-thread tokio
//! runtime, with its own keep-alive HTTP/1.1 connection, sending one
//! pre-encoded request at a time and parsing only the status line and
//! `Content-Length` of the answer. The server runs in this process on its
//! own 2-worker runtime with the default limits. Every level uses a fresh
//! data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::server;
use mission_bus::{BusStats, Durability, Histogram, MissionBus, NewMission};
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

/// `SERVER_LOAD_FLUSH_EVERY_MS`: sled's background flusher period for both
/// the library's and the server's bus (`off` disables it); unset: the
/// library's default.
fn open_sync(dir: &Path) -> MissionBus {
    let mut b = MissionBus::builder(dir).durability(Durability::Sync);
    if let Ok(v) = std::env::var("SERVER_LOAD_FLUSH_EVERY_MS") {
        b = b.flush_every_ms(v.trim().parse().ok());
    }
    b.open().unwrap()
}

struct Outcome {
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Per kind of thread, during the measured window (`generator`: the
    /// load generator, or the idle main thread of a library run).
    threads: Threads,
    writes: Writes,
}

impl Outcome {
    /// Every thread but the generator.
    fn sched(&self) -> Sched {
        self.threads.server()
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

// ----- accounting ------------------------------------------------------------

/// CPU time, run-queue wait and switches of this process's live threads, from
/// `/proc/self/task/*/schedstat` (nanoseconds, precise), minus the calling
/// thread (the load generator, or the idle main thread of the library run).
#[derive(Clone, Copy, Default)]
struct Sched {
    cpu_ns: u64,
    wait_ns: u64,
    switches: u64,
}

fn schedstat(path: &Path) -> Sched {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    Sched {
        cpu_ns: f.next().unwrap_or(0),
        wait_ns: f.next().unwrap_or(0),
        switches: f.next().unwrap_or(0),
    }
}

/// [`Sched`] per kind of thread (the thread's name without trailing
/// digits: `tokio-rt-worker`, `mission-bus-writer`, `sled-io-`, ...), the
/// calling thread as `generator`.
#[derive(Clone, Default)]
struct Threads(BTreeMap<String, Sched>);

impl Threads {
    fn now() -> Threads {
        let me = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let mut kinds: BTreeMap<String, Sched> = BTreeMap::new();
        for t in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let s = schedstat(&t.path().join("schedstat"));
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let kind = if !me.is_empty() && stat.split(' ').next() == me.split(' ').next() {
                "generator".to_string()
            } else {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                comm.trim()
                    .trim_end_matches(|c: char| c.is_ascii_digit())
                    .to_string()
            };
            let k = kinds.entry(kind).or_default();
            k.cpu_ns += s.cpu_ns;
            k.wait_ns += s.wait_ns;
            k.switches += s.switches;
        }
        Threads(kinds)
    }

    fn since(&self, before: &Threads) -> Threads {
        Threads(
            self.0
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        s.since(before.0.get(k).copied().unwrap_or_default()),
                    )
                })
                .collect(),
        )
    }

    /// Every kind but the generator.
    fn server(&self) -> Sched {
        let mut all = Sched::default();
        for (k, s) in &self.0 {
            if k != "generator" {
                all.cpu_ns += s.cpu_ns;
                all.wait_ns += s.wait_ns;
                all.switches += s.switches;
            }
        }
        all
    }
}

impl Sched {
    fn since(self, before: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

/// What the writer did during one run: commit groups, and the flush
/// (+ fsync) latency histogram's change.
#[derive(Default)]
struct Writes {
    groups: u64,
    /// (upper bound in seconds, flushes in that bucket), `+Inf` last.
    flushes: Vec<(f64, u64)>,
}

fn writes_between(before: &BusStats, after: &BusStats) -> Writes {
    let count = |h: &Histogram, i: usize| h.buckets.get(i).map_or(0, |b| b.1);
    let (b, a) = (&before.flush_seconds, &after.flush_seconds);
    let mut flushes = Vec::new();
    let mut prev = 0;
    for (i, (bound, _)) in a.buckets.iter().enumerate() {
        let cumulative = count(a, i) - count(b, i);
        flushes.push((*bound, cumulative - prev));
        prev = cumulative;
    }
    Writes {
        groups: after.group_events.count - before.group_events.count,
        flushes,
    }
}

impl Writes {
    /// The bucket bound under which fraction `p` of the flushes fall.
    fn flush_quantile(&self, p: f64) -> f64 {
        let total: u64 = self.flushes.iter().map(|f| f.1).sum();
        let want = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (bound, n) in &self.flushes {
            seen += n;
            if seen >= want.max(1) {
                return *bound;
            }
        }
        f64::INFINITY
    }

    /// Flushes that took longer than `secs`.
    fn slower_than(&self, secs: f64) -> u64 {
        self.flushes
            .iter()
            .filter(|(bound, _)| *bound > secs)
            .map(|f| f.1)
            .sum()
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
    // Start together; after the last append, wait until the main thread has
    // read the threads' counters (they are lost when a thread exits).
    let gate = Arc::new(Barrier::new(writers + 1));
    let done = Arc::new(Barrier::new(writers + 1));
    let leave = Arc::new(Barrier::new(writers + 1));
    let workers: Vec<_> = (0..writers)
        .map(|i| {
            let bus = bus.clone();
            let (gate, done, leave) = (Arc::clone(&gate), Arc::clone(&done), Arc::clone(&leave));
            let payload = json!(payload);
            let spawned = thread::Builder::new().name("appender".into());
            spawned
                .spawn(move || {
                    let me = format!("agent-{i}");
                    let mut lat = Vec::with_capacity(per);
                    gate.wait();
                    for _ in 0..per {
                        let t = Instant::now();
                        bus.publish("load", &me, "load", payload.clone().into())
                            .unwrap();
                        lat.push(t.elapsed());
                    }
                    done.wait();
                    leave.wait();
                    lat
                })
                .unwrap()
        })
        .collect();
    let stats = bus.stats();
    let threads = Threads::now();
    gate.wait();
    let began = Instant::now();
    done.wait();
    let elapsed = began.elapsed();
    let threads = Threads::now().since(&threads);
    let writes = writes_between(&stats, &bus.stats());
    leave.wait();
    let latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    bus.close();
    Outcome {
        events: latencies.len(),
        elapsed,
        latencies,
        threads,
        writes,
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
            .worker_threads(env_or("SERVER_LOAD_WORKERS", 2usize).max(1))
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
    let stats = bus.stats();
    let (elapsed, latencies, threads) = generator.block_on(async {
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
        // The generator runs on this thread: everything else is the server.
        let threads = Threads::now();
        let began = Instant::now();
        let mut all = Vec::with_capacity(per_agent * agents);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (began.elapsed(), all, Threads::now().since(&threads))
    });
    let writes = writes_between(&stats, &bus.stats());
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
        threads,
        writes,
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

fn header() {
    println!(
        "{:<8} {:>5} {:>6} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>5}  load",
        "system", "conc.", "events", "ev/s", "p50ms", "p90ms", "p99ms", "maxms",
        "cpu_us", "wait_us", "sw/ev", "ev/grp", "fs50ms", "fs99ms", ">25ms"
    );
}

fn row(what: &str, n: usize, out: &mut Outcome) {
    out.latencies.sort();
    let l = &out.latencies;
    let per_event = |ns: u64| ns as f64 / 1000.0 / out.events.max(1) as f64;
    let w = &out.writes;
    println!(
        "{what:<8} {n:>5} {:>6} {:>8.0} {:>6.2} {:>6.2} {:>6.2} {:>6.1} {:>7.1} {:>7.1} {:>6.2} {:>6.1} {:>6.2} {:>7.2} {:>5}  {}",
        out.events,
        out.rate(),
        ms(percentile(l, 0.50)),
        ms(percentile(l, 0.90)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or_default()),
        per_event(out.sched().cpu_ns),
        per_event(out.sched().wait_ns),
        out.sched().switches as f64 / out.events.max(1) as f64,
        out.events as f64 / w.groups.max(1) as f64,
        w.flush_quantile(0.5) * 1000.0,
        w.flush_quantile(0.99) * 1000.0,
        w.slower_than(0.025),
        load()
    );
    let by_kind: Vec<String> = out
        .threads
        .0
        .iter()
        .filter(|(_, s)| s.cpu_ns > 0)
        .map(|(k, s)| format!("{k} {:.1}", per_event(s.cpu_ns)))
        .collect();
    println!("         cpu us/event by thread: {}", by_kind.join(", "));
}

fn verdict(ok: bool, what: &str) {
    println!("{} {what}", if ok { "PASS" } else { "FAIL" });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    let rounds = env_or("SERVER_LOAD_ROUNDS", 3usize).max(1);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let log = std::env::var("SERVER_LOAD_LOG").ok();
    if let Some(level) = &log {
        server::init_logging(level, server::LogFormat::Text).unwrap();
    }
    println!(
        "server_load: {events} durable message events per run (Durability::Sync: fsync before \
         every acknowledgement, library and server alike), {}-byte payload, {cpus} CPUs, \
         server log: {}, load average at start {}",
        payload.len(),
        log.as_deref()
            .map_or("none".to_string(), |l| format!("'{l}' to stderr")),
        load()
    );
    println!(
        "columns: ev/s = events acknowledged per second; p50..max = per-request latency; \
         cpu_us / wait_us = CPU time and run-queue wait per event of every thread but the \
         load generator's; sw/ev = thread switches per event; ev/grp = events per commit \
         group; fs50ms / fs99ms = bucket bound of the median / 99th percentile group flush \
         (sled flush + fdatasync + ledger); >25ms = flushes slower than 25 ms; load = \
         1-minute load average after the run. The line under each row splits the CPU \
         by thread (generator: the load generator, not counted in cpu_us; appender: \
         the library's 64 calling threads)"
    );
    header();
    let mut server64: Vec<Outcome> = Vec::new();
    let mut library: Vec<Outcome> = Vec::new();
    for &agents in levels.iter().filter(|n| **n != 64) {
        let mut out = run_server(agents, events, &payload);
        row("server", agents, &mut out);
    }
    if levels.contains(&64) {
        // The targets compare these two: alternate them, so that a change
        // in the machine's load hits both sides alike.
        for _ in 0..rounds {
            let mut lib = run_library(64, events, &payload);
            row("library", 64, &mut lib);
            library.push(lib);
            let mut out = run_server(64, events, &payload);
            row("server", 64, &mut out);
            server64.push(out);
        }
    }
    let mut pg64 = None;
    let cluster = match pg_seconds {
        0 => Err("SERVER_LOAD_PG_SECONDS=0".to_string()),
        _ => pg::try_cluster(),
    };
    match cluster {
        Err(why) => println!("postgres   n/a   ({why})"),
        Ok(pg) => {
            for clients in [1usize, 64] {
                match pg.pgbench_insert("postgres", clients, pg_seconds) {
                    Ok(tps) => {
                        println!(
                            "{:<8} {clients:>5} {:>6} {tps:>8.0}   (pgbench, one fsynced INSERT per transaction)  {}",
                            "postgres",
                            "-",
                            load()
                        );
                        if clients == 64 {
                            pg64 = Some(tps);
                        }
                    }
                    Err(why) => println!("postgres {clients:>5}   n/a   ({why})"),
                }
            }
        }
    }
    println!();
    if server64.is_empty() {
        println!("n/a targets: the run did not include 64 agents");
        return;
    }
    let ratios: Vec<f64> = server64
        .iter()
        .zip(&library)
        .map(|(s, l)| s.rate() / l.rate())
        .collect();
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let server_rate = median(server64.iter().map(Outcome::rate).collect());
    let ratio = median(ratios.clone());
    verdict(
        ratio >= 0.6,
        &format!(
            "server at 64 agents >= 0.6x the library at 64 writers: median {ratio:.2}x \
             over {rounds} alternating rounds ({}x; server {} ev/s, library {} ev/s)",
            list(&ratios, 2),
            list(&server64.iter().map(Outcome::rate).collect::<Vec<_>>(), 0),
            list(&library.iter().map(Outcome::rate).collect::<Vec<_>>(), 0),
        ),
    );
    match pg64 {
        Some(pg) => {
            let ratio = server_rate / pg;
            verdict(
                ratio >= 1.5,
                &format!(
                    "server at 64 agents >= 1.5x PostgreSQL at 64 clients: median {server_rate:.0} \
                     vs {pg:.0} = {ratio:.2}x"
                ),
            );
        }
        None => println!("n/a  server vs PostgreSQL: PostgreSQL did not run"),
    }
    let p99s: Vec<f64> = server64
        .iter()
        .map(|s| ms(percentile(&s.latencies, 0.99)))
        .collect();
    let p99 = median(p99s.clone());
    verdict(
        p99 < 10.0,
        &format!(
            "p99 at 64 agents < 10 ms (on an otherwise idle machine): median {p99:.2} ms \
             ({} ms; load now {})",
            list(&p99s, 2),
            load()
        ),
    );
}
