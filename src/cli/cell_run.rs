//! The process side of `cell run`: the loopback server that serves the
//! data directory while a local cell runs, and signal forwarding.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mission_bus::MissionBus;
use tokio::sync::oneshot;

use super::{CliResult, Failure};

/// `mission-bus serve` on 127.0.0.1 (an ephemeral port) for one cell's
/// lifetime, in its own thread. Its admin token is random and never shown:
/// the command inside reaches the bus with its participant token only.
pub(crate) struct Loopback {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<mission_bus::Result<()>>>,
}

impl Loopback {
    /// Bind and start serving `bus`.
    pub(crate) fn serve(bus: MissionBus) -> CliResult<Loopback> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Failure::other(format!("cell: cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Failure::other(format!("cell: loopback listener: {e}")))?;
        let admin = format!(
            "cell-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("mission-bus-cell-http")
            .build()
            .map_err(|e| Failure::other(format!("cell: starting the loopback server: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("mission-bus-cell-serve".into())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| {
                        mission_bus::Error::InvalidInput {
                            field: "loopback listener".into(),
                            reason: e.to_string(),
                        }
                    })?;
                    mission_bus::server::run(listener, bus, admin, async move {
                        let _ = stopped.await;
                    })
                    .await
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
                served
            })
            .map_err(|e| Failure::other(format!("cell: starting the loopback server: {e}")))?;
        Ok(Loopback {
            url: format!("http://{bound}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Stop serving (requests in flight finish) and wait for it.
    pub(crate) fn stop(mut self) -> CliResult {
        self.shutdown()
    }

    fn shutdown(&mut self) -> CliResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(Failure::from(e)),
            Some(Err(_)) => Err(Failure::other("cell: the loopback server panicked")),
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// While alive, SIGTERM and SIGHUP sent to this process are passed on to
/// the cell's process (with the `kill` tool), and SIGINT is left to the
/// command (a terminal's Ctrl-C reaches its whole process group), so this
/// process lives on to record `cell_exited`. Installed BEFORE the command
/// is spawned: a signal that arrives in between is delivered as soon as
/// [`Forwarding::target`] names the process.
pub(crate) struct Forwarding {
    stop: Option<oneshot::Sender<()>>,
    shared: Arc<Mutex<Target>>,
}

#[derive(Default)]
struct Target {
    pid: Option<u32>,
    pending: Option<&'static str>,
}

fn send(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status();
}

impl Forwarding {
    /// Install the handlers (best effort: without a runtime or handlers,
    /// signals keep their default effect).
    pub(crate) fn install() -> Forwarding {
        use tokio::signal::unix::{signal, SignalKind};
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let shared = Arc::new(Mutex::new(Target::default()));
        let target = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("mission-bus-cell-signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    let _ = ready_tx.send(());
                    return;
                };
                rt.block_on(async move {
                    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::hangup()),
                        signal(SignalKind::interrupt()),
                    ) else {
                        let _ = ready_tx.send(());
                        return;
                    };
                    let _ = ready_tx.send(());
                    loop {
                        let name = tokio::select! {
                            _ = &mut stopped => return,
                            _ = term.recv() => "TERM",
                            _ = hup.recv() => "HUP",
                            _ = int.recv() => continue,
                        };
                        let pid = {
                            let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
                            if t.pid.is_none() {
                                t.pending = Some(name);
                            }
                            t.pid
                        };
                        if let Some(pid) = pid {
                            send(name, pid);
                        }
                    }
                });
            });
        if spawned.is_ok() {
            let _ = ready.recv();
        }
        Forwarding {
            stop: Some(stop),
            shared,
        }
    }

    /// The cell's process, once spawned; passes on a signal that came first.
    pub(crate) fn target(&self, pid: u32) {
        let pending = {
            let mut t = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            t.pid = Some(pid);
            t.pending.take()
        };
        if let Some(name) = pending {
            send(name, pid);
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
