//! A request's method as OpenTelemetry's HTTP semantic conventions record it:
//! the methods of RFC 9110 and PATCH by name, anything else as `_OTHER`.
//!
//! Clients choose the method freely (`curl -X ANYTHING`), so a label or span
//! name taken from it as sent would let each new word create new series.

use std::borrow::Cow;

/// What the conventions record for a method they do not know.
pub const OTHER_METHOD: &str = "_OTHER";

/// The most of an unknown method kept in `http.request.method_original`: a
/// method is as long as the client likes, and each sampled span would keep it
/// until exported.
const MAX_ORIGINAL_METHOD_LEN: usize = 64;

/// The `method` label and `http.request.method` value for `method`: its name
/// for a known method (case-sensitive, as HTTP methods are), else `_OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// The method as sent, for `http.request.method_original`, when it differs
/// from [`method_label`]'s value (cut to 64 characters).
pub fn original_method(method: &http::Method) -> Option<Cow<'static, str>> {
    if method_label(method) != OTHER_METHOD {
        return None;
    }
    // A method is a token: ASCII only, so any byte index is a character boundary.
    let original = method.as_str();
    let kept = &original[..original.len().min(MAX_ORIGINAL_METHOD_LEN)];
    Some(Cow::Owned(kept.to_owned()))
}

/// The `{method}` part of a span name: the method, or `HTTP` for one the
/// conventions record as `_OTHER`.
fn span_name_method(method: &http::Method) -> &'static str {
    match method_label(method) {
        OTHER_METHOD => "HTTP",
        known => known,
    }
}

/// `GET /ping`: a request span's name, `{method} {target}` (the route for a
/// server, the target service for a client), as OpenTelemetry's HTTP
/// conventions ask. Joined by hand: `format!` took about 1,000 instructions
/// per sampled request (callgrind), this about 300.
pub fn span_name(method: &http::Method, target: &str) -> String {
    let method = span_name_method(method);
    let mut name = String::with_capacity(method.len() + 1 + target.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(target);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(text: &str) -> http::Method {
        http::Method::from_bytes(text.as_bytes()).expect("a valid token")
    }

    #[test]
    fn known_methods_keep_their_name() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            assert_eq!(method_label(&method(name)), name);
            assert_eq!(original_method(&method(name)), None);
            assert_eq!(span_name_method(&method(name)), name);
            assert_eq!(span_name(&method(name), "/ping"), format!("{name} /ping"));
        }
    }

    #[test]
    fn anything_else_is_other_and_keeps_its_original() {
        // Methods are case-sensitive: `get` is not GET.
        for name in ["get", "X1", "PROPFIND", "QUERY", "Patch"] {
            assert_eq!(method_label(&method(name)), "_OTHER", "{name}");
            assert_eq!(original_method(&method(name)).as_deref(), Some(name));
            assert_eq!(span_name_method(&method(name)), "HTTP");
            assert_eq!(span_name(&method(name), "/ping"), "HTTP /ping");
        }
        let long = "X".repeat(1000);
        assert_eq!(
            original_method(&method(&long)).map(|original| original.len()),
            Some(64)
        );
    }
}
