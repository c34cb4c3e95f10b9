//! Debian's docker-registry on loopback: the ECR data plane of the cloud tests. Docker
//! accepts loopback registries without TLS.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start() -> Option<Registry> {
        Self::start_with("")
    }

    /// A registry that answers reads but refuses every push (maintenance read-only mode):
    /// the push error only shows inside Docker's progress stream.
    pub fn start_read_only() -> Option<Registry> {
        Self::start_with("  maintenance:\n    readonly:\n      enabled: true\n")
    }

    fn start_with(storage_extra: &str) -> Option<Registry> {
        let available = Command::new("docker-registry")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !super::require(
            "docker-registry",
            available,
            "apt-get install docker-registry",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{storage_extra}http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        super::record("registry", &format!("127.0.0.1:{port}"));
        Some(Registry {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The tags of a repository.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let v: serde_json::Value =
            reqwest::blocking::get(format!("http://{}/v2/{repo}/tags/list", self.host()))
                .and_then(|r| r.json())
                .unwrap_or_default();
        v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        super::docker::remove_tags_of(&self.host());
    }
}
