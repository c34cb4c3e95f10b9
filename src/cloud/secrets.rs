//! Reading the stack's secrets.
//!
//! ```no_run
//! # async fn demo(aws: &lackey::aws::Aws) -> anyhow::Result<()> {
//! use lackey::cloud::secrets::get_github_app_private_key;
//! let private_key = get_github_app_private_key(aws, "lackey/github-app-key").await?;
//! let gh = lackey::github::GitHub::new("https://api.github.com");
//! let token = gh.installation_token("YOUR_GITHUB_APP_ID", &private_key, "YOUR_INSTALLATION_ID", None).await?;
//! println!("{:?}", gh.installation_repositories(&token.token).await?); // your installed repo(s)
//! # Ok(()) }
//! ```

use crate::aws::{Aws, AwsResultExt, Failure};
use crate::error::Fail;

/// A secret's string value. A secret that exists without a value is an error that says
/// how to store one.
pub async fn get_secret_value(aws: &Aws, name: &str) -> anyhow::Result<String> {
    match aws
        .secrets()
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
    {
        Ok(o) => o.secret_string().map(str::to_string).ok_or_else(|| {
            Fail::new(format!("secret `{name}` holds binary data, not text")).into()
        }),
        Err(e) => match Failure::of(&e) {
            Failure::NotFound => Err(Fail::new(format!(
                "secret `{name}` does not exist or has no value"
            ))
            .with_hint(format!("run `lackey up`, then `lackey secret put {name}`"))
            .into()),
            // Secrets Manager's answer for a secret scheduled for deletion.
            Failure::InvalidForState => Err(Fail::new(format!(
                "secret `{name}` is scheduled for deletion"
            ))
            .with_hint("run `lackey up` to restore it")
            .into()),
            _ => Err(e).aws(format!("failed to read secret `{name}`")),
        },
    }
}

pub async fn get_github_app_private_key(aws: &Aws, secret_name: &str) -> anyhow::Result<String> {
    let key = get_secret_value(aws, secret_name).await?;
    if !crate::config::validate::is_pem_private_key(&key) {
        return Err(Fail::new(format!(
            "secret `{secret_name}` does not hold a PEM private key"
        ))
        .with_hint(format!(
            "store the app's .pem: lackey secret put {secret_name} --from-file app.private-key.pem"
        ))
        .into());
    }
    Ok(key)
}
