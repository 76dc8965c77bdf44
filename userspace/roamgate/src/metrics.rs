//! Prometheus text exposition over a deliberately tiny HTTP/1.0 server: one
//! GET per connection, bounded request size and time, a bounded number of
//! connections, and an accept loop that outlives transient errors (EMFILE).

use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Produces the current exposition text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

const MAX_REQUEST: usize = 8 * 1024;
/// Deadline for a whole connection: reading the request and writing the
/// answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once. A new connection beyond this closes the
/// oldest one: a scraper sends its request at once and is answered in
/// milliseconds, so the oldest is an idle one, and idle connections can
/// never lock a real scrape out.
pub const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS…), doubled up to
/// [`ACCEPT_BACKOFF_MAX`] while the errors last: the listener stays, and
/// serving resumes once descriptors are free again.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Formats counters as Prometheus counters named `roamgate_<name>_total`.
pub fn exposition<'a>(counters: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut s = String::new();
    for (name, v) in counters {
        let metric = format!("roamgate_xdp_{name}_total");
        s.push_str(&format!("# TYPE {metric} counter\n{metric} {v}\n"));
    }
    s
}

/// One `roamgate_xdp_attached{interface,mode} 1` gauge per interface the
/// XDP program is attached to, so a fallback to generic XDP shows.
pub fn xdp_attached<'a>(
    links: impl IntoIterator<Item = (&'a str, crate::dataplane::AttachedMode)>,
) -> String {
    let mut s = String::from("# TYPE roamgate_xdp_attached gauge\n");
    for (iface, mode) in links {
        s.push_str(&format!(
            "roamgate_xdp_attached{{interface=\"{iface}\",mode=\"{}\"}} 1\n",
            mode.as_str()
        ));
    }
    s
}

pub async fn serve(
    listener: TcpListener,
    render: Render,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut open: VecDeque<CancellationToken> = VecDeque::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => r,
        };
        let sock = match accepted {
            Ok((sock, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                sock
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "metrics endpoint: accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        open.retain(|t| !t.is_cancelled());
        if open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.cancel();
            }
        }
        let done = CancellationToken::new();
        open.push_back(done.clone());
        let render = render.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = done.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_DEADLINE, answer(sock, &render)) => {}
            }
            // Marks the slot free for the accept loop.
            done.cancel();
        });
    }
}

/// Reads one request and writes its answer.
async fn answer(mut sock: TcpStream, render: &Render) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    while n < buf.len() {
        match sock.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(_) => return,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]);
    let (status, body) = if req.starts_with("GET /metrics ") {
        ("200 OK", render())
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    let resp = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr} (set metrics.listen to a free port, or \"\" to disable)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let s = exposition([("rx_packets", 3), ("action_pass", 2)]);
        assert_eq!(
            s,
            "# TYPE roamgate_xdp_rx_packets_total counter\nroamgate_xdp_rx_packets_total 3\n\
             # TYPE roamgate_xdp_action_pass_total counter\nroamgate_xdp_action_pass_total 2\n"
        );
    }

    #[test]
    fn xdp_attached_names_interface_and_mode() {
        let text = xdp_attached([("eth0", crate::dataplane::AttachedMode::Skb)]);
        assert!(
            text.contains("roamgate_xdp_attached{interface=\"eth0\",mode=\"skb\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn serves_metrics_and_404() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            Arc::new(|| "x 1\n".to_owned()),
            stop.clone(),
        ));
        for (path, want) in [("/metrics", "200 OK"), ("/", "404")] {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            assert!(out.contains(want), "{out}");
            if want == "200 OK" {
                assert!(out.ends_with("x 1\n"));
            }
        }
        stop.cancel();
        task.await.unwrap().unwrap();
    }

    /// One GET /metrics on a fresh connection, answered within 2 s.
    async fn scrape(addr: SocketAddr) -> String {
        let fut = async {
            let mut c = tokio::net::TcpStream::connect(addr).await?;
            c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
            let mut out = String::new();
            c.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        match tokio::time::timeout(Duration::from_secs(2), fut).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("scrape failed: {e}"),
            Err(_) => panic!("scrape not answered within 2 s"),
        }
    }

    /// The fd-exhaustion scenario runs in a child process (the test binary
    /// again, this test only), because it lowers RLIMIT_NOFILE for the whole
    /// process.
    #[test]
    fn keeps_serving_after_fd_exhaustion() {
        const CHILD: &str = "RG_METRICS_EMFILE_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return fd_exhaustion_scenario();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "metrics::tests::keeps_serving_after_fd_exhaustion",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn fd_exhaustion_scenario() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = CancellationToken::new();
            let task = tokio::spawn(serve(
                listener,
                Arc::new(|| "x 1\n".to_owned()),
                stop.clone(),
            ));
            let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
            let lim = libc::rlimit {
                rlim_cur: open + 16,
                rlim_max: open + 16,
            };
            // SAFETY: setrlimit with a valid rlimit; this child process
            // exists only for this test.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            // Idle clients take every free descriptor, so the server's
            // accept fails with EMFILE.
            let mut clients = Vec::new();
            let err = loop {
                match std::net::TcpStream::connect(addr) {
                    Ok(c) => clients.push(c),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(clients);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !task.is_finished(),
                "the metrics server stopped after EMFILE: {:?}",
                task.await
            );
            let out = scrape(addr).await;
            assert!(
                out.starts_with("HTTP/1.0 200 OK") && out.ends_with("x 1\n"),
                "{out}"
            );
            stop.cancel();
            task.await.unwrap().unwrap();
        });
    }

    /// Idle connections beyond the cap are closed, and a real scrape is
    /// answered at once however many are open.
    #[tokio::test]
    async fn idle_connections_are_capped_and_do_not_block_a_scrape() {
        const IDLE: usize = 200;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            Arc::new(|| "x 1\n".to_owned()),
            stop.clone(),
        ));
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let out = scrape(addr).await;
        assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
        // Within 1 s (well before the per-connection deadline) the server
        // has closed all but at most MAX_CONNECTIONS (64) of them.
        let mut waits = tokio::task::JoinSet::new();
        for mut c in idle {
            waits.spawn(async move {
                let mut b = [0u8; 1];
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), c.read(&mut b)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                )
            });
        }
        let mut closed = 0;
        while let Some(r) = waits.join_next().await {
            closed += usize::from(r.unwrap());
        }
        assert!(
            closed >= IDLE - 64,
            "{closed} of {IDLE} idle connections closed: no connection cap"
        );
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
