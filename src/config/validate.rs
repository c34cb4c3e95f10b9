//! Name and value rules, checked before any AWS call so a typo costs nothing.
//!
//! Each validator returns the rule that was broken, in words a user can act on. The
//! rules are AWS's own (links per function); where AWS is looser than lackey needs,
//! the stricter rule wins only when it avoids a later failure.

fn all_chars(s: &str, ok: impl Fn(char) -> bool) -> Option<char> {
    s.chars().find(|c| !ok(*c))
}

/// S3 bucket naming rules:
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>
pub fn bucket_name(s: &str) -> Result<(), String> {
    if s.len() < 3 || s.len() > 63 {
        return Err(format!(
            "bucket names must be 3 to 63 characters long (this one has {})",
            s.len()
        ));
    }
    if let Some(c) = all_chars(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
    }) {
        return Err(format!(
            "bucket names may contain only lowercase letters, digits, dots and hyphens (found `{c}`)"
        ));
    }
    let first = s.chars().next().unwrap_or('-');
    let last = s.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("bucket names must begin and end with a letter or digit".into());
    }
    if s.contains("..") {
        return Err("bucket names must not contain two adjacent dots".into());
    }
    if s.split('.').count() == 4 && s.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err("bucket names must not be formatted as an IP address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if s.starts_with(prefix) {
            return Err(format!("bucket names must not start with `{prefix}`"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if s.ends_with(suffix) {
            return Err(format!("bucket names must not end with `{suffix}`"));
        }
    }
    Ok(())
}

/// IAM role names: <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html>
pub fn iam_role(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!(
            "IAM role names must be 1 to 64 characters long (this one has {})",
            s.len()
        ));
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)) {
        return Err(format!(
            "IAM role names may contain only letters, digits and `+=,.@_-` (found `{c}`)"
        ));
    }
    Ok(())
}

/// ECR repository names:
/// <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html>
pub fn ecr_repository(s: &str) -> Result<(), String> {
    if s.len() < 2 || s.len() > 256 {
        return Err(format!(
            "ECR repository names must be 2 to 256 characters long (this one has {})",
            s.len()
        ));
    }
    if let Some(c) = all_chars(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)
    }) {
        return Err(format!(
            "ECR repository names may contain only lowercase letters, digits and `._-/` (found `{c}`)"
        ));
    }
    for part in s.split('/') {
        let ok = !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            && !part
                .as_bytes()
                .windows(2)
                .any(|w| "._-".contains(w[0] as char) && "._-".contains(w[1] as char));
        if !ok {
            return Err(
                "each `/`-separated part of an ECR repository name must start and end with a letter or digit, with single `.`, `_` or `-` between"
                    .into(),
            );
        }
    }
    Ok(())
}

/// CloudWatch log group names:
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html>
pub fn log_group(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 512 {
        return Err(format!(
            "log group names must be 1 to 512 characters long (this one has {})",
            s.len()
        ));
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii_alphanumeric() || "._-/#".contains(c)) {
        return Err(format!(
            "log group names may contain only letters, digits and `._-/#` (found `{c}`)"
        ));
    }
    Ok(())
}

/// The retention values CloudWatch Logs accepts.
pub fn retention_days(s: &str) -> Result<(), String> {
    const ALLOWED: &[u32] = &[
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
        2922, 3288, 3653,
    ];
    match s.parse::<u32>() {
        Ok(n) if ALLOWED.contains(&n) => Ok(()),
        _ => Err(format!(
            "log retention must be one of CloudWatch's values: {}",
            ALLOWED
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// ECS cluster names: up to 255 letters, digits, hyphens and underscores.
pub fn ecs_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err("ECS cluster names must be 1 to 255 characters long".into());
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!(
            "ECS cluster names may contain only letters, digits, `-` and `_` (found `{c}`)"
        ));
    }
    Ok(())
}

/// Task definition families: like cluster names.
pub fn task_family(s: &str) -> Result<(), String> {
    ecs_name(s).map_err(|e| e.replace("ECS cluster names", "task definition families"))
}

/// Security group names: up to 255 ASCII characters, not starting with `sg-`.
pub fn security_group_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err("security group names must be 1 to 255 characters long".into());
    }
    if s.starts_with("sg-") {
        return Err("security group names must not start with `sg-`".into());
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(format!(
            "security group names may contain only printable ASCII (found `{c}`)"
        ));
    }
    Ok(())
}

