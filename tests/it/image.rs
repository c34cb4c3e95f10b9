//! The minion image: what it offers project images, the architecture it is built for,
//! and what a build says where nothing can be pulled.

use std::process::Command;

use crate::support::docker;
use crate::support::{repo, snapshot_filters, TestEnv};

fn docker_cmd(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().expect("docker");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Removes a test image when the test ends, however it ends.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = docker_cmd(&["rmi", "-f", &self.0]);
    }
}

/// Builds a pure-Python wheel with a console script, inside the image (nothing is
/// downloaded): `greet` prints a line.
const MAKE_WHEEL: &str = r#"import base64, hashlib, os, sys, zipfile
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
files = {
    "greet/__init__.py": "def main():\n    print('greet: hello from a local wheel')\n",
    "greet-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: greet\nVersion: 0.1\n",
    "greet-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: lackey-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "greet-0.1.dist-info/entry_points.txt": "[console_scripts]\ngreet = greet:main\n",
}
record = []
with zipfile.ZipFile(os.path.join(out, "greet-0.1-py3-none-any.whl"), "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("greet-0.1.dist-info/RECORD,,")
    z.writestr("greet-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;

/// A `.lackey/Dockerfile` of the original lackey's shape (`FROM` the base, `USER root`,
/// install tools, `USER lackey`) builds on minion-base, with pip installing as root, and
/// a stub run works in the result, as the user `lackey`, with the tools on its PATH.
#[test]
fn a_project_image_of_the_original_shape_builds_and_runs() {
    if !docker::available() {
        return;
    }
    let base = docker::test_image();
    let mut t = TestEnv::new();
    t.set("LACKEY_IMAGE", base);
    let project = repo::hello_project(&t.work().join("project"));
    // The original names `minion-base:latest`; the test names its own base image (other
    // checkouts share this Docker engine), in the same place.
    t.write(
        "project/.lackey/Dockerfile",
        &format!(
            "FROM {base}\n\
             USER root\n\
             COPY hello-tool /usr/local/bin/hello-tool\n\
             COPY make_wheel.py /tmp/make_wheel.py\n\
             RUN python3 /tmp/make_wheel.py /tmp/dist && pip install --no-index /tmp/dist/greet-0.1-py3-none-any.whl && rm -rf /tmp/dist /tmp/make_wheel.py\n\
             USER lackey\n"
        ),
    );
    t.write("project/.lackey/make_wheel.py", MAKE_WHEEL);
    let tool = t.write(
        "project/.lackey/hello-tool",
        "#!/bin/sh\necho \"hello-tool as $(id -un)\"\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    repo::git(&project, &["add", "-A"]);
    repo::git(&project, &["commit", "-qm", "project image"]);
    let tag = format!("lackey-minion-app:test-{}", std::process::id());
    let _guard = ImageGuard(tag.clone());
    let out = t.run(&[
        "image",
        "build",
        "--project",
        "--repo",
        "project",
        "--tag",
        &tag,
    ]);
    out.assert_success();
    // The base offers the tools; the project image added its own; the user is `lackey`.
    let (ok, text) = docker_cmd(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &tag,
        "-c",
        "id -un; id -u; greet; hello-tool; git --version; curl --version | head -1; jq --version; rg --version | head -1; python3 --version",
    ]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "lackey",
            "1000",
            "greet: hello from a local wheel",
            "hello-tool as lackey"
        ],
        "{text}"
    );
    for (i, tool) in ["git version", "curl ", "jq-", "ripgrep ", "Python 3"]
        .iter()
        .enumerate()
    {
        assert!(lines[4 + i].starts_with(tool), "{tool}: {text}");
    }
    // A stub run in the project image: the runner's user (the invoking uid, 1000 under
    // root) runs the test command with the project's tools.
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_TEST", "greet && hello-tool");
    let out = t.run(&[
        "run", "stub", "--repo", "project", "--stubs", "--image", &tag, "--json",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["outcome"], "success", "{v}");
    let id = v["run_id"].as_str().unwrap();
    let log = std::fs::read_to_string(artifacts.join(id).join("commands.log")).unwrap();
    assert!(log.contains("greet: hello from a local wheel"), "{log}");
    // The container runs as the invoking uid (1000 when lackey runs as root), which the
    // image names `lackey`.
    let me = unsafe { libc::getuid() };
    if me == 0 || me == 1000 {
        assert!(log.contains("hello-tool as lackey"), "{log}");
    }
}

/// minion-base leaves out Perl and git's server-side programs, and stays a consistent
/// Debian: git clones (the HTTPS helper links), commits, bundles; apt sees no broken
/// dependency; the dpkg filters that keep later installs slim are in place.
#[test]
fn the_base_has_git_without_perl_and_a_consistent_package_database() {
    if !docker::available() {
        return;
    }
    let image = docker::test_image();
    let (ok, text) = docker_cmd(&[
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "set -e; cd /tmp; \
         git init -q src; git -C src -c user.name=t -c user.email=t@t commit -q --allow-empty -m first; \
         git clone -q file:///tmp/src dst; git -C dst log --format=%s; \
         git -C src bundle create /tmp/b.bundle HEAD 2>/dev/null; echo bundled; \
         echo \"https helper: $(ldd /usr/lib/git-core/git-remote-https | grep -c 'not found') missing libraries\"; \
         if dpkg-query -W -f '${Status}' perl 2>/dev/null | grep -q 'install ok installed'; then echo 'perl: installed'; else echo 'perl: absent'; fi; \
         apt-get check >/dev/null 2>&1 && echo 'apt: consistent'; \
         test -x \"$(git --exec-path)/git-upload-pack\" && test ! -e \"$(git --exec-path)/git-daemon\" && echo 'git daemon: absent'; \
         test ! -e /usr/bin/scalar && echo 'scalar: absent'; \
         grep -c '^path-exclude' /etc/dpkg/dpkg.cfg.d/lackey-slim",
    ]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "first",
            "bundled",
            "https helper: 0 missing libraries",
            "perl: absent",
            "apt: consistent",
            "git daemon: absent",
            "scalar: absent",
        ],
        "{text}"
    );
    assert!(lines[7].parse::<u32>().unwrap() > 10, "{text}");
}

/// Where nothing can be pulled, `make build-base` (`lackey image build --from-source`)
/// says to build offline, before any compile starts.
#[test]
fn a_base_that_cannot_be_pulled_points_to_the_offline_build() {
    if !docker::available() {
        return;
    }
    let t = TestEnv::new();
    // A registry that refuses every connection: the same answer anywhere, online or not.
    let out = t
        .command(&[
            "image",
            "build",
            "--from-source",
            "--base",
            "127.0.0.1:9/debian:bookworm-slim",
            "--tag",
            "lackey-never-built:test",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    snapshot_filters(&[(r"(cannot pull `[^`]+`): .*", "$1: [DOCKER'S REASON]")])
        .bind(|| insta::assert_snapshot!("build_base_cannot_pull", stderr));
    assert!(!docker_cmd(&["image", "inspect", "lackey-never-built:test"]).0);
}

/// `lackey image build` never copies a binary of another architecture into an image: it
/// says so, and how to build for that architecture instead.
#[test]
fn an_image_for_another_architecture_is_not_built_from_this_binary() {
    if !docker::available() {
        return;
    }
    let other = if cfg!(target_arch = "aarch64") {
        ("X86_64", "amd64")
    } else {
        ("ARM64", "arm64")
    };
    let mut t = TestEnv::new();
    t.set("LACKEY_ECS_CPU_ARCHITECTURE", other.0);
    let out = t.run(&["image", "build", "--tag", "lackey-never-built:test"]);
    out.assert_code(1);
    let first = out.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "error: cannot build a linux/{} image from this machine's lackey: it is a Linux {} executable",
            other.1,
            if other.1 == "arm64" { "amd64" } else { "arm64" }
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: compile inside Docker instead: `make build-base`"),
        "{}",
        out.stderr
    );
    assert!(!docker_cmd(&["image", "inspect", "lackey-never-built:test"]).0);
}
