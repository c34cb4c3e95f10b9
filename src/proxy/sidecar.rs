//! The credential sidecar: `lackey proxy`, the second container of a cloud run's task.
//!
//! It is the only container of the task ECS injects secrets into (the Anthropic key, the
//! GitHub App private key). It mints the run's installation token itself, narrowed to
//! the run's repository, and serves the same [`Proxy`](super::Proxy) as a local run's
//! host does, with the same policy, on the task's shared loopback
//! (`LACKEY_PROXY_LISTEN`, `127.0.0.1:PORT`: the containers of a Fargate task share one
//! network namespace). The minion's container holds no credential; it reaches the LLM,
//! git and the GitHub API through this address (`LACKEY_PROXY_URL`). Its refusals go to
//! its own log stream and back to the minion at `/_lackey/refusals`.

use std::time::Duration;

use super::{GitHubScope, GitHubUpstream, LlmUpstream, Proxy, ProxyConfig, PushTarget};
use crate::run_contract::{GithubAuth, Secret, SidecarInput};

/// Installation tokens live an hour: a new one is minted well before.
const REMINT_EVERY: Duration = Duration::from_secs(45 * 60);
/// After a re-mint that failed (GitHub down a moment), the next attempt.
const REMINT_RETRY: Duration = Duration::from_secs(60);

/// One line on the sidecar's stderr (its log stream).
#[allow(
    clippy::print_stderr,
    reason = "the sidecar owns its container's stderr, which is its log stream"
)]
fn say(line: &str) {
    eprintln!("[sidecar] {line}");
}

/// Where the sidecar gets its GitHub token from.
enum Minter {
    None,
    Fixed(String),
    App {
        api_url: String,
        app_id: String,
        installation_id: String,
        key: String,
        repo: Option<String>,
    },
}

impl Minter {
    fn from(input: &SidecarInput) -> Minter {
        match &input.github {
            None => Minter::None,
            Some(GithubAuth::Token(t)) => t
                .value()
                .map_or(Minter::None, |v| Minter::Fixed(v.to_string())),
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key,
            }) => match (
                private_key.as_ref().and_then(Secret::value),
                input
                    .github_repo
                    .as_deref()
                    .and_then(|r| r.split_once('/').map(|(_, n)| n.to_string())),
            ) {
                // A token only for the run's one repository: without one, none at all
                // (a token for the whole installation would serve nothing the run does).
                (Some(key), Some(repo)) => Minter::App {
                    api_url: input.github_api_url.clone(),
                    app_id: app_id.clone(),
                    installation_id: installation_id.clone(),
                    key: key.to_string(),
                    repo: Some(repo),
                },
                (Some(_), None) => Minter::None,
                (None, _) => {
                    say("GitHub App credentials without the private key: no GitHub access (the task definition must inject LACKEY_GITHUB_APP_PRIVATE_KEY into this container)");
                    Minter::None
                }
            },
        }
    }

    async fn token(&self) -> anyhow::Result<Option<String>> {
        match self {
            Minter::None => Ok(None),
            Minter::Fixed(t) => Ok(Some(t.clone())),
            Minter::App {
                api_url,
                app_id,
                installation_id,
                key,
                repo,
            } => {
                let gh = crate::github::GitHub::new(api_url);
                let tok = gh
                    .installation_token(app_id, key, installation_id, repo.as_deref())
                    .await?;
                Ok(Some(tok.token))
            }
        }
    }
}

/// The proxy's configuration, given the token minted for this run.
pub fn config(input: &SidecarInput, token: Option<String>) -> ProxyConfig {
    let llm = match (&input.api_key, input.stubs) {
        (Some(Secret::Value(k)), false) => Some(LlmUpstream {
            base_url: input.base_url.clone(),
            api_key: k.clone(),
        }),
        _ => None,
    };
    let github = match (token, &input.github_repo) {
        (Some(token), Some(repo)) => Some(GitHubUpstream {
            api_url: input.github_api_url.clone(),
            git_url: input.github_git_url.clone(),
            token,
            scope: GitHubScope {
                repo: repo.clone(),
                target: input.push_branch.as_ref().map(|b| PushTarget {
                    branch: b.clone(),
                    may_update: input.push_may_update,
                    default_branch: input.default_branch.clone(),
                }),
            },
        }),
        _ => None,
    };
    ProxyConfig { llm, github }
}

/// Serve until `stop` is cancelled (SIGTERM: the task is stopping).
pub async fn serve(
    input: SidecarInput,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = input.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} must be an address and port (`127.0.0.1:PORT`), not `{}`",
            crate::run_contract::var::PROXY_LISTEN,
            input.listen
        )
    })?;
    let minter = Minter::from(&input);
    let token = minter.token().await?;
    let cfg = config(&input, token);
    say(&format!(
        "listening on {addr}: LLM {}, GitHub {}",
        if cfg.llm.is_some() {
            "with the injected key"
        } else {
            "refused (no key, or a --stubs run)"
        },
        match &cfg.github {
            Some(g) => format!(
                "`{}`{}",
                g.scope.repo,
                g.scope
                    .target
                    .as_ref()
                    .map(|t| format!(", pushes to `{}` only", t.branch))
                    .unwrap_or_default()
            ),
            None => "refused".into(),
        }
    ));
    let proxy = Proxy::serve_tcp(addr, cfg)
        .await
        .map_err(|e| anyhow::anyhow!("the credential sidecar cannot listen on {addr}: {e}"))?;
    let mut shown = 0;
    // The next re-mint: every REMINT_EVERY, and a minute after one that failed (the
    // token in use has a quarter of an hour left when the first attempt is made).
    let mut next_mint = tokio::time::Instant::now() + REMINT_EVERY;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next_mint), if matches!(minter, Minter::App { .. }) => {
                next_mint = match minter.token().await {
                    Ok(Some(t)) => {
                        proxy.set_github_token(t);
                        tokio::time::Instant::now() + REMINT_EVERY
                    }
                    Ok(None) => tokio::time::Instant::now() + REMINT_EVERY,
                    Err(e) => {
                        say(&format!("could not mint a new installation token (trying again in a minute): {e:#}"));
                        tokio::time::Instant::now() + REMINT_RETRY
                    }
                };
            }
            _ = tick.tick() => {}
        }
        // The refusals, as they come, on the sidecar's own log stream.
        let refused = proxy.refusals();
        for line in refused.iter().skip(shown) {
            say(line);
        }
        shown = refused.len();
    }
    for line in proxy.refusals().iter().skip(shown) {
        say(line);
    }
    say(&format!(
        "stopping; {} request(s) forwarded",
        proxy.forwarded()
    ));
    Ok(())
}
