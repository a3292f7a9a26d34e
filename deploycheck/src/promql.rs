//! Which metrics and labels a PromQL expression uses, read from the syntax
//! tree promql-parser gives. An expression that does not parse makes it
//! panic: the test must be extended, not fooled.

use std::collections::BTreeSet;

use promql_parser::parser::{Expr, LabelModifier, VectorSelector};

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

    fn selector(&mut self, selector: &VectorSelector) {
        if let Some(name) = &selector.name {
            self.metrics.insert(name.clone());
        }
        let matchers = selector
            .matchers
            .matchers
            .iter()
            .chain(selector.matchers.or_matchers.iter().flatten())
            .map(|m| (m.name.clone(), m.op.to_string(), m.value.clone()))
            .collect();
        self.selectors.push(Selector {
            metric: selector.name.clone(),
            matchers,
        });
    }

    fn grouping(&mut self, modifier: Option<&LabelModifier>) {
        if let Some(modifier) = modifier {
            self.grouping_labels
                .extend(modifier.labels().labels.iter().cloned());
        }
    }

    fn walk(&mut self, expr: &Expr) {
        match expr {
            Expr::Aggregate(aggregate) => {
                self.grouping(aggregate.modifier.as_ref());
                if let Some(param) = &aggregate.param {
                    self.walk(param);
                }
                self.walk(&aggregate.expr);
            }
            Expr::Binary(binary) => {
                self.walk(&binary.lhs);
                if let Some(modifier) = &binary.modifier {
                    self.grouping(modifier.matching.as_ref());
                    if let Some(labels) = modifier.card.labels() {
                        self.grouping_labels.extend(labels.labels.iter().cloned());
                    }
                }
                self.walk(&binary.rhs);
            }
            Expr::Unary(unary) => self.walk(&unary.expr),
            Expr::Paren(paren) => self.walk(&paren.expr),
            Expr::Subquery(subquery) => self.walk(&subquery.expr),
            Expr::VectorSelector(selector) => self.selector(selector),
            Expr::MatrixSelector(matrix) => self.selector(&matrix.vs),
            Expr::Call(call) => call.args.args.iter().for_each(|arg| self.walk(arg)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
}

/// Reads `expr`.
pub fn usage(expr: &str) -> Usage {
    let tree = promql_parser::parser::parse(expr)
        .unwrap_or_else(|error| panic!("{expr} does not parse: {error}"));
    let mut usage = Usage::default();
    usage.walk(&tree);
    usage
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
    #[should_panic(expected = "does not parse")]
    fn refuses_what_it_cannot_read() {
        usage(r#"up{job}"#);
    }
}
