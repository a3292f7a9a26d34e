//! What the analysis and the SLO rules count as a failure: anything not 2xx.
//! A ping the client gave up on is recorded by the ponger as `code="499"` and
//! by the pinger as `code="timeout"`; every `code` matcher in the Argo
//! Rollouts analyses and the Prometheus rules must sort them with the 5xx
//! answers, never with the successes.

use deploycheck::read;

const SOURCES: &[&str] = &[
    "k8s/base/analysis-template.yaml",
    "scenarios/analysis/blended-analysis.yaml",
    "prometheus/rules/slo-recording.yml",
    "prometheus/rules/slo-alerts.yml",
    "prometheus/rules/rollouts.yml",
];

/// Every `code` label matcher in `text`: (operator, value).
fn code_matchers(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (index, _) in text.match_indices("code") {
        let preceded_by_name = text[..index]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if preceded_by_name {
            continue;
        }
        let rest = text[index + 4..].trim_start();
        let Some(operator) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|operator| rest.starts_with(operator))
        else {
            continue;
        };
        let Some(quoted) = rest[operator.len()..].trim_start().strip_prefix('"') else {
            continue;
        };
        let value = quoted.split('"').next().unwrap_or_default();
        found.push((operator.to_owned(), value.to_owned()));
    }
    found
}

/// Whether a Prometheus regular expression (anchored) made of alternatives
/// of digits, `.` and `[...]` classes of digits matches `code`.
fn regex_matches(pattern: &str, code: &str) -> bool {
    pattern.split('|').any(|alternative| {
        let mut code = code.chars();
        let mut pattern = alternative.chars();
        while let Some(token) = pattern.next() {
            let Some(c) = code.next() else { return false };
            let ok = match token {
                '.' => true,
                '[' => {
                    let class: String = pattern.by_ref().take_while(|&p| p != ']').collect();
                    class.contains(c)
                }
                digit if digit.is_ascii_alphanumeric() => digit == c,
                other => panic!("extend this check for {other:?} in {alternative:?}"),
            };
            if !ok {
                return false;
            }
        }
        code.next().is_none()
    })
}

fn matches(operator: &str, value: &str, code: &str) -> bool {
    match operator {
        "=" => value == code,
        "!=" => value != code,
        "=~" => regex_matches(value, code),
        "!~" => !regex_matches(value, code),
        other => unreachable!("operator {other}"),
    }
}

#[test]
fn abandoned_and_timed_out_pings_count_as_failures_everywhere() {
    let mut checked = 0;
    for source in SOURCES {
        for (operator, value) in code_matchers(&read(source)) {
            for gave_up in ["499", "timeout"] {
                assert_eq!(
                    matches(&operator, &value, gave_up),
                    matches(&operator, &value, "500"),
                    "{source}: code{operator}\"{value}\" sorts {gave_up} apart from 500"
                );
            }
            assert_ne!(
                matches(&operator, &value, "200"),
                matches(&operator, &value, "500"),
                "{source}: code{operator}\"{value}\" does not tell success from failure"
            );
            checked += 1;
        }
    }
    // The analyses' success ratios and the SLO error ratios.
    assert!(checked >= 8, "only {checked} code matchers found");
}

#[test]
fn the_check_itself_tells_5xx_selectors_apart() {
    let matchers = code_matchers(r#"rate(x{code=~"5..", handler="/ping"}[1m]) / y{code!~"2.."}"#);
    assert_eq!(
        matchers,
        vec![
            ("=~".to_owned(), "5..".to_owned()),
            ("!~".to_owned(), "2..".to_owned())
        ]
    );
    // code=~"5.." would count a 499 as fine: the check above rejects it.
    assert_ne!(matches("=~", "5..", "499"), matches("=~", "5..", "500"));
    assert!(regex_matches("[45]..|timeout", "timeout"));
    assert!(!regex_matches("2..", "2000"));
}
