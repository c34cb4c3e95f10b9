//! The minion image in ECR: pushed only when the registry does not
//! already hold it.
//!
//! ```no_run
//! # async fn demo(docker: &bollard::Docker, aws: &lackey::aws::Aws) -> anyhow::Result<()> {
//! use lackey::cloud::ecr::ensure_image_in_ecr;
//! use lackey::output::Silent;
//! use lackey::image::CpuArch;
//! let image = ensure_image_in_ecr(
//!     docker,
//!     aws,
//!     "minion-base:latest",
//!     "YOUR_AWS_ACCOUNT_ID.dkr.ecr.YOUR_REGION.amazonaws.com",
//!     "lackey-minion",
//!     CpuArch::X86_64,
//!     &Silent,
//! )
//! .await?;
//! // A second call finds it and says "already exists in ECR".
//! assert!(!ensure_image_in_ecr(docker, aws, "minion-base:latest", "YOUR_AWS_ACCOUNT_ID.dkr.ecr.YOUR_REGION.amazonaws.com", "lackey-minion", CpuArch::X86_64, &Silent).await?.pushed);
//! # let _ = image; Ok(()) }
//! ```
//!
//! "Already there" is decided with the registry's own v2 API, which ECR and any OCI
//! registry answer alike: the manifest of `<repository>:latest` names its config
//! digest, which is the local image's id. Push errors arrive inside Docker's progress
//! stream, not as an HTTP error: the stream is drained and any `errorDetail` fails the
//! push.

use std::collections::BTreeMap;

use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;

use crate::aws::{Aws, AwsResultExt};
use crate::error::Fail;
use crate::image::{check_platform, CpuArch};
use crate::output::{Progress, Reporter, Tone};

#[derive(Debug, Clone)]
pub struct EcrImage {
    /// `<registry>/<repository>:latest`
    pub uri: String,
    /// The manifest digest in the registry, when known.
    pub digest: Option<String>,
    pub pushed: bool,
}

/// The ECR login: user `AWS` and the token's password. (A registry without
/// authentication ignores it.)
pub async fn credentials(aws: &Aws, registry: &str) -> anyhow::Result<DockerCredentials> {
    let out = aws
        .ecr()
        .get_authorization_token()
        .send()
        .await
        .aws("failed to get an ECR authorization token")?;
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| anyhow::anyhow!("ECR returned no authorization token"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| anyhow::anyhow!("ECR's authorization token is not base64: {e}"))?;
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("ECR's authorization token is not user:password"))?;
    Ok(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}

/// Plain HTTP for a registry on this machine (Docker allows loopback registries without
/// TLS); HTTPS for everything else, ECR included.
fn registry_base(registry: &str) -> String {
    let host = registry.split(':').next().unwrap_or(registry);
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    }
}

/// The config digest of `<repository>:<tag>` in the registry, if it holds that tag.
pub async fn remote_config_digest(
    registry: &str,
    repository: &str,
    tag: &str,
    creds: &DockerCredentials,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    let url = format!(
        "{}/v2/{repository}/manifests/{tag}",
        registry_base(registry)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        creds.username.clone().unwrap_or_default(),
        creds.password.clone().unwrap_or_default()
    ));
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Authorization", format!("Basic {basic}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the registry {registry}: {}", e.without_url()))?;
    if resp.status().as_u16() == 404 {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(anyhow::anyhow!(
            "the registry {registry} answered {} for {repository}:{tag}",
            resp.status()
        ));
    }
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let manifest: serde_json::Value = resp.json().await.unwrap_or_default();
    Ok(manifest["config"]["digest"]
        .as_str()
        .map(|c| (c.to_string(), digest)))
}

/// The CPU architecture the task definition `family` runs on: its `runtimePlatform`,
/// X86_64 when it names none (Fargate's default), `fallback` when the family has no
/// ACTIVE revision yet.
pub async fn task_architecture(aws: &Aws, family: &str, fallback: CpuArch) -> CpuArch {
    match aws
        .ecs()
        .describe_task_definition()
        .task_definition(family)
        .send()
        .await
    {
        Ok(out) => out
            .task_definition()
            .map(task_definition_architecture)
            .unwrap_or(fallback),
        Err(_) => fallback,
    }
}

/// A task definition's CPU architecture (X86_64 when its `runtimePlatform` names none).
pub fn task_definition_architecture(td: &aws_sdk_ecs::types::TaskDefinition) -> CpuArch {
    td.runtime_platform()
        .and_then(|p| p.cpu_architecture())
        .and_then(|a| CpuArch::parse(a.as_str()))
        .unwrap_or(CpuArch::X86_64)
}

/// What the local Docker and the registry say about an image, before anything is
/// decided: asked without knowing where the image must run, so a launch asks it beside
/// the task definition.
pub struct ImageProbe {
    local_image: String,
    os: String,
    arch: String,
    local_id: String,
    creds: DockerCredentials,
    /// The config digest and manifest digest of `<repository>:latest` in the registry.
    remote: Option<(String, Option<String>)>,
    uri: String,
    registry: String,
    repository: String,
}

