//! Benchmarks: ignored by the test run, run with the README's `make bench-*` commands.
//! They print figures; they assert only that the measurement itself happened.

use serde_json::json;

use crate::support::fake_llm::{self, FakeLlm};
use crate::support::{repo, TestEnv};

/// Issue 4: for a scripted 20-turn run, the LLM calls, the bytes sent, and the share of
/// each request's bytes that repeat the previous request's prefix (what the API can
/// serve from its prompt cache). Target: ≥ 95 %.
#[test]
#[ignore = "benchmark: make bench-minion"]
fn bench_minion_prompt_prefix() {
    let mut files: Vec<(String, String)> = (0..8)
        .map(|i| {
            let body: String = (0..60)
                .map(|l| {
                    format!(
                        "# module {i}, line {l}: some realistic shell code here\necho step{l}\n"
                    )
                })
                .collect();
            (format!("lib/part{i}.sh"), body)
        })
        .collect();
    files.push(("hello.sh".into(), "#!/bin/sh\necho \"hello\"\n".into()));
    files.push((
        "test.sh".into(),
        "#!/bin/sh\n[ \"$(sh hello.sh)\" = \"hello, world\" ] && echo ok\n".into(),
    ));
    let t = TestEnv::new();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let src = repo::init(&t.path().join("src"), &refs);
    let mut script = vec![fake_llm::tool_use(
        "submit_scope",
        json!({"summary": "s", "allowed_dirs": ["lib"], "allowed_files": ["hello.sh"], "test_files": ["test.sh"], "rationale": "r"}),
    )];
    // The executor: 20 turns of realistic exploration, edits and checks.
    script.push(fake_llm::tool_use("view", json!({"path": "."})));
    for i in 0..8 {
        script.push(fake_llm::tool_use(
            "view",
            json!({"path": format!("lib/part{i}.sh")}),
        ));
    }
    script.push(fake_llm::tool_use(
        "grep",
        json!({"pattern": "step1[0-9]", "path": "lib"}),
    ));
    script.push(fake_llm::tool_use("view", json!({"path": "hello.sh"})));
    script.push(fake_llm::tool_use(
        "bash",
        json!({"command": "sh test.sh || echo failing"}),
    ));
    script.push(fake_llm::edit_hello_sh());
    for i in 0..5 {
        script.push(fake_llm::tool_use("str_replace", json!({"path": format!("lib/part{i}.sh"), "old_str": "line 3:", "new_str": "line three:"})));
    }
    script.push(fake_llm::tool_use("bash", json!({"command": "sh test.sh"})));
    script.push(fake_llm::tool_use("finish", json!({"summary": "done"})));
    let executor_turns = script.len() - 1;
    let llm = FakeLlm::start("sk-bench", script);
    let mut t = t;
    let out = t.path().join("out");
    let work = t.path().join("w");
    t.set("LACKEY_RUN_ID", "20261124-000000-beef")
        .set(
            "LACKEY_TASK",
            "make hello.sh print hello, world and tidy lib/",
        )
        .set("LACKEY_REPO_PATH", src.display().to_string())
        .set("LACKEY_WORK_DIR", work.display().to_string())
        .set("LACKEY_OUTPUT_DIR", out.display().to_string())
        .set("ANTHROPIC_API_KEY", "sk-bench")
        .set("ANTHROPIC_BASE_URL", llm.url());
    let o = t.run(&["minion"]);
    o.assert_success();
    llm.assert_clean();
    let received = llm.received();
    let executor: Vec<&Vec<u8>> = received[1..].iter().map(|r| &r.raw).collect();
    assert_eq!(executor.len(), executor_turns);
    let mut repeated = 0usize;
    let mut total = 0usize;
    let mut min_share = 1.0f64;
    let mut new_content = 0usize;
    let bodies: Vec<&serde_json::Value> = received[1..].iter().map(|r| &r.body).collect();
    for (i, w) in executor.windows(2).enumerate() {
        let common = w[0]
            .iter()
            .zip(w[1].iter())
            .take_while(|(a, b)| a == b)
            .count();
        repeated += common;
        total += w[1].len();
        // The bytes of the messages this request added (the assistant turn and the tool
        // results): they cannot repeat anything, whatever the client does.
        let prev_n = bodies[i]["messages"].as_array().unwrap().len();
        let added: usize = bodies[i + 1]["messages"].as_array().unwrap()[prev_n..]
            .iter()
            .map(|m| serde_json::to_vec(m).unwrap().len())
            .sum();
        new_content += added;
        min_share = min_share.min(common as f64 / w[1].len() as f64);
        if std::env::var("BENCH_DETAIL").is_ok() {
            println!(
                "  request {} bytes, {} repeated ({:.1}%)",
                w[1].len(),
                common,
                100.0 * common as f64 / w[1].len() as f64
            );
        }
    }
    let sent: usize = received.iter().map(|r| r.raw.len()).sum();
    println!(
        "bench-minion: scripted run, {} LLM calls ({} executor turns)",
        received.len(),
        executor_turns
    );
    println!("bench-minion: input bytes sent: {sent}");
    println!(
        "bench-minion: bytes repeating the previous request's prefix: {:.1}% overall (lowest single request {:.1}%), target >= 95%",
        100.0 * repeated as f64 / total as f64,
        100.0 * min_share
    );
    let overhead = total - repeated - new_content.min(total - repeated);
    println!(
        "bench-minion: of the {} bytes that did not repeat, {} were the turns' new messages; the client's own loss (the moved cache breakpoint) was {} bytes, {:.1} per request",
        total - repeated,
        new_content,
        overhead,
        overhead as f64 / (executor.len() - 1) as f64
    );
    println!(
        "bench-minion: repeated share of what could repeat (everything but new messages): {:.2}%",
        100.0 * repeated as f64 / (total - new_content) as f64
    );
    let log = std::fs::read_to_string(out.join("minion.log")).unwrap();
    if let Some(line) = log.lines().find(|l| l.contains("cacheable prefix")) {
        println!(
            "bench-minion: the minion's own count: {}",
            line.split("] ").nth(1).unwrap_or(line)
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time_it(mut f: impl FnMut()) -> f64 {
    let t = std::time::Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Issue 5: the wall time of a stub run against `docker run --rm` of the same image
/// doing nothing, for a small repository and a 5,000-file one. Target: lackey's
/// overhead over the bare container ≤ 1 s on the small repository.
#[test]
#[ignore = "benchmark: make bench-local"]
fn bench_local_stub_run_overhead() {
    use crate::support::docker;
    assert!(docker::available(), "the benchmark needs Docker");
    let image = docker::test_image();
    let mut t = TestEnv::new();
    t.set(
        "LACKEY_ARTIFACTS_DIR",
        t.path().join("artifacts").display().to_string(),
    );
    let small = repo::hello_project(&t.work().join("small"));
    let big_files: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("src/d{}/f{i}.txt", i % 50), format!("file {i}\n")))
        .collect();
    let refs: Vec<(&str, &str)> = big_files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let big = repo::init(&t.work().join("big"), &refs);
    const N: usize = 5;
    let bare = median(
        (0..N)
            .map(|_| {
                time_it(|| {
                    let s = std::process::Command::new("docker")
                        .args(["run", "--rm", "--entrypoint", "/bin/true", image])
                        .status()
                        .unwrap();
                    assert!(s.success());
                })
            })
            .collect(),
    );
    println!(
        "bench-local: `docker run --rm --entrypoint /bin/true {image}`: median {bare:.3}s over {N}"
    );
    let artifacts = t.path().join("artifacts");
    let run_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&artifacts)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for (name, path, network) in [
        ("small (4 files)", &small, "proxy-only"),
        ("small (4 files)", &small, "open"),
        ("5,000 files", &big, "proxy-only"),
    ] {
        t.set("LACKEY_NETWORK", network);
        let before = run_dirs();
        let runs: Vec<f64> = (0..N)
            .map(|_| {
                time_it(|| {
                    t.run(&[
                        "run",
                        "bench",
                        "--stubs",
                        "--image",
                        image,
                        "--repo",
                        path.to_str().unwrap(),
                    ])
                    .assert_success();
                })
            })
            .collect();
        let m = median(runs.clone());
        println!(
            "bench-local: `lackey run --stubs` on the {name} repo, network {network}: median {m:.3}s over {N} (min {:.3}s, max {:.3}s); overhead over the bare container {:.3}s",
            runs.iter().cloned().fold(f64::MAX, f64::min),
            runs.iter().cloned().fold(0.0, f64::max),
            m - bare
        );
        // What the commit's checks cost (stray processes, git metadata, scope), from
        // the line each run's minion.log carries.
        let checks: Vec<f64> = run_dirs()
            .into_iter()
            .filter(|d| !before.contains(d))
            .filter_map(|d| std::fs::read_to_string(d.join("minion.log")).ok())
            .filter_map(|log| {
                let line = log
                    .lines()
                    .find(|l| l.contains("commit checks"))?
                    .to_string();
                let ms = line.split(" took ").nth(1)?.split(" ms").next()?;
                ms.trim().parse::<f64>().ok()
            })
            .collect();
        assert_eq!(checks.len(), N, "every run logged its commit checks");
        println!(
            "bench-local: the commit's checks (stray sweep, git metadata, scope) on the {name} repo: median {:.1} ms over {N} (max {:.1} ms)",
            median(checks.clone()),
            checks.iter().cloned().fold(0.0, f64::max)
        );
    }
}

/// Issue 10: the latency the credential proxy adds to one LLM request, on the path a
/// local run's requests take (a TCP bridge as in the container → the proxy's Unix
/// socket → the proxy → the LLM), against the same request sent straight to the fake
/// LLM. Interleaved, after a warm-up. Target: ≤ 2 ms added at the median and p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-local"]
async fn bench_local_proxied_llm_latency() {
    const N: usize = 500;
    const WARM: usize = 20;
    let key = "sk-ant-bench";
    let llm = FakeLlm::start(
        key,
        (0..2 * (N + WARM)).map(|_| fake_llm::text("ok")).collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let proxy = lackey::proxy::Proxy::serve_unix(
        &socket,
        lackey::proxy::ProxyConfig {
            llm: Some(lackey::proxy::LlmUpstream {
                base_url: llm.url(),
                api_key: key.into(),
            }),
            github: None,
        },
    )
    .unwrap();
    let bridge = lackey::minion::bridge::start(&socket).await.unwrap();
    let proxied_url = format!("http://{bridge}/anthropic/v1/messages");
    let (direct, proxied) = interleaved_llm_latency(&llm, &proxied_url, N, WARM).await;
    assert_eq!(proxy.forwarded() as usize, N + WARM);
    report_llm_latency(
        "bench-local",
        "through bridge + socket + proxy",
        "the proxy",
        direct,
        proxied,
    );
}

/// Send the same LLM request `warm + n` times straight to the fake LLM and through
/// `proxied_url`, interleaved; the milliseconds of the last `n` of each. Every request
/// that reached the LLM carried its real key.
async fn interleaved_llm_latency(
    llm: &FakeLlm,
    proxied_url: &str,
    n: usize,
    warm: usize,
) -> (Vec<f64>, Vec<f64>) {
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]
    }))
    .unwrap();
    let direct_url = format!("{}/v1/messages", llm.url());
    let once = |url: &str, api_key: &'static str| {
        let req = client
            .post(url)
            .header("x-api-key", api_key)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body.clone());
        async move {
            let t = std::time::Instant::now();
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        }
    };
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for i in 0..n + warm {
        let d = once(&direct_url, "sk-ant-bench").await;
        let p = once(proxied_url, "placeholder").await;
        if i >= warm {
            direct.push(d);
            proxied.push(p);
        }
    }
    assert!(llm
        .received()
        .iter()
        .all(|r| r.api_key.as_deref() == Some("sk-ant-bench")));
    (direct, proxied)
}

