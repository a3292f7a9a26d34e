//! Evaluates Argo Rollouts success/failure conditions for the subset of the
//! expr language the AnalysisTemplate uses: clauses joined by `&&` (left to
//! right, short-circuit), each one of
//!   `len(result) OP N`, `isNaN(result[I])`, `!isNaN(result[I])`, `result[I] OP X`.
//! Reading `result[I]` past the end is an error, as in Argo Rollouts (where it
//! makes the measurement an Error). Anything else panics: the test must be
//! extended, not fooled.

/// A measurement's outcome from its two conditions, following Argo Rollouts'
/// evaluate.EvaluateResult when both conditions are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

pub fn measure(success: &str, failure: &str, result: &[f64]) -> Phase {
    match (evaluate(success, result), evaluate(failure, result)) {
        (Err(_), _) | (_, Err(_)) => Phase::Error,
        (_, Ok(true)) => Phase::Failed,
        (Ok(true), Ok(false)) => Phase::Successful,
        (Ok(false), Ok(false)) => Phase::Inconclusive,
    }
}

/// Evaluates one condition against `result`.
pub fn evaluate(condition: &str, result: &[f64]) -> Result<bool, String> {
    for clause in condition.split("&&").map(str::trim) {
        if !clause_value(clause, result)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn clause_value(clause: &str, result: &[f64]) -> Result<bool, String> {
    if let Some(rest) = clause.strip_prefix("len(result)") {
        let (op, number) = split_comparison(rest, clause);
        let n: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("number in {clause}"));
        return Ok(compare(result.len() as f64, op, n));
    }
    if let Some(inner) = clause
        .strip_prefix("!isNaN(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return Ok(!index(inner, result)?.is_nan());
    }
    if let Some(inner) = clause
        .strip_prefix("isNaN(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return Ok(index(inner, result)?.is_nan());
    }
    if clause.starts_with("result[") {
        let close = clause
            .find(']')
            .unwrap_or_else(|| panic!("unclosed index in {clause}"));
        let value = index(&clause[..=close], result)?;
        let (op, number) = split_comparison(&clause[close + 1..], clause);
        let x: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("number in {clause}"));
        return Ok(compare(value, op, x));
    }
    panic!("condition clause {clause:?} is outside the supported subset")
}

fn index(access: &str, result: &[f64]) -> Result<f64, String> {
    let i: usize = access
        .trim()
        .strip_prefix("result[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("unsupported access {access:?}"));
    result
        .get(i)
        .copied()
        .ok_or_else(|| format!("index out of range: {i} (array length is {})", result.len()))
}

fn split_comparison<'a>(rest: &'a str, clause: &str) -> (&'a str, &'a str) {
    let rest = rest.trim();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(number) = rest.strip_prefix(op) {
            return (op, number.trim());
        }
    }
    panic!("no comparison in {clause:?}")
}

fn compare(a: f64, op: &str, b: f64) -> bool {
    match op {
        ">=" => a >= b,
        "<=" => a <= b,
        "==" => a == b,
        "!=" => a != b,
        ">" => a > b,
        "<" => a < b,
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "len(result) == 1 && !isNaN(result[0]) && result[0] >= 0.80";
    const BAD: &str = "len(result) == 1 && !isNaN(result[0]) && result[0] < 0.80";

    #[test]
    fn follows_argo_semantics() {
        assert_eq!(measure(OK, BAD, &[0.95]), Phase::Successful);
        assert_eq!(measure(OK, BAD, &[0.65]), Phase::Failed);
        assert_eq!(measure(OK, BAD, &[]), Phase::Inconclusive);
        assert_eq!(measure(OK, BAD, &[f64::NAN]), Phase::Inconclusive);
        // Unguarded, an empty result is an evaluation error (retried, then the
        // run errors) and NaN satisfies neither comparison.
        assert_eq!(
            measure("result[0] >= 0.8", "result[0] < 0.8", &[]),
            Phase::Error
        );
        assert_eq!(
            measure("result[0] >= 0.8", "result[0] < 0.8", &[f64::NAN]),
            Phase::Inconclusive
        );
        assert!(!evaluate("result[0] >= 0.8", &[f64::NAN]).unwrap());
    }

    #[test]
    #[should_panic(expected = "outside the supported subset")]
    fn refuses_unknown_clauses() {
        let _ = evaluate("all(result, # > 1)", &[1.0]);
    }
}
