//! Success and failure conditions, evaluated as Argo Rollouts evaluates them
//! (argoproj/argo-rollouts `utils/evaluate/evaluate.go`): the expression is
//! expr (expr-lang), run with `result` bound to the measurement and with the
//! functions Argo adds to expr's own (`isNaN`, `isInf`, `isNil`, `default`,
//! `asInt`, `asFloat`); anything but a boolean outcome is an error. A
//! measurement's phase follows `EvaluateResult`.
//!
//! One difference from Go's expr remains: reading past the end of a list
//! (`result[0]` of an empty vector) gives nil here where Go's expr fails. A
//! comparison or function of that nil still fails, so `result[0] >= x` and
//! `isNaN(result[0])` of an empty vector are Errors as in Argo; only a
//! condition that compares it with `!=`/`==` or `nil` would differ.

use std::fmt;

use expr::{Context, Environment, Program, Value};

/// What `result` is bound to: a Prometheus vector reaches the conditions as a
/// list of floats (NaN kept), a scalar as a float.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Vector(Vec<f64>),
    Scalar(f64),
}

impl Input {
    /// `result[0]` of a vector, or the scalar, when it is a finite number.
    pub fn first_finite(&self) -> Option<f64> {
        let value = match self {
            Input::Vector(values) => values.first().copied()?,
            Input::Scalar(value) => *value,
        };
        value.is_finite().then_some(value)
    }

    fn value(&self) -> Value {
        match self {
            Input::Vector(values) => {
                Value::Array(values.iter().map(|value| Value::Float(*value)).collect())
            }
            Input::Scalar(value) => Value::Float(*value),
        }
    }
}

/// The phase of an analysis, a metric or a measurement (Argo's AnalysisPhase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    Pending,
    Running,
    Successful,
    Inconclusive,
    Error,
    Failed,
}

impl Phase {
    pub fn completed(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }

    /// Worse phases rank higher: Failed > Error > Inconclusive > Successful.
    pub fn severity(self) -> u8 {
        match self {
            Phase::Pending => 0,
            Phase::Running => 1,
            Phase::Successful => 2,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }
}

/// Why a condition cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionError(pub String);

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConditionError {}

/// A compiled condition.
#[derive(Clone, Debug)]
pub struct Condition {
    source: String,
    program: Program,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Condition {
    /// Compiles `source`. A syntax error, or a name that is neither `result`
    /// nor a function of expr or of Argo's environment, is refused here, as
    /// Argo's compile step refuses it (there every measurement would error).
    pub fn parse(source: &str) -> Result<Self, ConditionError> {
        let program = expr::compile(source)
            .map_err(|error| ConditionError(format!("condition `{source}`: {error}")))?;
        let condition = Self {
            source: source.to_owned(),
            program,
        };
        if let Err(error) = condition.evaluate(&Input::Vector(vec![1.0])) {
            let lower = error.to_lowercase();
            if lower.contains("unknown variable") || lower.contains("unknown function") {
                return Err(ConditionError(format!("condition `{source}`: {error}")));
            }
        }
        Ok(condition)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition with `result` bound to `input`.
    pub fn evaluate(&self, input: &Input) -> Result<bool, String> {
        let result = input.value();
        let environment = argo_environment(&result);
        let mut context = Context::default();
        context.insert("result".to_owned(), result.clone());
        match environment.run(&self.program, &context) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(format!("expected bool, but got {}", go_type(&other))),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The numbers in the condition at which its outcome for a one-series
    /// result changes: the thresholds a chart of `result[0]` draws.
    pub fn thresholds(&self) -> Vec<f64> {
        let mut found: Vec<f64> = Vec::new();
        for candidate in number_literals(&self.source) {
            for value in [candidate, -candidate] {
                let delta = (value.abs() * 1e-9).max(1e-12);
                let at = |x: f64| {
                    [Input::Vector(vec![x]), Input::Scalar(x)]
                        .map(|input| self.evaluate(&input).ok())
                };
                let (below, above) = (at(value - delta), at(value + delta));
                let changes = below
                    .iter()
                    .zip(&above)
                    .any(|(below, above)| below.is_some() && above.is_some() && below != above);
                if changes && !found.contains(&value) {
                    found.push(value);
                }
            }
        }
        found
    }
}

/// The unsigned number literals of an expression's text (candidates only: a
/// digit inside a name or an index is tested like any other).
fn number_literals(source: &str) -> Vec<f64> {
    source
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|text| text.parse::<f64>().ok())
        .collect()
}

/// Argo's additions to expr's environment (evaluate.go `EvalCondition`).
fn argo_environment(result: &Value) -> Environment<'_> {
    let mut environment = Environment::new();
    let float = |name: &'static str, args: &[Value]| -> Result<f64, expr::Error> {
        match args {
            [Value::Float(value)] => Ok(*value),
            [Value::Integer(value)] => Ok(*value as f64),
            other => Err(expr::Error::ExprError(format!(
                "{name}: expected one float64, got {}",
                other.iter().map(go_type).collect::<Vec<_>>().join(", ")
            ))),
        }
    };
    environment.add_function("isNaN", move |call| {
        Ok(Value::Bool(float("isNaN", &call.args)?.is_nan()))
    });
    environment.add_function("isInf", move |call| {
        Ok(Value::Bool(float("isInf", &call.args)?.is_infinite()))
    });
    // Argo's isNil and default look at the whole result, whatever is passed.
    // An empty vector is not nil: the Prometheus provider passes an empty,
    // non-nil list.
    let result_is_nil = matches!(result, Value::Nil);
    environment.add_function("isNil", move |_| Ok(Value::Bool(result_is_nil)));
    environment.add_function("default", move |call| match call.args.as_slice() {
        [_, fallback] if result_is_nil => Ok(fallback.clone()),
        [_, _] => Ok(result.clone()),
        _ => Err(expr::Error::ExprError(
            "default: expected two arguments".to_owned(),
        )),
    });
    environment.add_function("asFloat", move |call| match call.args.as_slice() {
        [Value::String(text)] => text
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|error| expr::Error::ExprError(format!("asFloat: {error}"))),
        args => Ok(Value::Float(float("asFloat", args)?)),
    });
    environment.add_function("asInt", move |call| match call.args.as_slice() {
        [Value::String(text)] => text
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|error| expr::Error::ExprError(format!("asInt: {error}"))),
        args => Ok(Value::Integer(float("asInt", args)? as i64)),
    });
    environment
}

