//! The home agent's [`Engine`] on a thread of its own.
//!
//! The engine commits to SQLite, updates BPF maps and talks netlink: all
//! blocking. The tokio loop hands it datagrams over a channel and awaits the
//! replies, so a slow commit never stalls the runtime's other tasks (the
//! metrics server, signals), and nothing holds a lock across them. The
//! engine runs the core's timers itself between requests (an expiry due is
//! served before the next batch), and publishes a [`Metrics`] snapshot after
//! every step: readers (metrics server, stats file) never touch the engine.

use std::{
    net::IpAddr,
    sync::mpsc::{self, RecvTimeoutError},
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::{Engine, Metrics};

/// How long the engine sleeps when the core has no timer.
const IDLE: Duration = Duration::from_secs(3600);

type Replies = Vec<Option<Vec<u8>>>;

enum Work {
    Batch(Vec<(Bytes, IpAddr)>, oneshot::Sender<Replies>),
    Stop { clear_home_link: bool },
}

/// Why the engine thread could not take or answer work.
#[derive(Debug, thiserror::Error)]
#[error("the home agent's engine thread stopped (it panicked: see the log above)")]
pub struct EngineStopped;

/// A handle to the engine thread.
#[derive(Debug)]
pub struct EngineThread {
    work: mpsc::Sender<Work>,
    metrics: watch::Receiver<Metrics>,
    thread: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Moves `engine` onto a new thread (named `ha-engine`).
    pub fn spawn(mut engine: Engine) -> std::io::Result<Self> {
        let (work, queue) = mpsc::channel::<Work>();
        let (publish, metrics) = watch::channel(engine.metrics.clone());
        let thread = std::thread::Builder::new()
            .name("ha-engine".into())
            .spawn(move || {
                loop {
                    let now = SystemTime::now();
                    let wait = match engine.next_wakeup() {
                        Some(t) => t.duration_since(now).unwrap_or_default(),
                        None => IDLE,
                    };
                    // A timer that is due (the core's, or a pending
                    // rollback's retry) goes first, also under a steady
                    // stream of requests.
                    if wait.is_zero() {
                        engine.poll(now);
                        publish.send_replace(engine.metrics.clone());
                        continue;
                    }
                    match queue.recv_timeout(wait) {
                        Ok(Work::Batch(reqs, reply)) => {
                            let r: Vec<(&[u8], IpAddr)> =
                                reqs.iter().map(|(b, s)| (&b[..], *s)).collect();
                            let out = engine.handle_batch(&r, SystemTime::now());
                            // Published before the replies go out: a reader
                            // that saw the reply sees its counters.
                            publish.send_replace(engine.metrics.clone());
                            let _ = reply.send(out);
                        }
                        Ok(Work::Stop { clear_home_link }) => {
                            if clear_home_link {
                                engine.clear_home_link();
                            }
                            break;
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            engine.poll(SystemTime::now());
                            publish.send_replace(engine.metrics.clone());
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(Self {
            work,
            metrics,
            thread: Some(thread),
        })
    }

    /// Hands datagrams received together to the engine (one journal
    /// transaction); their replies, in order.
    pub async fn handle_batch(&self, reqs: Vec<(Bytes, IpAddr)>) -> Result<Replies, EngineStopped> {
        let (tx, rx) = oneshot::channel();
        self.work
            .send(Work::Batch(reqs, tx))
            .map_err(|_| EngineStopped)?;
        rx.await.map_err(|_| EngineStopped)
    }

    /// The latest metrics snapshot.
    pub fn metrics(&self) -> Metrics {
        self.metrics.borrow().clone()
    }

    /// A receiver of the snapshots (for readers on other tasks).
    pub fn subscribe(&self) -> watch::Receiver<Metrics> {
        self.metrics.clone()
    }

    /// Stops the engine once the work queued before is done (with
    /// `clear_home_link`, its proxy entries go); returns the last metrics.
    pub async fn stop(mut self, clear_home_link: bool) -> Metrics {
        let _ = self.work.send(Work::Stop { clear_home_link });
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.metrics()
    }
}
