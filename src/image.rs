//! Building the minion image through the Docker API (bollard).
//!
//! Three sources (docker/README.md): this source tree (`docker/Dockerfile`, compiled in
//! Docker), this machine's own `lackey` binary on a Debian base (`Dockerfile.binary`:
//! fast, and the offline path when the base is a local debootstrap image), and a
//! project image from a repository's `.lackey/Dockerfile` on top of the base image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;
use sha2::Digest;

use crate::error::Fail;
use crate::output::{Reporter, Tone};

/// The base of the offline build: made by `scripts/build-offline-base.sh`.
pub const OFFLINE_BASE: &str = "lackey/debian-base:bookworm";
pub const ONLINE_BASE: &str = "debian:bookworm-slim";
const DOCKERFILE_BINARY: &str = include_str!("../docker/Dockerfile.binary");
const RUNTIME_SH: &str = include_str!("../docker/runtime.sh");
/// The image docker/Dockerfile compiles lackey in.
const BUILDER: &str = "rust:1-bookworm";

/// The CPU architecture of a Linux image, and of the Fargate task that runs it. Docker
/// and ECS name the same two differently (`amd64`/`X86_64`, `arm64`/`ARM64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuArch {
    X86_64,
    Arm64,
}

impl CpuArch {
    /// The machine lackey runs on.
    pub const HOST: CpuArch = if cfg!(target_arch = "aarch64") {
        CpuArch::Arm64
    } else {
        CpuArch::X86_64
    };

    /// Either spelling, any case: `X86_64`, `amd64`, `ARM64`, `aarch64`.
    pub fn parse(s: &str) -> Option<CpuArch> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" => Some(CpuArch::X86_64),
            "arm64" | "aarch64" => Some(CpuArch::Arm64),
            _ => None,
        }
    }

    /// The name in a task definition's `runtimePlatform.cpuArchitecture`.
    pub fn ecs(self) -> &'static str {
        match self {
            CpuArch::X86_64 => "X86_64",
            CpuArch::Arm64 => "ARM64",
        }
    }

    /// The name in an image's config (`linux/<this>`).
    pub fn docker(self) -> &'static str {
        match self {
            CpuArch::X86_64 => "amd64",
            CpuArch::Arm64 => "arm64",
        }
    }

    /// The architecture an ELF executable is built for; None for anything else (a
    /// macOS or Windows binary, or a machine lackey does not target).
    pub fn of_elf(bytes: &[u8]) -> Option<CpuArch> {
        if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
            return None;
        }
        // e_machine, in the file's byte order (EI_DATA: 1 little, 2 big endian).
        let m = match bytes[5] {
            1 => u16::from_le_bytes([bytes[18], bytes[19]]),
            2 => u16::from_be_bytes([bytes[18], bytes[19]]),
            _ => return None,
        };
        match m {
            0x3e => Some(CpuArch::X86_64),
            0xb7 => Some(CpuArch::Arm64),
            _ => None,
        }
    }
}

impl std::fmt::Display for CpuArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ecs())
    }
}

/// The `os/arch` an image's config declares (`linux/amd64`).
pub async fn image_platform(docker: &Docker, image: &str) -> anyhow::Result<(String, String)> {
    let i = docker.inspect_image(image).await.map_err(|e| {
        Fail::new(format!(
            "image `{image}` not found in the local Docker ({e})"
        ))
        .with_hint("build it with `make build-base` (or `lackey image build`)")
    })?;
    Ok((
        i.os.unwrap_or_default().to_ascii_lowercase(),
        i.architecture.unwrap_or_default().to_ascii_lowercase(),
    ))
}

/// Whether an image declaring `os/arch` runs on a Linux task of `want`; the error says
/// what to do instead.
pub fn check_platform(image: &str, os: &str, arch: &str, want: CpuArch) -> Result<(), Fail> {
    if os == "linux" && CpuArch::parse(arch) == Some(want) {
        return Ok(());
    }
    let other = match want {
        CpuArch::X86_64 => CpuArch::Arm64,
        CpuArch::Arm64 => CpuArch::X86_64,
    };
    let hint = if os == "linux" && CpuArch::parse(arch) == Some(other) {
        format!(
            "rebuild it for linux/{} (`lackey image build` builds for [ecs] cpu_architecture), or run the task on {other}: set [ecs] cpu_architecture = \"{other}\" and run `lackey up`",
            want.docker()
        )
    } else {
        format!(
            "Fargate runs linux/amd64 and linux/arm64 images: rebuild it with `lackey image build` (it builds linux/{})",
            want.docker()
        )
    };
    Err(Fail::new(format!(
        "image `{image}` cannot run on the task definition: it is built for {os}/{arch}, the task runs LINUX/{want}"
    ))
    .with_hint(hint))
}

