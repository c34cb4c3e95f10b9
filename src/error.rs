//! Errors that carry their own exit code and fix.
//!
//! Every fallible function returns `anyhow::Result`. Three kinds of layer can sit in an
//! error's chain and are read back when the error reaches `main`:
//!
//! * [`Fail`]: an error lackey raises itself about the user's input or an expected
//!   failure (exit 1). Its message is the whole story; an optional hint says the fix.
//! * [`Hint`]: a fix attached to any error as its context; it prints nothing in
//!   the chain itself and shows as the `hint:` line.
//! * [`Interrupted`]: the user pressed Ctrl-C (exit 130).
//!
//! Anything else (an AWS, Docker or network error, a bug) is a failure too and exits 1.
//! Exit 2 is never an error: it belongs to `plan --detailed-exitcode` alone, meaning
//! changes are pending, so a script can tell an outage from a diff.

use std::fmt;

/// An error lackey raises on purpose: bad input, a failed check, a run that did not
/// succeed. Rendered as `error: {message}`; exits 1.
#[derive(Debug)]
pub struct Fail {
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

impl Fail {
    pub fn new(message: impl Into<String>) -> Self {
        Fail {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A fix, attached as a context layer. It displays as nothing so it adds no line to the
/// chain; [`render`] finds it by type and prints it as the `hint:` line.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// The user interrupted the operation (Ctrl-C); exit 130.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Exit code of every failure, expected or not.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `plan --detailed-exitcode` when changes are pending; never an error's.
pub const EXIT_CHANGES_PENDING: u8 = 2;
/// Exit code of an interrupted command (Ctrl-C, SIGTERM).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit code an error maps to: 130 when the user interrupted, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|cause| cause.downcast_ref::<Interrupted>().is_some())
    {
        EXIT_INTERRUPTED
    } else {
        EXIT_FAILURE
    }
}

/// The lines an error renders to: `error:` first, then `caused by:` for each further
/// message, then at most one `hint:` (the outermost one, which is the most specific
/// to what the user asked for).
pub fn render(err: &anyhow::Error) -> Vec<(&'static str, String)> {
    let mut lines: Vec<(&'static str, String)> = Vec::new();
    // anyhow finds a context value by type through the whole chain, outermost first.
    let mut hint: Option<String> = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Fail>() {
            if let Some(h) = &f.hint {
                hint.get_or_insert_with(|| h.clone());
            }
        }
        let text = cause.to_string();
        // Some libraries repeat their source's message in their own; skip exact repeats.
        if lines.last().map(|(_, t)| t == &text).unwrap_or(false) || text.is_empty() {
            continue;
        }
        let label = if lines.is_empty() {
            "error"
        } else {
            "caused by"
        };
        lines.push((label, text));
    }
    if let Some(h) = hint {
        lines.push(("hint", h));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn render_orders_error_causes_and_hint() {
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("connection refused"));
        let err = err
            .context("failed to create ECS cluster `lackey`")
            .context(Hint("check --endpoint-url".into()))
            .unwrap_err();
        let lines = render(&err);
        assert_eq!(
            lines,
            vec![
                ("error", "failed to create ECS cluster `lackey`".to_string()),
                ("caused by", "connection refused".to_string()),
                ("hint", "check --endpoint-url".to_string()),
            ]
        );
        // An unexpected error is a failure like any other: never 2, which means
        // "changes pending" to a script reading `plan --detailed-exitcode`.
        assert_eq!(exit_code(&err), 1);
    }

    #[test]
    fn fail_exits_one_and_carries_its_hint() {
        let err = anyhow::Error::new(Fail::new("missing bucket `b`").with_hint("run `lackey up`"));
        assert_eq!(exit_code(&err), 1);
        assert_eq!(render(&err).last().unwrap().0, "hint");
        let err = anyhow::Error::new(Interrupted).context("while waiting");
        assert_eq!(exit_code(&err), 130);
    }
}
