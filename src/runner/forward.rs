//! Reaching a service on the host's loopback from inside a container.
//!
//! A user may point `ANTHROPIC_BASE_URL` at a proxy on `127.0.0.1`. Inside the
//! container that address is the container itself. Instead of host networking (which
//! would drop the run's network isolation), lackey listens on the Docker bridge's
//! gateway address for the length of the run and forwards each connection to the
//! loopback target; the container gets the gateway address in its URL. Only the run's
//! own container may connect, and nothing may before its address is known (the minion
//! retries refused connections).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Whether a URL's host is this machine's loopback.
pub fn loopback_target(url: &str) -> Option<(reqwest::Url, SocketAddr)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_matches(['[', ']']);
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().ok()?,
    };
    if !ip.is_loopback() {
        return None;
    }
    let port = parsed.port_or_known_default()?;
    Some((parsed, SocketAddr::new(ip, port)))
}

pub struct Forwarder {
    pub listen: SocketAddr,
    allowed: Arc<Mutex<Option<IpAddr>>>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Listen on `ip` (the bridge gateway) and forward every connection to `target`.
    pub async fn start(ip: IpAddr, target: SocketAddr) -> anyhow::Result<Forwarder> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on the Docker bridge address {ip} to forward to {target}: {e}"
                )
            })?;
        let listen = listener.local_addr()?;
        let allowed: Arc<Mutex<Option<IpAddr>>> = Arc::new(Mutex::new(None));
        let gate = allowed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, peer)) = listener.accept().await else {
                    continue;
                };
                // Closed until the run's container is known; then only it may connect.
                let permitted = gate
                    .lock()
                    .map(|g| g.is_some_and(|ip| ip == peer.ip()))
                    .unwrap_or(false);
                if !permitted {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Forwarder {
            listen,
            allowed,
            task,
        })
    }

    /// From now on only this address may connect (the run's container).
    pub fn allow_only(&self, ip: IpAddr) {
        if let Ok(mut g) = self.allowed.lock() {
            *g = Some(ip);
        }
    }

    /// The URL the container uses: the original with host and port replaced.
    pub fn rewrite(&self, original: &reqwest::Url) -> String {
        let mut u = original.clone();
        let _ = u.set_host(Some(&self.listen.ip().to_string()));
        let _ = u.set_port(Some(self.listen.port()));
        u.to_string().trim_end_matches('/').to_string()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_loopback_urls() {
        assert!(loopback_target("http://127.0.0.1:8080").is_some());
        assert!(loopback_target("http://localhost:9").is_some());
        assert!(loopback_target("http://[::1]:9").is_some());
        assert!(loopback_target("https://api.anthropic.com").is_none());
        let (u, addr) = loopback_target("http://127.0.0.1:8080/proxy").unwrap();
        assert_eq!(addr.port(), 8080);
        assert_eq!(u.path(), "/proxy");
    }

    #[tokio::test]
    async fn forwards_bytes_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let f = Forwarder::start(
            "127.0.0.2".parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
            target,
        )
        .await
        .unwrap();
        // Closed until the container's address is known.
        let mut early = TcpStream::connect(f.listen).await.unwrap();
        let mut one = [0u8; 1];
        assert_eq!(
            early.read(&mut one).await.unwrap_or(0),
            0,
            "a connection got through before allow_only"
        );
        f.allow_only(IpAddr::from([127, 0, 0, 1]));
        let mut c = TcpStream::connect(f.listen).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        let u = reqwest::Url::parse("http://127.0.0.1:1/v").unwrap();
        assert_eq!(f.rewrite(&u), format!("http://{}/v", f.listen));
    }
}