pub fn security_group_id(s: &str) -> Result<(), String> {
    if s.starts_with("sg-") && s.len() > 3 && s[3..].chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("security group ids look like `sg-0123abcd`".into())
    }
}

pub fn subnets(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("give at least one subnet id, comma-separated".into());
    }
    let ids: Vec<&str> = s.split(',').map(str::trim).collect();
    if ids.iter().any(|x| x.is_empty()) {
        return Err(
            "the list has an empty subnet id (two commas in a row, or one at an end): give ids separated by single commas, such as `subnet-0a1b,subnet-2c3d`"
                .into(),
        );
    }
    if ids.len() > 16 {
        return Err("ECS accepts at most 16 subnets".into());
    }
    for id in ids {
        if !(id.starts_with("subnet-")
            && id.len() > 7
            && id[7..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(format!(
                "`{}` is not a subnet id (they look like `subnet-0123abcd`)",
                crate::config::clip(id)
            ));
        }
    }
    Ok(())
}

/// Secrets Manager names: 1 to 512 of `A-Za-z0-9/_+=.@-`.
pub fn secret_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 512 {
        return Err("secret names must be 1 to 512 characters long".into());
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)) {
        return Err(format!(
            "secret names may contain only letters, digits and `/_+=.@-` (found `{c}`)"
        ));
    }
    Ok(())
}

pub fn region(s: &str) -> Result<(), String> {
    let ok = s.split('-').count() >= 3
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().last().is_some_and(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err("regions look like `us-east-1`".into())
    }
}

pub fn account_id(s: &str) -> Result<(), String> {
    if s.len() == 12 && s.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err("AWS account ids are 12 digits".into())
    }
}

pub fn url(s: &str) -> Result<(), String> {
    if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > 8 {
        Ok(())
    } else {
        Err("expected a URL starting with http:// or https://".into())
    }
}

pub fn registry(s: &str) -> Result<(), String> {
    if s.contains("://") || s.contains('/') || s.is_empty() {
        return Err(
            "a registry is a host name, optionally with a port, such as `123456789012.dkr.ecr.us-east-1.amazonaws.com`"
                .into(),
        );
    }
    Ok(())
}

pub fn image_ref(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err(
            "image references are lowercase with no spaces, such as `minion-base:latest`".into(),
        );
    }
    Ok(())
}

pub fn github_repo(s: &str) -> Result<(), String> {
    if is_github_repo(s) {
        Ok(())
    } else {
        Err("expected OWNER/REPO, such as `acme/my-project`".into())
    }
}

/// Whether `s` reads as GitHub's `OWNER/REPO` (and not a path).
pub fn is_github_repo(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(owner) && ok(repo) && !owner.starts_with('.')
}

pub fn stack_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("stack names must be 1 to 64 characters long".into());
    }
    if let Some(c) = all_chars(s, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!(
            "stack names may contain only letters, digits, `-` and `_` (found `{c}`)"
        ));
    }
    Ok(())
}

pub fn branch_template(s: &str) -> Result<(), String> {
    if !s.contains("{run_id}") {
        return Err(
            "the branch template must contain `{run_id}` so every run gets its own branch".into(),
        );
    }
    if s.contains("..") || s.contains(' ') || s.starts_with('/') || s.ends_with('/') {
        return Err(
            "branch names must not contain `..` or spaces, nor start or end with `/`".into(),
        );
    }
    Ok(())
}

/// A whole number from `lo` to `hi`; `unit` follows the range in the message
/// (` seconds (7 days)`). Values too large for any integer type are refused here, so
/// nothing downstream can overflow on them.
pub fn int_in(s: &str, lo: u64, hi: u64, unit: &str) -> Result<(), String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(format!("expected a whole number from {lo} to {hi}{unit}")),
    }
}

/// Attempts per AWS request, retries included.
pub fn max_attempts(s: &str) -> Result<(), String> {
    int_in(s, 1, 20, "")
}

