//! moto, started by the harness on a free loopback port, stopped on drop.
//!
//! The server is `moto_server.py` beside this file: moto plus the workarounds of
//! docs/stand-ins.md, a request log (for counting mutating calls), fault injection, a way to
//! hold requests (to kill a client at a known point) and the ECS task lifecycle hook the
//! Fargate player uses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One AWS request moto served.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    pub service: String,
    pub action: String,
    pub method: String,
    pub path: String,
    pub status: serde_json::Value,
    /// `cli`, `minion` or `other` (the harness), from the User-Agent.
    #[serde(default)]
    pub caller: String,
}

impl Request {
    /// Whether the request changes state in AWS (by API naming convention, and the
    /// HTTP method for S3's REST API).
    pub fn is_mutating(&self) -> bool {
        if self.service == "s3" {
            return matches!(self.method.as_str(), "PUT" | "POST" | "DELETE");
        }
        const READ: &[&str] = &["Describe", "List", "Get", "Head", "Batch"];
        !READ.iter().any(|p| self.action.starts_with(p))
    }
}

pub struct Moto {
    child: Child,
    port: u16,
    http: reqwest::blocking::Client,
}

fn moto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto, werkzeug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Moto {
    /// Start moto, or return None when it is not installed (outside CI only; under
    /// CI=true this panics so the test fails instead of skipping).
    pub fn start() -> Option<Moto> {
        Self::start_with(&[])
    }

    /// Start moto whose FARGATE tasks wait for the Fargate player.
    pub fn start_for_fargate() -> Option<Moto> {
        Self::start_with(&["--fargate-player"])
    }

    /// Start moto for the Fargate player, with IAM's propagation delay: for `ms` after
    /// a role or its policies change, nobody can assume it (docs/stand-ins.md).
    pub fn start_with_propagation(ms: u64) -> Option<Moto> {
        Self::start_with_env(
            &["--fargate-player"],
            &[("IAM_PROPAGATION_MS", ms.to_string())],
        )
    }

    fn start_with(args: &[&str]) -> Option<Moto> {
        Self::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, String)]) -> Option<Moto> {
        if !super::require("moto", moto_available(), "pip install 'moto[server]'") {
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let started = Instant::now();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read moto's port");
        let port: u16 = line
            .trim()
            .strip_prefix("port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("moto did not report its port (got {line:?})"));
        assert!(started.elapsed() < Duration::from_secs(60));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Some(Moto { child, port, http })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn post(&self, path: &str, body: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .expect("reach moto harness endpoint");
        assert!(
            r.status().is_success(),
            "moto harness {path}: {}",
            r.status()
        );
    }

    /// Every AWS request served since the last reset.
    pub fn requests(&self) -> Vec<Request> {
        self.http
            .get(format!("{}/_harness/requests", self.url()))
            .send()
            .and_then(|r| r.json())
            .expect("read moto's request log")
    }

    pub fn reset_requests(&self) {
        self.post("/_harness/requests/reset", serde_json::json!({}));
    }

    /// Answer `rate` of AWS requests with 503 or throttling.
    pub fn set_faults(&self, rate: f64, seed: u64) {
        self.post(
            "/_harness/faults",
            serde_json::json!({"rate": rate, "seed": seed}),
        );
    }

    /// Serve `after` more requests, then hold every later one until [`Moto::release`].
    pub fn hang_after(&self, after: usize) {
        self.post("/_harness/hang", serde_json::json!({"after": after}));
    }

    pub fn release(&self) {
        self.post("/_harness/release", serde_json::json!({}));
    }

    /// Answer the next `times` requests for `action` with this response.
    pub fn inject(&self, action: &str, times: usize, status: u16, content_type: &str, body: &str) {
        self.post(
            "/_harness/inject",
            serde_json::json!({"action": action, "times": times, "status": status, "content_type": content_type, "body": body}),
        );
    }

    /// Every role changed so far counts as changed now: IAM's propagation window starts
    /// again, as right after `up`, whatever time the steps since then took.
    pub fn roles_just_changed(&self) {
        self.post("/_harness/iam/changed", serde_json::json!({}));
    }

    /// Set fields of an ECS task (the Fargate player's hook).
    pub fn set_task(&self, body: serde_json::Value) {
        self.post("/_harness/ecs/task", body);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// An AWS SDK configuration pointing at this moto, for tests to look at (or break)
    /// what lackey made.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
        rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(self.url())
                .credentials_provider(creds)
                .load(),
        )
    }
}

/// Run an async block on a small runtime (tests are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Moto {
    /// Give the default VPC what every AWS default VPC has and moto's lacks: an internet
    /// gateway and the 0.0.0.0/0 route to it.
    pub fn add_internet_gateway(&self) {
        let conf = self.sdk_config();
        block_on(async {
            let ec2 = aws_sdk_ec2::Client::new(&conf);
            let vpc = ec2
                .describe_vpcs()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("isDefault")
                        .values("true")
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .vpcs()[0]
                .vpc_id()
                .unwrap()
                .to_string();
            let igw = ec2
                .create_internet_gateway()
                .send()
                .await
                .unwrap()
                .internet_gateway
                .unwrap()
                .internet_gateway_id
                .unwrap();
            ec2.attach_internet_gateway()
                .internet_gateway_id(&igw)
                .vpc_id(&vpc)
                .send()
                .await
                .unwrap();
            let tables = ec2
                .describe_route_tables()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("vpc-id")
                        .values(&vpc)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            for t in tables.route_tables() {
                ec2.create_route()
                    .route_table_id(t.route_table_id().unwrap())
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(&igw)
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
}

/// The stack's security groups named `lackey-ecs-tasks` (tests look at and break them).
pub async fn lackey_security_groups(
    ec2: &aws_sdk_ec2::Client,
) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
    ec2.describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("lackey-ecs-tasks")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()
        .to_vec()
}

/// Open SSH to the world on the stack's security group: the drift `up` must repair and
/// `doctor` must flag.
pub async fn add_ssh_ingress(ec2: &aws_sdk_ec2::Client) {
    let id = lackey_security_groups(ec2).await[0]
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(id)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
}

/// Credentials of an IAM user or an assumed role in moto.
#[derive(Clone, Debug)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Moto {
    /// An IAM user holding exactly `policy` (one inline policy), made by the harness's
    /// admin; returns its access key. moto enforces IAM: the user can do what the
    /// document allows and nothing else.
    pub fn iam_user(&self, name: &str, policy: &str) -> Keys {
        let conf = self.sdk_config();
        block_on(async {
            let iam = aws_sdk_iam::Client::new(&conf);
            iam.create_user().user_name(name).send().await.unwrap();
            iam.put_user_policy()
                .user_name(name)
                .policy_name("lackey")
                .policy_document(policy)
                .send()
                .await
                .unwrap();
            let key = iam
                .create_access_key()
                .user_name(name)
                .send()
                .await
                .unwrap()
                .access_key
                .unwrap();
            Keys {
                access_key_id: key.access_key_id().to_string(),
                secret_access_key: key.secret_access_key().to_string(),
                session_token: None,
            }
        })
    }

    /// Replace the user's policy (what [`Moto::iam_user`] gave it).
    pub fn set_user_policy(&self, name: &str, policy: &str) {
        let conf = self.sdk_config();
        block_on(async {
            aws_sdk_iam::Client::new(&conf)
                .put_user_policy()
                .user_name(name)
                .policy_name("lackey")
                .policy_document(policy)
                .send()
                .await
                .unwrap();
        });
    }

    /// Attach an AWS-managed policy to a user (`ReadOnlyAccess`).
    pub fn iam_user_managed(&self, name: &str, policy_arn: &str) -> Keys {
        let keys = self.iam_user(name, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iam:CreateUser","Resource":"*"}]}"#);
        let conf = self.sdk_config();
        block_on(async {
            let iam = aws_sdk_iam::Client::new(&conf);
            iam.delete_user_policy()
                .user_name(name)
                .policy_name("lackey")
                .send()
                .await
                .unwrap();
            iam.attach_user_policy()
                .user_name(name)
                .policy_arn(policy_arn)
                .send()
                .await
                .unwrap();
        });
        keys
    }

    /// A role's credentials as ECS gets them for a task (the harness's stand-in for the
    /// ECS service principal; a role that does not trust ECS, or is still propagating,
    /// is refused).
    pub fn assume_as_ecs(&self, role_arn: &str) -> Keys {
        let v: serde_json::Value = self
            .http
            .post(format!("{}/_harness/ecs/assume", self.url()))
            .json(&serde_json::json!({"role_arn": role_arn, "session": "test"}))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .expect("ECS assumes the role");
        Keys {
            access_key_id: v["AccessKeyId"].as_str().unwrap().to_string(),
            secret_access_key: v["SecretAccessKey"].as_str().unwrap().to_string(),
            session_token: v["Token"].as_str().map(str::to_string),
        }
    }

    /// An SDK configuration with these credentials, pointing at this moto.
    pub fn sdk_config_as(&self, keys: &Keys) -> aws_config::SdkConfig {
        let creds = aws_sdk_s3::config::Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            keys.session_token.clone(),
            None,
            "test",
        );
        block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(self.url())
                .credentials_provider(creds)
                .load(),
        )
    }
}
