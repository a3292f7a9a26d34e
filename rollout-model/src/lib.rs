//! One model of what the rollout rehearsal (`scenarios`) and the deployment
//! checks (`deploycheck`) read from the Argo Rollouts manifests:
//!
//! - [`model`]: the Rollout (strategy, steps, analysis and its arguments) and
//!   the AnalysisTemplate (metrics, provider, conditions, limits) as serde
//!   structs, field names as Argo Rollouts' CRDs spell them;
//! - [`args`]: `{{args.NAME}}` resolution, as Argo resolves a template's
//!   arguments before it measures;
//! - [`condition`]: success and failure conditions evaluated by expr-lang (a
//!   Rust implementation of expr, the language Argo evaluates them with), and
//!   the phase of a measurement from them;
//! - [`yaml_documents`]: multi-document YAML, read once.

pub mod args;
pub mod condition;
pub mod model;

pub use args::{Args, ArgsError, resolve, resolve_value, used_args};
pub use condition::{Condition, ConditionError, Input, Phase, evaluate_result, measure};
pub use model::{AnalysisTemplate, Metric, Rollout};

/// Every document of a multi-document YAML text (empty documents skipped), as JSON values.
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, serde_norway::Error> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_skip_empty_ones() {
        let documents = super::yaml_documents("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1]["b"], 2);
        assert!(super::yaml_documents("a: [").is_err());
    }
}
