//! Facts the macros (at compile time) and the runtime (at run time) must agree on, kept in one
//! place so they cannot drift apart: which header names and query keys carry credentials.
//!
//! Not public API of stitch: use the re-exports in `stitch::auth`.

/// Header names (compared case-insensitively) whose values are credentials: folded into the
/// principal as a keyed hash, never written into a cache key, an error or a trace in clear.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-csrf-token",
    "x-xsrf-token",
];

/// Query keys (compared case-insensitively) whose values are credentials by default, whether
/// written in a template's static query, passed as a `#[query]` argument or sent in a URL.
pub const CREDENTIAL_QUERY_KEYS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "key",
    "sig",
    "signature",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "auth",
    "code",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

/// Whether `name` is a credential header, in any case and with any `-`/`_` separators
/// (`X-Api-Key`, `x_api_key`, `XApiKey`).
pub fn is_credential_header(name: &str) -> bool {
    matches_any(CREDENTIAL_HEADERS, name)
}

/// Whether `key` is a query key that carries a credential, in any case and with any `-`/`_`
/// separators: APIs spell one name many ways (`access_token`, `accessToken`, `Access-Token`).
pub fn is_credential_query_key(key: &str) -> bool {
    matches_any(CREDENTIAL_QUERY_KEYS, key)
}

/// Whether `name` is one of `list` (lower case, no leading separator), compared ASCII
/// case-insensitively and ignoring `-` and `_`. Runs for every query pair and header argument of
/// every call: no allocation, and most entries are rejected on their first letter.
fn matches_any(list: &[&str], name: &str) -> bool {
    fn letters(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes()
            .filter(|b| !matches!(b, b'-' | b'_'))
            .map(|b| b.to_ascii_lowercase())
    }
    let Some(first) = letters(name).next() else {
        return false;
    };
    list.iter()
        .any(|entry| entry.as_bytes()[0] == first && letters(entry).eq(letters(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lower_case_and_match_any_case() {
        for name in CREDENTIAL_HEADERS.iter().chain(CREDENTIAL_QUERY_KEYS) {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(
                !name.starts_with(['-', '_']),
                "compared from its first letter"
            );
        }
        assert!(is_credential_header("Api-Key"));
        assert!(is_credential_query_key("X-Amz-Signature"));
        assert!(!is_credential_header("accept-language"));
        assert!(!is_credential_query_key("page"));
        assert!(is_credential_query_key("accessToken") && is_credential_query_key("Client-Secret"));
        assert!(is_credential_header("x_api_key") && !is_credential_header("x-tenant"));
    }
}
