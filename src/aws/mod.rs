//! One AWS configuration per invocation, and the error helpers every AWS call shares.
//!
//! The `SdkConfig` is built once from `--profile`, `--region`, `--endpoint-url` (or the
//! SDK's standard `AWS_ENDPOINT_URL`, resolved in settings) and the retry settings;
//! every client is made from it. With an endpoint override (moto, LocalStack) S3 uses
//! path-style addressing, because virtual-host buckets do not resolve on loopback.
//!
//! SDK errors never reach the user as a bare `SdkError` (its Display says only
//! "service error"): [`AwsResultExt::aws`] renders the code, message and request id,
//! and attaches a hint for the failures people actually hit.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::request_id::RequestId;
use tokio::sync::OnceCell;

use crate::config::{keys, Settings, Source};
use crate::error::{Fail, Hint};

/// Clients for every AWS service lackey uses, built from one `SdkConfig`.
pub struct Aws {
    pub sdk: SdkConfig,
    endpoint: Option<String>,
    account: OnceCell<String>,
}

/// The inputs of an AWS configuration.
#[derive(Clone, Debug, Default)]
pub struct AwsParams {
    pub region: Option<String>,
    /// A profile the user chose (not the built-in `default`, which the SDK finds itself).
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_attempts: u32,
    /// Named in the User-Agent (`app/<name>`), so AWS-side logs tell the CLI from the minion.
    pub app_name: &'static str,
}

impl AwsParams {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<AwsParams> {
        Ok(AwsParams {
            region: settings.get(&keys::AWS_REGION).map(str::to_string),
            profile: settings
                .resolved(&keys::AWS_PROFILE)
                .filter(|r| r.source != Source::Default)
                .map(|r| r.value.clone()),
            endpoint_url: settings.get(&keys::AWS_ENDPOINT_URL).map(str::to_string),
            max_attempts: settings.number(&keys::AWS_MAX_ATTEMPTS)?,
            app_name: "lackey",
        })
    }
}

impl Aws {
    /// Resolve credentials, region and endpoint once.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Aws> {
        Self::connect_with(AwsParams::from_settings(settings)?).await
    }

    pub async fn connect_with(params: AwsParams) -> anyhow::Result<Aws> {
        let max_attempts = params.max_attempts.max(1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .app_name(aws_config::AppName::new(params.app_name).expect("a valid app name"))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(p) = &params.profile {
            loader = loader.profile_name(p);
        }
        if let Some(region) = &params.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let endpoint = params.endpoint_url.clone();
        if let Some(url) = &endpoint {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Fail::new(format!("missing {}", keys::AWS_REGION.how_to_set()))
                .with_hint(
                    "pass --region REGION; `lackey init --region REGION` writes it into lackey.toml",
                )
                .into());
        }
        Ok(Aws {
            sdk,
            endpoint,
            account: OnceCell::new(),
        })
    }

    pub fn region(&self) -> &str {
        self.sdk.region().map(|r| r.as_ref()).unwrap_or("us-east-1")
    }

    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.endpoint.is_some())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk)
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk)
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk)
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk)
    }

    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }

    /// The caller's account id, asked of STS once per invocation.
    pub async fn account_id(&self) -> anyhow::Result<String> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .sts()
                    .get_caller_identity()
                    .send()
                    .await
                    .aws("failed to read the caller identity from STS")?;
                out.account
                    .ok_or_else(|| anyhow::anyhow!("STS returned no account id"))
            })
            .await
            .cloned()
    }

    /// Fill the account id (and so the default bucket and registry) from STS when the
    /// user has not set them.
    pub async fn discover_account(&self, settings: &mut Settings) -> anyhow::Result<()> {
        if settings.get(&keys::AWS_ACCOUNT_ID).is_none() {
            let account = self.account_id().await?;
            settings.set_discovered(&keys::AWS_ACCOUNT_ID, account, "STS GetCallerIdentity");
        }
        if settings.get(&keys::AWS_REGION).is_none() {
            settings.set_discovered(&keys::AWS_REGION, self.region(), "AWS profile");
        }
        Ok(())
    }
}

