//! Every setting lackey reads, in one table: its name (`section.key` in `lackey.toml`),
//! the environment variables that set it (the primary name first, then aliases), the flag
//! that sets it, its default, and whether it is secret.
//!
//! Everything that names a setting to the user (missing-value errors, `lackey config`,
//! validation messages) reads this table, so a variable is never named two ways.

use super::validate;

/// How a default is derived when nothing sets the value.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    None,
    /// A fixed value.
    Value(&'static str),
    /// A template over other settings: `{aws.account_id}`, `{aws.region}`,
    /// `{stack.name}` (every default resource name derives from the stack's name, so
    /// two stacks in one account never share a resource).
    Template(&'static str),
}

/// The shape a value must have; checked when settings are resolved, before any AWS call.
pub type Validator = fn(&str) -> Result<(), String>;

#[derive(Debug)]
pub struct Key {
    /// `section.key`, as in `lackey.toml`.
    pub name: &'static str,
    /// Environment variables, highest priority first.
    pub env: &'static [&'static str],
    /// The command-line flag, when there is one.
    pub flag: Option<&'static str>,
    /// Whether `lackey.toml` may set it (secret values may not).
    pub in_toml: bool,
    pub default: DefaultValue,
    pub secret: bool,
    pub validate: Option<Validator>,
    pub doc: &'static str,
}

impl Key {
    pub fn section(&self) -> &'static str {
        self.name
            .split_once('.')
            .map(|(s, _)| s)
            .unwrap_or(self.name)
    }

    pub fn field(&self) -> &'static str {
        self.name
            .split_once('.')
            .map(|(_, k)| k)
            .unwrap_or(self.name)
    }

    /// How the user can set this value: `LACKEY_ECR_REGISTRY (or [ecr] registry in lackey.toml)`.
    pub fn how_to_set(&self) -> String {
        let mut parts = Vec::new();
        if let Some(env) = self.env.first() {
            parts.push(env.to_string());
        }
        if self.in_toml && self.name == "run.prices" {
            // A table of tables in lackey.toml, one per model.
            parts.push("[run.prices.\"<model>\"] tables in lackey.toml".to_string());
        } else if self.in_toml {
            parts.push(format!(
                "[{}] {} in lackey.toml",
                self.section(),
                self.field()
            ));
        } else if let Some(flag) = self.flag {
            parts.push(flag.to_string());
        }
        match parts.len() {
            0 => self.name.to_string(),
            1 => parts.remove(0),
            _ => format!("{} (or {})", parts[0], parts[1..].join(", ")),
        }
    }
}

macro_rules! key {
    ($id:ident, $name:literal, env = [$($env:literal),*], flag = $flag:expr, toml = $toml:literal,
     default = $default:expr, secret = $secret:literal, validate = $validate:expr, doc = $doc:literal) => {
        pub static $id: Key = Key {
            name: $name,
            env: &[$($env),*],
            flag: $flag,
            in_toml: $toml,
            default: $default,
            secret: $secret,
            validate: $validate,
            doc: $doc,
        };
    };
}

use DefaultValue::{None as NoDefault, Template, Value};

/// The architecture of the machine lackey runs on, as Fargate names it: images built
/// here run on tasks of this architecture unless the config says otherwise.
pub const HOST_CPU_ARCHITECTURE: &str = if cfg!(target_arch = "aarch64") {
    "ARM64"
} else {
    "X86_64"
};

