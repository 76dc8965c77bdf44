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
//!   buffer is allocated. Connections are capped and idle ones time out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Kdc;

/// The largest UDP datagram the KDC reads; longer ones are truncated by
/// the kernel and then fail to decode.
const MAX_UDP_REQUEST: usize = 65_535;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Replies longer than this go out as KRB_ERR_RESPONSE_TOO_BIG over UDP.
    pub max_udp_reply: usize,
    /// The largest TCP request accepted.
    pub max_tcp_request: usize,
    /// Concurrent TCP connections; more are closed on accept.
    pub max_tcp_connections: usize,
    /// A TCP connection that sends nothing for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// UDP worker tasks (0: one per CPU).
    pub udp_workers: usize,
}

impl ServerConfig {
    pub const DEFAULT_MAX_UDP_REPLY: usize = 1400;
    pub const DEFAULT_MAX_TCP_REQUEST: usize = 65_536;

    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_udp_reply: Self::DEFAULT_MAX_UDP_REPLY,
            max_tcp_request: Self::DEFAULT_MAX_TCP_REQUEST,
            max_tcp_connections: 256,
            tcp_idle_timeout: Duration::from_secs(10),
            udp_workers: 0,
        }
    }
}

/// Sockets bound and ready to serve.
#[derive(Debug)]
pub struct Bound {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    config: ServerConfig,
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

    /// Serves until `shutdown` completes, then stops all tasks.
    pub async fn run(self, kdc: Arc<Kdc>, shutdown: impl Future<Output = ()>) {
        let Bound { udp, tcp, config } = self;
        let mut tasks = JoinSet::new();
        let workers = if config.udp_workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.udp_workers
        };
        for _ in 0..workers {
            tasks.spawn(udp_worker(
                Arc::clone(&udp),
                Arc::clone(&kdc),
                config.max_udp_reply,
            ));
        }
        tasks.spawn(tcp_acceptor(tcp, Arc::clone(&kdc), config));
        shutdown.await;
        tasks.shutdown().await;
    }
}

async fn udp_worker(sock: Arc<UdpSocket>, kdc: Arc<Kdc>, max_reply: usize) {
    let mut buf = vec![0u8; MAX_UDP_REQUEST];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep going.
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let now = SystemTime::now();
        let Some(mut reply) = kdc.handle(&buf[..n], now) else {
            continue;
        };
        if reply.len() > max_reply {
            reply = kdc.response_too_big(now);
        }
        if let Err(e) = sock.send_to(&reply, peer).await {
            tracing::debug!(%peer, error = %e, "UDP send failed");
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, kdc: Arc<Kdc>, config: ServerConfig) {
    let permits = Arc::new(Semaphore::new(config.max_tcp_connections));
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays small.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "TCP accept failed");
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "too many TCP connections; closing");
            drop(stream);
            continue;
        };
        let kdc = Arc::clone(&kdc);
        let cfg = config.clone();
        conns.spawn(async move {
            if let Err(e) = tcp_conn(stream, &kdc, &cfg).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
            drop(permit);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, kdc: &Kdc, cfg: &ServerConfig) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(cfg.tcp_idle_timeout, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let n = u32::from_be_bytes(len);
        // The high bit is reserved for extensions (RFC 4120 §7.2.2).
        if n & 0x8000_0000 != 0 || n as usize > cfg.max_tcp_request {
            let e = kdc.field_too_long(SystemTime::now());
            write_framed(&mut s, &e).await?;
            return Ok(());
        }
        let mut req = vec![0u8; n as usize];
        match tokio::time::timeout(cfg.tcp_idle_timeout, s.read_exact(&mut req)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        let Some(reply) = kdc.handle(&req, SystemTime::now()) else {
            return Ok(());
        };
        write_framed(&mut s, &reply).await?;
    }
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(msg.len()).map_err(|_| std::io::Error::other("reply too long"))?;
    let mut out = Vec::with_capacity(4 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use roamgate_krb_crypto::Etype;

    use super::*;
    use crate::kdc::db::{MemoryStore, PrincipalFlags};
    use crate::kdc::probe::{self, RequestSpec};
    use crate::kdc::KdcConfig;
    use crate::principal::Principal;

    async fn start(max_udp_reply: usize) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let store = Arc::new(MemoryStore::new("R.TEST"));
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
        let kdc = Arc::new(Kdc::new(store, KdcConfig::default()));
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.max_udp_reply = max_udp_reply;
        cfg.max_tcp_request = 4096;
        let bound = bind(cfg).await.unwrap();
        let addr = bound.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(bound.run(kdc, async move {
            let _ = rx.await;
        }));
        (addr, tx)
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
}
