//! The one redaction of URLs: every URL stitch shows or keeps (errors, their reqwest sources,
//! tracing events, `Response::url`, shared-store records, `Debug` of runtimes and clients) passes
//! through [`url`] first.
//!
//! Invariant: a redacted URL has no userinfo, and the value of every secret query pair — a
//! well-known credential key ([`crate::auth::CREDENTIAL_QUERY_KEYS`]) or a key the call marked
//! secret (`#[query(secret)]`) — is replaced by `REDACTED`. Other pairs are left as they were sent.

use crate::auth::is_credential_query_key;

/// What replaces a secret value.
pub(crate) const REDACTED: &str = "REDACTED";

/// Query keys a call marked secret beyond the well-known credential keys (empty — and free to
/// clone — unless the call has a `#[query(secret)]` argument).
#[derive(Clone, Default, Debug)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn add(&mut self, key: &str) {
        if !is_credential_query_key(key) && !self.0.iter().any(|k| k == key) {
            self.0.push(key.to_owned());
        }
    }

    fn is_secret(&self, key: &str) -> bool {
        is_credential_query_key(key) || self.0.iter().any(|k| k == key)
    }
}

/// `url` without userinfo and with secret query values replaced by `REDACTED`. A URL with
/// neither is returned as it is (one clone, no re-encoding).
pub(crate) fn url(url: &url::Url, secrets: &Secrets) -> url::Url {
    let mut out = url.clone();
    if out.has_authority() && (!out.username().is_empty() || out.password().is_some()) {
        // Setting these can only fail on URLs that cannot have userinfo, which have none.
        let _ = out.set_username("");
        let _ = out.set_password(None);
    }
    if out.query_pairs().any(|(k, _)| secrets.is_secret(&k)) {
        let pairs: Vec<(String, String)> = out
            .query_pairs()
            .map(|(k, v)| {
                let v = if secrets.is_secret(&k) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out
}

/// A URL given as text (a base URL, for `Debug`): redacted when it parses; otherwise only its
/// scheme is shown, since an unparsable text cannot be checked for secrets.
pub(crate) fn text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(parsed) => {
            let redacted = url(&parsed, &Secrets::default());
            // Keep the text as written when nothing was removed (`Url` adds a trailing `/`).
            if redacted == parsed {
                text.to_owned()
            } else {
                redacted.into()
            }
        }
        Err(_) => format!("<unparsable URL: {REDACTED}>"),
    }
}

/// An [`Error::Transport`](crate::Error::Transport) whose URL — in the error and in reqwest's own
/// error, whose `Display` prints it — is redacted.
pub(crate) fn transport(
    stitch: &'static str,
    fallback: &'static str,
    mut source: reqwest::Error,
    secrets: &Secrets,
) -> crate::Error {
    let shown = match source.url_mut() {
        Some(sent) => {
            *sent = url(sent, secrets);
            sent.to_string()
        }
        None => fallback.to_owned(),
    };
    crate::Error::Transport {
        stitch,
        url: shown,
        source: std::sync::Arc::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_values_are_removed_other_pairs_kept() {
        let mut secrets = Secrets::default();
        secrets.add("q");
        let u = url::Url::parse("https://u:p@h.test/x?page=2&api_key=k1&q=s&Token=t").unwrap();
        assert_eq!(
            url(&u, &secrets).as_str(),
            "https://h.test/x?page=2&api_key=REDACTED&q=REDACTED&Token=REDACTED"
        );
        let plain = url::Url::parse("https://h.test/x?page=2").unwrap();
        assert_eq!(url(&plain, &Secrets::default()), plain);
        assert_eq!(text("https://u:pw@h.test"), "https://h.test/");
        assert_eq!(text("https://h.test"), "https://h.test");
    }
}
