//! The condition evaluator against Argo Rollouts' own expectations. Each row
//! names where its expected value comes from in argoproj/argo-rollouts:
//! `utils/evaluate/evaluate_test.go` (E), `metricproviders/prometheus/
//! prometheus_test.go` (P), or `docs/features/analysis.md`, section "Handling
//! Metric Results" (D). Rows marked "Go" follow Go's float comparison, which
//! expr inherits: every ordered comparison with NaN is false, `!=` is true.

use rollout_model::{Condition, Input, Phase, evaluate_result};

fn vector(values: &[f64]) -> Input {
    Input::Vector(values.to_vec())
}

fn phase(success: &str, failure: &str, input: &Input) -> Phase {
    let parse =
        |source: &str| (!source.is_empty()).then(|| Condition::parse(source).expect("compiles"));
    evaluate_result(parse(success).as_ref(), parse(failure).as_ref(), input).0
}

#[test]
fn measurement_phases_follow_evaluate_result() {
    let nan = Input::Scalar(f64::NAN);
    let rows: &[(&str, &str, &str, Input, Phase)] = &[
        (
            "E TestEvaluateResultWithSuccess",
            "true",
            "false",
            vector(&[1.0]),
            Phase::Successful,
        ),
        (
            "E TestEvaluateResultWithFailure",
            "true",
            "true",
            vector(&[1.0]),
            Phase::Failed,
        ),
        (
            "E TestEvaluateResultInconclusive",
            "false",
            "false",
            vector(&[1.0]),
            Phase::Inconclusive,
        ),
        (
            "E TestEvaluateResultNoSuccessConditionAndNotFailing",
            "",
            "false",
            vector(&[1.0]),
            Phase::Successful,
        ),
        (
            "E TestEvaluateResultNoFailureConditionAndNotSuccessful",
            "false",
            "",
            vector(&[1.0]),
            Phase::Failed,
        ),
        (
            "E TestEvaluateResultNoFailureConditionAndNoSuccessCondition",
            "",
            "",
            vector(&[]),
            Phase::Successful,
        ),
        (
            "E TestEvaluateResultErrorMessageWithEmptySlice",
            "result[0] >= 0.95",
            "",
            vector(&[]),
            Phase::Error,
        ),
        (
            "P TestProcessNaNResponse/inconclusive",
            "result >= 0.9",
            "result < 0.9",
            nan.clone(),
            Phase::Inconclusive,
        ),
        (
            "P TestProcessNaNResponse/success",
            "result >= 0.9 || isNaN(result)",
            "",
            nan.clone(),
            Phase::Successful,
        ),
        (
            "P TestProcessNaNResponse/failure",
            "result >= 0.9",
            "",
            nan,
            Phase::Failed,
        ),
        (
            "D NaN and Infinity",
            "isNaN(result) || result >= 0.95",
            "",
            Input::Scalar(f64::NAN),
            Phase::Successful,
        ),
        (
            "D Prometheus empty array, successful",
            "len(result) == 0 || result[0] >= 0.95",
            "",
            vector(&[]),
            Phase::Successful,
        ),
        (
            "D Prometheus empty array, failed",
            "len(result) > 0 && result[0] >= 0.95",
            "",
            vector(&[]),
            Phase::Failed,
        ),
        (
            "Go NaN in a vector",
            "result[0] >= 0.8",
            "result[0] < 0.8",
            vector(&[f64::NAN]),
            Phase::Inconclusive,
        ),
    ];
    for (origin, success, failure, input, expected) in rows {
        assert_eq!(phase(success, failure, input), *expected, "{origin}");
    }
}

#[test]
fn conditions_follow_eval_condition() {
    let rows: &[(&str, &str, Input, Result<bool, &str>)] = &[
        (
            "E TestEvaluateInOperator",
            "2 in result",
            vector(&[2.0, 2.0]),
            Ok(true),
        ),
        (
            "E TestEvaluateFloat64",
            "result > 1",
            Input::Scalar(5.0),
            Ok(true),
        ),
        // E TestEvaluateArray uses a map; the same `all` over our list.
        (
            "E TestEvaluateArray",
            "all(result, {# > 1})",
            vector(&[2.0, 2.0]),
            Ok(true),
        ),
        (
            "E TestErrorWithNonBoolReturn",
            "1",
            vector(&[]),
            Err("expected bool, but got int"),
        ),
        (
            "E TestIsInf",
            "isInf(result)",
            Input::Scalar(f64::INFINITY),
            Ok(true),
        ),
        (
            "E TestIsInf",
            "isInf(result)",
            Input::Scalar(0.0),
            Ok(false),
        ),
        // E TestDefaultFunc: a present result is returned, not the default.
        (
            "E TestDefaultFunc",
            "default(result, 0) == 1",
            Input::Scalar(1.0),
            Ok(true),
        ),
        (
            "E TestEvaluateAsFloat",
            "asFloat(result) == 1",
            Input::Scalar(1.0),
            Ok(true),
        ),
        ("E TestIsNilFunc", "isNil(result)", vector(&[]), Ok(false)),
        (
            "D len",
            "len(result) == 2",
            vector(&[1.0, f64::NAN]),
            Ok(true),
        ),
        (
            "D isNaN",
            "isNaN(result[1])",
            vector(&[1.0, f64::NAN]),
            Ok(true),
        ),
        (
            "Go NaN >=",
            "result[0] >= 0.8",
            vector(&[f64::NAN]),
            Ok(false),
        ),
        (
            "Go NaN <",
            "result[0] < 0.8",
            vector(&[f64::NAN]),
            Ok(false),
        ),
        (
            "Go NaN !=",
            "result != result",
            Input::Scalar(f64::NAN),
            Ok(true),
        ),
        (
            "Go NaN ==",
            "result == result",
            Input::Scalar(f64::NAN),
            Ok(false),
        ),
    ];
    for (origin, source, input, expected) in rows {
        let condition =
            Condition::parse(source).unwrap_or_else(|error| panic!("{origin}: {error}"));
        let outcome = condition.evaluate(input);
        match expected {
            Ok(value) => assert_eq!(outcome, Ok(*value), "{origin}: {source}"),
            Err(message) => {
                let error = outcome.expect_err(origin);
                assert!(error.contains(message), "{origin}: {error}");
            }
        }
    }
}

#[test]
fn unknown_names_and_syntax_errors_are_refused_at_compile_time() {
    // E TestErrorWithInvalidReference and TestEvaluateResultWithErrorOnSuccessCondition
    // (`a == true`): Argo's compile step refuses a name its environment lacks.
    for source in [
        "invalidVariable",
        "a == true",
        "p99(result) > 1",
        "result[0] >=",
    ] {
        assert!(Condition::parse(source).is_err(), "{source}");
    }
}

#[test]
fn thresholds_are_where_the_outcome_changes() {
    let thresholds = |source: &str| Condition::parse(source).expect("compiles").thresholds();
    assert_eq!(
        thresholds("len(result) == 1 && !isNaN(result[0]) && result[0] >= 0.80"),
        vec![0.8]
    );
    assert_eq!(thresholds("result > -2 || result < -3"), vec![-2.0, -3.0]);
    assert!(thresholds("isNaN(result[0])").is_empty());
}
