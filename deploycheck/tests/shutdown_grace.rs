//! The ponger's worst-case shutdown, computed from the configuration each
//! deployment gives it, fits the time the platform waits before killing it:
//! Kubernetes' `terminationGracePeriodSeconds` and compose's
//! `stop_grace_period` (Docker's default, 10 s, when unset).

use std::time::Duration;

use clap::Parser;
use deploycheck::{kustomize, object, yaml_file};
use ponger::config::{Cli, Config};
use ponger::profile::ProfileName;
use ponger::shutdown::ShutdownBudget;
use serde_json::Value;

const OVERLAYS: &[&str] = &["k8s/overlays/canary", "k8s/overlays/bluegreen"];

/// Kubernetes' default when a pod sets no grace period.
const KUBERNETES_DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Docker's default when a compose service sets no `stop_grace_period`.
const DOCKER_DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The ponger's configuration from its `PONGER_*` variables, read by its own
/// flag parser (each variable is its flag in upper case). The image picks the
/// profile (one image tag per profile), so without `PONGER_PROFILE` every
/// profile is tried.
fn budgets(variables: &[(String, String)]) -> Vec<(String, ShutdownBudget)> {
    let mut args = vec!["ponger".to_owned()];
    for (name, value) in variables {
        if let Some(flag) = name.strip_prefix("PONGER_") {
            args.push(format!("--{}", flag.to_lowercase().replace('_', "-")));
            args.push(value.clone());
        }
    }
    let profiles: Vec<Option<&str>> = if variables.iter().any(|(name, _)| name == "PONGER_PROFILE")
    {
        vec![None]
    } else {
        ProfileName::ALL
            .iter()
            .map(|name| Some(name.as_str()))
            .collect()
    };
    profiles
        .into_iter()
        .map(|profile| {
            let mut args = args.clone();
            if let Some(profile) = profile {
                args.extend(["--profile".to_owned(), profile.to_owned()]);
            }
            let cli = Cli::try_parse_from(&args)
                .unwrap_or_else(|error| panic!("{args:?} is not a valid configuration: {error}"));
            let config = Config::from(cli);
            let budget = ShutdownBudget::new(config.drain_delay, &config.profile);
            (config.profile.name.to_string(), budget)
        })
        .collect()
}

fn assert_fits(place: &str, variables: &[(String, String)], grace: Duration) {
    for (profile, budget) in budgets(variables) {
        assert!(
            budget.total() <= grace,
            "{place}, profile {profile}: the ponger may take {:?} to stop ({budget:?}), but it is killed after {grace:?}",
            budget.total()
        );
    }
}

#[test]
fn the_ponger_stops_within_every_kubernetes_grace_period() {
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let pod = &object(&objects, "Rollout", "ponger")["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .map_or(KUBERNETES_DEFAULT_GRACE, Duration::from_secs);
        let container = pod["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|container| container["name"] == "ponger")
            .expect("a ponger container");
        let variables: Vec<(String, String)> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variable| {
                Some((
                    variable["name"].as_str()?.to_owned(),
                    variable["value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        assert!(
            variables
                .iter()
                .any(|(name, _)| name == "PONGER_DRAIN_DELAY"),
            "{overlay}: the drain delay is expected to be set explicitly"
        );
        assert_fits(overlay, &variables, grace);
    }
}

#[test]
fn the_ponger_stops_within_compose_stop_grace_period() {
    let compose = yaml_file("docker-compose.yml");
    let ponger = &compose["services"]["ponger"];
    let grace = match ponger["stop_grace_period"].as_str() {
        Some(text) => humantime::parse_duration(text)
            .unwrap_or_else(|error| panic!("stop_grace_period {text:?}: {error}")),
        None => DOCKER_DEFAULT_GRACE,
    };
    let variables: Vec<(String, String)> = match &ponger["environment"] {
        Value::Object(map) => map
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
            .collect(),
        other => panic!("ponger's environment is expected as a map: {other}"),
    };
    assert_fits("docker-compose.yml", &variables, grace);
}

#[test]
fn a_longer_drain_delay_would_be_caught() {
    // The check itself can fail: the slow profile with a 15 s drain delay
    // (15 s + 3 s of pings in flight + 3 s of span flush) does not fit a 20 s
    // grace period.
    let variables = [("PONGER_DRAIN_DELAY".to_owned(), "15s".to_owned())];
    let worst = budgets(&variables)
        .into_iter()
        .map(|(_, budget)| budget.total())
        .max()
        .expect("a profile");
    assert!(worst > Duration::from_secs(20), "{worst:?}");
}
