//! A strict reading of the W3C Trace Context (level 1) headers a request
//! brings, before OpenTelemetry's propagator sees them.
//!
//! The propagator is lax: it takes trace IDs of 31 or 33 digits, upper-case
//! or `+`-signed ones, one-character flags. A header that breaks the
//! specification's rules is not a parent at all: the request starts a new
//! trace, as the specification asks.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};

/// The length of a version `00` `traceparent`:
/// `vv-<32 hex trace ID>-<16 hex parent ID>-<2 hex flags>`.
const TRACEPARENT_LEN: usize = 55;

/// The specification's limit on `tracestate` list members.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The longest `tracestate` kept. The specification asks that at least 512
/// characters be propagated and lets longer ones be cut; this bound keeps a
/// hostile header from being copied and parsed for every request.
pub const MAX_TRACESTATE_LEN: usize = 8192;

/// A valid `traceparent`: the caller's trace and span, and whether it sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Reads a `traceparent` value, or `None` where the specification says
    /// to start a new trace: a version other than two lower-case hex digits
    /// or `ff`; for version `00`, anything but exactly 55 characters; IDs or
    /// flags that are not lower-case hex of their exact length; an all-zero
    /// trace or parent ID. A later version is read by its first 55
    /// characters, which must be followed by the end or a `-` (what follows
    /// belongs to that version and is ignored). Of the flags only `sampled`
    /// is defined; the others are ignored.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let [version] = hex_field(&value[0..2])?;
        match version {
            0xff => return None,
            0x00 if value.len() != TRACEPARENT_LEN => return None,
            _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex_field(&value[3..35])?;
        let parent_id: [u8; 8] = hex_field(&value[36..52])?;
        let [flags] = hex_field(&value[53..55])?;
        let trace_id = TraceId::from_bytes(trace_id);
        let parent_id = SpanId::from_bytes(parent_id);
        if trace_id == TraceId::INVALID || parent_id == SpanId::INVALID {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 0x01 == 0x01,
        })
    }
}

impl TraceParent {
    /// The version `00` form, which is what this service propagates, written
    /// without the formatting machinery (the pinger's every ping brings one).
    pub fn to_header(&self) -> [u8; TRACEPARENT_LEN] {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        // The slices have exactly twice the bytes' length: encoding cannot fail.
        let _ = hex::encode_to_slice(self.trace_id.to_bytes(), &mut text[3..35]);
        let _ = hex::encode_to_slice(self.parent_id.to_bytes(), &mut text[36..52]);
        if self.sampled {
            text[54] = b'1';
        }
        text
    }
}

/// The version `00` form (see [`TraceParent::to_header`]).
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits and dashes only.
        f.write_str(std::str::from_utf8(&self.to_header()).map_err(|_| fmt::Error)?)
    }
}

/// Lower-case hex digits, exactly `2 * N` of them.
fn hex_field<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N
        || !digits
            .iter()
            .all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut bytes = [0u8; N];
    hex::decode_to_slice(digits, &mut bytes).ok()?;
    Some(bytes)
}

/// Whether a `tracestate` value (every `tracestate` header of the request,
/// joined by commas) follows the specification: at most 32 list members,
/// each `key=value` with a key of lower-case letters, digits and `_-*/`
/// (up to 256 characters, or `tenant@system` of up to 241 and 14) and a value
/// of up to 256 printable ASCII characters, not ending in a space and without
/// `,` or `=`; no key twice. Empty members (`a=1,,b=2`) are allowed and not
/// counted. Longer than [`MAX_TRACESTATE_LEN`] counts as invalid. An
/// invalid `tracestate` is dropped; the `traceparent` stands.
pub fn is_valid_tracestate(value: &str) -> bool {
    if value.len() > MAX_TRACESTATE_LEN {
        return false;
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, value)) = member.split_once('=') else {
            return false;
        };
        if !is_valid_key(key) || !is_valid_value(value) || keys.contains(&key) {
            return false;
        }
        if keys.len() == MAX_TRACESTATE_MEMBERS {
            return false;
        }
        keys.push(key);
    }
    true
}

fn is_valid_key(key: &str) -> bool {
    let rest_char = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    match key.split_once('@') {
        None => {
            let bytes = key.as_bytes();
            (1..=256).contains(&bytes.len())
                && bytes[0].is_ascii_lowercase()
                && bytes[1..].iter().all(|&c| rest_char(c))
        }
        Some((tenant, system)) => {
            let (tenant, system) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(|&c| rest_char(c))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(|&c| rest_char(c))
        }
    }
}

