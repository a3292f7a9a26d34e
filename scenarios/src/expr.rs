//! The subset of Argo Rollouts' condition language (expr-lang) that the
//! rehearsal evaluates. A condition is parsed when the manifests are read, so
//! anything outside the subset stops the rehearsal before it starts.
//!
//! Supported, with expr's precedence (unary binds tightest):
//!
//! | form | meaning |
//! |---|---|
//! | `result` | the measurement: a list of floats for a Prometheus vector, a float for a scalar |
//! | `result[N]` | the N-th element (N a non-negative integer); past the end it is an evaluation error |
//! | `len(x)`, `isNaN(x)`, `isInf(x)` | length of a list; NaN / infinity tests on a number |
//! | numbers, `true`, `false`, `(...)` | literals and grouping |
//! | `-x`, `x * y`, `x / y`, `x + y`, `x - y` | arithmetic on numbers |
//! | `==`, `!=`, `<`, `<=`, `>`, `>=` | comparisons (NaN compares false, as in Go; `!=` true) |
//! | `!x`, `not x`, `&&`, `and`, `\|\|`, `or` | boolean logic, short-circuit left to right |
//!
//! Everything else in expr (strings, other identifiers and functions such as
//! `all`, `any`, `default`, `asFloat`, member access, `in`, `?:`, `matches`,
//! closures) is refused with an error naming the construct.
//!
//! At evaluation, as in Argo Rollouts, an error (index out of range, a type
//! mismatch, a non-boolean outcome) makes the measurement an Error.

use std::fmt;

