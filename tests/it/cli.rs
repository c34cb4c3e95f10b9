//! The command-line surface, configuration and `init` / `config` (docs/config.md).

use crate::support::{moto::Moto, snapshot_filters, TestEnv};

const COMMANDS: &[&str] = &[
    "init", "policy", "config", "plan", "up", "down", "doctor", "run", "runs", "logs", "stop",
    "secret", "image",
];

#[test]
fn help_lists_every_command_of_the_spec() {
    let t = TestEnv::new();
    let out = t.run(&["--help"]);
    out.assert_success();
    for cmd in COMMANDS {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`lackey --help` does not list `{cmd}`"
        );
    }
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("help", out.stdout));
}

#[test]
fn every_subcommand_help_shows_an_example() {
    let t = TestEnv::new();
    let mut all = String::new();
    let mut helps: Vec<Vec<&str>> = COMMANDS
        .iter()
        .filter(|c| !["secret", "image"].contains(c))
        .map(|c| vec![*c])
        .collect();
    helps.extend([
        vec!["secret", "put"],
        vec!["image", "build"],
        vec!["image", "push"],
    ]);
    for args in helps {
        let mut full = args.clone();
        full.push("--help");
        let out = t.run(&full);
        out.assert_success();
        assert!(
            out.stdout.contains("Example"),
            "`lackey {} --help` shows no example:\n{}",
            args.join(" "),
            out.stdout
        );
        all.push_str(&format!(
            "===== lackey {} --help\n{}\n",
            args.join(" "),
            out.stdout
        ));
    }
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("subcommand_help", all));
}

#[test]
fn unknown_flag_is_bad_input_exit_1() {
    let t = TestEnv::new();
    let out = t.run(&["plan", "--nope"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("unexpected argument '--nope'"),
        "{}",
        out.stderr
    );
}

#[test]
fn misspelt_toml_key_fails_naming_key_and_line() {
    let t = TestEnv::new();
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\n\n[bucket]\nnmae = \"my-bucket\"\n",
    );
    let out = t.run(&["config"]);
    out.assert_code(1);
    assert_eq!(out.stdout, "");
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("misspelt_key", out.stderr));
}