#[derive(Debug, Clone)]
pub enum ImageSource {
    /// This machine's lackey binary on `base`.
    Binary { base: String },
    /// Compile in Docker from a source tree holding `docker/Dockerfile`, on `base`.
    Source { dir: PathBuf, base: String },
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

/// The running binary, stripped of debug information when `strip` is available. Only
/// a Linux executable for `arch` goes into an image: anything else would die there
/// with `exec format error`.
fn binary_for_image(arch: CpuArch) -> anyhow::Result<(Vec<u8>, String)> {
    let exe = std::env::current_exe()?;
    let head = {
        use std::io::Read;
        let mut h = [0u8; 20];
        let mut f = std::fs::File::open(&exe)?;
        let n = f.read(&mut h)?;
        h[..n].to_vec()
    };
    match CpuArch::of_elf(&head) {
        Some(a) if a == arch => {}
        found => {
            let what = match found {
                Some(a) => format!("a Linux {} executable", a.docker()),
                None => format!("a {} executable", std::env::consts::OS),
            };
            return Err(Fail::new(format!(
                "cannot build a linux/{} image from this machine's lackey: it is {what}",
                arch.docker()
            ))
            .with_hint(format!(
                "compile inside Docker instead: `make build-base` (lackey image build --from-source, from the lackey checkout) builds for linux/{}; or set [ecs] cpu_architecture to this machine's architecture",
                arch.docker()
            ))
            .into());
        }
    }
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
    for entry in ["Cargo.toml", "Cargo.lock", "lackey.toml.example"] {
        let data = std::fs::read(dir.join(entry))?;
        add_file(&mut tar, entry, &data, 0o644)?;
    }
    for sub in ["src", "templates", "docker"] {
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
    // The build context is `.lackey` itself, never what a link there names: a
    // repository whose `.lackey` links to `.` would otherwise send its whole work tree
    // (an untracked `.env`, `.git/config`) to a build whose steps it wrote. Inside it,
    // links are left out (the walk does not follow them).
    let real = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            let t = m.file_type();
            !t.is_symlink() && if dir { t.is_dir() } else { t.is_file() }
        })
    };
    if dir.exists() && !(real(&dir, true) && real(&dir.join("Dockerfile"), false)) {
        return Err(Fail::new(format!(
            "`{}` or its Dockerfile is a symbolic link (or not a plain folder and file)",
            dir.display()
        ))
        .with_hint("a project image is built from the real `.lackey` folder of the repository only: replace the link with the folder")
        .into());
    }
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
            // An executable stays executable (a tool the Dockerfile copies in).
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                if e.metadata()?.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                }
            };
            add_file(&mut tar, &rel, &std::fs::read(e.path())?, mode)?;
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

/// The hint for an image that cannot be pulled: the offline build needs no registry.
const OFFLINE_HINT: &str = "nothing could be pulled from here: build offline with `make build-base-offline` (a Debian base made with debootstrap and this machine's lackey; no registry needed)";

/// Make sure `image` is in the local Docker, pulling it (for `platform`) when missing.
/// A pull that fails says how to build without one.
pub async fn ensure_pulled(
    docker: &Docker,
    image: &str,
    platform: &str,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    if image_exists(docker, image).await? {
        return Ok(());
    }
    let spinner = reporter.spinner(&format!("pulling {image}"));
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .platform(platform)
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(m) = info.error_detail.and_then(|d| d.message) {
                    failure = Some(m);
                    break;
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                failure = Some(message);
                break;
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                failure = Some(error);
                break;
            }
            Err(e) => return Err(docker_error(e, &format!("pull `{image}`"))),
        }
    }
    drop(spinner);
    match failure {
        None => Ok(()),
        Some(m) => {
            tracing::info!("pull {image}: {m}");
            Err(Fail::new(format!("cannot pull `{image}`: {}", m.trim()))
                .with_hint(OFFLINE_HINT)
                .into())
        }
    }
}

