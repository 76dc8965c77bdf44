//! The thin tokio layer around [`Kdc`]: UDP and TCP on one port (RFC 4120
//! §7.2.1, §7.2.2).
//!
//! * UDP: a fixed pool of tasks share the socket, so there is no queue to
//!   grow: under a flood the kernel's socket buffer overflows and drops.
//!   A reply larger than [`ServerConfig::max_udp_reply`] is replaced by
//!   KRB_ERR_RESPONSE_TOO_BIG, and the client retries over TCP.
//! * TCP: 4-byte big-endian length prefix. A length above
//!   [`ServerConfig::max_tcp_request`] (or with the reserved high bit set)
//!   gets KRB_ERR_FIELD_TOOLONG and the connection is closed, before any
//!   buffer is allocated.
//! * TCP slots cannot be held: each whole request (prefix and body) must
//!   arrive within [`ServerConfig::tcp_request_timeout`] of the connection
//!   or of the previous reply, however it is dripped; each reply must be
//!   written within [`ServerConfig::tcp_write_timeout`]; and one source
//!   address (an IPv6 /64) holds at most
//!   [`ServerConfig::max_tcp_per_source`] of the
//!   [`ServerConfig::max_tcp_connections`] slots. Refusals and timeouts are
//!   counted in [`ServerStats`] and logged at most once per
//!   [`REFUSAL_LOG_INTERVAL`].
//! * The UDP workers and the TCP acceptor are supervised: a task that
//!   panics or returns is restarted with exponential backoff, counted and
//!   logged, so that the KDC never silently stops answering.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Kdc;

/// The largest UDP datagram the KDC reads; longer ones are truncated by
/// the kernel and then fail to decode.
const MAX_UDP_REQUEST: usize = 65_535;

/// Refusals and timeouts are logged at most this often (with a count of
/// those not logged), so that a flood cannot flood the log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// First delay before a failed task is restarted; it doubles per failure.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A task that ran this long before failing was healthy: the backoff
/// starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// SO_SNDBUF of an accepted TCP connection. KDC replies are a few KiB;
/// a fixed buffer keeps a client that does not read from pinning the
/// megabytes that send-buffer autotuning would grow, and lets the write
/// timeout fire soon after it stops reading.
const TCP_SEND_BUFFER: usize = 64 * 1024;

/// Consecutive UDP receive errors after which a worker gives up (and is
/// restarted by its supervisor after a backoff) instead of spinning.
const MAX_UDP_RECV_ERRORS: u32 = 1000;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Replies longer than this go out as KRB_ERR_RESPONSE_TOO_BIG over UDP.
    pub max_udp_reply: usize,
    /// The largest TCP request accepted.
    pub max_tcp_request: usize,
    /// Concurrent TCP connections; more are closed on accept.
    pub max_tcp_connections: usize,
    /// Concurrent TCP connections from one source address (IPv4 address or
    /// IPv6 /64); more from that source are closed on accept.
    pub max_tcp_per_source: usize,
    /// A whole TCP request (length prefix and body) must arrive within this
    /// long of the connection or of the previous reply; else the
    /// connection is closed. One deadline per request, not per read, so
    /// that a client dripping one byte at a time is cut as well.
    pub tcp_request_timeout: Duration,
    /// A reply that cannot be written within this long (a client that does
    /// not read) closes the connection.
    pub tcp_write_timeout: Duration,
    /// UDP worker tasks (0: one per CPU).
    pub udp_workers: usize,
}

impl ServerConfig {
    pub const DEFAULT_MAX_UDP_REPLY: usize = 1400;
    pub const DEFAULT_MAX_TCP_REQUEST: usize = 65_536;
    pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 256;
    /// 16 per source: a NAT of several clients fits, and 16 sources are
    /// needed to fill the global cap.
    pub const DEFAULT_MAX_TCP_PER_SOURCE: usize = 16;
    /// Clients resend over UDP within seconds and MIT's own KDC closes
    /// idle TCP connections early too; 10 s is far beyond a real
    /// client's need.
    pub const DEFAULT_TCP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_udp_reply: Self::DEFAULT_MAX_UDP_REPLY,
            max_tcp_request: Self::DEFAULT_MAX_TCP_REQUEST,
            max_tcp_connections: Self::DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_per_source: Self::DEFAULT_MAX_TCP_PER_SOURCE,
            tcp_request_timeout: Self::DEFAULT_TCP_REQUEST_TIMEOUT,
            tcp_write_timeout: Self::DEFAULT_TCP_WRITE_TIMEOUT,
            udp_workers: 0,
        }
    }
}