/// Print the median and p99 of both paths and what the proxied one adds.
fn report_llm_latency(
    bench: &str,
    path: &str,
    adder: &str,
    mut direct: Vec<f64>,
    mut proxied: Vec<f64>,
) {
    let n = direct.len();
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() as f64 - 1.0) * q).round() as usize]
    };
    // What each request paid: the proxied request against the direct one sent right
    // before it (the two are interleaved), so a slow moment of the machine counts once.
    let mut added: Vec<f64> = proxied.iter().zip(&direct).map(|(p, d)| p - d).collect();
    let (dm, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
    let (pm, p99) = (pct(&mut proxied, 0.5), pct(&mut proxied, 0.99));
    println!(
        "{bench}: LLM request straight to the fake: median {dm:.3} ms, p99 {d99:.3} ms over {n}"
    );
    println!("{bench}: {path}: median {pm:.3} ms, p99 {p99:.3} ms over {n}");
    println!(
        "{bench}: added by {adder} (each request against the direct one before it): median {:.3} ms, p99 {:.3} ms (target ≤ 2 ms)",
        pct(&mut added, 0.5),
        pct(&mut added, 0.99)
    );
}

/// The latency a cloud run's credential sidecar adds to one LLM request, on the path the
/// minion's requests take in a task (TCP on the task's shared loopback → the sidecar's
/// proxy → the LLM), against the same request sent straight to the fake LLM.
/// Interleaved, after a warm-up. Target: ≤ 2 ms added at the median and p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-cloud"]
async fn bench_cloud_proxied_llm_latency() {
    const N: usize = 500;
    const WARM: usize = 20;
    let key = "sk-ant-bench";
    let llm = FakeLlm::start(
        key,
        (0..2 * (N + WARM)).map(|_| fake_llm::text("ok")).collect(),
    );
    // What `lackey proxy` serves: the same proxy, on a loopback port.
    let proxy = lackey::proxy::Proxy::serve_tcp(
        "127.0.0.1:0".parse().unwrap(),
        lackey::proxy::ProxyConfig {
            llm: Some(lackey::proxy::LlmUpstream {
                base_url: llm.url(),
                api_key: key.into(),
            }),
            github: None,
        },
    )
    .await
    .unwrap();
    let sidecar = proxy.addr.unwrap();
    let proxied_url = format!("http://{sidecar}/anthropic/v1/messages");
    let (direct, proxied) = interleaved_llm_latency(&llm, &proxied_url, N, WARM).await;
    assert_eq!(proxy.forwarded() as usize, N + WARM);
    report_llm_latency(
        "bench-cloud",
        "through the sidecar (loopback TCP + proxy)",
        "the sidecar",
        direct,
        proxied,
    );
}

