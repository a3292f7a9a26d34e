//! Secrets kept out of logs, spans and error lines.
//!
//! OpenTelemetry's semantic conventions for `url.full` ask that credentials in
//! a URL (`https://user:password@host/`) be written `REDACTED:REDACTED@`, and
//! that the values of query parameters that carry signatures be `REDACTED`.
//! Everything this workspace prints or exports about a URL goes through here.

use std::borrow::Cow;

use reqwest::Url;

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// Query parameters whose values are credentials (the semantic conventions' list).
const SECRET_QUERY_PARAMETERS: [&str; 4] =
    ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// `url` with any user name and password replaced by `REDACTED:REDACTED` and
/// the values of signature query parameters by `REDACTED`; borrowed unchanged
/// when it holds neither.
pub fn redact_url(url: &Url) -> Cow<'_, Url> {
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    let query = url.query().and_then(redact_query);
    if !has_credentials && query.is_none() {
        return Cow::Borrowed(url);
    }
    let mut redacted = url.clone();
    if has_credentials {
        // Both fail only for URLs that cannot have credentials (no host),
        // and such a URL had none to begin with.
        let _ = redacted.set_username(REDACTED);
        let _ = redacted.set_password(Some(REDACTED));
    }
    if let Some(query) = query {
        redacted.set_query(Some(&query));
    }
    Cow::Owned(redacted)
}

/// The query with secret values replaced, or `None` when there is none.
fn redact_query(query: &str) -> Option<String> {
    let mut changed = false;
    let parts: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((name, value)) if SECRET_QUERY_PARAMETERS.contains(&name) && value != REDACTED => {
                changed = true;
                Cow::Owned(format!("{name}={REDACTED}"))
            }
            _ => Cow::Borrowed(part),
        })
        .collect();
    changed.then(|| parts.join("&"))
}

/// `text` (any configuration value, valid URL or not) with the user-info of
/// every `//user:password@` in it replaced by `REDACTED:REDACTED`, for error
/// lines that quote what was given. Any `//` starts an authority here, with
/// or without a scheme before it: a few harmless false positives rather than
/// a password printed.
pub fn redact_userinfo_in(text: &str) -> Cow<'_, str> {
    let mut result = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(slashes) = rest.find("//") {
        let authority_start = slashes + 2;
        let authority_len = rest[authority_start..]
            .find(['/', '?', '#', '\\', ','])
            .unwrap_or(rest.len() - authority_start);
        let authority = &rest[authority_start..authority_start + authority_len];
        result.push_str(&rest[..authority_start]);
        match authority.rfind('@') {
            Some(at) => {
                changed = true;
                result.push_str(REDACTED);
                result.push(':');
                result.push_str(REDACTED);
                result.push_str(&authority[at..]);
            }
            None => result.push_str(authority),
        }
        rest = &rest[authority_start + authority_len..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    result.push_str(rest);
    Cow::Owned(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        redact_url(&Url::parse(text).expect("valid URL")).to_string()
    }

    #[test]
    fn credentials_become_redacted_redacted() {
        assert_eq!(
            redacted("http://user:s3cret@ponger:8080/ping"),
            "http://REDACTED:REDACTED@ponger:8080/ping"
        );
        assert_eq!(
            redacted("http://token@ponger/ping"),
            "http://REDACTED:REDACTED@ponger/ping"
        );
        assert_eq!(
            redacted("http://:s3cret@ponger/ping"),
            "http://REDACTED:REDACTED@ponger/ping"
        );
    }

    #[test]
    fn urls_without_secrets_are_borrowed_unchanged() {
        let url = Url::parse("http://ponger:8080/ping?a=1").expect("valid");
        assert!(matches!(redact_url(&url), Cow::Borrowed(_)));
    }

    #[test]
    fn signature_query_values_are_redacted_others_kept() {
        assert_eq!(
            redacted("http://h/p?a=1&sig=abc&Signature=x&X-Goog-Signature=y&AWSAccessKeyId=k"),
            "http://h/p?a=1&sig=REDACTED&Signature=REDACTED&X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED"
        );
    }

    #[test]
    fn userinfo_in_free_text() {
        assert_eq!(
            redact_userinfo_in("http://a:b@/ping,http://u:p@host:1/x"),
            "http://REDACTED:REDACTED@/ping,http://REDACTED:REDACTED@host:1/x"
        );
        assert_eq!(redact_userinfo_in("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact_userinfo_in("no url"), "no url");
        assert_eq!(
            redact_userinfo_in("x://p@ss@host"),
            "x://REDACTED:REDACTED@host"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_text_panics_and_no_password_survives(
            text in ".{0,60}",
            password in "[A-Za-z0-9]{6,12}",
        ) {
            let _ = redact_userinfo_in(&text);
            let with_secret = format!("{text}http://user:{password}@host/{text}");
            let redacted = redact_userinfo_in(&with_secret);
            prop_assert!(redacted.contains("REDACTED:REDACTED@host/"));
            let printed = crate::cli::printable_value(&with_secret);
            prop_assert!(!printed.chars().any(char::is_control));
        }
    }
}