/// A value's type as Go's `%T` prints it for the types a result can have.
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "bool",
        Value::Integer(_) => "int",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Nil => "<nil>",
        Value::Array(_) => "[]interface {}",
        _ => "map[string]interface {}",
    }
}

/// The phase of one measurement from its result, and why (Argo's `EvaluateResult`).
pub fn evaluate_result(
    success: Option<&Condition>,
    failure: Option<&Condition>,
    input: &Input,
) -> (Phase, String) {
    let mut success_holds = false;
    let mut failure_holds = false;
    if let Some(condition) = success {
        match condition.evaluate(input) {
            Ok(value) => success_holds = value,
            Err(error) => return (Phase::Error, format!("successCondition: {error}")),
        }
    }
    if let Some(condition) = failure {
        match condition.evaluate(input) {
            Ok(value) => failure_holds = value,
            Err(error) => return (Phase::Error, format!("failureCondition: {error}")),
        }
    }
    match (success, failure) {
        (None, None) => return (Phase::Successful, "no conditions".to_owned()),
        (Some(_), None) => failure_holds = !success_holds,
        (None, Some(_)) => success_holds = !failure_holds,
        (Some(_), Some(_)) => {}
    }
    if failure_holds {
        let why = match failure {
            Some(condition) => format!("failureCondition `{}` holds", condition.source()),
            None => format!(
                "successCondition `{}` does not hold",
                success.map(Condition::source).unwrap_or_default()
            ),
        };
        (Phase::Failed, why)
    } else if !success_holds {
        (
            Phase::Inconclusive,
            "neither successCondition nor failureCondition holds".to_owned(),
        )
    } else {
        let why = match success {
            Some(condition) => format!("successCondition `{}` holds", condition.source()),
            None => "failureCondition does not hold".to_owned(),
        };
        (Phase::Successful, why)
    }
}

/// The phase of a measurement whose Prometheus vector is `result`, from the
/// conditions' text (an empty text: no condition). A condition that does not
/// compile makes the measurement an Error, as in Argo.
pub fn measure(success: &str, failure: &str, result: &[f64]) -> Phase {
    let parse = |source: &str| (!source.is_empty()).then(|| Condition::parse(source));
    match (parse(success).transpose(), parse(failure).transpose()) {
        (Ok(success), Ok(failure)) => {
            evaluate_result(
                success.as_ref(),
                failure.as_ref(),
                &Input::Vector(result.to_vec()),
            )
            .0
        }
        _ => Phase::Error,
    }
}
