//! Prometheus text exposition over a deliberately tiny HTTP/1.0 server: one
//! GET per connection, bounded request size and time.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

/// Produces the current exposition text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Formats counters as Prometheus counters named `roamgate_<name>_total`.
pub fn exposition<'a>(counters: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut s = String::new();
    for (name, v) in counters {
        let metric = format!("roamgate_xdp_{name}_total");
        s.push_str(&format!("# TYPE {metric} counter\n{metric} {v}\n"));
    }
    s
}

pub async fn serve(
    listener: TcpListener,
    render: Render,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => r?,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST];
            let mut n = 0;
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                while n < buf.len() {
                    let m = sock.read(&mut buf[n..]).await?;
                    if m == 0 {
                        break;
                    }
                    n += m;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
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
        });
    }
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
}
