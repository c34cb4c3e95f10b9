use super::*;

fn err(text: &str) -> String {
    Blueprint::parse(text, "`t.yaml`").unwrap_err().to_string()
}

fn ok(text: &str) -> Blueprint {
    Blueprint::parse(text, "`t.yaml`").unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn the_default_parses_in_the_v2_dialect() {
    let b = Blueprint::default_blueprint();
    assert_eq!(b.dialect, Dialect::V2);
    assert_eq!(b.steps.len(), 9);
    assert!(b.warnings.is_empty());
    assert_eq!(b.steps[5].index, 6);
    assert!(matches!(
        b.steps[5].action,
        Action::Agent {
            agent: AgentKind::Fixer,
            rounds: 2,
            ..
        }
    ));
}

#[test]
fn v2_errors_name_the_step_and_field() {
    assert_eq!(
        err("version: 2\nsteps:\n  - {name: a, type: command, comands: [x]}\n"),
        "invalid blueprint `t.yaml`: step 1 (`a`): unknown field `comands`: a `command` step accepts name, type, when, commands, check, success_codes, timeout, artifact, on_failure"
    );
    assert_eq!(
        err("version: 2\nsteps:\n  - {name: a, type: git_branch}\n  - {name: b, type: command, commands: [x], agent: scoper}\n"),
        "invalid blueprint `t.yaml`: step 2 (`b`): field `agent` does not apply to a `command` step"
    );
    assert_eq!(
        err("version: 2\nsteps:\n  - {name: b, type: command, commands: [x], when: lint.failed}\n"),
        "invalid blueprint `t.yaml`: step 1 (`b`): field `when`: no earlier step is called `lint`"
    );
    assert!(err("version: 2\nsteps:\n  - {name: b, type: agent}\n")
        .contains("step 1 (`b`): field `agent` is required"));
    assert!(
        err("version: 2\nsteps:\n  - {name: b, type: command, commands: [x], timeout: -1}\n")
            .contains("step 1 (`b`): field `timeout`")
    );
    assert!(err(
        "version: 2\nsteps:\n  - {name: b, type: command, commands: [x], on_failure: explode}\n"
    )
    .contains("field `on_failure`"));
    assert!(err("version: 2\nsteps:\n  - {name: b, type: launch}\n")
        .contains("step 1 (`b`): field `type`: unknown variant `launch`"));
    assert!(err("version: 2\nsteps: []\n").contains("no steps"));
    assert!(err("version: 3\nsteps: []\n").contains("`version: 3` is not a version lackey knows"));
}

#[test]
fn v2_errors_say_when_a_field_belongs_to_the_original_dialect() {
    let e = err("version: 2\nname: x\nsteps:\n  - {name: lint, type: command, commands: [x], check: {command: y, artifact: l.json}}\n");
    assert!(
        e.contains("step 1 (`lint`): field `check`") && e.contains("remove the `version` line"),
        "{e}"
    );
    let e = err("version: 2\nsteps:\n  - {name: t, type: command, commands: [x]}\n  - {name: f, type: agent, agent: fixer, input_from: t}\n");
    assert!(
        e.contains("unknown field `input_from`") && e.contains("original lackey's dialect"),
        "{e}"
    );
    let e = err("version: 2\nsteps:\n  - {name: c, type: git_checkout, branch: dev}\n");
    assert!(e.contains("`git_checkout` belongs to the original"), "{e}");
}

#[test]
fn original_dialect_defaults_and_semantics() {
    let b = ok(r#"
name: python-implement
steps:
  - {name: create_branch, type: git_branch}
  - {name: implement, type: agent, agent: executor, on_scope_disagreement: abort}
  - name: lint
    type: command
    commands: ["ruff check --fix .", "ruff format ."]
    check: {command: "ruff check --output-format=json .", artifact: lint_report.json}
  - {name: fix_lint, type: agent, agent: fixer, input_from: lint, when: lint.failed}
  - {name: re_test, type: command, commands: [pytest], success_codes: [0, 5], on_failure: "outcome:test_failure", artifact: test_output.txt}
  - {name: commit, type: git_commit}
  - {name: push, type: git_push, when: env.GITHUB_TOKEN}
  - {name: pr, type: git_pr, when: env.GITHUB_TOKEN}
"#);
    assert_eq!(b.dialect, Dialect::Original);
    assert_eq!(b.name, "python-implement");
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    assert!(
        matches!(&b.steps[0].action, Action::GitBranch { branch: Some(t) } if t == "lackey/{run_id}/{task_slug}")
    );
    let Action::Command(lint) = &b.steps[2].action else {
        panic!()
    };
    assert_eq!(lint.timeout, 120);
    assert_eq!(lint.commands.len(), 2);
    assert_eq!(
        lint.check_command,
        Some(CheckCommand {
            command: "ruff check --output-format=json .".into(),
            artifact: "lint_report.json".into()
        })
    );
    assert!(
        matches!(&b.steps[3].action, Action::Agent { agent: AgentKind::Fixer, rounds: 1, input_from: Some(f), .. } if f == "lint")
    );
    let Action::Command(re_test) = &b.steps[4].action else {
        panic!()
    };
    assert_eq!(re_test.success_codes, [0, 5]);
    assert_eq!(
        re_test.on_failure,
        OnFailure::SetOutcome(Outcome::TestFailure)
    );
    assert!(
        matches!(&b.steps[5].action, Action::GitCommit { message } if message == "lackey: {task}")
    );
    assert!(
        matches!(&b.steps[7].action, Action::GitPr { title, body: None, .. } if title == "lackey: {task}")
    );
}

#[test]
fn original_dialect_warns_about_what_does_not_apply() {
    let b = ok(r#"
name: x
steps:
  - {name: b, type: git_branch, branch: "work/{run_id}", commands: [ls]}
  - {name: t, type: command, commands: [ls], retries: 3, rounds: 2}
  - {name: f, type: agent, agent: fixer, input_from: nope, when: t.broken}
"#);
    assert_eq!(
        b.warnings,
        [
            "step 1 (`b`): field `commands` does not apply to a `git_branch` step; ignored",
            "step 2 (`t`): unknown field `retries` ignored",
            "step 2 (`t`): unknown field `rounds` ignored (a field of lackey's `version: 2` dialect)",
            "step 3 (`f`): field `when`: `t.broken` is never true in this dialect (it knows <step>.failed, <step>.succeeded and env.VAR); the step will not run",
            "step 3 (`f`): no step is called `nope`; it never runs, so what refers to it is false or empty",
        ]
    );
    assert_eq!(b.steps[2].when, Some(Condition::False));
}

#[test]
fn original_dialect_errors_point_at_version_2() {
    let e = err("name: x\nsteps:\n  - {name: t, type: command, commands: [ls], check: true}\n");
    assert!(e.contains("write `version: 2`"), "{e}");
    let e = err("steps:\n  - {name: t, type: command, commands: [ls]}\n");
    assert!(e.contains("field `name` is required"), "{e}");
}

#[test]
fn branch_templates_must_name_the_run() {
    let e =
        err("name: x\nsteps:\n  - {name: b, type: git_branch, branch: \"feature/{task_slug}\"}\n");
    assert!(e.contains("must contain {run_id}"), "{e}");
    let e = err("version: 2\nsteps:\n  - {name: b, type: git_branch, branch: main}\n");
    assert!(e.contains("must contain {run_id}"), "{e}");
}

#[test]
fn caps_refuse_large_deep_and_aliased_files_fast() {
    // 200,000 steps: refused by size before any parsing.
    let mut big = String::from("name: big\nsteps:\n");
    for i in 0..200_000 {
        big.push_str(&format!("  - {{name: s{i}, type: git_push}}\n"));
    }
    let t = std::time::Instant::now();
    let e = err(&big);
    assert!(e.contains("a blueprint may be at most 256 KiB"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Within the size cap, the step cap.
    let mut many = String::from("name: many\nsteps:\n");
    for i in 0..(MAX_STEPS + 1) {
        many.push_str(&format!("  - {{name: s{i}, type: git_push}}\n"));
    }
    assert!(
        err(&many).contains("it has 501 steps; a blueprint may have at most 500"),
        "{}",
        err(&many)
    );
    // At the step cap, duplicate names are still found (and quickly).
    let mut dup = String::from("name: dup\nsteps:\n");
    for i in 0..MAX_STEPS {
        dup.push_str(&format!(
            "  - {{name: s{}, type: git_push}}\n",
            i.min(MAX_STEPS - 2)
        ));
    }
    assert!(err(&dup).contains("another step is already called `s498`"));
    // Nesting.
    let deep = format!("name: d\nsteps: {}{}\n", "[".repeat(40), "]".repeat(40));
    let e = err(&deep);
    assert!(e.contains("not YAML lackey reads"), "{e}");
    // An alias bomb.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let t = std::time::Instant::now();
    let e = err(&bomb);
    assert!(e.contains("not YAML lackey reads"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Every error is one line.
    assert!(!e.contains('\n'));
}

struct F;
impl Facts for F {
    fn step_failed(&self, n: &str) -> Option<bool> {
        match n {
            "lint" => Some(true),
            "test" => Some(false),
            _ => None,
        }
    }
    fn env(&self, n: &str) -> bool {
        n == "GITHUB_TOKEN"
    }
    fn config(&self, n: &str) -> bool {
        n == "pr"
    }
}

#[test]
fn conditions() {
    let c = |s: &str| Condition::parse(s).unwrap().eval(&F);
    assert!(c("lint.failed"));
    assert!(!c("test.failed"));
    assert!(c("lint.failed or test.failed"));
    assert!(!c("lint.failed and test.failed"));
    assert!(c("env.GITHUB_TOKEN and config.pr"));
    assert!(c("not env.NOPE"));
    assert!(c("fix.skipped"));
    assert!(Condition::parse("config.nope").is_err());
    assert!(Condition::parse("lint.broken").is_err());
    // The original's: a step that did not run is neither failed nor succeeded.
    let o = |s: &str| Condition::parse_original(s).0.eval(&F);
    assert!(o("lint.failed"));
    assert!(o("test.succeeded"));
    assert!(!o("never_ran.failed"));
    assert!(!o("never_ran.succeeded"));
    assert!(o("env.GITHUB_TOKEN"));
    assert!(!o("env.OTHER"));
    assert!(!o("lint.failed or test.failed"));
}

#[test]
fn templates_and_slugs() {
    assert_eq!(slug("Add a hello world test!"), "add-a-hello-world-test");
    assert_eq!(slug("!!!"), "task");
    assert_eq!(slug(&"word ".repeat(30)).len(), 50);
    assert_eq!(summary_line("\nfix it\nmore"), "fix it");
    let t = Templates {
        values: [
            ("run_id", "r1".to_string()),
            ("task", "t {run_id}".to_string()),
        ]
        .into(),
        env: [("STAGE".to_string(), "ci".to_string())].into(),
    };
    assert_eq!(t.render("minion/{run_id}: {task}"), "minion/r1: t {run_id}");
    assert_eq!(
        t.render("{env.STAGE}-{env.UNSET}-{other}-{"),
        "ci--{other}-{"
    );
}

#[test]
fn pass_env_names() {
    assert!(check_pass_env("STAGE, CI_FLAVOUR").is_ok());
    for bad in [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "ANTHROPIC_API_KEY",
        "MY_AUTH",
    ] {
        assert!(
            check_pass_env(bad)
                .unwrap_err()
                .contains("looks like a secret"),
            "{bad}"
        );
    }
    for reserved in [
        "LACKEY_RUN_ID",
        "AWS_REGION",
        "anthropic_base_url",
        "ECS_CONTAINER_METADATA_URI",
    ] {
        let e = check_pass_env(&format!("STAGE,{reserved}")).unwrap_err();
        assert!(e.contains("set by lackey or the container runtime"), "{e}");
    }
    assert!(check_pass_env("A,,B").is_err());
    assert!(check_pass_env("1X").is_err());
    assert!(!secret_looking("GIT_AUTHOR_NAME"));
    // Whatever the name, a value shaped like a credential is one.
    use crate::run_contract::credential_value;
    for v in [
        "postgres://app:hunter2@db.internal:5432/app",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "github_pat_11AAAAAAA0abcdefghijkl",
        "sk-ant-api03-0123456789abcdef",
        "AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ] {
        assert!(credential_value(v).is_some(), "{v}");
    }
    for v in [
        "ci",
        "https://example.com/a@b",
        "staging-eu",
        "sk-1",
        "postgres://db:5432/app",
    ] {
        assert!(credential_value(v).is_none(), "{v}");
    }
}

#[test]
fn load_by_name_or_path() {
    let dir = tempfile::tempdir().unwrap();
    let bp = dir.path().join(".lackey/blueprints");
    std::fs::create_dir_all(&bp).unwrap();
    std::fs::create_dir_all(dir.path().join("ci")).unwrap();
    std::fs::write(
        bp.join("x.yaml"),
        "name: from-dir\nsteps:\n  - {name: b, type: git_branch}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ci/y.yaml"),
        "version: 2\nname: from-path\nsteps:\n  - {name: b, type: git_branch}\n",
    )
    .unwrap();
    let name = |n: &str| Blueprint::load(dir.path(), Some(n)).map(|b| b.name);
    assert_eq!(name("x").unwrap(), "from-dir");
    assert_eq!(name("x.yaml").unwrap(), "from-dir");
    assert_eq!(name("ci/y.yaml").unwrap(), "from-path");
    assert_eq!(
        name(&dir.path().join("ci/y.yaml").display().to_string()).unwrap(),
        "from-path"
    );
    assert!(name("nope.yaml")
        .unwrap_err()
        .to_string()
        .contains("no blueprint file `nope.yaml`"));
    assert!(name("nope")
        .unwrap_err()
        .to_string()
        .contains("no blueprint `nope`"));
}

#[test]
fn the_choice_from_a_listing_is_the_same_for_host_and_minion() {
    let listing = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let file = |f: &str| Choice::File(f.to_string());
    let one = listing(&["python-implement.yaml", "notes.txt"]);
    assert_eq!(
        choose(&one, None).unwrap(),
        file(".lackey/blueprints/python-implement.yaml")
    );
    assert_eq!(
        choose(&one, Some("python-implement")).unwrap(),
        file(".lackey/blueprints/python-implement.yaml")
    );
    assert_eq!(
        choose(&one, Some("python-implement.yaml")).unwrap(),
        file(".lackey/blueprints/python-implement.yaml")
    );
    assert_eq!(choose(&one, Some("ci/b.yaml")).unwrap(), file("ci/b.yaml"));
    assert_eq!(choose(&one, Some("default")).unwrap(), Choice::Default);
    assert_eq!(choose(&[], None).unwrap(), Choice::Default);
    // `.yaml` wins over `.yml`; several without `default` need a choice.
    let both = listing(&["a.yml", "a.yaml"]);
    assert_eq!(
        choose(&both, Some("a")).unwrap(),
        file(".lackey/blueprints/a.yaml")
    );
    let several = listing(&["a.yaml", "b.yml"]);
    let e = choose(&several, None).unwrap_err().to_string();
    assert!(e.contains("several blueprints (a, b)"), "{e}");
    let with_default = listing(&["a.yaml", "default.yml"]);
    assert_eq!(
        choose(&with_default, None).unwrap(),
        file(".lackey/blueprints/default.yml")
    );
    let e = choose(&several, Some("c")).unwrap_err();
    assert!(format!("{e:#}").contains("no blueprint `c`"), "{e:#}");
}
