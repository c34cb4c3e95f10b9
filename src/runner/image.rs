//! Building the minion image through the Docker API (bollard).
//!
//! Three sources (docker/README.md): this source tree (`docker/Dockerfile`, compiled in
//! Docker), this machine's own `lackey` binary on a Debian base (`Dockerfile.binary`:
//! fast, and the offline path when the base is a local debootstrap image), and a
//! project image from a repository's `.lackey/Dockerfile` on top of the base image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use sha2::Digest;

use crate::error::Fail;
use crate::output::{Reporter, Tone};

/// The base of the offline build: made by `scripts/build-offline-base.sh`.
pub const OFFLINE_BASE: &str = "lackey/debian-base:bookworm";
pub const ONLINE_BASE: &str = "debian:bookworm-slim";
const DOCKERFILE_BINARY: &str = include_str!("../../docker/Dockerfile.binary");

#[derive(Debug, Clone)]
pub enum ImageSource {
    /// This machine's lackey binary on `base`.
    Binary { base: String },
    /// Compile in Docker from a source tree holding `docker/Dockerfile`.
    Source { dir: PathBuf },
    /// `.lackey/Dockerfile` of a repository, built `FROM base`.
    Project { repo: PathBuf, base: String },
}

/// Add a file to a tar archive being built in memory.
fn add_file(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// The running binary, stripped of debug information when `strip` is available.
fn binary_for_image() -> anyhow::Result<(Vec<u8>, String)> {
    let exe = std::env::current_exe()?;
    let tmp = tempfile::NamedTempFile::new()?;
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(tmp.path())
        .arg(&exe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let bytes = if stripped {
        std::fs::read(tmp.path())?
    } else {
        std::fs::read(&exe)?
    };
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    Ok((bytes, sha))
}

/// Files of a source tree the Dockerfile copies.
fn source_context(dir: &Path) -> anyhow::Result<Vec<u8>> {
    if !dir.join("docker/Dockerfile").is_file() || !dir.join("Cargo.toml").is_file() {
        return Err(Fail::new(format!(
            "`{}` is not the lackey source tree (no docker/Dockerfile)",
            dir.display()
        ))
        .with_hint("run from the lackey checkout, or build without --from-source")
        .into());
    }
    let mut tar = tar::Builder::new(Vec::new());
    for entry in [
        "Cargo.toml",
        "Cargo.lock",
        "lackey.toml.example",
        "docker/Dockerfile",
    ] {
        let data = std::fs::read(dir.join(entry))?;
        add_file(&mut tar, entry, &data, 0o644)?;
    }
    for sub in ["src", "templates"] {
        for e in walkdir::WalkDir::new(dir.join(sub))
            .into_iter()
            .filter_map(Result::ok)
        {
            if e.file_type().is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)?
                    .to_string_lossy()
                    .replace('\\', "/");
                add_file(&mut tar, &rel, &std::fs::read(e.path())?, 0o644)?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

fn project_context(repo: &Path) -> anyhow::Result<Vec<u8>> {
    let dir = repo.join(".lackey");
    if !dir.join("Dockerfile").is_file() {
        return Err(
            Fail::new(format!("`{}` has no .lackey/Dockerfile", repo.display()))
                .with_hint("write one starting `FROM ${BASE}` (docker/README.md shows an example)")
                .into(),
        );
    }
    let mut tar = tar::Builder::new(Vec::new());
    for e in walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(&dir)?
                .to_string_lossy()
                .replace('\\', "/");
            add_file(&mut tar, &rel, &std::fs::read(e.path())?, 0o644)?;
        }
    }
    Ok(tar.into_inner()?)
}

pub async fn image_exists(docker: &Docker, image: &str) -> anyhow::Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("cannot inspect image `{image}`: {e}")),
    }
}