/// A run's timeout: at most a week.
pub fn run_timeout(s: &str) -> Result<(), String> {
    int_in(s, 1, 604_800, " seconds (604800 is 7 days)")
}

/// GitHub's numeric ids (App, installation) are 64-bit signed integers.
pub fn github_id(s: &str) -> Result<(), String> {
    int_in(s, 1, i64::MAX as u64, "")
}

/// Memory of a local run's container: Docker's floor is 6 MiB, but a minion does not
/// start in less than 64; the top is 1 TiB.
pub fn local_memory_mb(s: &str) -> Result<(), String> {
    int_in(s, 64, 1_048_576, " MiB")
}

/// The disk a local run may fill in its artifacts directory: room for a repository
/// bundle (capped at 2 GiB) and the logs is the user's to give.
pub fn output_limit_mb(s: &str) -> Result<(), String> {
    int_in(s, 16, 1_048_576, " MiB")
}

/// Process limit of a local run's container (the kernel's pid_max is at most 4194304).
pub fn pids_limit(s: &str) -> Result<(), String> {
    int_in(s, 16, 4_194_304, "")
}

/// CPUs of a local run's container: Docker accepts steps of 0.01.
pub fn local_cpus(s: &str) -> Result<(), String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (0.01..=1024.0).contains(&n) => Ok(()),
        _ => Err("expected a number of CPUs from 0.01 to 1024".into()),
    }
}

/// The cpu units Fargate offers.
pub const FARGATE_CPUS: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

pub fn fargate_cpu(s: &str) -> Result<(), String> {
    match s.trim().parse::<u32>() {
        Ok(n) if FARGATE_CPUS.contains(&n) => Ok(()),
        _ => Err(
            "Fargate cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384 (cpu units; 1024 is one vCPU)"
                .into(),
        ),
    }
}

/// Fargate memory alone (the pair with cpu is checked once both are known).
pub fn fargate_memory(s: &str) -> Result<(), String> {
    int_in(
        s,
        512,
        122_880,
        " MiB (Fargate's smallest and largest task memory)",
    )
}

/// Runs of a fleet in flight at once.
pub fn max_parallel(s: &str) -> Result<(), String> {
    int_in(s, 1, 1000, "")
}

pub fn network(s: &str) -> Result<(), String> {
    match s {
        "proxy-only" | "open" => Ok(()),
        _ => Err(format!(
            "`{s}` is not a network mode: write `proxy-only` or `open`"
        )),
    }
}

pub fn cpu_architecture(s: &str) -> Result<(), String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "X86_64" | "ARM64" => Ok(()),
        _ => Err("expected X86_64 or ARM64 (Fargate's CPU architectures)".into()),
    }
}