/// A base image must be a Linux image for `arch`, or what is built on it cannot run.
async fn check_base(docker: &Docker, base: &str, arch: CpuArch) -> anyhow::Result<()> {
    let (os, have) = image_platform(docker, base).await?;
    if os == "linux" && CpuArch::parse(&have) == Some(arch) {
        return Ok(());
    }
    Err(Fail::new(format!(
        "the base image `{base}` is {os}/{have}, not linux/{}",
        arch.docker()
    ))
    .with_hint(format!(
        "remove it (`docker rmi {base}`) so that the linux/{} one is pulled, or build on a linux/{} machine",
        arch.docker(),
        arch.docker()
    ))
    .into())
}

/// Whether this machine's own lackey can go into a linux image for `arch` (a Linux
/// executable for that architecture); otherwise the image is compiled inside Docker.
pub fn host_binary_fits(arch: CpuArch) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let mut head = [0u8; 20];
    std::fs::File::open(exe)
        .and_then(|mut f| {
            use std::io::Read;
            f.read_exact(&mut head)
        })
        .map(|_| CpuArch::of_elf(&head) == Some(arch))
        .unwrap_or(false)
}

/// Build `tag` from `source` as a Linux image for `arch`; returns the image id.
#[allow(
    clippy::too_many_lines,
    reason = "one build, step by step; to be split into context, build and progress parts"
)]
pub async fn build(
    docker: &Docker,
    tag: &str,
    source: &ImageSource,
    arch: CpuArch,
    reporter: &dyn Reporter,
) -> anyhow::Result<String> {
    let platform = format!("linux/{}", arch.docker());
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
            let (binary, sha) = binary_for_image(arch)?;
            ensure_pulled(docker, base, &platform, reporter).await?;
            check_base(docker, base, arch).await?;
            if cfg!(debug_assertions) {
                reporter.warn("this lackey is a debug build: the image gets a binary several times larger than a release build's (`cargo build --release`, as `make build-base-offline` does)");
            }
            labels.insert("lackey.binary-sha256".into(), sha);
            args.insert("BASE".to_string(), base.clone());
            let mut tar = tar::Builder::new(Vec::new());
            add_file(&mut tar, "Dockerfile", DOCKERFILE_BINARY.as_bytes(), 0o644)?;
            add_file(&mut tar, "runtime.sh", RUNTIME_SH.as_bytes(), 0o755)?;
            add_file(&mut tar, "lackey", &binary, 0o755)?;
            (
                tar.into_inner()?,
                "Dockerfile",
                format!("for {platform} from this machine's lackey on `{base}`"),
            )
        }
        ImageSource::Source { dir, base } => {
            let context = source_context(dir)?;
            // The base first: where nothing can be pulled, that is said before any
            // compile starts.
            ensure_pulled(docker, base, &platform, reporter).await?;
            check_base(docker, base, arch).await?;
            ensure_pulled(docker, BUILDER, &platform, reporter).await?;
            args.insert("BASE".to_string(), base.clone());
            (
                context,
                "docker/Dockerfile",
                format!("for {platform} from the source tree `{}`", dir.display()),
            )
        }
        ImageSource::Project { repo, base } => {
            if !image_exists(docker, base).await? {
                return Err(Fail::new(format!("the base image `{base}` does not exist"))
                    .with_hint("build it first: make build-base (or lackey image build)")
                    .into());
            }
            check_base(docker, base, arch).await?;
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
        .platform(if arch == CpuArch::HOST { "" } else { &platform })
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut id = None;
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                bollard::models::BuildInfo {
                    error: Some(message),
                    ..Default::default()
                }
            }
            Err(e) => return Err(docker_error(e, &format!("build image `{tag}`"))),
        };
        if let Some(detail) = info
            .error_detail
            .as_ref()
            .and_then(|d| d.message.clone())
            .or(info.error.clone())
        {
            drop(spinner);
            let hint = if detail.contains("exec format error") {
                format!("this Docker cannot run {platform} programs: build on a {platform} machine, or give Docker an emulator for it (Docker Desktop has one; on Linux, QEMU registered with binfmt_misc)")
            } else if detail.contains("pull access denied")
                || detail.contains("failed to resolve")
                || detail.contains("dial tcp")
                || detail.contains("lookup")
                || detail.contains("manifest unknown")
                || detail.contains("connection refused")
            {
                OFFLINE_HINT.to_string()
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
    let (os, have) = (
        inspected.os.unwrap_or_default().to_ascii_lowercase(),
        inspected
            .architecture
            .unwrap_or_default()
            .to_ascii_lowercase(),
    );
    if os != "linux" || CpuArch::parse(&have) != Some(arch) {
        return Err(Fail::new(format!(
            "image `{tag}` was built as {os}/{have}, not {platform}"
        ))
        .with_hint(format!(
            "its Dockerfile starts FROM an image of another platform: base it on a {platform} image"
        ))
        .into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_lackey_folder_never_becomes_the_build_context() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("Dockerfile"), "FROM x\nCOPY . /\n").unwrap();
        std::fs::write(repo.path().join(".env"), "SECRET=1\n").unwrap();
        std::os::unix::fs::symlink(".", repo.path().join(".lackey")).unwrap();
        let err = project_context(repo.path()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        // A real folder whose Dockerfile is a link is refused too; a real one is packed,
        // its links left out.
        std::fs::remove_file(repo.path().join(".lackey")).unwrap();
        std::fs::create_dir(repo.path().join(".lackey")).unwrap();
        std::os::unix::fs::symlink("../Dockerfile", repo.path().join(".lackey/Dockerfile"))
            .unwrap();
        assert!(project_context(repo.path()).is_err());
        std::fs::remove_file(repo.path().join(".lackey/Dockerfile")).unwrap();
        std::fs::write(repo.path().join(".lackey/Dockerfile"), "FROM x\n").unwrap();
        std::os::unix::fs::symlink("../.env", repo.path().join(".lackey/env")).unwrap();
        let tar = project_context(repo.path()).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile"]);
    }

    /// The first 20 bytes of an ELF header for `machine`, in either byte order.
    fn elf(machine: u16, big_endian: bool) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = if big_endian { 2 } else { 1 };
        let m = if big_endian {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn an_elf_header_names_its_architecture() {
        assert_eq!(CpuArch::of_elf(&elf(0x3e, false)), Some(CpuArch::X86_64));
        assert_eq!(CpuArch::of_elf(&elf(0xb7, false)), Some(CpuArch::Arm64));
        assert_eq!(CpuArch::of_elf(&elf(0xb7, true)), Some(CpuArch::Arm64));
        // RISC-V, a Mach-O binary (macOS), a truncated file: none of them fits an image.
        assert_eq!(CpuArch::of_elf(&elf(0xf3, false)), None);
        assert_eq!(CpuArch::of_elf(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]), None);
        assert_eq!(CpuArch::of_elf(b"\x7fELF"), None);
        // This very test binary is what `lackey image build` would copy on this host.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(CpuArch::of_elf(&me), Some(CpuArch::HOST));
        } else {
            assert_eq!(CpuArch::of_elf(&me), None);
        }
    }

    #[test]
    fn architectures_parse_in_docker_and_ecs_spelling() {
        for (s, a) in [
            ("X86_64", CpuArch::X86_64),
            ("amd64", CpuArch::X86_64),
            ("ARM64", CpuArch::Arm64),
            ("arm64", CpuArch::Arm64),
            ("aarch64", CpuArch::Arm64),
        ] {
            assert_eq!(CpuArch::parse(s), Some(a), "{s}");
        }
        assert_eq!(CpuArch::parse("386"), None);
        assert_eq!(CpuArch::Arm64.ecs(), "ARM64");
        assert_eq!(CpuArch::X86_64.docker(), "amd64");
        assert_eq!(
            crate::config::keys::HOST_CPU_ARCHITECTURE,
            CpuArch::HOST.ecs()
        );
    }

    #[test]
    fn only_a_linux_image_of_the_task_architecture_passes() {
        assert!(check_platform("i", "linux", "amd64", CpuArch::X86_64).is_ok());
        assert!(check_platform("i", "linux", "arm64", CpuArch::Arm64).is_ok());
        let e = check_platform("i", "linux", "arm64", CpuArch::X86_64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image `i` cannot run on the task definition: it is built for linux/arm64, the task runs LINUX/X86_64"
        );
        assert!(
            e.hint
                .as_deref()
                .unwrap()
                .contains("cpu_architecture = \"ARM64\""),
            "{:?}",
            e.hint
        );
        let e = check_platform("i", "windows", "amd64", CpuArch::X86_64).unwrap_err();
        assert!(e.to_string().contains("windows/amd64"));
        assert!(check_platform("i", "linux", "riscv64", CpuArch::Arm64).is_err());
    }
}