key!(
    AWS_REGION,
    "aws.region",
    env = ["AWS_REGION", "AWS_DEFAULT_REGION"],
    flag = Some("--region"),
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::region),
    doc = "AWS region"
);
key!(
    AWS_PROFILE,
    "aws.profile",
    env = ["AWS_PROFILE"],
    flag = Some("--profile"),
    toml = true,
    default = Value("default"),
    secret = false,
    validate = None,
    doc = "AWS named profile"
);
key!(
    AWS_ENDPOINT_URL,
    "aws.endpoint_url",
    env = ["AWS_ENDPOINT_URL"],
    flag = Some("--endpoint-url"),
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::url),
    doc = "send every AWS request to this endpoint (LocalStack, moto)"
);
key!(
    AWS_ACCOUNT_ID,
    "aws.account_id",
    env = ["LACKEY_AWS_ACCOUNT_ID"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::account_id),
    doc = "AWS account id (discovered with STS)"
);
key!(
    AWS_MAX_ATTEMPTS,
    "aws.max_attempts",
    env = ["AWS_MAX_ATTEMPTS"],
    flag = None,
    toml = true,
    default = Value("5"),
    secret = false,
    validate = Some(validate::max_attempts),
    doc = "attempts per AWS request, retries included"
);
key!(
    STACK_NAME,
    "stack.name",
    env = ["LACKEY_STACK"],
    flag = None,
    toml = true,
    default = Value("lackey"),
    secret = false,
    validate = Some(validate::stack_name),
    doc = "stack name, used in the ownership tags"
);
key!(
    BUCKET_NAME,
    "bucket.name",
    env = ["LACKEY_ARTIFACT_BUCKET"],
    flag = None,
    toml = true,
    default = Template("{stack.name}-artifacts-{aws.account_id}"),
    secret = false,
    validate = Some(validate::bucket_name),
    doc = "S3 bucket for run artifacts"
);
key!(
    ECR_REPOSITORY,
    "ecr.repository",
    env = ["LACKEY_ECR_REPOSITORY"],
    flag = None,
    toml = true,
    default = Template("{stack.name}-minion"),
    secret = false,
    validate = Some(validate::ecr_repository),
    doc = "ECR repository for the minion image"
);
key!(
    ECR_REGISTRY,
    "ecr.registry",
    env = ["LACKEY_ECR_REGISTRY"],
    flag = None,
    toml = true,
    default = Template("{aws.account_id}.dkr.ecr.{aws.region}.amazonaws.com"),
    secret = false,
    validate = Some(validate::registry),
    doc = "registry host the image is pushed to"
);
key!(
    ECS_CLUSTER,
    "ecs.cluster",
    env = ["LACKEY_ECS_CLUSTER"],
    flag = None,
    toml = true,
    default = Template("{stack.name}"),
    secret = false,
    validate = Some(validate::ecs_name),
    doc = "ECS cluster"
);
key!(
    ECS_TASK_FAMILY,
    "ecs.task_family",
    env = ["LACKEY_ECS_TASK_DEF"],
    flag = None,
    toml = true,
    default = Template("{stack.name}-minion"),
    secret = false,
    validate = Some(validate::task_family),
    doc = "task definition family"
);
key!(
    ECS_CPU,
    "ecs.cpu",
    env = ["LACKEY_ECS_CPU"],
    flag = None,
    toml = true,
    default = Value("1024"),
    secret = false,
    validate = Some(validate::fargate_cpu),
    doc = "Fargate task cpu units"
);
key!(
    ECS_MEMORY,
    "ecs.memory",
    env = ["LACKEY_ECS_MEMORY"],
    flag = None,
    toml = true,
    default = Value("4096"),
    secret = false,
    validate = Some(validate::fargate_memory),
    doc = "Fargate task memory (MiB)"
);
key!(
    ECS_CPU_ARCHITECTURE,
    "ecs.cpu_architecture",
    env = ["LACKEY_ECS_CPU_ARCHITECTURE"],
    flag = None,
    toml = true,
    default = Value(HOST_CPU_ARCHITECTURE),
    secret = false,
    validate = Some(validate::cpu_architecture),
    doc = "Fargate CPU architecture (X86_64 or ARM64; default: this machine's)"
);
key!(
    LOGS_GROUP,
    "logs.group",
    env = ["LACKEY_LOG_GROUP"],
    flag = None,
    toml = true,
    default = Template("/ecs/{stack.name}-minion"),
    secret = false,
    validate = Some(validate::log_group),
    doc = "CloudWatch log group"
);
key!(
    LOGS_RETENTION_DAYS,
    "logs.retention_days",
    env = [],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::retention_days),
    doc = "log retention in days (unset: never expire)"
);
key!(
    IAM_EXECUTION_ROLE,
    "iam.execution_role",
    env = [],
    flag = None,
    toml = true,
    default = Template("{stack.name}-ecs-execution"),
    secret = false,
    validate = Some(validate::iam_role),
    doc = "task execution role"
);
key!(
    IAM_TASK_ROLE,
    "iam.task_role",
    env = [],
    flag = None,
    toml = true,
    default = Template("{stack.name}-ecs-task"),
    secret = false,
    validate = Some(validate::iam_role),
    doc = "task role"
);
key!(
    NETWORK_SECURITY_GROUP,
    "network.security_group",
    env = [],
    flag = None,
    toml = true,
    default = Template("{stack.name}-ecs-tasks"),
    secret = false,
    validate = Some(validate::security_group_name),
    doc = "security group name"
);
key!(
    NETWORK_SECURITY_GROUP_ID,
    "network.security_group_id",
    env = ["LACKEY_ECS_SG"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::security_group_id),
    doc = "security group id (discovered by name)"
);
key!(
    NETWORK_SUBNETS,
    "network.subnets",
    env = ["LACKEY_ECS_SUBNETS"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::subnets),
    doc = "subnet ids (discovered: the default VPC's)"
);
key!(
    NETWORK_ASSIGN_PUBLIC_IP,
    "network.assign_public_ip",
    env = ["LACKEY_ECS_ASSIGN_PUBLIC_IP"],
    flag = None,
    toml = true,
    default = Value("true"),
    secret = false,
    validate = Some(validate::boolean),
    doc = "give tasks a public IP"
);
key!(
    SECRETS_GITHUB_APP_KEY,
    "secrets.github_app_key",
    env = ["LACKEY_GITHUB_APP_PRIVATE_KEY_SECRET"],
    flag = None,
    toml = true,
    default = Template("{stack.name}/github-app-key"),
    secret = false,
    validate = Some(validate::secret_name),
    doc = "secret holding the GitHub App private key"
);
key!(
    SECRETS_ANTHROPIC_API_KEY,
    "secrets.anthropic_api_key",
    env = ["LACKEY_ANTHROPIC_SECRET"],
    flag = None,
    toml = true,
    default = Template("{stack.name}/anthropic-api-key"),
    secret = false,
    validate = Some(validate::secret_name),
    doc = "secret holding the Anthropic API key"
);
key!(
    GITHUB_APP_ID,
    "github.app_id",
    env = ["LACKEY_GITHUB_APP_ID"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::github_id),
    doc = "GitHub App id"
);
key!(
    GITHUB_INSTALLATION_ID,
    "github.installation_id",
    env = ["LACKEY_GITHUB_INSTALLATION_ID"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::github_id),
    doc = "GitHub App installation id"
);
key!(
    GITHUB_REPO,
    "github.repo",
    env = ["LACKEY_GITHUB_REPO"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::github_repo),
    doc = "OWNER/REPO cloud runs work on"
);
key!(
    GITHUB_API_URL,
    "github.api_url",
    env = ["LACKEY_GITHUB_API_URL"],
    flag = None,
    toml = true,
    default = Value("https://api.github.com"),
    secret = false,
    validate = Some(validate::url),
    doc = "GitHub REST API (GitHub Enterprise: https://HOST/api/v3)"
);
key!(
    GITHUB_GIT_URL,
    "github.git_url",
    env = ["LACKEY_GITHUB_GIT_URL"],
    flag = None,
    toml = true,
    default = Value("https://github.com"),
    secret = false,
    validate = Some(validate::url),
    doc = "base URL for git clone and push"
);
key!(
    IMAGE_LOCAL,
    "image.local",
    env = ["LACKEY_IMAGE"],
    flag = Some("--image"),
    toml = true,
    default = Value("minion-base:latest"),
    secret = false,
    validate = Some(validate::image_ref),
    doc = "local minion image"
);
key!(
    RUN_REPO,
    "run.repo",
    env = ["LACKEY_REPO"],
    flag = Some("--repo"),
    toml = true,
    default = Value("."),
    secret = false,
    validate = None,
    doc = "repository: a local path, or OWNER/REPO on GitHub"
);
key!(
    RUN_MODEL,
    "run.model",
    env = ["LACKEY_MODEL"],
    flag = Some("--model"),
    toml = true,
    default = Value("claude-sonnet-4-5"),
    secret = false,
    validate = Some(crate::minion::llm::check_model),
    doc = "model the agents use (claude-… or anthropic:claude-…)"
);
key!(
    RUN_TIMEOUT,
    "run.timeout",
    env = ["LACKEY_TIMEOUT"],
    flag = Some("--timeout"),
    toml = true,
    default = Value("3600"),
    secret = false,
    validate = Some(validate::run_timeout),
    doc = "seconds before a run is stopped"
);
key!(
    RUN_BLUEPRINT,
    "run.blueprint",
    env = ["LACKEY_BLUEPRINT"],
    flag = Some("--blueprint"),
    toml = true,
    default = NoDefault,
    secret = false,
    validate = None,
    doc = "blueprint: a name from the repo's .lackey/blueprints/, or a path in the repo"
);
key!(
    RUN_ENV,
    "run.env",
    env = ["LACKEY_PASS_ENV"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(crate::minion::blueprint::check_pass_env),
    doc = "variables passed to a run for its blueprint's env.NAME (never secret-looking names)"
);
key!(
    RUN_BRANCH_TEMPLATE,
    "run.branch_template",
    env = [],
    flag = None,
    toml = true,
    default = Value("minion/{run_id}"),
    secret = false,
    validate = Some(validate::branch_template),
    doc = "branch name template"
);
key!(
    RUN_LINT,
    "run.lint",
    env = ["LACKEY_LINT"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = None,
    doc = "lint command run after the executor"
);
key!(
    RUN_TEST,
    "run.test",
    env = ["LACKEY_TEST"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = None,
    doc = "test command run after the executor"
);
key!(
    RUN_PR,
    "run.pr",
    env = ["LACKEY_PR"],
    flag = Some("--pr"),
    toml = true,
    default = Value("false"),
    secret = false,
    validate = Some(validate::boolean),
    doc = "open a pull request after a successful push"
);
key!(
    RUN_MAX_PARALLEL,
    "run.max_parallel",
    env = ["LACKEY_MAX_PARALLEL"],
    flag = Some("--max-parallel"),
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(validate::max_parallel),
    doc = "runs of a fleet (--tasks) in flight at once (default 10 on Fargate; locally, what the machine can take)"
);
key!(
    RUN_STUBS,
    "run.stubs",
    env = ["LACKEY_STUBS"],
    flag = Some("--stubs"),
    toml = true,
    default = Value("false"),
    secret = false,
    validate = Some(validate::boolean),
    doc = "stub agents, no LLM call"
);
key!(
    RUN_NETWORK,
    "run.network",
    env = ["LACKEY_NETWORK"],
    flag = None,
    toml = true,
    default = Value("proxy-only"),
    secret = false,
    validate = Some(validate::network),
    doc = "a local run's network: `proxy-only` (no network; the LLM through the credential proxy) or `open` (also general egress, see README)"
);
key!(
    RUN_REQUIRE_ISOLATION,
    "run.require_isolation",
    env = ["LACKEY_REQUIRE_ISOLATION"],
    flag = None,
    toml = true,
    default = Value("false"),
    secret = false,
    validate = Some(validate::boolean),
    doc = "refuse a cloud run whose task definition has no credential sidecar (a hand-made one hands the minion's container the secrets)"
);
key!(
    RUN_PRICES,
    "run.prices",
    env = ["LACKEY_PRICES"],
    flag = None,
    toml = true,
    default = NoDefault,
    secret = false,
    validate = Some(crate::cost::validate_overrides),
    doc = "price overrides per model, USD per million tokens ([run.prices.\"<model>\"] input, output, cache_write, cache_read; JSON in the environment)"
);
key!(
    LOCAL_ARTIFACTS_DIR,
    "local.artifacts_dir",
    env = ["LACKEY_ARTIFACTS_DIR"],
    flag = None,
    toml = true,
    default = Value("/tmp/lackey"),
    secret = false,
    validate = None,
    doc = "where run artifacts land"
);
key!(
    LOCAL_CPUS,
    "local.cpus",
    env = [],
    flag = None,
    toml = true,
    default = Value("2"),
    secret = false,
    validate = Some(validate::local_cpus),
    doc = "CPU limit of a local run's container"
);
key!(
    LOCAL_MEMORY_MB,
    "local.memory_mb",
    env = [],
    flag = None,
    toml = true,
    default = Value("4096"),
    secret = false,
    validate = Some(validate::local_memory_mb),
    doc = "memory limit (MiB) of a local run's container"
);
key!(
    LOCAL_PIDS_LIMIT,
    "local.pids_limit",
    env = [],
    flag = None,
    toml = true,
    default = Value("512"),
    secret = false,
    validate = Some(validate::pids_limit),
    doc = "process limit of a local run's container"
);
key!(
    LOCAL_OUTPUT_LIMIT_MB,
    "local.output_limit_mb",
    env = ["LACKEY_OUTPUT_LIMIT_MB"],
    flag = None,
    toml = true,
    default = Value("4096"),
    secret = false,
    validate = Some(validate::output_limit_mb),
    doc = "disk a local run may fill in its artifacts directory (MiB); past it, its container is stopped"
);
key!(
    ANTHROPIC_API_KEY,
    "anthropic.api_key",
    env = ["ANTHROPIC_API_KEY"],
    flag = None,
    toml = false,
    default = NoDefault,
    secret = true,
    validate = None,
    doc = "Anthropic API key (environment or .env only)"
);
key!(
    ANTHROPIC_BASE_URL,
    "anthropic.base_url",
    env = ["ANTHROPIC_BASE_URL"],
    flag = None,
    toml = true,
    default = Value("https://api.anthropic.com"),
    secret = false,
    validate = Some(validate::url),
    doc = "Anthropic API base URL"
);

/// Every key, in the order `lackey config` prints them.
pub static ALL: &[&Key] = &[
    &AWS_REGION,
    &AWS_PROFILE,
    &AWS_ENDPOINT_URL,
    &AWS_ACCOUNT_ID,
    &AWS_MAX_ATTEMPTS,
    &STACK_NAME,
    &BUCKET_NAME,
    &ECR_REPOSITORY,
    &ECR_REGISTRY,
    &ECS_CLUSTER,
    &ECS_TASK_FAMILY,
    &ECS_CPU,
    &ECS_MEMORY,
    &ECS_CPU_ARCHITECTURE,
    &LOGS_GROUP,
    &LOGS_RETENTION_DAYS,
    &IAM_EXECUTION_ROLE,
    &IAM_TASK_ROLE,
    &NETWORK_SECURITY_GROUP,
    &NETWORK_SECURITY_GROUP_ID,
    &NETWORK_SUBNETS,
    &NETWORK_ASSIGN_PUBLIC_IP,
    &SECRETS_GITHUB_APP_KEY,
    &SECRETS_ANTHROPIC_API_KEY,
    &GITHUB_APP_ID,
    &GITHUB_INSTALLATION_ID,
    &GITHUB_REPO,
    &GITHUB_API_URL,
    &GITHUB_GIT_URL,
    &IMAGE_LOCAL,
    &RUN_REPO,
    &RUN_MODEL,
    &RUN_TIMEOUT,
    &RUN_BLUEPRINT,
    &RUN_ENV,
    &RUN_BRANCH_TEMPLATE,
    &RUN_LINT,
    &RUN_TEST,
    &RUN_PR,
    &RUN_STUBS,
    &RUN_MAX_PARALLEL,
    &RUN_PRICES,
    &RUN_NETWORK,
    &RUN_REQUIRE_ISOLATION,
    &LOCAL_ARTIFACTS_DIR,
    &LOCAL_CPUS,
    &LOCAL_MEMORY_MB,
    &LOCAL_PIDS_LIMIT,
    &LOCAL_OUTPUT_LIMIT_MB,
    &ANTHROPIC_API_KEY,
    &ANTHROPIC_BASE_URL,
];

pub fn by_name(name: &str) -> Option<&'static Key> {
    ALL.iter().copied().find(|k| k.name == name)
}

/// The TOML type a key takes in `lackey.toml`. The file's types are checked whatever
/// else sets the value, so a malformed file never hides behind an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (`region = "us-east-1"`).
    Text,
    /// A string of digits, or the number itself (`account_id = "123456789012"`).
    Digits,
    /// A whole number (`cpu = 1024`).
    Integer,
    /// A whole or decimal number (`cpus = 1.5`).
    Number,
    /// `true` or `false`.
    Bool,
    /// An array of strings, or one comma-separated string.
    List,
}

impl Key {
    pub fn kind(&self) -> Kind {
        match self.name {
            "aws.account_id" => Kind::Digits,
            "aws.max_attempts"
            | "ecs.cpu"
            | "ecs.memory"
            | "logs.retention_days"
            | "github.app_id"
            | "github.installation_id"
            | "run.timeout"
            | "run.max_parallel"
            | "local.memory_mb"
            | "local.pids_limit"
            | "local.output_limit_mb" => Kind::Integer,
            "local.cpus" => Kind::Number,
            "network.assign_public_ip" | "run.pr" | "run.stubs" | "run.require_isolation" => {
                Kind::Bool
            }
            "network.subnets" | "run.env" => Kind::List,
            _ => Kind::Text,
        }
    }
}