#[test]
fn invalid_bucket_name_fails_naming_the_rule() {
    let t = TestEnv::new();
    t.write("lackey.toml", "[bucket]\nname = \"Lackey_Artifacts\"\n");
    let out = t.run(&["config"]);
    out.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("invalid_bucket", out.stderr));

    // The same rule applies to a value from the environment, and names it.
    let mut t = TestEnv::new();
    t.set("LACKEY_ARTIFACT_BUCKET", "ab");
    let out = t.run(&["config"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(
            "(from LACKEY_ARTIFACT_BUCKET): bucket names must be 3 to 63 characters long"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn invalid_fargate_size_and_role_name_fail_before_any_aws_call() {
    let t = TestEnv::new();
    t.write("lackey.toml", "[ecs]\ncpu = 512\nmemory = 512\n");
    let out = t.run(&["config"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(
            "Fargate memory for cpu 512 must be 1024 to 4096 in steps of 1024 MiB (got 512)"
        ),
        "{}",
        out.stderr
    );
    t.write("lackey.toml", "[iam]\ntask_role = \"bad role\"\n");
    let out = t.run(&["config"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("IAM role names may contain only"),
        "{}",
        out.stderr
    );
}

fn profile_of(t: &TestEnv, args: &[&str]) -> (String, String) {
    let mut full = vec!["config", "--json"];
    full.extend_from_slice(args);
    let out = t.run(&full);
    out.assert_success();
    let v = out.json();
    let p = &v["settings"]["aws.profile"];
    (
        p["value"].as_str().unwrap().to_string(),
        p["source"].as_str().unwrap().to_string(),
    )
}

#[test]
fn precedence_is_flag_env_dotenv_toml_default() {
    let mut t = TestEnv::new();
    assert_eq!(profile_of(&t, &[]), ("default".into(), "default".into()));
    t.write("lackey.toml", "[aws]\nprofile = \"from-toml\"\n");
    assert_eq!(profile_of(&t, &[]), ("from-toml".into(), "toml".into()));
    t.write(".env", "AWS_PROFILE=from-dotenv\n");
    assert_eq!(profile_of(&t, &[]), ("from-dotenv".into(), ".env".into()));
    t.set("AWS_PROFILE", "from-env");
    assert_eq!(profile_of(&t, &[]), ("from-env".into(), "env".into()));
    assert_eq!(
        profile_of(&t, &["--profile", "from-flag"]),
        ("from-flag".into(), "flag".into())
    );
}

#[test]
fn guide_env_variables_are_read_and_secrets_masked() {
    let mut t = TestEnv::new();
    t.write(
        ".env",
        "ANTHROPIC_API_KEY=sk-ant-canary-0123456789\nLACKEY_REPO=.\nLACKEY_IMAGE=minion-base:latest\n\
         AWS_REGION=eu-west-1\nLACKEY_ECR_REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com\n\
         LACKEY_ECS_CLUSTER=lackey\nLACKEY_ECS_TASK_DEF=lackey-minion\nLACKEY_ECS_SUBNETS=subnet-0aaa,subnet-0bbb\n\
         LACKEY_ECS_SG=sg-0123\nLACKEY_ARTIFACT_BUCKET=my-artifacts\nLACKEY_GITHUB_APP_ID=12345\n\
         LACKEY_GITHUB_APP_PRIVATE_KEY_SECRET=lackey/github-app-key\nLACKEY_GITHUB_INSTALLATION_ID=67890\n\
         LACKEY_ANTHROPIC_SECRET=lackey/anthropic-api-key\nLACKEY_STUBS=1\n",
    );
    t.set("LACKEY_ECS_CLUSTER", "from-env");
    // The harness points run folders into the test's own directory; here the default shows.
    t.unset("LACKEY_ARTIFACTS_DIR");
    let out = t.run(&["config", "--json"]);
    out.assert_success();
    assert!(
        !out.stdout.contains("canary"),
        "the API key leaked:\n{}",
        out.stdout
    );
    let v = out.json();
    let s = &v["settings"];
    let get = |k: &str| s[k]["value"].as_str().unwrap_or("").to_string();
    assert_eq!(
        get("ecr.registry"),
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(get("ecs.cluster"), "from-env");
    assert_eq!(s["ecs.cluster"]["source"], "env");
    assert_eq!(get("network.subnets"), "subnet-0aaa,subnet-0bbb");
    assert_eq!(get("network.security_group_id"), "sg-0123");
    assert_eq!(get("bucket.name"), "my-artifacts");
    assert_eq!(get("run.stubs"), "1");
    assert_eq!(get("github.installation_id"), "67890");
    assert_eq!(s["anthropic.api_key"]["source"], ".env");
    assert_eq!(get("anthropic.api_key"), "******** (24 chars)");

    let out = t.run(&["config"]);
    out.assert_success();
    assert!(!out.stdout.contains("canary"));
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("config_human", out.stdout));
}

#[test]
fn explicit_missing_files_are_errors() {
    let t = TestEnv::new();
    let out = t.run(&["config", "--config", "nope.toml"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr,
        "error: config file `nope.toml` does not exist\nhint: run `lackey init` to write one, or fix --config / LACKEY_CONFIG\n"
    );
    let out = t.run(&["config", "--env-file", "nope.env"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .starts_with("error: env file `nope.env` does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn init_against_moto_writes_a_file_config_reads_back() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    t.unset("AWS_REGION");
    let out = t.run(&["init", "--region", "eu-central-1"]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "Wrote lackey.toml (account 123456789012, region eu-central-1)\n"
    );
    let written = t.read("lackey.toml");
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("init_lackey_toml", written));

    let out = t.run(&["config", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["settings"]["aws.account_id"]["value"], "123456789012");
    assert_eq!(v["settings"]["aws.account_id"]["source"], "toml");
    assert_eq!(v["settings"]["aws.region"]["value"], "eu-central-1");
    assert_eq!(
        v["settings"]["bucket.name"]["value"],
        "lackey-artifacts-123456789012"
    );
    assert_eq!(
        v["settings"]["ecr.registry"]["value"],
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com"
    );

    // A second init refuses to overwrite; --force does.
    let out = t.run(&["init"]);
    out.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("init_refuses_overwrite", out.stderr));
    t.write("lackey.toml", "# edited\n");
    t.run(&["init", "--force", "--json"]).assert_success();
    assert!(t
        .read("lackey.toml")
        .contains("account_id = \"123456789012\""));
}

#[test]
fn config_discover_fills_account_subnets_and_region_from_moto() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    let out = t.run(&["config", "--json", "--discover"]);
    out.assert_success();
    let v = out.json();
    let s = &v["settings"];
    assert_eq!(s["aws.account_id"]["value"], "123456789012");
    assert_eq!(s["aws.account_id"]["source"], "discovered");
    let subnets = s["network.subnets"]["value"].as_str().unwrap();
    assert!(subnets.split(',').count() >= 3, "{subnets}");
    assert_eq!(s["network.subnets"]["source"], "discovered");
}

#[test]
fn init_works_before_credentials_exist() {
    // AWS unreachable (or no credentials): the file is written without the account id,
    // and init says why.
    let t = TestEnv::new();
    let out = t.run(&[
        "init",
        "--region",
        "us-east-1",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "Wrote lackey.toml (region us-east-1, no account id)\n"
    );
    assert!(
        out.stderr.starts_with(
            "warning: the account id is not in the file: failed to read the caller identity from STS: could not reach AWS"
        ),
        "{}",
        out.stderr
    );
    let written = t.read("lackey.toml");
    assert!(written.contains("region = \"us-east-1\""), "{written}");
    assert!(
        written.contains("# account_id = \"<account id>\""),
        "{written}"
    );
    let out = t.run(&["config", "--json"]);
    out.assert_success();
    assert_eq!(out.json()["settings"]["aws.region"]["source"], "toml");
}

#[test]
fn missing_region_hint_points_at_the_region_flag() {
    let mut t = TestEnv::new();
    t.write("../home/.aws/config", "[default]\n");
    t.unset("AWS_REGION");
    let out = t.run(&["plan"]);
    out.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("missing_region", out.stderr));
    let out = t.run(&["init"]);
    out.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("missing_region", out.stderr));
}

#[test]
fn init_stack_writes_the_names_derived_from_the_stack() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    let out = t.run(&["init", "--stack", "stackb"]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "Wrote lackey.toml (stack `stackb`, account 123456789012, region us-east-1)\n"
    );
    let out = t.run(&["config", "--json"]);
    out.assert_success();
    let v = out.json();
    for (key, want) in [
        ("stack.name", "stackb"),
        ("bucket.name", "stackb-artifacts-123456789012"),
        ("ecr.repository", "stackb-minion"),
        ("ecs.cluster", "stackb"),
        ("ecs.task_family", "stackb-minion"),
        ("logs.group", "/ecs/stackb-minion"),
        ("iam.execution_role", "stackb-ecs-execution"),
        ("iam.task_role", "stackb-ecs-task"),
        ("network.security_group", "stackb-ecs-tasks"),
        ("secrets.github_app_key", "stackb/github-app-key"),
        ("secrets.anthropic_api_key", "stackb/anthropic-api-key"),
    ] {
        assert_eq!(v["settings"][key]["value"], want, "{key}");
        assert_eq!(v["settings"][key]["source"], "toml", "{key}");
    }
    // A stack name whose derived names break AWS's rules: refused, naming the key.
    let out = t.run(&["init", "--force", "--stack", "Team_B"]);
    out.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("init_stack_invalid_name", out.stderr));
}

/// The stderr of several invocations, one block each, for one snapshot.
fn transcript(t: &TestEnv, cases: &[(&str, &[&str])]) -> String {
    let mut all = String::new();
    for (title, args) in cases {
        let out = t.run(args);
        out.assert_code(1);
        assert_eq!(out.stdout, "", "{title}: nothing on stdout");
        all.push_str(&format!("===== {title}\n{}", out.stderr));
    }
    all
}

#[test]
fn a_malformed_lackey_toml_fails_whatever_overrides_it() {
    let mut t = TestEnv::new();
    t.set("AWS_REGION", "us-east-1")
        .set("LACKEY_STACK", "stacka")
        .set("LACKEY_ECS_CPU", "1024");
    let mut all = String::new();
    for text in [
        "[aws]\nregion = 5\n",
        "[stack]\nname = [\"a\", \"b\"]\n",
        "[ecs]\ncpu = \"lots\"\n",
        "[aws]\nregion = \"mars\"\n",
    ] {
        t.write("lackey.toml", text);
        all.push_str(&transcript(&t, &[(text.trim(), &["config"])]));
    }
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("toml_types_under_overrides", all));
}

#[test]
fn numbers_out_of_range_name_the_key_and_the_range() {
    let t = TestEnv::new();
    let mut all = transcript(
        &t,
        &[(
            "run --timeout 18446744073709551615",
            &["run", "x", "--stubs", "--timeout", "18446744073709551615"],
        )],
    );
    for text in [
        "[local]\nmemory_mb = 9223372036854775807\n",
        "[local]\npids_limit = 0\n",
        "[local]\ncpus = 1e308\n",
        "[aws]\nmax_attempts = 4294967297\n",
        "[github]\napp_id = -1\n",
        "[ecs]\ncpu = 333\n",
        "[ecs]\nmemory = 99999999999\n",
    ] {
        t.write("lackey.toml", text);
        all.push_str(&transcript(&t, &[(text.trim(), &["config"])]));
    }
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("numbers_out_of_range", all));
}

#[test]
fn env_file_and_subnet_list_mistakes_are_named() {
    let mut t = TestEnv::new();
    std::fs::create_dir_all(t.work().join(".env")).unwrap();
    let mut all = transcript(&t, &[(".env is a directory", &["config"])]);
    std::fs::remove_dir(t.work().join(".env")).unwrap();
    t.write(
        ".env",
        "# settings\nAWS_REGION=us-east-1\n\nLACKEY_STACK stacka\n",
    );
    all.push_str(&transcript(&t, &[(".env line 4", &["config"])]));
    std::fs::remove_file(t.work().join(".env")).unwrap();
    t.set("LACKEY_ECS_SUBNETS", "subnet-0a1b,,subnet-2c3d");
    all.push_str(&transcript(&t, &[("two commas", &["config"])]));
    t.unset("LACKEY_ECS_SUBNETS");
    // A 10 MB value is clipped: the message stays one short line.
    let huge = "x".repeat(10 * 1024 * 1024);
    t.write("lackey.toml", &format!("[stack]\nname = \"{huge}\"\n"));
    let out = t.run(&["config"]);
    out.assert_code(1);
    assert!(
        out.stderr.len() < 400,
        "{} bytes of stderr",
        out.stderr.len()
    );
    all.push_str(&format!("===== 10 MB stack name\n{}", out.stderr));
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("env_file_and_lists", all));
}

#[test]
fn a_repo_path_that_is_a_file() {
    let t = TestEnv::new();
    t.write("notes.txt", "not a repository\n");
    let all = transcript(
        &t,
        &[(
            "--repo notes.txt",
            &["run", "x", "--stubs", "--repo", "notes.txt"],
        )],
    );
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("repo_is_a_file", all));
}