/// Inspect the local image, then get the registry login and the digest of
/// `<repository>:latest` (the login does not wait for the inspection).
pub async fn probe_image(
    docker: &Docker,
    aws: &Aws,
    local_image: &str,
    registry: &str,
    repository: &str,
) -> anyhow::Result<ImageProbe> {
    let uri = format!("{registry}/{repository}:latest");
    let (local, creds) = tokio::join!(
        docker.inspect_image(local_image),
        credentials(aws, registry)
    );
    let local = local.map_err(|e| {
        Fail::new(format!(
            "image `{local_image}` not found in the local Docker ({e})"
        ))
        .with_hint("build it with `make build-base` (or `lackey image build`)")
    })?;
    let creds = creds?;
    let remote = remote_config_digest(registry, repository, "latest", &creds).await?;
    Ok(ImageProbe {
        local_image: local_image.to_string(),
        os: local.os.clone().unwrap_or_default().to_ascii_lowercase(),
        arch: local
            .architecture
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        local_id: local.id.unwrap_or_default(),
        creds,
        remote,
        uri,
        registry: registry.to_string(),
        repository: repository.to_string(),
    })
}

/// Make sure `local_image` is in `registry/repository:latest`, pushing only when the
/// registry does not already hold this exact image. An image that cannot run on a
/// Linux task of `arch` is refused before anything is pushed.
pub async fn ensure_image_in_ecr(
    docker: &Docker,
    aws: &Aws,
    local_image: &str,
    registry: &str,
    repository: &str,
    arch: CpuArch,
    reporter: &dyn Reporter,
) -> anyhow::Result<EcrImage> {
    let probe = probe_image(docker, aws, local_image, registry, repository).await?;
    push_if_needed(docker, probe, arch, reporter).await
}

/// The second half of [`ensure_image_in_ecr`]: refuse an image that cannot run on a
/// Linux task of `arch`, else push it unless the registry holds it already.
pub async fn push_if_needed(
    docker: &Docker,
    probe: ImageProbe,
    arch: CpuArch,
    reporter: &dyn Reporter,
) -> anyhow::Result<EcrImage> {
    let ImageProbe {
        local_image,
        os,
        arch: local_arch,
        local_id,
        creds,
        remote,
        uri,
        registry,
        repository,
    } = probe;
    let local_image = local_image.as_str();
    check_platform(local_image, &os, &local_arch, arch)?;
    if let Some((config, digest)) = remote {
        if config == local_id {
            reporter.info(&format!(
                "Image {local_image} already exists in ECR as {uri}{}",
                digest
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
            return Ok(EcrImage {
                uri,
                digest,
                pushed: false,
            });
        }
    }
    reporter.status("Pushing", Tone::Good, &format!("{local_image} to {uri}"));
    docker
        .tag_image(
            local_image,
            Some(
                TagImageOptionsBuilder::default()
                    .repo(&format!("{registry}/{repository}"))
                    .tag("latest")
                    .build(),
            ),
        )
        .await
        .map_err(|e| crate::image::docker_error(e, &format!("tag `{local_image}` as `{uri}`")))?;
    let mut stream = docker.push_image(
        &format!("{registry}/{repository}"),
        Some(PushImageOptionsBuilder::default().tag("latest").build()),
        Some(creds),
    );
    // bollard's push events carry no layer id, so a layer's bar is keyed by its size.
    let mut bars: BTreeMap<i64, Box<dyn Progress>> = BTreeMap::new();
    let mut digest = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(Fail::new(format!("pushing `{uri}` failed: {error}"))
                    .with_hint("check that the ECR repository exists (`lackey up`) and that the credentials may push to it")
                    .into())
            }
            Err(e) => return Err(crate::image::docker_error(e, &format!("push `{uri}`"))),
        };
        if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
            return Err(Fail::new(format!("pushing `{uri}` failed: {detail}"))
                .with_hint("check that the ECR repository exists (`lackey up`) and that the credentials may push to it")
                .into());
        }
        let status = info.status.unwrap_or_default();
        if let Some(d) = status.split("digest: ").nth(1) {
            digest = d.split_whitespace().next().map(str::to_string);
        }
        if let Some(p) = info.progress_detail {
            if let (Some(current), Some(total)) = (p.current, p.total) {
                let bar = bars.entry(total).or_insert_with(|| {
                    reporter.bar(
                        &format!("layer {}", crate::output::human_bytes(total as u64)),
                        total as u64,
                    )
                });
                bar.set_position(current as u64);
            }
        }
    }
    drop(bars);
    reporter.status(
        "Pushed",
        Tone::Good,
        &format!(
            "{uri}{}",
            digest
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
    );
    Ok(EcrImage {
        uri,
        digest,
        pushed: true,
    })
}
