//! Load benchmark of `mission-bus serve`: N concurrent HTTP agents publish
//! durable events to one mission over loopback; reports events/s and latency
//! percentiles per concurrency level.
//!
//! Run: `cargo bench --bench server_load`
//!
//! Knobs (environment):
//! - `SERVER_LOAD_AGENTS`: comma-separated concurrency levels (default `1,8,32,64`)
//! - `SERVER_LOAD_EVENTS`: events per level (default 8000)
//! - `SERVER_LOAD_PAYLOAD`: payload bytes per event (default 100)
//!
//! The server runs in this process on its own 2-thread tokio runtime with the
//! default durability (every 201 is flushed to sled's log) and default limits;
//! each agent is a thread with a keep-alive HTTP/1.1 connection that sends
//! one request at a time, so client and server share the machine's cores.
//! Every level uses a fresh data directory.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::server;
use mission_bus::MissionBus;
use serde_json::{json, Value};

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
/// No level runs longer than this, whatever the event count.
const MAX_LEVEL_TIME: Duration = Duration::from_secs(120);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_idle_connections_per_host(256)
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut resp = agent
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request failed");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

struct Outcome {
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn run_level(agents: usize, total_events: usize, payload_bytes: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(dir.path()).unwrap();
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
    let base = format!("http://{addr}");
    let setup = agent();
    let (status, created) = post(
        &setup,
        &format!("{base}/v1/missions"),
        ADMIN,
        &json!({"mission_id": "load", "title": "load", "lead": "lead"}),
    );
    assert_eq!(status, 201, "{created}");
    let tokens: Vec<String> = (0..agents)
        .map(|i| {
            let (status, p) = post(
                &setup,
                &format!("{base}/v1/missions/load/participants"),
                ADMIN,
                &json!({"name": format!("agent-{i}"), "role": "write"}),
            );
            assert_eq!(status, 201, "{p}");
            p["token"].as_str().unwrap().to_string()
        })
        .collect();
    let payload = "x".repeat(payload_bytes);
    let per_agent = total_events.div_ceil(agents);
    let start_line = Arc::new(Barrier::new(agents + 1));
    let workers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let url = format!("{base}/v1/missions/load/messages");
            let payload = payload.clone();
            let start_line = Arc::clone(&start_line);
            thread::spawn(move || {
                let agent = agent();
                let body = json!({"topic": "load", "payload": payload});
                let mut latencies = Vec::with_capacity(per_agent);
                // Warm the connection outside the measurement.
                assert_eq!(post(&agent, &url, &token, &body).0, 201);
                start_line.wait();
                let began = Instant::now();
                for _ in 0..per_agent {
                    if began.elapsed() > MAX_LEVEL_TIME {
                        break;
                    }
                    let t = Instant::now();
                    let (status, e) = post(&agent, &url, &token, &body);
                    assert_eq!(status, 201, "{e}");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    start_line.wait();
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(per_agent * agents);
    for w in workers {
        latencies.extend(w.join().unwrap());
    }
    let elapsed = began.elapsed();
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let levels: Vec<usize> = std::env::var("SERVER_LOAD_AGENTS")
        .unwrap_or_else(|_| "1,8,32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let events = env_or("SERVER_LOAD_EVENTS", 8000usize).max(1);
    let payload = env_or("SERVER_LOAD_PAYLOAD", 100usize);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "server_load: {events} durable message events per level, {payload}-byte payload, \
         {cpus} CPUs, loopback HTTP/1.1 keep-alive, server and agents in one process"
    );
    println!(
        "{:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "agents", "events", "events/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for agents in levels {
        let mut out = run_level(agents, events, payload);
        out.latencies.sort();
        let l = &out.latencies;
        println!(
            "{:>7} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            agents,
            out.events,
            out.events as f64 / out.elapsed.as_secs_f64(),
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.90)),
            ms(percentile(l, 0.99)),
            ms(*l.last().unwrap()),
        );
    }
}