/// Build `tag` from `source`; returns the image id.
pub async fn build(
    docker: &Docker,
    tag: &str,
    source: &ImageSource,
    reporter: &dyn Reporter,
) -> anyhow::Result<String> {
    let mut labels = HashMap::new();
    labels.insert(
        "lackey.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    let mut args = HashMap::new();
    let (context, dockerfile, what) = match source {
        ImageSource::Binary { base } => {
            if !image_exists(docker, base).await? && base == OFFLINE_BASE {
                return Err(Fail::new(format!("the offline base image `{base}` does not exist"))
                    .with_hint("build it first: sudo scripts/build-offline-base.sh (debootstrap, no registry needed)")
                    .into());
            }
            let (binary, sha) = binary_for_image()?;
            labels.insert("lackey.binary-sha256".into(), sha);
            args.insert("BASE".to_string(), base.clone());
            let mut tar = tar::Builder::new(Vec::new());
            add_file(&mut tar, "Dockerfile", DOCKERFILE_BINARY.as_bytes(), 0o644)?;
            add_file(&mut tar, "lackey", &binary, 0o755)?;
            (
                tar.into_inner()?,
                "Dockerfile",
                format!("from this machine's lackey on `{base}`"),
            )
        }
        ImageSource::Source { dir } => (
            source_context(dir)?,
            "docker/Dockerfile",
            format!("from the source tree `{}`", dir.display()),
        ),
        ImageSource::Project { repo, base } => {
            if !image_exists(docker, base).await? {
                return Err(Fail::new(format!("the base image `{base}` does not exist"))
                    .with_hint("build it first: make build-base (or lackey image build)")
                    .into());
            }
            args.insert("BASE".to_string(), base.clone());
            (
                project_context(repo)?,
                "Dockerfile",
                format!("from `{}/.lackey/Dockerfile`", repo.display()),
            )
        }
    };
    reporter.status("Building", Tone::Good, &format!("image `{tag}` {what}"));
    let spinner = reporter.spinner(&format!("building {tag}"));
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&labels)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut id = None;
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| docker_error(e, &format!("build image `{tag}`")))?;
        if let Some(detail) = info
            .error_detail
            .as_ref()
            .and_then(|d| d.message.clone())
            .or(info.error.clone())
        {
            drop(spinner);
            let hint = if detail.contains("pull access denied")
                || detail.contains("failed to resolve")
                || detail.contains("dial tcp")
                || detail.contains("lookup")
            {
                "the base image cannot be pulled here: use `lackey image build --offline` (docker/README.md)".to_string()
            } else {
                "run with -v to see the build's output".to_string()
            };
            return Err(
                Fail::new(format!("building image `{tag}` failed: {}", detail.trim()))
                    .with_hint(hint)
                    .into(),
            );
        }
        if let Some(line) = &info.stream {
            let line = line.trim_end();
            if !line.is_empty() {
                tracing::info!("build: {line}");
                spinner.set_message(&format!(
                    "building {tag}: {}",
                    line.chars().take(60).collect::<String>()
                ));
                tail.push(line.to_string());
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        }
        if let Some(aux) = &info.aux {
            if let Some(i) = &aux.id {
                id = Some(i.clone());
            }
        }
    }
    drop(spinner);
    let inspected = docker.inspect_image(tag).await.map_err(|e| {
        anyhow::anyhow!(
            "the build of `{tag}` finished but the image is missing: {e}; last output:\n{}",
            tail.join("\n")
        )
    })?;
    let id = inspected.id.or(id).unwrap_or_default();
    reporter.status(
        "Built",
        Tone::Good,
        &format!("image `{tag}` ({})", short_id(&id)),
    );
    Ok(id)
}

pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// An error from the Docker API, rendered with what lackey was doing.
pub fn docker_error(e: bollard::errors::Error, doing: &str) -> anyhow::Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            anyhow::anyhow!("Docker refused to {doing} ({status_code}): {message}")
        }
        other => anyhow::anyhow!("failed to {doing}: {other}"),
    }
}