/// When moto served one request: seconds since the epoch.
#[derive(serde::Deserialize, Clone)]
pub(crate) struct Timing {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) caller: String,
    /// `service:Action`
    #[serde(default)]
    pub(crate) call: String,
}

/// The CLI's requests since the last reset of moto's log, with when they ran.
pub(crate) fn cli_timings(moto: &crate::support::moto::Moto) -> Vec<Timing> {
    let all: Vec<Timing> = reqwest::blocking::get(format!("{}/_harness/timings", moto.url()))
        .and_then(|r| r.json())
        .expect("read moto's request timings");
    all.into_iter().filter(|t| t.caller == "cli").collect()
}

/// The critical path: the longest chain of requests each of which started only after
/// the one before it had ended (with a fixed latency per call, wall time is about its
/// length × latency plus the CLI's own work), as the calls in order. An upper bound:
/// a loaded moto may start a concurrent call only after another ended.
pub(crate) fn critical_path(timings: &[Timing]) -> Vec<&str> {
    let mut by_end: Vec<&Timing> = timings.iter().collect();
    by_end.sort_by(|a, b| a.end.total_cmp(&b.end));
    // For each request: the depth of the longest chain ending with it, and its
    // predecessor in that chain.
    let mut best: Vec<(usize, Option<usize>)> = Vec::with_capacity(by_end.len());
    for (i, t) in by_end.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| by_end[j].end <= t.start)
            .max_by_key(|&j| best[j].0);
        best.push((before.map_or(0, |j| best[j].0) + 1, before));
    }
    let mut at = (0..best.len()).max_by_key(|&i| best[i].0);
    let mut chain = Vec::new();
    while let Some(i) = at {
        chain.push(by_end[i].call.as_str());
        at = best[i].1;
    }
    chain.reverse();
    chain
}

