//! [`Secret`]: a credential value that never shows itself. Its `Debug` prints
//! `Secret(REDACTED)`, it has no `Display`, and the only way to the value is [`Secret::expose`],
//! which strategies call when they put it on a request.

use crate::error::{Error, Result};
use std::sync::Arc;

/// A credential: an API key, a token, a password or a client secret.
///
/// ```
/// use stitch::auth::Secret;
///
/// let key = Secret::new("k-123");
/// assert_eq!(format!("{key:?}"), "Secret(REDACTED)");
/// // From the environment: a missing or empty variable is an error naming it.
/// let missing = Secret::from_env("STITCH_DOC_SURELY_UNSET").unwrap_err();
/// assert!(missing.to_string().contains("STITCH_DOC_SURELY_UNSET"));
/// ```
#[derive(Clone)]
pub struct Secret(Source);

#[derive(Clone)]
enum Source {
    Value(Arc<str>),
    /// Asked every time the value is needed: a rotating credential (a vault lease, a file that
    /// is rewritten) is picked up without rebuilding the runtime.
    Dynamic(Arc<dyn Fn() -> String + Send + Sync>),
}

impl Secret {
    /// A secret given directly.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Source::Value(Arc::from(value.into())))
    }

    /// The value of environment variable `var`; fails with [`Error::Config`] naming the
    /// variable (never its value) when it is missing, empty or not Unicode.
    pub fn from_env(var: &str) -> Result<Self> {
        let fail = |why: &str| Error::Config {
            stitch: "auth",
            reason: format!("environment variable `{var}` {why}: set it to the credential"),
        };
        match std::env::var(var) {
            Ok(value) if value.is_empty() => Err(fail("is empty")),
            Ok(value) => Ok(Secret::new(value)),
            Err(std::env::VarError::NotPresent) => Err(fail("is not set")),
            Err(std::env::VarError::NotUnicode(_)) => Err(fail("is not valid Unicode")),
        }
    }

    /// The contents of a file (a mounted Kubernetes or Docker secret), one trailing line break
    /// (`\n` or `\r\n`) removed; fails with [`Error::Config`] naming the file when it cannot be
    /// read or is empty.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let fail = |why: String| Error::Config {
            stitch: "auth",
            reason: format!("secret file `{}` {why}", path.display()),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(fail("is empty".into()));
        }
        Ok(Secret::new(value))
    }

    /// A secret produced by `source` every time it is needed (each request of a strategy that
    /// reads it), so a rotated credential is used from the next request on.
    pub fn from_fn(source: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Secret(Source::Dynamic(Arc::new(source)))
    }

    /// The value when it is given once (not read from a source on every use): what a strategy
    /// may build its header from once, instead of on every request.
    pub(crate) fn fixed(&self) -> Option<&str> {
        match &self.0 {
            Source::Value(v) => Some(v),
            Source::Dynamic(_) => None,
        }
    }

    /// The value. Put it on a request or hash it; never log, format or store it.
    pub fn expose(&self) -> Arc<str> {
        match &self.0 {
            Source::Value(v) => v.clone(),
            Source::Dynamic(f) => Arc::from(f()),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_lose_one_trailing_line_break_and_empty_sources_are_refused() {
        let dir = std::env::temp_dir().join(format!("stitch-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(&*Secret::from_file(&file).unwrap().expose(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let empty = Secret::from_file(&file).unwrap_err().to_string();
        assert!(empty.contains("is empty"), "{empty}");
        let missing = Secret::from_file(dir.join("absent"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
        let rotating = Secret::from_fn(|| "v2".into());
        assert_eq!(&*rotating.expose(), "v2");
        assert_eq!(format!("{rotating:?}"), "Secret(REDACTED)");
    }
}