/// Counters of the network layer, readable while serving.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// TCP connections closed on accept because all slots were taken.
    pub tcp_refused_global: AtomicU64,
    /// TCP connections closed on accept because their source held its
    /// share of the slots.
    pub tcp_refused_per_source: AtomicU64,
    /// TCP connections closed because a request did not arrive in time.
    pub tcp_request_timeouts: AtomicU64,
    /// TCP connections closed because a reply could not be written in time.
    pub tcp_write_timeouts: AtomicU64,
    /// UDP workers and TCP acceptors restarted after a panic or an exit.
    pub task_restarts: AtomicU64,
}

/// Sockets bound and ready to serve.
#[derive(Debug)]
pub struct Bound {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    config: ServerConfig,
    stats: Arc<ServerStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding UDP {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("binding TCP {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds UDP and TCP on the same address. With port 0, UDP picks a port
/// and TCP takes the same one (retrying a few times if it is taken).
pub async fn bind(config: ServerConfig) -> Result<Bound, ServerError> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| ServerError::BindUdp {
                addr: config.listen,
                source,
            })?;
        let addr = udp.local_addr().map_err(|source| ServerError::BindUdp {
            addr: config.listen,
            source,
        })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => {
                return Ok(Bound {
                    udp: Arc::new(udp),
                    tcp,
                    config,
                    stats: Arc::default(),
                })
            }
            Err(source) if config.listen.port() == 0 => {
                last_err = Some(ServerError::BindTcp { addr, source });
            }
            Err(source) => return Err(ServerError::BindTcp { addr, source }),
        }
    }
    Err(last_err.unwrap_or(ServerError::BindTcp {
        addr: config.listen,
        source: std::io::Error::other("no free port"),
    }))
}