fn critical_path_depth(timings: &[Timing]) -> usize {
    critical_path(timings).len()
}

#[test]
fn the_critical_path_counts_calls_made_one_after_another() {
    let t = |start: f64, end: f64| Timing {
        start,
        end,
        caller: "cli".into(),
        call: format!("call@{start}"),
    };
    // Three at once, then two in a row after the first of them.
    let calls = [
        t(0.0, 1.0),
        t(0.0, 1.0),
        t(0.01, 1.01),
        t(1.0, 2.0),
        t(2.05, 3.0),
    ];
    assert_eq!(critical_path_depth(&calls), 3);
    assert_eq!(critical_path(&calls), ["call@0", "call@1", "call@2.05"]);
    assert_eq!(critical_path_depth(&calls[..3]), 1);
    assert_eq!(critical_path_depth(&[]), 0);
}

/// Issues 3 and 11: wall time, AWS requests and critical-path depth of the stack
/// operations against moto, with `LATENCY_MS` (default 0; `make bench-stack` passes
/// 100) added to every AWS call. Targets at 100 ms per call: up from empty ≤ 0.7 s,
/// down ≤ 0.5 s, doctor ≤ 0.6 s, converged plan and no-op up ≤ 0.3 s. (Terraform with
/// the AWS provider on the same stack and moto: plan 7.7 s / 44 requests, apply
/// 22.4 s / 76, destroy 12.7 s / 71; at 100 ms per call apply 25 s, plan 9.9 s,
/// destroy 15.8 s.)
#[test]
#[ignore = "benchmark: make bench-stack"]
fn bench_stack_operations() {
    use crate::support::moto::Moto;
    let latency: u64 = std::env::var("LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // moto reads LATENCY_MS from the environment it inherits.
    let moto = Moto::start().expect("the benchmark needs moto");
    moto.add_internet_gateway();
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n",
    );
    // moto loads its IAM managed policies on the first IAM call: warm it up once.
    t.run(&["plan", "-q"]).assert_success();
    const N: usize = 5;
    let doctor: &[&str] = &[
        "doctor", "--json", "--phase", "local", "--phase", "aws", "--phase", "infra",
    ];
    let ops: [(&str, &[&str]); 5] = [
        ("up from empty", &["up", "-q"]),
        ("converged plan", &["plan", "-q"]),
        ("no-op up", &["up", "-q"]),
        ("doctor", doctor),
        ("down --force", &["down", "--yes", "--force", "-q"]),
    ];
    let mut times: Vec<Vec<f64>> = vec![vec![]; ops.len()];
    let mut requests: Vec<Vec<usize>> = vec![vec![]; ops.len()];
    let mut mutating: Vec<Vec<usize>> = vec![vec![]; ops.len()];
    let mut depths: Vec<Vec<usize>> = vec![vec![]; ops.len()];
    let mut paths: Vec<String> = vec![String::new(); ops.len()];
    let mut cpus: Vec<Vec<f64>> = vec![vec![]; ops.len()];
    let mut loads: Vec<Vec<String>> = vec![vec![]; ops.len()];
    let mut doctor_checks = (0, 0);
    for _ in 0..N {
        for (i, (name, args)) in ops.iter().enumerate() {
            if *name == "doctor" {
                // A stack whose secrets hold values, as a user's does.
                for (secret, value) in [
                    ("anthropic_api_key", "sk-ant-api03-bench-0123456789abcdef"),
                    ("github_app_key", TEST_PEM),
                ] {
                    let file = t.write("secret.txt", value);
                    t.run(&[
                        "secret",
                        "put",
                        secret,
                        "--from-file",
                        file.to_str().unwrap(),
                        "-q",
                    ])
                    .assert_success();
                }
            }
            moto.reset_requests();
            loads[i].push(crate::latency::load_average());
            let traced = crate::latency::traced(t.command(args));
            times[i].push(traced.wall());
            cpus[i].push(traced.cpu);
            let out = traced.output();
            if *name == "doctor" {
                // Some checks need what moto lacks (the image in a registry): counted,
                // and the doctor's run measured all the same.
                let checks = out.json()["checks"].as_array().unwrap().clone();
                let failing = checks.iter().filter(|c| c["status"] == "fail").count();
                doctor_checks = (checks.len(), failing);
            } else {
                out.assert_success();
            }
            let r = moto.requests();
            requests[i].push(r.len());
            mutating[i].push(r.iter().filter(|x| x.is_mutating()).count());
            let timings = cli_timings(&moto);
            depths[i].push(critical_path_depth(&timings));
            paths[i] = critical_path(&timings).join(" → ");
        }
    }
    for (i, (name, _)) in ops.iter().enumerate() {
        println!(
            "bench-stack: LATENCY_MS={latency}: {name:<15} min {:.3}s over {N} (median {:.3}s, max {:.3}s), {} AWS requests ({} mutating), critical path {} calls (min {}, max {}), lackey CPU min {:.3}s; load average {}",
            times[i].iter().cloned().fold(f64::MAX, f64::min),
            median(times[i].clone()),
            times[i].iter().cloned().fold(0.0, f64::max),
            requests[i][0],
            mutating[i][0],
            median(depths[i].iter().map(|&d| d as f64).collect()),
            depths[i].iter().min().unwrap(),
            depths[i].iter().max().unwrap(),
            cpus[i].iter().cloned().fold(f64::MAX, f64::min),
            loads[i].join(" / "),
        );
        println!(
            "bench-stack:   critical path of the last {name}: {}",
            paths[i]
        );
    }
    println!(
        "bench-stack: LATENCY_MS={latency}: doctor = phases local, aws and infra: {} checks, {} failing (moto has no image registry)",
        doctor_checks.0, doctor_checks.1
    );
    println!(
        "bench-stack: 12 resources; converged plan: {:.1} requests per resource",
        requests[1][0] as f64 / 12.0
    );
}