/// An AWS service error, rendered with its code, message and request id.
#[derive(Debug)]
pub struct AwsError {
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// Turn an `SdkError` into an error that says what happened.
pub fn render_sdk_error<E>(err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let request_id = err.request_id().map(str::to_string);
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let message = match (e.code(), e.message()) {
                (_, Some(m)) => m.to_string(),
                (Some(_), None) => "no message".to_string(),
                // An error body the SDK could not read: say what the service answered.
                (None, None) => format!(
                    "AWS answered HTTP {} with an error body lackey cannot read",
                    se.raw().status().as_u16()
                ),
            };
            AwsError {
                code: e.code().map(str::to_string),
                message,
                request_id,
            }
        }
        SdkError::DispatchFailure(d) => {
            let full = DisplayErrorContext(&err).to_string();
            let message = if full.contains("loading credentials") || full.contains("no credentials")
            {
                "could not reach AWS: no credentials were found (environment, profile files, SSO, instance metadata)".to_string()
            } else if d.is_timeout() {
                "could not reach AWS: the connection timed out".to_string()
            } else {
                // The innermost cause says it best ("Connection refused (os error 111)").
                let mut cause: &dyn std::error::Error = &err;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                format!("could not reach AWS: {cause}")
            };
            AwsError {
                code: None,
                message,
                request_id: None,
            }
        }
        SdkError::TimeoutError(_) => AwsError {
            code: None,
            message: "the request to AWS timed out".into(),
            request_id: None,
        },
        SdkError::ResponseError(_) => AwsError {
            code: None,
            message: format!(
                "could not read AWS's response: {}",
                DisplayErrorContext(&err)
            ),
            request_id,
        },
        _ => AwsError {
            code: None,
            message: DisplayErrorContext(&err).to_string(),
            request_id,
        },
    }
}

/// The fix for the AWS failures users hit most, by error code.
fn hint_for(err: &AwsError) -> Option<&'static str> {
    let code = err.code.as_deref().unwrap_or("");
    if Failure::of_code(code) == Failure::AccessDenied || code.contains("AccessDenied") {
        return Some("the credentials in use lack this permission: `lackey policy` prints every permission lackey needs, to attach to the identity `aws sts get-caller-identity` names");
    }
    if code == "ExpiredToken" || code == "ExpiredTokenException" || code == "RequestExpired" {
        return Some(
            "your AWS session has expired: refresh the credentials (`aws sso login` or a new key)",
        );
    }
    if code == "InvalidClientTokenId"
        || code == "UnrecognizedClientException"
        || code == "SignatureDoesNotMatch"
    {
        return Some("the AWS credentials are not valid: run `aws configure` or set AWS_PROFILE");
    }
    if err.message.contains("could not reach AWS") {
        if err.message.contains("no credentials") {
            return Some("no AWS credentials found: run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        }
        return Some(
            "check the network, the region, and --endpoint-url / AWS_ENDPOINT_URL if you set one",
        );
    }
    None
}

pub trait AwsResultExt<T> {
    /// Render an SDK error with what lackey was doing: `failed to create ECS cluster `x``.
    fn aws(self, doing: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn aws(self, doing: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| {
            let rendered = render_sdk_error(e);
            let hint = hint_for(&rendered);
            let err = anyhow::Error::new(rendered).context(doing.into());
            match hint {
                Some(h) => err.context(Hint(h.to_string())),
                None => err,
            }
        })
    }
}

/// The service error's code. Prefer the typed predicates below ([`is_not_found`], …):
/// this stays for callers not converted yet.
pub fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// What an AWS error means to lackey, whatever the service spells it. Each service names
/// the same situation differently (IAM `NoSuchEntity`, ECR `RepositoryNotFoundException`,
/// EC2 `InvalidGroup.NotFound`, …); code that must decide on an error asks one of the
/// predicates below instead of comparing codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The named resource does not exist.
    NotFound,
    /// The resource exists but has no such sub-configuration (an S3 bucket without a tag
    /// set or without ownership controls).
    NoConfiguration,
    /// A create found the name taken, by this account.
    AlreadyExists,
    /// A globally unique name (an S3 bucket's) is held by another account.
    NameTakenElsewhere,
    /// The caller lacks the permission.
    AccessDenied,
    /// The resource lives in another region (S3 answers a redirect).
    WrongRegion,
    /// AWS asks the caller to slow down.
    Throttling,
    /// Another resource still uses this one (a network interface in a security group).
    InUse,
    /// The container still holds things (images in a repository).
    NotEmpty,
    /// The request is not valid for the resource's state: ECS's catch-all
    /// `ClientException` (its answer for a task-definition family with no ACTIVE
    /// revision), Secrets Manager's `InvalidRequestException` (a secret scheduled for
    /// deletion).
    InvalidForState,
    /// Anything else (including no answer at all).
    Other,
}

