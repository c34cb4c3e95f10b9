//! The container's way to the credential proxy: a TCP listener on the container's own
//! loopback that forwards each connection to the proxy's Unix socket, for clients that
//! speak only TCP (git, and the LLM client's base URL). Local runs have no network but
//! this socket (docs/sandbox-network.md); the bridge adds no access, since every process
//! in the container could open the socket itself. The policy and the credentials are on
//! the other side.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixStream};

/// What the minion sends as its API key when the proxy adds the real one (the proxy
/// drops whatever key a request carries).
pub const KEY_PLACEHOLDER: &str = "added-by-the-lackey-proxy";

/// Listen on `127.0.0.1:0` and forward every connection to `socket`; runs until the
/// process ends.
pub async fn start(socket: &Path) -> anyhow::Result<SocketAddr> {
    if !socket.exists() {
        anyhow::bail!(
            "the proxy socket `{}` is missing: the host did not mount it",
            socket.display()
        );
    }
    // Fail here, with the cause, rather than at the first LLM call.
    if let Err(e) = UnixStream::connect(socket).await {
        anyhow::bail!(
            "cannot connect to the credential proxy's socket `{}`: {e} (a Docker engine in a VM, such as some Docker Desktop versions, may not pass host Unix sockets into containers: see docs/sandbox-network.md)",
            socket.display()
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on the container's loopback: {e}"))?;
    let addr = listener.local_addr()?;
    let socket: PathBuf = socket.to_path_buf();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(addr)
}

/// How long the minion waits for a cloud run's credential sidecar to listen (ECS starts
/// the minion once the sidecar's container has started, not once it listens).
const SIDECAR_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `host:port` of an `http://host:port` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Wait until the sidecar at `url` accepts connections.
pub async fn wait_for_sidecar(url: &str) -> anyhow::Result<()> {
    let addr = authority(url).to_string();
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > SIDECAR_WAIT => anyhow::bail!(
                "the task's credential sidecar does not answer at {addr} after {} s: {e} (its log stream, `<prefix>/sidecar/<task id>`, says why)",
                SIDECAR_WAIT.as_secs()
            ),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
        }
    }
}

/// The requests the sidecar refused so far, one line each (none when it cannot say).
pub async fn sidecar_refusals(url: &str) -> Vec<String> {
    let url = format!(
        "{}{}",
        url.trim_end_matches('/'),
        crate::proxy::REFUSALS_PATH
    );
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return Vec::new();
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => r
            .text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_tcp_to_the_socket_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        // (`start` itself connects once, to check the socket, and closes.)
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    buf.reverse();
                    s.write_all(&buf).await.unwrap();
                }
            }
        });
        let addr = start(&path).await.unwrap();
        assert!(addr.ip().is_loopback());
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"olleh");
        let err = start(&dir.path().join("missing.sock")).await.unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
