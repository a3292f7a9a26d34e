//! Workshop scenarios and a local rollout rehearsal.
//!
//! `rehearse <version>` plays the canary Rollout and AnalysisTemplate(s) from
//! `k8s/` on loopback: real ponger replicas behind a small load balancer (the
//! Service), the real pinger, a real Prometheus, and the analysis evaluated
//! with Argo Rollouts' semantics. It rehearses analysis and weights; it does
//! not replace Argo Rollouts.

pub mod analysis;
pub mod chart;
pub mod controller;
pub mod html;
pub mod lb;
pub mod manifests;
pub mod narration;
pub mod plan;
pub mod prerequisites;
pub mod procs;
pub mod prom;
pub mod rehearsal;
pub mod report;
pub mod reporter;
