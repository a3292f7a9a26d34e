//! Reads which metrics and labels a PromQL expression uses. Not a full
//! parser: it tokenizes, skips string literals and range/offset durations,
//! and classifies identifiers by their context. Enough for the expressions
//! of this repository; anything it cannot read makes it panic, not guess.

use std::collections::BTreeSet;

/// One vector selector: the metric name (if written before the braces) and
/// its label matchers `(label, operator, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub metric: Option<String>,
    pub matchers: Vec<(String, String, String)>,
}

/// What an expression uses.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub metrics: BTreeSet<String>,
    pub selectors: Vec<Selector>,
    /// Labels named in by/without/on/ignoring/group_left/group_right lists.
    pub grouping_labels: BTreeSet<String>,
}

impl Usage {
    /// Every label name the expression refers to.
    pub fn labels(&self) -> BTreeSet<String> {
        let mut labels = self.grouping_labels.clone();
        for selector in &self.selectors {
            labels.extend(selector.matchers.iter().map(|(label, _, _)| label.clone()));
        }
        labels
    }
}

const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    Punct(String),
}

fn tokenize(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            let mut value = String::new();
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            assert!(i < chars.len(), "unterminated string in {expr}");
            i += 1;
            tokens.push(Token::Str(value));
        } else if c == '[' {
            // Range or subquery duration: skipped.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            tokens.push(Token::Punct("[]".into()));
        } else if c.is_ascii_digit()
            || (c == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit())
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", ">=", "<="].contains(&two.as_str()) {
                tokens.push(Token::Punct(two));
                i += 2;
            } else {
                tokens.push(Token::Punct(c.to_string()));
                i += 1;
            }
        }
    }
    tokens
}

/// Reads `expr`.
pub fn usage(expr: &str) -> Usage {
    let tokens = tokenize(expr);
    let mut usage = Usage::default();
    let punct =
        |index: usize, what: &str| matches!(tokens.get(index), Some(Token::Punct(p)) if p == what);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(word) if GROUPING.contains(&word.as_str()) => {
                i += 1;
                if punct(i, "(") {
                    i += 1;
                    while !punct(i, ")") {
                        match tokens.get(i) {
                            Some(Token::Ident(label)) => {
                                usage.grouping_labels.insert(label.clone());
                            }
                            Some(Token::Punct(p)) if p == "," => {}
                            other => panic!("unexpected {other:?} in a label list of {expr}"),
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            Token::Ident(word) if KEYWORDS.contains(&word.as_str()) => i += 1,
            Token::Ident(word) if punct(i + 1, "(") => {
                // A function call.
                let _ = word;
                i += 1;
            }
            Token::Ident(word) => {
                usage.metrics.insert(word.clone());
                i += 1;
                let mut selector = Selector {
                    metric: Some(word.clone()),
                    matchers: Vec::new(),
                };
                if punct(i, "{") {
                    i = read_matchers(&tokens, i, &mut selector, expr);
                }
                usage.selectors.push(selector);
            }
            Token::Punct(p) if p == "{" => {
                let mut selector = Selector {
                    metric: None,
                    matchers: Vec::new(),
                };
                i = read_matchers(&tokens, i, &mut selector, expr);
                if let Some((_, _, name)) = selector
                    .matchers
                    .iter()
                    .find(|(label, _, _)| label == "__name__")
                {
                    usage.metrics.insert(name.clone());
                }
                usage.selectors.push(selector);
            }
            Token::Str(_) => panic!("string literal outside a selector in {expr}"),
            _ => i += 1,
        }
    }
    usage
}

/// Reads `{label op "value", ...}` starting at the `{`; returns the index after `}`.
fn read_matchers(tokens: &[Token], mut i: usize, selector: &mut Selector, expr: &str) -> usize {
    i += 1;
    loop {
        match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(Token::Punct(close)), _, _) if close == "}" => return i + 1,
            (Some(Token::Punct(comma)), _, _) if comma == "," => i += 1,
            (Some(Token::Ident(label)), Some(Token::Punct(op)), Some(Token::Str(value)))
                if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
            {
                selector
                    .matchers
                    .push((label.clone(), op.clone(), value.clone()));
                i += 3;
            }
            other => panic!("unreadable label matcher {other:?} in {expr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metrics_labels_and_grouping() {
        let u = usage(
            r#"sum by (version) (rate(http_requests_total{handler="/ping",code=~"5.."}[1m])
               * on (job, instance) group_left (version) ponger_build_info)
               / sum(rate(x:y:z[5m] offset 1m)) and on () vector(0) > 0.5"#,
        );
        assert_eq!(
            u.metrics.iter().map(String::as_str).collect::<Vec<_>>(),
            ["http_requests_total", "ponger_build_info", "x:y:z"]
        );
        assert_eq!(
            u.grouping_labels
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["instance", "job", "version"]
        );
        assert_eq!(
            u.selectors[0].matchers,
            vec![
                ("handler".into(), "=".into(), "/ping".into()),
                ("code".into(), "=~".into(), "5..".into())
            ]
        );
        assert_eq!(u.labels().len(), 5);
    }

    #[test]
    fn strings_with_braces_and_escapes_do_not_confuse_it() {
        let u = usage(r#"up{job="a}b",instance=~"x\"y"} == 1"#);
        assert_eq!(u.metrics.len(), 1);
        assert_eq!(u.selectors[0].matchers[1].2, "x\"y");
    }

    #[test]
    #[should_panic(expected = "unreadable label matcher")]
    fn refuses_what_it_cannot_read() {
        usage(r#"up{job}"#);
    }
}