#[test]
fn stop_and_runs_say_when_docker_is_unreachable() {
    let mut t = TestEnv::new();
    t.set("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let artifacts = std::path::PathBuf::from(&t.env["LACKEY_ARTIFACTS_DIR"]);
    // One local run that was going when Docker went away.
    std::fs::create_dir_all(artifacts.join("20260101-120000-0a0a")).unwrap();
    let stop = t.run(&["stop", "20260101-120000-0a0a"]);
    stop.assert_code(1);
    // A run this machine knows nothing of: Docker is still named, not "no running run".
    let unknown = t.run(&["stop", "20260101-120000-0b0b"]);
    unknown.assert_code(1);
    let runs = t.run(&["runs"]);
    runs.assert_code(1);
    assert!(
        runs.stdout.contains("20260101-120000-0a0a"),
        "runs lists what it can:\n{}",
        runs.stdout
    );
    let all = format!(
        "===== stop (a local run)\n{}===== stop (unknown run)\n{}===== runs: stdout\n{}===== runs: stderr\n{}",
        stop.stderr, unknown.stderr, runs.stdout, runs.stderr
    );
    snapshot_filters(&[(r"lackey-test-[A-Za-z0-9]+", "[TMP]")])
        .bind(|| insta::assert_snapshot!("docker_unreachable", all));
}

/// A pseudo-terminal whose slave end becomes the child's stdin and controlling
/// terminal, so Ctrl-C typed on the master reaches it as SIGINT.
struct Pty {
    master: std::fs::File,
    slave: std::os::fd::OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (0, 0);
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        unsafe {
            Pty {
                master: std::fs::File::from_raw_fd(master),
                slave: std::os::fd::OwnedFd::from_raw_fd(slave),
            }
        }
    }

    fn echo_on(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut term) },
            0
        );
        term.c_lflag & libc::ECHO != 0
    }

    /// Start `cmd` in its own session with this terminal as stdin.
    fn spawn(&self, cmd: &mut std::process::Command) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        cmd.stdin(self.slave.try_clone().unwrap())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn lackey on a pty")
    }

    fn type_in(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.master.write_all(bytes).unwrap();
    }

    /// Wait until the child has turned echo off (its prompt is open).
    fn wait_for_hidden_prompt(&self) {
        let start = std::time::Instant::now();
        while self.echo_on() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the prompt never turned echo off"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn secret_env() -> TestEnv {
    let mut t = TestEnv::new();
    // Enough to reach the prompt without any AWS call; the endpoint refuses connections.
    t.set("AWS_REGION", "us-east-1")
        .set("LACKEY_AWS_ACCOUNT_ID", "123456789012")
        .set("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .set("AWS_MAX_ATTEMPTS", "1");
    t
}

#[test]
fn the_secret_prompt_stops_at_the_first_ctrl_c_and_restores_echo() {
    let t = secret_env();
    let mut pty = Pty::open();
    assert!(pty.echo_on());
    let child = pty.spawn(&mut t.command(&["secret", "put", "anthropic_api_key"]));
    pty.wait_for_hidden_prompt();
    pty.type_in(b"sk-ant-half-typed\x03");
    let out = crate::support::wait_with_timeout(child, std::time::Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pty.echo_on(), "the terminal was left with echo off");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("half-typed"), "{stderr}");
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("secret_prompt_ctrl_c", stderr));
}