impl Failure {
    /// The meaning of a service error code.
    pub fn of_code(code: &str) -> Failure {
        match code {
            "NoSuchEntity"
            | "ResourceNotFoundException"
            | "RepositoryNotFoundException"
            | "NoSuchBucket"
            | "NoSuchKey"
            | "ClusterNotFoundException"
            | "InvalidGroup.NotFound"
            | "NotFoundException" => Failure::NotFound,
            "NoSuchTagSet" | "OwnershipControlsNotFoundError" => Failure::NoConfiguration,
            "EntityAlreadyExists"
            | "ResourceExistsException"
            | "ResourceAlreadyExistsException"
            | "RepositoryAlreadyExistsException"
            | "InvalidGroup.Duplicate"
            | "BucketAlreadyOwnedByYou" => Failure::AlreadyExists,
            "BucketAlreadyExists" => Failure::NameTakenElsewhere,
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthFailure" => {
                Failure::AccessDenied
            }
            // S3's answers for a bucket in another region than the request's.
            "PermanentRedirect" | "TemporaryRedirect" | "AuthorizationHeaderMalformed" => {
                Failure::WrongRegion
            }
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown" => Failure::Throttling,
            "DependencyViolation" | "DeleteConflict" | "ResourceInUseException" => Failure::InUse,
            "RepositoryNotEmptyException" | "BucketNotEmpty" => Failure::NotEmpty,
            "ClientException" | "InvalidRequestException" => Failure::InvalidForState,
            _ => Failure::Other,
        }
    }

    /// The meaning of an SDK error.
    pub fn of<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata,
    {
        error_code(err).map_or(Failure::Other, Failure::of_code)
    }

    /// The meaning of an error already rendered by [`AwsResultExt::aws`] (anywhere in
    /// its chain); `Other` when it is not an AWS service error.
    pub fn of_rendered(err: &anyhow::Error) -> Failure {
        err.chain()
            .find_map(|e| e.downcast_ref::<AwsError>())
            .and_then(|a| a.code.as_deref())
            .map_or(Failure::Other, Failure::of_code)
    }
}

/// The named resource does not exist.
pub fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::NotFound
}

/// The resource exists without the sub-configuration asked for (tag set, ownership).
pub fn is_no_configuration<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::NoConfiguration
}

/// A create found the name already taken in this account.
pub fn is_already_exists<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::AlreadyExists
}

/// The caller lacks the permission.
pub fn is_access_denied<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::AccessDenied
}

/// The caller's own policies deny the call: AWS's message then names the action and
/// the identity ("… is not authorized to perform: s3:GetBucketTagging … because no
/// identity-based policy allows …"). S3 answers a bucket of another account with a bare
/// "Access Denied", which this tells apart.
pub fn is_denied_to_caller<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            Failure::of(err) == Failure::AccessDenied
                && se
                    .err()
                    .message()
                    .is_some_and(|m| m.contains("is not authorized to perform"))
        }
        _ => false,
    }
}

/// AWS asks the caller to slow down.
pub fn is_throttling<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::Throttling
}

/// The request is not valid in the resource's current state (see [`Failure::InvalidForState`]).
pub fn is_invalid_for_state<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    Failure::of(err) == Failure::InvalidForState
}

/// Worth trying again later: no answer (a dropped connection, a timeout), throttling, or
/// the service's own failure (`ServerException` is ECS's name for it).
pub fn is_retryable<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => true,
        _ => {
            is_throttling(err)
                || matches!(
                    error_code(err),
                    Some(
                        "ServiceUnavailable"
                            | "ServiceUnavailableException"
                            | "InternalFailure"
                            | "InternalError"
                            | "ServerException"
                    )
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_spelling_of_a_situation_means_the_same() {
        for code in [
            "NoSuchEntity",
            "ResourceNotFoundException",
            "RepositoryNotFoundException",
            "NoSuchBucket",
            "ClusterNotFoundException",
            "InvalidGroup.NotFound",
        ] {
            assert_eq!(Failure::of_code(code), Failure::NotFound, "{code}");
        }
        for code in [
            "EntityAlreadyExists",
            "ResourceExistsException",
            "ResourceAlreadyExistsException",
            "InvalidGroup.Duplicate",
            "BucketAlreadyOwnedByYou",
        ] {
            assert_eq!(Failure::of_code(code), Failure::AlreadyExists, "{code}");
        }
        assert_eq!(
            Failure::of_code("BucketAlreadyExists"),
            Failure::NameTakenElsewhere
        );
        assert_eq!(Failure::of_code("NoSuchTagSet"), Failure::NoConfiguration);
        assert_eq!(Failure::of_code("AccessDenied"), Failure::AccessDenied);
        assert_eq!(Failure::of_code("PermanentRedirect"), Failure::WrongRegion);
        assert_eq!(
            Failure::of_code("RequestLimitExceeded"),
            Failure::Throttling
        );
        assert_eq!(Failure::of_code("DependencyViolation"), Failure::InUse);
        assert_eq!(
            Failure::of_code("RepositoryNotEmptyException"),
            Failure::NotEmpty
        );
        assert_eq!(
            Failure::of_code("ClientException"),
            Failure::InvalidForState
        );
        assert_eq!(Failure::of_code("ValidationError"), Failure::Other);
    }

    #[test]
    fn a_rendered_error_keeps_its_meaning_through_context() {
        let e = anyhow::Error::new(AwsError {
            code: Some("DependencyViolation".into()),
            message: "resource sg-1 has a dependent object".into(),
            request_id: None,
        })
        .context("failed to delete security group `x`");
        assert_eq!(Failure::of_rendered(&e), Failure::InUse);
        assert_eq!(
            Failure::of_rendered(&anyhow::anyhow!("DependencyViolation in a message")),
            Failure::Other
        );
    }
}
