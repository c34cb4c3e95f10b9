//! Docker for the tests: availability (a failure under CI=true), the test image (built
//! once per test process with `lackey image build --offline`, the product's own
//! offline path), and container look-ups by label.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The test image's tag: `lackey-minion:test`, or `LACKEY_TEST_IMAGE` where several
/// checkouts run their suites on one Docker engine at once (each builds its own binary
/// into the image, so they must not share a tag).
pub fn test_image_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        std::env::var("LACKEY_TEST_IMAGE").unwrap_or_else(|_| "lackey-minion:test".to_string())
    })
}

fn docker_ok() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Docker is reachable (or, outside CI, the test should return early).
pub fn available() -> bool {
    super::require(
        "Docker",
        docker_ok(),
        "start the Docker daemon (or set DOCKER_HOST)",
    )
}

/// The minion image for tests, built once per test process.
pub fn test_image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        // The offline base: the shared one, or the one LACKEY_OFFLINE_BASE names (the
        // build script's own variable), for a tree whose base differs from the shared.
        let base_tag = std::env::var("LACKEY_OFFLINE_BASE")
            .unwrap_or_else(|_| lackey::image::OFFLINE_BASE.to_string());
        let base = Command::new("docker")
            .args(["image", "inspect", &base_tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !base {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-offline-base.sh");
            let out = Command::new("bash")
                .arg(script)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "building the offline base failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let out = Command::new(super::bin())
            .args([
                "image",
                "build",
                "--offline",
                "--base",
                &base_tag,
                "--tag",
                test_image_tag(),
                "-q",
            ])
            .current_dir(std::env::temp_dir())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "lackey image build --offline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    test_image_tag()
}

/// Names of containers (running or not) with a label.
pub fn containers_with_label(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label={label}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `docker inspect` of a container, as text.
pub fn inspect(name: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Remove every lackey run container whose artifact directory is under `dir` (the
/// `lackey.artifacts` label). Quiet and quick when Docker is absent.
pub fn remove_containers_under(dir: &std::path::Path) {
    let Ok(out) = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=lackey.managed=true",
            "--format",
            "{{.Names}}\t{{.Label \"lackey.artifacts\"}}",
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let prefix = dir.display().to_string();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, artifacts)) = line.split_once('\t') else {
            continue;
        };
        if artifacts.starts_with(&prefix) {
            let _ = Command::new("docker")
                .args(["rm", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Remove every local image tag in the repository namespace `host/` (a test
/// registry's `127.0.0.1:<port>/`): pushing to a registry tags the image first.
pub fn remove_tags_of(host: &str) {
    let Ok(out) = Command::new("docker")
        .args([
            "images",
            "--digests",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}",
            "--filter",
            &format!("reference={host}/*"),
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let prefix = format!("{host}/");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((tag, by_digest)) = line.split_once(' ') else {
            continue;
        };
        if tag.starts_with(&prefix) {
            // An image pulled by digest shows as `<none>`: remove that reference.
            let what = if tag.ends_with(":<none>") {
                by_digest
            } else {
                tag
            };
            let _ = Command::new("docker")
                .args(["rmi", what])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