#[test]
fn the_secret_prompt_restores_echo_on_every_way_out() {
    // Two Ctrl-C at once: the forced exit restores the terminal too.
    let t = secret_env();
    let mut pty = Pty::open();
    let child = pty.spawn(&mut t.command(&["secret", "put", "anthropic_api_key"]));
    pty.wait_for_hidden_prompt();
    pty.type_in(b"\x03\x03");
    let out = crate::support::wait_with_timeout(child, std::time::Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130));
    assert!(pty.echo_on(), "a second Ctrl-C left echo off");

    // A value entered, then an AWS error: exit 1 with echo back on, the value unseen.
    let mut pty = Pty::open();
    let child = pty.spawn(&mut t.command(&["secret", "put", "anthropic_api_key"]));
    pty.wait_for_hidden_prompt();
    pty.type_in(b"sk-ant-canary-typed\n");
    let out = crate::support::wait_with_timeout(child, std::time::Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A failure (the exit code AWS errors get is not this test's subject).
    assert!(matches!(out.status.code(), Some(1 | 2)), "{stderr}");
    assert!(stderr.contains("could not reach AWS"), "{stderr}");
    assert!(pty.echo_on(), "an error left echo off");
    assert!(!stderr.contains("canary"), "{stderr}");

    // End of input (Ctrl-D) on an empty line: the empty value is refused, echo is on.
    let mut pty = Pty::open();
    let child = pty.spawn(&mut t.command(&["secret", "put", "anthropic_api_key"]));
    pty.wait_for_hidden_prompt();
    pty.type_in(b"\x04");
    let out = crate::support::wait_with_timeout(child, std::time::Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the secret value is empty"), "{stderr}");
    assert!(pty.echo_on());
}

/// `.env` and `lackey.toml` are read from the working directory, usually the repository
/// itself. One the repository carries (committed) may not say where credentials go,
/// what reaches the container, or which AWS and Docker endpoints and credentials the
/// CLI uses: a cloned repository would otherwise send the user's key to its own host.
/// The same files of the user's own (untracked), or named with --env-file / --config,
/// still work.
#[test]
fn a_repositorys_own_env_and_config_may_not_redirect_credentials() {
    let t = TestEnv::new();
    crate::support::repo::init(
        &t.work(),
        &[
            (
                ".env",
                "ANTHROPIC_BASE_URL=http://collector.invalid\nAWS_CA_BUNDLE=.lackey/ca.pem\n",
            ),
            (
                "lackey.toml",
                "[run]\nnetwork = \"open\"\nmodel = \"claude-haiku-4-5\"\n",
            ),
        ],
    );
    let out = t.run(&["config", "--json"]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with(
            "error: `.env` is committed to the repository and sets ANTHROPIC_BASE_URL, AWS_CA_BUNDLE:"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    // The same values from a file the user names are the user's.
    let named = t.run(&[
        "config",
        "--json",
        "--env-file",
        ".env",
        "--config",
        "lackey.toml",
    ]);
    named.assert_success();
    // Untracked, the files are the user's too; the committed config is next.
    crate::support::repo::git(&t.work(), &["rm", "-q", "--cached", ".env"]);
    let out = t.run(&["config", "--json"]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with(
            "error: `lackey.toml` is committed to the repository and sets run.network:"
        ),
        "{}",
        out.stderr
    );
    // A committed config that only sets the repository's own choices is read.
    t.write("lackey.toml", "[run]\nmodel = \"claude-haiku-4-5\"\n");
    let out = t.run(&["config", "--json"]);
    out.assert_success();
    assert!(out.stdout.contains("claude-haiku-4-5"), "{}", out.stdout);
}