impl Bound {
    /// The address both sockets listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap_or(self.config.listen)
    }

    /// The network layer's counters (shared; they keep counting in `run`).
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown` completes, then stops all tasks.
    pub async fn run(self, kdc: Arc<Kdc>, shutdown: impl Future<Output = ()>) {
        let Bound {
            udp,
            tcp,
            config,
            stats,
        } = self;
        let mut tasks = JoinSet::new();
        let workers = if config.udp_workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.udp_workers
        };
        for _ in 0..workers {
            let (udp, kdc) = (Arc::clone(&udp), Arc::clone(&kdc));
            let max_reply = config.max_udp_reply;
            tasks.spawn(supervise("KDC UDP worker", Arc::clone(&stats), move || {
                udp_worker(Arc::clone(&udp), Arc::clone(&kdc), max_reply)
            }));
        }
        // The listener is shared so that a restarted acceptor serves the
        // same socket.
        let acceptor = Arc::new(TcpAcceptor {
            listener: tcp,
            kdc,
            slots: Arc::new(Semaphore::new(config.max_tcp_connections)),
            per_source: Arc::default(),
            config,
            stats: Arc::clone(&stats),
            refusal_log: LogLimiter::default(),
        });
        tasks.spawn(supervise("KDC TCP acceptor", stats, move || {
            Arc::clone(&acceptor).run()
        }));
        shutdown.await;
        tasks.shutdown().await;
    }
}

/// Aborts the task when dropped, so that stopping a supervisor stops what
/// it supervises.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the task `make` builds, and builds and runs it again whenever it
/// panics or returns, after a backoff that doubles per failure (from
/// [`RESTART_BACKOFF_MIN`] to [`RESTART_BACKOFF_MAX`]). Never returns;
/// dropping it aborts the running task.
async fn supervise<F, Fut>(what: &'static str, stats: Arc<ServerStats>, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let mut task = AbortOnDrop(tokio::spawn(make()));
        let why = match (&mut task.0).await {
            Ok(Ok(())) => "returned".to_owned(),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("panicked: {msg}")
            }
            Err(e) => format!("was cancelled: {e}"),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = RESTART_BACKOFF_MIN;
        }
        let restarts = stats.task_restarts.fetch_add(1, Relaxed) + 1;
        tracing::error!(
            task = what,
            restarts,
            backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "{what} {why}; restarting it"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

async fn udp_worker(sock: Arc<UdpSocket>, kdc: Arc<Kdc>, max_reply: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_UDP_REQUEST];
    let mut errors = 0u32;
    // Answer from the address each request came to (a multi-homed host).
    let pktinfo = super::pktinfo::enable(&sock).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "IP_PKTINFO: answers leave from the routed source address");
        false
    });
    loop {
        let received = if pktinfo {
            super::pktinfo::recv(&sock, &mut buf).await
        } else {
            sock.recv_from(&mut buf).await.map(|(n, p)| (n, p, None))
        };
        let (n, peer, local) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep going,
                // unless nothing but errors comes any more.
                tracing::debug!(error = %e, "UDP receive failed");
                errors += 1;
                if errors >= MAX_UDP_RECV_ERRORS {
                    return Err(e);
                }
                continue;
            }
        };
        errors = 0;
        let now = SystemTime::now();
        let Some(mut reply) = kdc.handle(&buf[..n], now) else {
            continue;
        };
        if reply.len() > max_reply {
            reply = kdc.response_too_big(now);
        }
        if let Err(e) = super::pktinfo::send(&sock, &reply, peer, local).await {
            tracing::debug!(%peer, error = %e, "UDP send failed");
        }
    }
}

/// Logs at most once per interval, counting what it held back.
#[derive(Debug, Default)]
struct LogLimiter {
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl LogLimiter {
    /// `Some(number held back since the last log)` when a line may be
    /// logged now.
    fn allow(&self, interval: Duration) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < interval) {
            self.held_back.fetch_add(1, Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Relaxed))
    }
}

/// The key a source's TCP connections are counted under: the IPv4
/// address, or the /64 of an IPv6 address (one host often holds a whole
/// /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Connections held per source.
type SourceCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One source's claim on a TCP slot, given back on drop.
struct SourceSlot {
    counts: SourceCounts,
    key: IpAddr,
}

impl SourceSlot {
    fn take(counts: &SourceCounts, key: IpAddr, limit: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: Arc::clone(counts),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

struct TcpAcceptor {
    listener: TcpListener,
    kdc: Arc<Kdc>,
    config: ServerConfig,
    slots: Arc<Semaphore>,
    per_source: SourceCounts,
    stats: Arc<ServerStats>,
    refusal_log: LogLimiter,
}

impl TcpAcceptor {
    async fn run(self: Arc<Self>) -> std::io::Result<()> {
        // Connections live in this set: a restarted acceptor drops the old
        // set, and with it the connections, whose slots the set's drop
        // gives back.
        let mut conns = JoinSet::new();
        loop {
            // Reap finished connection tasks so the set stays small.
            while conns.try_join_next().is_some() {}
            let (stream, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "TCP accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let key = source_key(peer.ip());
            let Some(source_slot) =
                SourceSlot::take(&self.per_source, key, self.config.max_tcp_per_source)
            else {
                self.stats.tcp_refused_per_source.fetch_add(1, Relaxed);
                self.log_refusal(peer, "this source holds its share of TCP connections");
                continue;
            };
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                self.stats.tcp_refused_global.fetch_add(1, Relaxed);
                self.log_refusal(peer, "all TCP connection slots are taken");
                continue;
            };
            let this = Arc::clone(&self);
            conns.spawn(async move {
                if let Err(e) = tcp_conn(stream, &this.kdc, &this.config, &this.stats).await {
                    tracing::debug!(%peer, error = %e, "TCP connection ended");
                }
                drop((slot, source_slot));
            });
        }
    }

    fn log_refusal(&self, peer: SocketAddr, why: &str) {
        if let Some(held_back) = self.refusal_log.allow(REFUSAL_LOG_INTERVAL) {
            tracing::warn!(
                %peer,
                not_logged_since_last = held_back,
                refused_per_source = self.stats.tcp_refused_per_source.load(Relaxed),
                refused_global = self.stats.tcp_refused_global.load(Relaxed),
                "KDC closed a TCP connection on accept: {why}"
            );
        }
    }
}

/// One TCP request as read.
enum TcpRequest {
    /// The client closed the connection between requests.
    Closed,
    /// The length prefix is over the limit or sets the reserved bit.
    TooLong,
    Body(Vec<u8>),
}

async fn read_request(s: &mut TcpStream, max: usize) -> std::io::Result<TcpRequest> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(TcpRequest::Closed),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len);
    // The high bit is reserved for extensions (RFC 4120 §7.2.2).
    if n & 0x8000_0000 != 0 || n as usize > max {
        return Ok(TcpRequest::TooLong);
    }
    let mut req = vec![0u8; n as usize];
    s.read_exact(&mut req).await?;
    Ok(TcpRequest::Body(req))
}

async fn tcp_conn(
    mut s: TcpStream,
    kdc: &Kdc,
    cfg: &ServerConfig,
    stats: &ServerStats,
) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(TCP_SEND_BUFFER);
    loop {
        let read = tokio::time::timeout(
            cfg.tcp_request_timeout,
            read_request(&mut s, cfg.max_tcp_request),
        );
        let reply = match read.await {
            Err(_) => {
                stats.tcp_request_timeouts.fetch_add(1, Relaxed);
                return Ok(());
            }
            Ok(r) => match r? {
                TcpRequest::Closed => return Ok(()),
                TcpRequest::TooLong => {
                    let e = kdc.field_too_long(SystemTime::now());
                    write_framed(&mut s, &e, cfg.tcp_write_timeout, stats).await?;
                    return Ok(());
                }
                TcpRequest::Body(req) => match kdc.handle(&req, SystemTime::now()) {
                    Some(reply) => reply,
                    None => return Ok(()),
                },
            },
        };
        write_framed(&mut s, &reply, cfg.tcp_write_timeout, stats).await?;
    }
}

/// Writes one length-prefixed message; an error if it does not go out
/// within `timeout` (the caller then drops the connection).
async fn write_framed(
    s: &mut TcpStream,
    msg: &[u8],
    timeout: Duration,
    stats: &ServerStats,
) -> std::io::Result<()> {
    let len = u32::try_from(msg.len()).map_err(|_| std::io::Error::other("reply too long"))?;
    let mut out = Vec::with_capacity(4 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    match tokio::time::timeout(timeout, s.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => {
            stats.tcp_write_timeouts.fetch_add(1, Relaxed);
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client does not read its reply",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use roamgate_krb_crypto::Etype;

    use super::*;
    use crate::kdc::db::{DbError, MemoryStore, PrincipalEntry, PrincipalFlags, PrincipalStore};
    use crate::kdc::probe::{self, RequestSpec};
    use crate::kdc::KdcConfig;
    use crate::principal::Principal;

    async fn start(max_udp_reply: usize) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let (addr, stop, _) = start_with(|cfg| cfg.max_udp_reply = max_udp_reply).await;
        (addr, stop)
    }

    fn test_store() -> MemoryStore {
        let store = MemoryStore::new("R.TEST");
        store.add_random(
            &Principal::krbtgt("R.TEST"),
            &Etype::ALL,
            PrincipalFlags::DEFAULT,
        );
        store.add_random(
            &Principal::parse("alice@R.TEST").unwrap(),
            &Etype::ALL,
            PrincipalFlags::DEFAULT,
        );
        store
    }

    async fn start_with(
        tune: impl FnOnce(&mut ServerConfig),
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        Arc<ServerStats>,
    ) {
        start_with_store(Arc::new(test_store()), tune).await
    }

    async fn start_with_store(
        store: Arc<dyn PrincipalStore>,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        Arc<ServerStats>,
    ) {
        let kdc = Arc::new(Kdc::new(store, KdcConfig::default()));
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.max_tcp_request = 4096;
        tune(&mut cfg);
        let bound = bind(cfg).await.unwrap();
        let addr = bound.local_addr();
        let stats = bound.stats();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(bound.run(kdc, async move {
            let _ = rx.await;
        }));
        (addr, tx, stats)
    }

    fn as_req() -> Vec<u8> {
        probe::as_req(
            &RequestSpec {
                client: Principal::parse("alice@R.TEST").unwrap(),
                server: Principal::krbtgt("R.TEST"),
                etypes: vec![18],
                options: 0,
                till: UNIX_EPOCH + Duration::from_secs(4_000_000_000),
                rtime: None,
                nonce: 1,
            },
            vec![],
        )
        .unwrap()
    }

    async fn udp(addr: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(msg, addr).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    async fn tcp(addr: SocketAddr, prefix: u32, msg: &[u8]) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&prefix.to_be_bytes()).await.unwrap();
        s.write_all(msg).await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut rep = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut rep).await.ok()?;
        Some(rep)
    }

    #[tokio::test]
    async fn udp_and_tcp_on_one_port() {
        let (addr, _stop) = start(ServerConfig::DEFAULT_MAX_UDP_REPLY).await;
        let req = as_req();
        let rep = udp(addr, &req).await.unwrap();
        assert_eq!(probe::error_code(&rep), Some(25));
        let rep = tcp(addr, req.len() as u32, &req).await.unwrap();
        assert_eq!(probe::error_code(&rep), Some(25));
        // Garbage over UDP is dropped.
        assert_eq!(udp(addr, b"garbage").await, None);
    }

    #[tokio::test]
    async fn oversized_udp_reply_is_response_too_big() {
        let (addr, _stop) = start(64).await;
        let rep = udp(addr, &as_req()).await.unwrap();
        assert_eq!(probe::error_code(&rep), Some(52));
        // TCP has no such limit.
        let req = as_req();
        let rep = tcp(addr, req.len() as u32, &req).await.unwrap();
        assert_eq!(probe::error_code(&rep), Some(25));
    }

    #[tokio::test]
    async fn huge_tcp_length_prefix_is_field_toolong() {
        let (addr, _stop) = start(ServerConfig::DEFAULT_MAX_UDP_REPLY).await;
        for prefix in [4097u32, 0x7fff_ffff, 0x8000_0010] {
            let rep = tcp(addr, prefix, &[]).await.unwrap();
            assert_eq!(probe::error_code(&rep), Some(61), "{prefix:#x}");
        }
        // Still serving.
        assert!(udp(addr, &as_req()).await.is_some());
    }

    /// What a hostile TCP client does once connected.
    #[derive(Debug, Clone, Copy)]
    enum Hostile {
        /// Connects and sends nothing.
        Idle,
        /// Sends one byte of the length prefix, then nothing.
        OneByte,
        /// Sends a framed AS-REQ one byte every 300 ms: never idle for
        /// long, never done.
        Drip,
        /// Pipelines AS-REQs and never reads a reply, so that the
        /// server's writes block.
        NeverReads,
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut out = (msg.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(msg);
        out
    }

    async fn connect_from(
        addr: SocketAddr,
        src: std::net::IpAddr,
        rcvbuf: Option<u32>,
    ) -> TcpStream {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(src, 0)).unwrap();
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).unwrap();
        }
        sock.connect(addr).await.unwrap()
    }

    /// Runs one hostile client on `s`; returns how long the server took to
    /// close the connection, or `None` if it was still open after `patience`.
    async fn hostile(
        s: TcpStream,
        kind: Hostile,
        req: Arc<Vec<u8>>,
        patience: Duration,
    ) -> Option<Duration> {
        let t0 = tokio::time::Instant::now();
        let (mut rd, mut wr) = s.into_split();
        let frame = framed(&req);
        let writer = tokio::spawn(async move {
            match kind {
                Hostile::Idle => std::future::pending::<()>().await,
                Hostile::OneByte => {
                    let _ = wr.write_all(&frame[..1]).await;
                    std::future::pending::<()>().await
                }
                Hostile::Drip => {
                    for b in frame.iter().cycle() {
                        if wr.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(DRIP_INTERVAL).await;
                    }
                    std::future::pending::<()>().await
                }
                // Ends when a write fails: the server reset the connection.
                Hostile::NeverReads => {
                    let batch = frame.repeat(32);
                    while wr.write_all(&batch).await.is_ok() {}
                }
            }
        });
        let closed = async {
            if let Hostile::NeverReads = kind {
                let _ = writer.await;
            } else {
                let mut buf = [0u8; 4096];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                writer.abort();
            }
        };
        tokio::time::timeout(patience, closed)
            .await
            .ok()
            .map(|()| t0.elapsed())
    }

    /// One byte of a drip every this often.
    const DRIP_INTERVAL: Duration = Duration::from_millis(500);

    /// Finding 5: idle, 1-byte, slow-drip and never-reading clients, 256 of
    /// them, cannot keep a real client from another address out, and the
    /// server closes every one of them within its request deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_tcp_clients_cannot_hold_the_kdc() {
        use std::net::{IpAddr, Ipv4Addr};
        let deadline = Duration::from_secs(2);
        let (addr, _stop, stats) = start_with(|cfg| {
            cfg.tcp_request_timeout = deadline;
            cfg.tcp_write_timeout = deadline / 2;
        })
        .await;
        let req = Arc::new(as_req());
        let kinds = [
            Hostile::Idle,
            Hostile::OneByte,
            Hostile::Drip,
            Hostile::NeverReads,
        ];
        // Connect all of them first, then let them misbehave.
        let mut conns = Vec::new();
        for i in 0..256usize {
            // Most from one address, the rest from four others.
            let src = if i < 192 {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::new(127, 0, 0, 2 + (i / 4 % 4) as u8)
            };
            let kind = kinds[i % kinds.len()];
            let rcvbuf = matches!(kind, Hostile::NeverReads).then_some(4096);
            conns.push((kind, src, connect_from(addr, IpAddr::V4(src), rcvbuf).await));
        }
        let mut attackers = JoinSet::new();
        for (kind, src, s) in conns {
            let req = Arc::clone(&req);
            attackers.spawn(async move { (kind, src, hostile(s, kind, req, 4 * deadline).await) });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;

        // A real AS-REQ over TCP from another address, while they hold on.
        let t = tokio::time::Instant::now();
        let real = tokio::time::timeout(Duration::from_secs(2), async {
            let mut s = connect_from(addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), None).await;
            s.write_all(&framed(&req)).await.ok()?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await.ok()?;
            let mut rep = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut rep).await.ok()?;
            Some(rep)
        })
        .await;
        let rep = real
            .ok()
            .flatten()
            .expect("a real TCP AS-REQ is answered while hostile clients hold connections");
        assert_eq!(probe::error_code(&rep), Some(25));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

        let slack = Duration::from_millis(800);
        while let Some(r) = attackers.join_next().await {
            let (kind, src, closed) = r.unwrap();
            assert!(
                closed.is_some_and(|d| d <= deadline + slack),
                "{kind:?} client from {src}: closed after {closed:?}, deadline {deadline:?}"
            );
        }
        // 192 from 127.0.0.1, 16 of them admitted; 16 from each other one.
        assert_eq!(stats.tcp_refused_per_source.load(Relaxed), 192 - 16);
        assert_eq!(stats.tcp_refused_global.load(Relaxed), 0);
        assert!(stats.tcp_request_timeouts.load(Relaxed) >= 3 * 20);
        assert!(stats.tcp_write_timeouts.load(Relaxed) >= 1);
    }

    /// A store whose first lookups panic, as a bug in a store would.
    struct PanickingStore {
        inner: MemoryStore,
        panics_left: AtomicU64,
    }

    impl PrincipalStore for PanickingStore {
        fn realm(&self) -> &str {
            self.inner.realm()
        }
        fn get(&self, p: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
            let take = |n: u64| n.checked_sub(1);
            if self
                .panics_left
                .fetch_update(Relaxed, Relaxed, take)
                .is_ok()
            {
                panic!("injected store failure");
            }
            self.inner.get(p)
        }
    }

    /// Finding 8: a UDP worker that panics is restarted, so that the KDC
    /// keeps answering on UDP.
    #[tokio::test]
    async fn panicked_udp_worker_is_restarted() {
        let store = Arc::new(PanickingStore {
            inner: test_store(),
            panics_left: AtomicU64::new(2),
        });
        let (addr, _stop, stats) = start_with_store(store, |cfg| cfg.udp_workers = 1).await;
        let req = as_req();
        let t = tokio::time::Instant::now();
        let mut answered = None;
        while answered.is_none() && t.elapsed() < Duration::from_secs(5) {
            answered = udp(addr, &req).await;
        }
        let rep = answered.expect("the KDC answers on UDP again after its only worker panicked");
        assert_eq!(probe::error_code(&rep), Some(25));
        assert_eq!(stats.task_restarts.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn supervisor_restarts_with_backoff() {
        let stats = Arc::new(ServerStats::default());
        let runs = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&runs);
        let sup = tokio::spawn(supervise("test task", Arc::clone(&stats), move || {
            let r = Arc::clone(&r);
            async move {
                if r.fetch_add(1, Relaxed) < 3 {
                    return Err(std::io::Error::other("injected"));
                }
                std::future::pending().await
            }
        }));
        // Backoff 100 + 200 + 400 ms before the fourth run.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Relaxed), 3);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Relaxed), 4);
        assert_eq!(stats.task_restarts.load(Relaxed), 3);
        sup.abort();
        let _ = sup.await;
    }

    #[test]
    fn sources_are_counted_per_ipv4_address_and_ipv6_64() {
        let key = |s: &str| source_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        // A v4-mapped address counts as its IPv4 address.
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }
}