/// What `result` is bound to.
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
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Number(f64),
    Bool(bool),
    List(Vec<f64>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Number(_) => "float64",
            Value::Bool(_) => "bool",
            Value::List(_) => "[]float64",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Len,
    IsNaN,
    IsInf,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Number(f64),
    Bool(bool),
    Result,
    Not(Box<Node>),
    Neg(Box<Node>),
    Call(Func, Box<Node>),
    Index(Box<Node>, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    source: String,
    root: Node,
}

fn collect_thresholds(node: &Node, found: &mut Vec<f64>) {
    match node {
        Node::Binary(op, left, right) => {
            let comparison = matches!(
                op,
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
            );
            let pair = (number(left), number(right));
            match pair {
                (None, Some(value)) if comparison && is_result(left) => push_new(found, value),
                (Some(value), None) if comparison && is_result(right) => push_new(found, value),
                _ => {
                    collect_thresholds(left, found);
                    collect_thresholds(right, found);
                }
            }
        }
        Node::Not(inner) | Node::Neg(inner) | Node::Call(_, inner) => {
            collect_thresholds(inner, found);
        }
        _ => {}
    }
}

fn is_result(node: &Node) -> bool {
    match node {
        Node::Result => true,
        Node::Index(list, _) => matches!(**list, Node::Result),
        _ => false,
    }
}

fn number(node: &Node) -> Option<f64> {
    match node {
        Node::Number(value) => Some(*value),
        Node::Neg(inner) => number(inner).map(|value| -value),
        _ => None,
    }
}

fn push_new(found: &mut Vec<f64>, value: f64) {
    if !found.contains(&value) {
        found.push(value);
    }
}

/// Why a condition cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

pub const SUBSET: &str = "result, result[N], len(), isNaN(), isInf(), numbers, true/false, \
     arithmetic (+ - * /), comparisons (== != < <= > >=), ! not && and || or, parentheses";

impl Condition {
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        let tokens = tokenize(source).map_err(|message| outside(source, &message))?;
        let mut parser = Parser {
            tokens,
            position: 0,
            source,
        };
        let root = parser.or()?;
        if let Some(token) = parser.peek() {
            return Err(outside(source, &format!("unexpected {}", token.describe())));
        }
        Ok(Self {
            source: source.to_owned(),
            root,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The numbers the measurement is compared with (`result[0] >= 0.8`
    /// gives 0.8): the thresholds a chart draws beside the measurements.
    pub fn thresholds(&self) -> Vec<f64> {
        let mut found = Vec::new();
        collect_thresholds(&self.root, &mut found);
        found
    }

    /// Evaluates the condition; an error is an Error measurement.
    pub fn evaluate(&self, input: &Input) -> Result<bool, String> {
        match eval(&self.root, input)? {
            Value::Bool(value) => Ok(value),
            other => Err(format!(
                "expected bool, but got {} from `{}`",
                other.kind(),
                self.source
            )),
        }
    }
}

fn outside(source: &str, message: &str) -> ParseError {
    ParseError(format!(
        "condition `{source}`: {message}; the rehearsal supports only this subset of Argo Rollouts' \
         expr language: {SUBSET}"
    ))
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(&'static str),
    Other(char),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(n) => format!("number {n}"),
            Token::Ident(name) => format!("`{name}`"),
            Token::Op(op) => format!("`{op}`"),
            Token::Other(c) => format!("`{c}`"),
        }
    }
}

const OPERATORS: [&str; 18] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "(", ")", "[", "]", ",",
];

fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == '_'
                    || ((chars[i] == 'e' || chars[i] == 'E') && i > start)
                    || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let number = text
                .parse::<f64>()
                .map_err(|_| format!("`{text}` is not a number"))?;
            tokens.push(Token::Number(number));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            return Err("string literals are outside the subset".to_owned());
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            tokens.push(Token::Op(op));
            i += op.len();
            continue;
        }
        tokens.push(Token::Other(c));
        i += 1;
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    source: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn error(&self, message: &str) -> ParseError {
        outside(self.source, message)
    }

    fn expect(&mut self, op: &str) -> Result<(), ParseError> {
        match self.next() {
            Some(Token::Op(found)) if found == op => Ok(()),
            Some(other) => Err(self.error(&format!("expected `{op}`, found {}", other.describe()))),
            None => Err(self.error(&format!("expected `{op}`, found the end"))),
        }
    }

    fn eat_op(&mut self, ops: &[&'static str]) -> Option<&'static str> {
        if let Some(Token::Op(op)) = self.peek() {
            if let Some(found) = ops.iter().find(|candidate| *candidate == op) {
                self.position += 1;
                return Some(found);
            }
        }
        None
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(name)) if name == word) {
            self.position += 1;
            return true;
        }
        false
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut left = self.and()?;
        while self.eat_op(&["||"]).is_some() || self.eat_word("or") {
            let right = self.and()?;
            left = Node::Binary(BinOp::Or, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison()?;
        while self.eat_op(&["&&"]).is_some() || self.eat_word("and") {
            let right = self.comparison()?;
            left = Node::Binary(BinOp::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let left = self.additive()?;
        let op = match self.eat_op(&["==", "!=", "<=", ">=", "<", ">"]) {
            Some("==") => BinOp::Eq,
            Some("!=") => BinOp::Ne,
            Some("<=") => BinOp::Le,
            Some(">=") => BinOp::Ge,
            Some("<") => BinOp::Lt,
            Some(">") => BinOp::Gt,
            _ => {
                for word in ["in", "matches", "contains", "startsWith", "endsWith"] {
                    if matches!(self.peek(), Some(Token::Ident(name)) if name == word) {
                        return Err(
                            self.error(&format!("the operator `{word}` is outside the subset"))
                        );
                    }
                }
                return Ok(left);
            }
        };
        let right = self.additive()?;
        if self.eat_op(&["==", "!=", "<=", ">=", "<", ">"]).is_some() {
            return Err(self.error("chained comparisons are outside the subset"));
        }
        Ok(Node::Binary(op, Box::new(left), Box::new(right)))
    }

    fn additive(&mut self) -> Result<Node, ParseError> {
        let mut left = self.multiplicative()?;
        while let Some(op) = self.eat_op(&["+", "-"]) {
            let right = self.multiplicative()?;
            let op = if op == "+" { BinOp::Add } else { BinOp::Sub };
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn multiplicative(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary()?;
        while let Some(op) = self.eat_op(&["*", "/"]) {
            let right = self.unary()?;
            let op = if op == "*" { BinOp::Mul } else { BinOp::Div };
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        if self.eat_op(&["!"]).is_some() || self.eat_word("not") {
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        if self.eat_op(&["-"]).is_some() {
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Node, ParseError> {
        let mut node = self.primary()?;
        loop {
            if self.eat_op(&["["]).is_some() {
                let index = self.or()?;
                self.expect("]")?;
                node = Node::Index(Box::new(node), Box::new(index));
            } else if let Some(Token::Other(c)) = self.peek() {
                let c = *c;
                return Err(self.error(&format!("`{c}` is outside the subset")));
            } else {
                return Ok(node);
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Node::Number(n)),
            Some(Token::Op("(")) => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Ident(name)) => match name.as_str() {
                "true" => Ok(Node::Bool(true)),
                "false" => Ok(Node::Bool(false)),
                "result" => Ok(Node::Result),
                "len" | "isNaN" | "isInf" => {
                    let func = match name.as_str() {
                        "len" => Func::Len,
                        "isNaN" => Func::IsNaN,
                        _ => Func::IsInf,
                    };
                    self.expect("(")?;
                    let argument = self.or()?;
                    if self.eat_op(&[","]).is_some() {
                        return Err(self.error(&format!("`{name}` takes one argument")));
                    }
                    self.expect(")")?;
                    Ok(Node::Call(func, Box::new(argument)))
                }
                other => {
                    let what = if matches!(self.peek(), Some(Token::Op("("))) {
                        format!("the function `{other}`")
                    } else {
                        format!("the identifier `{other}`")
                    };
                    Err(self.error(&format!("{what} is outside the subset")))
                }
            },
            Some(token) => Err(self.error(&format!("unexpected {}", token.describe()))),
            None => Err(self.error("unexpected end of condition")),
        }
    }
}

fn eval(node: &Node, input: &Input) -> Result<Value, String> {
    Ok(match node {
        Node::Number(n) => Value::Number(*n),
        Node::Bool(b) => Value::Bool(*b),
        Node::Result => match input {
            Input::Vector(values) => Value::List(values.clone()),
            Input::Scalar(value) => Value::Number(*value),
        },
        Node::Not(inner) => match eval(inner, input)? {
            Value::Bool(b) => Value::Bool(!b),
            other => return Err(format!("invalid operation: ! ({})", other.kind())),
        },
        Node::Neg(inner) => match eval(inner, input)? {
            Value::Number(n) => Value::Number(-n),
            other => return Err(format!("invalid operation: - ({})", other.kind())),
        },
        Node::Call(func, argument) => {
            let value = eval(argument, input)?;
            match (func, value) {
                (Func::Len, Value::List(list)) => Value::Number(list.len() as f64),
                (Func::IsNaN, Value::Number(n)) => Value::Bool(n.is_nan()),
                (Func::IsInf, Value::Number(n)) => Value::Bool(n.is_infinite()),
                (func, value) => {
                    return Err(format!("invalid argument for {func:?}: {}", value.kind()));
                }
            }
        }
        Node::Index(target, index) => {
            let list = match eval(target, input)? {
                Value::List(list) => list,
                other => return Err(format!("cannot index {}", other.kind())),
            };
            let index = match eval(index, input)? {
                Value::Number(n) if n.fract() == 0.0 && n >= 0.0 => n as usize,
                other => return Err(format!("invalid index {other:?}")),
            };
            match list.get(index) {
                Some(value) => Value::Number(*value),
                None => {
                    return Err(format!(
                        "index out of range: {index} (array length is {})",
                        list.len()
                    ));
                }
            }
        }
        Node::Binary(BinOp::And, left, right) => match eval(left, input)? {
            Value::Bool(false) => Value::Bool(false),
            Value::Bool(true) => match eval(right, input)? {
                Value::Bool(b) => Value::Bool(b),
                other => return Err(format!("invalid operation: && ({})", other.kind())),
            },
            other => return Err(format!("invalid operation: && ({})", other.kind())),
        },
        Node::Binary(BinOp::Or, left, right) => match eval(left, input)? {
            Value::Bool(true) => Value::Bool(true),
            Value::Bool(false) => match eval(right, input)? {
                Value::Bool(b) => Value::Bool(b),
                other => return Err(format!("invalid operation: || ({})", other.kind())),
            },
            other => return Err(format!("invalid operation: || ({})", other.kind())),
        },
        Node::Binary(op, left, right) => {
            let (left, right) = (eval(left, input)?, eval(right, input)?);
            match (left, right) {
                (Value::Number(a), Value::Number(b)) => match op {
                    BinOp::Eq => Value::Bool(a == b),
                    BinOp::Ne => Value::Bool(a != b),
                    BinOp::Lt => Value::Bool(a < b),
                    BinOp::Le => Value::Bool(a <= b),
                    BinOp::Gt => Value::Bool(a > b),
                    BinOp::Ge => Value::Bool(a >= b),
                    BinOp::Add => Value::Number(a + b),
                    BinOp::Sub => Value::Number(a - b),
                    BinOp::Mul => Value::Number(a * b),
                    BinOp::Div => Value::Number(a / b),
                    BinOp::And | BinOp::Or => unreachable!("handled above"),
                },
                (Value::Bool(a), Value::Bool(b)) if matches!(op, BinOp::Eq | BinOp::Ne) => {
                    Value::Bool((a == b) == (*op == BinOp::Eq))
                }
                (a, b) => {
                    return Err(format!(
                        "invalid operation: {op:?} (mismatched types {} and {})",
                        a.kind(),
                        b.kind()
                    ));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, input: Input) -> Result<bool, String> {
        Condition::parse(source).expect("parses").evaluate(&input)
    }

    #[test]
    fn thresholds_are_the_numbers_the_result_is_compared_with() {
        let thresholds = |source: &str| Condition::parse(source).expect("parses").thresholds();
        assert_eq!(
            thresholds("len(result) == 1 && !isNaN(result[0]) && result[0] >= 0.80"),
            vec![0.8]
        );
        assert_eq!(
            thresholds("result[0] < 1 || 0.5 > result[1]"),
            vec![1.0, 0.5]
        );
        assert_eq!(thresholds("result > -2 && result < -2"), vec![-2.0]);
        assert!(thresholds("isNaN(result[0])").is_empty());
    }

    #[test]
    fn guarded_conditions() {
        let ok = "len(result) == 1 && !isNaN(result[0]) && result[0] >= 0.80";
        assert_eq!(check(ok, Input::Vector(vec![0.95])), Ok(true));
        assert_eq!(check(ok, Input::Vector(vec![0.65])), Ok(false));
        assert_eq!(check(ok, Input::Vector(vec![])), Ok(false));
        assert_eq!(check(ok, Input::Vector(vec![f64::NAN])), Ok(false));
    }

    #[test]
    fn unguarded_empty_is_an_error_and_nan_compares_false() {
        assert!(check("result[0] >= 0.8", Input::Vector(vec![])).is_err());
        assert_eq!(
            check("result[0] >= 0.8", Input::Vector(vec![f64::NAN])),
            Ok(false)
        );
        assert_eq!(
            check("result[0] < 0.8", Input::Vector(vec![f64::NAN])),
            Ok(false)
        );
        assert_eq!(check("result != result", Input::Scalar(f64::NAN)), Ok(true));
        assert_eq!(check("isNaN(result)", Input::Scalar(f64::NAN)), Ok(true));
    }

    #[test]
    fn precedence_words_and_arithmetic() {
        assert_eq!(
            check(
                "result[0] * 100 > 50 and not (result[1] < -1)",
                Input::Vector(vec![0.6, 2.0])
            ),
            Ok(true)
        );
        assert_eq!(
            check("false || result[0] - 1 == 0", Input::Vector(vec![1.0])),
            Ok(true)
        );
        assert_eq!(
            check("true || result[5] > 0", Input::Vector(vec![])),
            Ok(true)
        );
        assert!(check("result[0]", Input::Vector(vec![1.0])).is_err());
        assert!(check("len(result) > true", Input::Vector(vec![1.0])).is_err());
    }

    #[test]
    fn refuses_what_is_outside_the_subset() {
        for (source, named) in [
            ("all(result, {# > 0.8})", "`all`"),
            ("default(result[0], 0) > 1", "`default`"),
            ("result[0] in [1, 2]", "`in`"),
            ("result.value > 1", "`.`"),
            ("asFloat(result) > 1", "`asFloat`"),
            ("result[0] > 1 ? true : false", "`?`"),
            ("result == \"x\"", "string"),
            ("foo > 1", "`foo`"),
        ] {
            let error = Condition::parse(source).expect_err(source).0;
            assert!(error.contains(named), "{source}: {error}");
            assert!(error.contains("subset"), "{error}");
        }
    }
}
