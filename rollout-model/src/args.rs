//! `{{args.NAME}}` resolution. Argo Rollouts substitutes an AnalysisTemplate's
//! arguments into its metrics before it measures; the values come from the
//! template's own `args` and, overriding them, the Rollout's.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Argument values by name; `None`: declared without a value.
pub type Args = BTreeMap<String, Option<String>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    Unclosed(String),
    NotAnArgument(String),
    NoValue(String),
    Undeclared(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unclosed(text) => write!(f, "unclosed {{{{ in {text:?}"),
            ArgsError::NotAnArgument(tag) => {
                write!(f, "{{{{{tag}}}}} is not an argument reference (args.NAME)")
            }
            ArgsError::NoValue(name) => write!(
                f,
                "argument {name} has no value (neither the template nor the Rollout gives one)"
            ),
            ArgsError::Undeclared(name) => write!(f, "argument {name} is used but not declared"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// A text split at its tags: (text before, tag) pairs, then the rest.
type Tagged<'a> = (Vec<(&'a str, &'a str)>, &'a str);

/// The `{{...}}` tags of `text`, each with the text before it; the rest last.
fn tags(text: &str) -> Result<Tagged<'_>, ArgsError> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| ArgsError::Unclosed(text.to_owned()))?;
        found.push((&rest[..open], after[..close].trim()));
        rest = &after[close + 2..];
    }
    Ok((found, rest))
}

/// `text` with every `{{args.NAME}}` replaced by its value.
pub fn resolve(text: &str, args: &Args) -> Result<String, ArgsError> {
    let (found, rest) = tags(text)?;
    let mut out = String::new();
    for (before, tag) in found {
        out.push_str(before);
        let name = tag
            .strip_prefix("args.")
            .ok_or_else(|| ArgsError::NotAnArgument(tag.to_owned()))?;
        match args.get(name) {
            Some(Some(value)) => out.push_str(value),
            Some(None) => return Err(ArgsError::NoValue(name.to_owned())),
            None => return Err(ArgsError::Undeclared(name.to_owned())),
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// [`resolve`] applied to every string in `value` (keys stay as they are).
pub fn resolve_value(value: &Value, args: &Args) -> Result<Value, ArgsError> {
    Ok(match value {
        Value::String(text) => Value::String(resolve(text, args)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve_value(item, args))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), resolve_value(item, args)?)))
                .collect::<Result<_, ArgsError>>()?,
        ),
        other => other.clone(),
    })
}

/// Every argument name `text` refers to, sorted, once each.
pub fn used_args(text: &str) -> Result<Vec<String>, ArgsError> {
    let (found, _) = tags(text)?;
    let mut names: Vec<String> = found
        .into_iter()
        .filter_map(|(_, tag)| tag.strip_prefix("args.").map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let mut args = Args::new();
        args.insert("canary-hash".to_owned(), Some("abc".to_owned()));
        args.insert("missing".to_owned(), None);
        assert_eq!(
            resolve("x{{args.canary-hash}}y{{ args.canary-hash }}", &args),
            Ok("xabcyabc".to_owned())
        );
        assert_eq!(
            resolve("{{args.missing}}", &args),
            Err(ArgsError::NoValue("missing".to_owned()))
        );
        assert_eq!(
            resolve("{{args.other}}", &args),
            Err(ArgsError::Undeclared("other".to_owned()))
        );
        assert!(matches!(resolve("{{x", &args), Err(ArgsError::Unclosed(_))));
        assert!(matches!(
            resolve("{{ secrets.x }}", &args),
            Err(ArgsError::NotAnArgument(_))
        ));
        let value =
            serde_json::json!({"q": "a{{args.canary-hash}}", "n": [1, "{{args.canary-hash}}"]});
        assert_eq!(
            resolve_value(&value, &args),
            Ok(serde_json::json!({"q": "aabc", "n": [1, "abc"]}))
        );
        assert_eq!(
            used_args("{{args.b}} {{args.a}} {{ args.b }}"),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
    }
}