/// Shaped like a PEM private key (lackey checks the shape only); no key material.
const TEST_PEM: &str = "-----BEGIN PRIVATE KEY-----\nbench\n-----END PRIVATE KEY-----\n";

/// Issue 6: DescribeTasks calls per poll tick with 20 runs in flight (target: one), on
/// the stack `bench_cloud_latency` set up.
pub(crate) fn describe_tasks_per_tick(moto: &crate::support::moto::Moto) {
    let conf = moto.sdk_config();
    // 20 runs in flight, one watcher: DescribeTasks per tick.
    let watched = crate::support::moto::block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0]
            .subnet_id()
            .unwrap()
            .to_string();
        let sg = crate::support::moto::lackey_security_groups(&ec2).await[0]
            .group_id()
            .unwrap()
            .to_string();
        let watcher = lackey::runner::ecs::TaskWatcher::start(ecs.clone(), "lackey");
        let mut rxs = Vec::new();
        for _ in 0..20 {
            let out = ecs
                .run_task()
                .cluster("lackey")
                .task_definition("lackey-minion")
                .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
                .network_configuration(
                    aws_sdk_ecs::types::NetworkConfiguration::builder()
                        .awsvpc_configuration(
                            aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                                .subnets(&subnet)
                                .security_groups(&sg)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .send()
                .await
                .unwrap();
            rxs.push(watcher.watch(out.tasks()[0].task_arn().unwrap()));
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let calls = watcher.calls.load(std::sync::atomic::Ordering::Relaxed);
        let ticks = watcher.ticks.load(std::sync::atomic::Ordering::Relaxed);
        watcher.shutdown();
        (calls, ticks, rxs.len())
    });
    println!(
        "bench-cloud: {} tasks watched for 5 s: {} DescribeTasks calls over {} poll ticks ({:.2} per tick)",
        watched.2,
        watched.0,
        watched.1,
        watched.0 as f64 / watched.1.max(1) as f64
    );
}