fn is_valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let non_blank = |c: u8| matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    (1..=256).contains(&bytes.len())
        && bytes.iter().all(|&c| c == b' ' || non_blank(c))
        && bytes.last().is_some_and(|&c| non_blank(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn parse(value: &str) -> Option<TraceParent> {
        TraceParent::parse(value.as_bytes())
    }

    /// Each case names the rule of the specification's section 3.2
    /// (`traceparent` header) it exercises.
    #[test]
    fn traceparent_follows_the_specification() {
        let valid = |sampled| {
            Some(TraceParent {
                trace_id: TraceId::from_hex(TRACE).expect("hex"),
                parent_id: SpanId::from_hex(PARENT).expect("hex"),
                sampled,
            })
        };
        let cases: Vec<(String, Option<TraceParent>, &str)> = vec![
            (
                format!("00-{TRACE}-{PARENT}-01"),
                valid(true),
                "version 00, sampled",
            ),
            (
                format!("00-{TRACE}-{PARENT}-00"),
                valid(false),
                "version 00, not sampled",
            ),
            (
                format!("00-{TRACE}-{PARENT}-09"),
                valid(true),
                "unknown flags are ignored",
            ),
            (
                format!("00-{TRACE}-{PARENT}-fe"),
                valid(false),
                "unknown flags, sampled clear",
            ),
            (
                format!("01-{TRACE}-{PARENT}-01"),
                valid(true),
                "a later version, same form",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds"),
                valid(true),
                "a later version: the rest after a dash is ignored",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-01x"),
                None,
                "a later version: no dash after the flags",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-0"),
                None,
                "a later version, shorter than 55",
            ),
            (
                format!("ff-{TRACE}-{PARENT}-01"),
                None,
                "version ff is invalid",
            ),
            (format!("0g-{TRACE}-{PARENT}-01"), None, "version not hex"),
            (
                format!("0A-{TRACE}-{PARENT}-01"),
                None,
                "version in upper case",
            ),
            (
                format!("00-{TRACE}-{PARENT}-01-extra"),
                None,
                "version 00 with more",
            ),
            (
                format!("00-{TRACE}-{PARENT}-01 "),
                None,
                "version 00 with a trailing space",
            ),
            (
                format!("00-{}-{PARENT}-01", &TRACE[1..]),
                None,
                "trace ID of 31 digits",
            ),
            (
                format!("00-{TRACE}0-{PARENT}-01"),
                None,
                "trace ID of 33 digits",
            ),
            (
                format!("00-{}-{PARENT}-01", "1"),
                None,
                "trace ID of 1 digit",
            ),
            (
                format!("00-+{}-{PARENT}-01", &TRACE[1..]),
                None,
                "trace ID with a sign",
            ),
            (
                format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
                None,
                "trace ID in upper case",
            ),
            (
                format!("00-{}-{PARENT}-01", "0".repeat(32)),
                None,
                "all-zero trace ID",
            ),
            (
                format!("00-{TRACE}-{}-01", &PARENT[1..]),
                None,
                "parent ID of 15 digits",
            ),
            (
                format!("00-{TRACE}-{}0-01", PARENT),
                None,
                "parent ID of 17 digits",
            ),
            (
                format!("00-{TRACE}-{}-01", "0".repeat(16)),
                None,
                "all-zero parent ID",
            ),
            (
                format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
                None,
                "parent ID in upper case",
            ),
            (
                format!("00-{TRACE}-{}-01", "00f067aa0ba902bz"),
                None,
                "parent ID not hex",
            ),
            (
                format!("00-{TRACE}-{PARENT}-1"),
                None,
                "flags of 1 character",
            ),
            (
                format!("00-{TRACE}-{PARENT}-001"),
                None,
                "flags of 3 characters",
            ),
            (format!("00-{TRACE}-{PARENT}-0G"), None, "flags not hex"),
            (
                format!("00_{TRACE}_{PARENT}_01"),
                None,
                "separators other than -",
            ),
            (
                format!("00-{TRACE}-{PARENT}--1"),
                None,
                "a signed flags field",
            ),
            (String::new(), None, "empty"),
        ];
        for (value, expected, rule) in cases {
            assert_eq!(parse(&value), expected, "{rule}: {value:?}");
        }
    }

    #[test]
    fn tracestate_follows_the_specification() {
        let long_value = "v".repeat(256);
        let too_long_value = "v".repeat(257);
        let many = |count: usize| {
            (0..count)
                .map(|index| format!("k{index}=v"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let cases: Vec<(String, bool, &str)> = vec![
            ("congo=t61rcWkgMzE".into(), true, "one member"),
            (
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
                true,
                "two members",
            ),
            ("rojo=1 , congo=2".into(), true, "spaces around members"),
            ("rojo=1,,congo=2".into(), true, "an empty member is allowed"),
            ("".into(), true, "empty"),
            ("tenant@vendor=x".into(), true, "multi-tenant key"),
            (
                "7tenant@vendor=x".into(),
                true,
                "tenant starting with a digit",
            ),
            ("a-b_c*d/e=x".into(), true, "every allowed key character"),
            (format!("k={long_value}"), true, "a value of 256 characters"),
            ("k=a b".into(), true, "a space inside a value"),
            (many(32), true, "32 members"),
            (many(33), false, "33 members"),
            (
                format!("{}=v,k=", "a".repeat(200)) + &"v".repeat(8000),
                false,
                "longer than 8192 characters",
            ),
            ("Rojo=1".into(), false, "upper-case key"),
            ("1rojo=1".into(), false, "key starting with a digit"),
            ("rojo".into(), false, "no ="),
            ("rojo=".into(), false, "empty value"),
            // A space after a value is white space around the member.
            ("rojo=a ".into(), true, "a space after a value"),
            ("rojo=a\tb".into(), false, "a tab inside a value"),
            ("rojo=a=b".into(), false, "= in a value"),
            ("rojo=\u{7f}".into(), false, "control character in a value"),
            ("rojo=é".into(), false, "non-ASCII value"),
            (
                format!("k={too_long_value}"),
                false,
                "a value of 257 characters",
            ),
            (
                format!("{}=v", "k".repeat(257)),
                false,
                "a key of 257 characters",
            ),
            ("rojo=1,rojo=2".into(), false, "a key twice"),
            ("tenant@Vendor=x".into(), false, "upper-case system"),
            (
                "tenant@vendorvendorvendor=x".into(),
                false,
                "system of 15 characters",
            ),
            ("@vendor=x".into(), false, "empty tenant"),
        ];
        for (value, expected, rule) in cases {
            assert_eq!(is_valid_tracestate(&value), expected, "{rule}: {value:?}");
        }
    }

    #[test]
    fn display_is_the_version_00_form() {
        let parent = parse(&format!("00-{TRACE}-{PARENT}-01")).expect("valid");
        assert_eq!(parent.to_string(), format!("00-{TRACE}-{PARENT}-01"));
        let later = parse(&format!("42-{TRACE}-{PARENT}-03-more")).expect("valid");
        assert_eq!(later.to_string(), format!("00-{TRACE}-{PARENT}-01"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_input_panics(value in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = TraceParent::parse(&value);
            let _ = is_valid_tracestate(&String::from_utf8_lossy(&value));
        }

        #[test]
        fn near_misses_never_panic(value in "[0-9a-fA-F+ -]{50,60}") {
            if let Some(parent) = TraceParent::parse(value.as_bytes()) {
                // Whatever is accepted is lower-case hex of the exact lengths.
                prop_assert!(value.len() >= TRACEPARENT_LEN);
                prop_assert_eq!(&value[3..35], parent.trace_id.to_string());
            }
        }

        #[test]
        fn valid_headers_round_trip(
            trace_id in any::<[u8; 16]>().prop_filter("non-zero", |id| *id != [0; 16]),
            parent_id in any::<[u8; 8]>().prop_filter("non-zero", |id| *id != [0; 8]),
            flags in any::<u8>(),
            version in 0u8..0xff,
            suffix in "(-[a-z0-9]{0,8})?",
        ) {
            let header = format!(
                "{version:02x}-{}-{}-{flags:02x}{}",
                hex::encode(trace_id),
                hex::encode(parent_id),
                if version == 0 { "" } else { suffix.as_str() },
            );
            let parent = TraceParent::parse(header.as_bytes());
            let expected = TraceParent {
                trace_id: TraceId::from_bytes(trace_id),
                parent_id: SpanId::from_bytes(parent_id),
                sampled: flags & 1 == 1,
            };
            prop_assert_eq!(parent, Some(expected));
            // What this service propagates reads back the same.
            prop_assert_eq!(TraceParent::parse(expected.to_string().as_bytes()), Some(expected));
        }

        #[test]
        fn valid_tracestates_are_accepted(
            members in proptest::collection::btree_map("[a-z][a-z0-9_*/-]{0,20}", "[!-+--<>-~]{1,20}", 0..=32),
        ) {
            let value = members
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert!(is_valid_tracestate(&value), "{}", value);
        }
    }
}