pub fn boolean(s: &str) -> Result<(), String> {
    parse_bool(s)
        .map(|_| ())
        .ok_or_else(|| "expected true or false (or 1 / 0)".into())
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Whether a value has the shape of an Anthropic API key.
pub fn is_anthropic_key(s: &str) -> bool {
    s.trim().starts_with("sk-ant-")
}

/// Whether a value is a PEM private key (what GitHub generates for an App).
pub fn is_pem_private_key(s: &str) -> bool {
    s.contains("-----BEGIN") && s.contains("PRIVATE KEY-----")
}

/// Valid Fargate cpu/memory pairs:
/// <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size>
pub fn fargate_size(cpu: u32, memory: u32) -> Result<(), String> {
    let ok = match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (1024..=4096).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (2048..=8192).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (4096..=16384).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (8192..=30720).contains(&memory) && memory.is_multiple_of(1024),
        8192 => (16384..=61440).contains(&memory) && memory.is_multiple_of(4096),
        16384 => (32768..=122880).contains(&memory) && memory.is_multiple_of(8192),
        _ => {
            return Err(format!(
                "Fargate cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384 (got {cpu})"
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        let range = match cpu {
            256 => "512, 1024 or 2048",
            512 => "1024 to 4096 in steps of 1024",
            1024 => "2048 to 8192 in steps of 1024",
            2048 => "4096 to 16384 in steps of 1024",
            4096 => "8192 to 30720 in steps of 1024",
            8192 => "16384 to 61440 in steps of 4096",
            _ => "32768 to 122880 in steps of 8192",
        };
        Err(format!(
            "Fargate memory for cpu {cpu} must be {range} MiB (got {memory})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rules() {
        assert!(bucket_name("lackey-artifacts-123456789012").is_ok());
        assert!(bucket_name("ab").unwrap_err().contains("3 to 63"));
        assert!(bucket_name("My_Bucket").unwrap_err().contains("lowercase"));
        assert!(bucket_name("-abc").unwrap_err().contains("begin and end"));
        assert!(bucket_name("a..b").unwrap_err().contains("adjacent"));
        assert!(bucket_name("192.168.5.4")
            .unwrap_err()
            .contains("IP address"));
        assert!(bucket_name("xn--abc").unwrap_err().contains("xn--"));
        assert!(bucket_name("abc-s3alias").unwrap_err().contains("-s3alias"));
    }

    #[test]
    fn other_names() {
        assert!(iam_role("lackey-ecs-execution").is_ok());
        assert!(iam_role("bad role").is_err());
        assert!(iam_role(&"r".repeat(65)).is_err());
        assert!(ecr_repository("lackey-minion").is_ok());
        assert!(ecr_repository("team/lackey-minion").is_ok());
        assert!(ecr_repository("Lackey").is_err());
        assert!(ecr_repository("a--b").is_err());
        assert!(log_group("/ecs/lackey-minion").is_ok());
        assert!(log_group("bad group").is_err());
        assert!(subnets("subnet-0a1b,subnet-2c3d").is_ok());
        assert!(subnets("subnet-zz").is_err());
        assert!(subnets("subnet-01,,subnet-02")
            .unwrap_err()
            .contains("empty subnet id"));
        assert!(subnets("subnet-01,")
            .unwrap_err()
            .contains("empty subnet id"));
        assert!(subnets(" subnet-01 , subnet-02 ").is_ok());
        assert!(security_group_name("sg-foo").is_err());
        assert!(is_github_repo("acme/my-project"));
        assert!(!is_github_repo("."));
        assert!(!is_github_repo("./repo"));
        assert!(!is_github_repo("/abs/path"));
        assert!(!is_github_repo("a/b/c"));
    }

    #[test]
    fn numbers_have_ranges_and_never_overflow() {
        let huge = "18446744073709551615";
        let beyond = "99999999999999999999999";
        for check in [
            max_attempts as fn(&str) -> Result<(), String>,
            run_timeout,
            local_memory_mb,
            pids_limit,
            local_cpus,
            fargate_cpu,
            fargate_memory,
        ] {
            assert!(check(huge).is_err());
            assert!(check(beyond).is_err());
            assert!(check("-1").is_err());
            assert!(check("0").is_err());
            assert!(check("lots").is_err());
        }
        assert!(github_id(beyond).is_err());
        assert!(github_id("9223372036854775808").is_err());
        assert!(github_id("9223372036854775807").is_ok());
        assert!(run_timeout("604800").is_ok());
        assert_eq!(
            run_timeout("604801").unwrap_err(),
            "expected a whole number from 1 to 604800 seconds (604800 is 7 days)"
        );
        assert!(local_memory_mb("4096").is_ok());
        assert!(local_memory_mb("9223372036854775807").is_err());
        assert!(local_cpus("0.5").is_ok());
        assert!(local_cpus("NaN").is_err());
        assert!(local_cpus("inf").is_err());
        assert!(fargate_cpu("1024").is_ok());
        assert!(fargate_cpu("333").unwrap_err().contains("Fargate cpu"));
        assert!(max_attempts("5").is_ok());
        assert!(pids_limit("512").is_ok());
    }

    #[test]
    fn fargate_pairs() {
        assert!(fargate_size(1024, 4096).is_ok());
        assert!(fargate_size(256, 512).is_ok());
        assert!(fargate_size(256, 4096)
            .unwrap_err()
            .contains("512, 1024 or 2048"));
        assert!(fargate_size(1000, 4096)
            .unwrap_err()
            .contains("must be one of"));
        assert!(fargate_size(8192, 20000).is_err());
        assert!(fargate_size(16384, 32768).is_ok());
    }
}