/// Issue 7: the wall time of a full `lackey doctor` (no --e2e) on a healthy stack
/// against moto and the fakes. Target: under 1 s.
#[test]
#[ignore = "benchmark: make bench-doctor"]
fn bench_doctor() {
    let c = crate::doctor::healthy().expect("the benchmark needs Docker, moto and docker-registry");
    c.t.run(&["doctor", "-q"]).assert_success();
    let times: Vec<f64> = (0..5)
        .map(|_| {
            time_it(|| {
                c.t.run(&["doctor", "-q"]).assert_success();
            })
        })
        .collect();
    c.moto.reset_requests();
    c.t.run(&["doctor", "-q"]).assert_success();
    println!(
        "bench-doctor: full doctor (16 checks, healthy stack): median {:.3}s over 5 (min {:.3}s, max {:.3}s); {} AWS requests",
        median(times.clone()),
        times.iter().cloned().fold(f64::MAX, f64::min),
        times.iter().cloned().fold(0.0, f64::max),
        c.moto.requests().len()
    );
}

/// Issue 15: a fleet of 200 runs in flight against moto, whose tasks only walk their
/// lifecycle (PROVISIONING, PENDING, RUNNING for a while, STOPPED with a summary in the
/// bucket; no containers). Prints the time from the command to the last RunTask, the
/// CLI's AWS calls per poll tick by API while all 200 are in flight, and the CLI's CPU
/// and resident memory then. Targets: DescribeTasks ≤ 2 per tick, ≤ 64 MB, ≤ 5 % of a
/// core, 200 launches in ≤ 20 s.
#[test]
#[ignore = "benchmark: make bench-fleet"]
#[allow(
    clippy::too_many_lines,
    reason = "one benchmark: a fleet of 200 against moto, then every figure it prints"
)]
fn bench_fleet() {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const RUNS: usize = 200;
    /// How long each task stays RUNNING (long enough to watch all 200 at once).
    const HOLD: Duration = Duration::from_secs(90);
    let moto = crate::support::moto::Moto::start_for_fargate().expect("the benchmark needs moto");
    let mut t = TestEnv::new();
    t.with_moto(&moto)
        // No Docker: the image is not checked (the tasks run nothing).
        .set("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .set("LACKEY_REPO", "project");
    repo::hello_project(&t.work().join("project"));
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[ecr]\nregistry = \"127.0.0.1:1\"\n",
    );
    t.run(&["up", "-q"]).assert_success();
    let text: String = (1..=RUNS).map(|i| format!("bench task {i}\n")).collect();
    t.write("tasks.txt", &text);

    // The lifecycle walker: what Fargate would do, without containers.
    let stop = Arc::new(AtomicBool::new(false));
    let walker = {
        let conf = moto.sdk_config();
        let url = moto.url();
        let stop = stop.clone();
        std::thread::spawn(move || {
            crate::support::moto::block_on(async move {
                let ecs = aws_sdk_ecs::Client::new(&conf);
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&conf)
                        .force_path_style(true)
                        .build(),
                );
                let http = reqwest::Client::new();
                // Each task writes one log line when it starts running, as the awslogs
                // driver would, so the CLI's log reads find streams.
                let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
                let group = logs
                    .describe_log_groups()
                    .send()
                    .await
                    .ok()
                    .and_then(|g| {
                        g.log_groups()
                            .first()
                            .and_then(|g| g.log_group_name().map(str::to_string))
                    })
                    .unwrap_or_default();
                let mut seen: HashMap<String, (Instant, u8, String)> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(out) = ecs.list_tasks().cluster("lackey").send().await {
                        for arn in out.task_arns() {
                            if !seen.contains_key(arn) {
                                let d = ecs
                                    .describe_tasks()
                                    .cluster("lackey")
                                    .tasks(arn)
                                    .send()
                                    .await
                                    .unwrap();
                                let prefix = d.tasks()[0]
                                    .overrides()
                                    .and_then(|o| o.container_overrides().first())
                                    .and_then(|c| {
                                        c.environment()
                                            .iter()
                                            .find(|kv| kv.name() == Some("LACKEY_S3_PREFIX"))
                                            .and_then(|kv| kv.value())
                                            .map(str::to_string)
                                    })
                                    .unwrap_or_default();
                                seen.insert(arn.clone(), (Instant::now(), 0, prefix));
                            }
                        }
                    }
                    for (arn, (at, stage, prefix)) in seen.iter_mut() {
                        let run_id = prefix.split('/').next().unwrap_or_default().to_string();
                        let age = at.elapsed();
                        let (next, status) = match *stage {
                            0 if age > Duration::from_secs(1) => (1, "PENDING"),
                            1 if age > Duration::from_secs(2) => (2, "RUNNING"),
                            2 if age > Duration::from_secs(2) + HOLD => (3, "STOPPED"),
                            _ => continue,
                        };
                        if next == 2 {
                            let stream = format!(
                                "minion/minion/{}",
                                arn.rsplit('/').next().unwrap_or_default()
                            );
                            let _ = logs
                                .create_log_stream()
                                .log_group_name(&group)
                                .log_stream_name(&stream)
                                .send()
                                .await;
                            let ev = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                                .timestamp(chrono::Utc::now().timestamp_millis())
                                .message(format!(
                                    "{} [execute] walking the lifecycle of {run_id}",
                                    chrono::Utc::now().to_rfc3339()
                                ))
                                .build()
                                .unwrap();
                            let _ = logs
                                .put_log_events()
                                .log_group_name(&group)
                                .log_stream_name(&stream)
                                .log_events(ev)
                                .send()
                                .await;
                        }
                        if next == 3 {
                            let now = chrono::Utc::now().to_rfc3339();
                            let summary = json!({"run_id": run_id, "task": "bench", "outcome": "success", "runtime": "cloud",
                                "branch": format!("minion/{run_id}"), "base_sha": null, "head_sha": null,
                                "started_at": now, "finished_at": now, "duration_s": HOLD.as_secs_f64(),
                                "pr_url": null, "s3_prefix": null, "error": null});
                            s3.put_object()
                                .bucket("lackey-artifacts-123456789012")
                                .key(format!("{prefix}/run_summary.json"))
                                .body(summary.to_string().into_bytes().into())
                                .send()
                                .await
                                .unwrap();
                        }
                        let mut body = json!({"task_arn": arn, "last_status": status});
                        if next == 3 {
                            body["exit_code"] = json!(0);
                            body["stop_code"] = json!("EssentialContainerExited");
                        }
                        let _ = http
                            .post(format!("{url}/_harness/ecs/task"))
                            .json(&body)
                            .send()
                            .await;
                        *stage = next;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
    };

    moto.reset_requests();
    let t0 = Instant::now();
    let wall0 = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    // On a terminal (a pty from `script`), as a user watches it: the live table with each
    // run's last log line, so the log reads and the redraws are measured too.
    let out_path = t.path().join("fleet.json");
    let cmdline = format!(
        "'{}' run --cloud --stubs --tasks tasks.txt --max-parallel {RUNS} --json > '{}'",
        crate::support::bin(),
        out_path.display()
    );
    let child = std::process::Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .current_dir(t.work())
        .env_clear()
        .envs(&t.env)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "200")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("util-linux `script` gives the fleet a terminal");
    // lackey's own pid: the descendant of `script` running the binary.
    let exe = std::fs::canonicalize(crate::support::bin()).unwrap();
    let find = |root: u32| -> Option<u32> {
        let mut todo = vec![root];
        while let Some(p) = todo.pop() {
            if std::fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(exe.as_path()) {
                return Some(p);
            }
            let kids =
                std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        None
    };
    let pid = loop {
        if let Some(p) = find(child.id()) {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "lackey never started under script"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        (ut + st) / ticks_per_s
    };
    let rss_mb = |pid: u32| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    // Wait until all 200 are launched, then measure a window while they all run.
    let launched = || {
        moto.requests()
            .iter()
            .filter(|r| r.action == "RunTask" && r.caller == "cli")
            .count()
    };
    while launched() < RUNS {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "only {} launched",
            launched()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all_launched = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let before = moto.requests().len();
    let (c0, w0) = (cpu(pid), Instant::now());
    let mut peak_rss: f64 = 0.0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        peak_rss = peak_rss.max(rss_mb(pid));
    }
    let (c1, window) = (cpu(pid), w0.elapsed().as_secs_f64());
    let reqs = moto.requests();
    // Counted between the first and the last stop-marker check (one S3 HEAD per poll
    // tick) of the window, in moto's order: whole ticks, so a poll at either edge of the
    // window does not count without its tick.
    let cli: Vec<_> = reqs[before..]
        .iter()
        .filter(|r| r.caller == "cli")
        .collect();
    let heads: Vec<usize> = (0..cli.len())
        .filter(|&i| cli[i].service == "s3" && cli[i].action == "HEAD")
        .collect();
    let span = match (heads.first(), heads.last()) {
        (Some(&a), Some(&b)) if b > a => &cli[a..b],
        _ => &cli[..],
    };
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in span {
        *by.entry(format!("{}:{}", r.service, r.action)).or_default() += 1;
    }
    let _ = crate::support::wait_with_timeout(child, Duration::from_secs(600));
    stop.store(true, Ordering::Relaxed);
    let _ = walker.join();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    // Time from the command to the last RunTask: the newest task's createdAt in moto.
    let conf = moto.sdk_config();
    let last_created = crate::support::moto::block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let mut newest: f64 = 0.0;
        let mut oldest: f64 = f64::MAX;
        let arns = ecs
            .list_tasks()
            .cluster("lackey")
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap()
            .task_arns()
            .to_vec();
        for chunk in arns.chunks(100) {
            let d = ecs
                .describe_tasks()
                .cluster("lackey")
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            for t in d.tasks() {
                newest = newest.max(t.created_at().unwrap().as_secs_f64());
                oldest = oldest.min(t.created_at().unwrap().as_secs_f64());
            }
        }
        (oldest, newest)
    });
    let (first_created, last_created) = last_created;
    let ticks = by.get("s3:HEAD").copied().unwrap_or(0).max(1) as f64;
    println!(
        "bench-fleet: {RUNS} runs, --max-parallel {RUNS}: outcome summary {}",
        v["summary"]
    );
    for r in v["runs"].as_array().into_iter().flatten() {
        if r["outcome"] != "success" {
            println!(
                "bench-fleet: run {} ended {}: {}",
                r["run_id"], r["outcome"], r["error"]
            );
        }
    }
    println!(
        "bench-fleet: command to first RunTask {:.2}s, to last RunTask {:.2}s ({:.2}s from first to last; the bench saw 200 RunTask calls {all_launched:.1}s after the command)",
        first_created - wall0,
        last_created - wall0,
        last_created - first_created
    );
    println!(
        "bench-fleet: while all {RUNS} were in flight, on a terminal, over {window:.1}s ({ticks} poll ticks, one stop-marker check each): CLI AWS calls by API: {by:?}; per tick: DescribeTasks {:.2}, FilterLogEvents {:.2}",
        by.get("ecs:DescribeTasks").copied().unwrap_or(0) as f64 / ticks,
        by.get("logs:FilterLogEvents").copied().unwrap_or(0) as f64 / ticks
    );
    println!(
        "bench-fleet: CLI CPU {:.2}% of one core, peak resident memory {peak_rss:.1} MB",
        100.0 * (c1 - c0) / window
    );
    assert_eq!(
        v["summary"]["runs"], RUNS,
        "the measurement ran the whole fleet"
    );
}
