//! Credentials in target URLs never reach a log line or an exported span, and
//! shutdown ends within the grace period the manifests give the pinger, even
//! with a collector that never answers.

use std::time::{Duration, Instant};

use clap::Parser;
use pinger::app::shutdown_bound;
use pinger::config::Config;
use serde_json::Value;
use testkit::{Behaviour, FakeTarget, OtlpReceiver, Service, wait_for};

#[test]
fn credentials_in_targets_are_redacted_in_logs_and_spans() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let ponger = Service::ponger(&["--latency", "100%0ms", "--success-percent", "100"], &[]);
    let port = testkit::prometheus::free_port();
    // One target answers (client spans with url.full), one is down (failure
    // log lines with reqwest's error, which quotes the URL).
    let targets = format!(
        "http://user:s3cret@{}/ping?sig=s3cret,http://user:s3cret@127.0.0.1:{port}/ping",
        ponger.address()
    );
    let pinger = Service::pinger(
        &targets,
        "20",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let spans = wait_for(
        "client spans of both targets",
        Duration::from_secs(20),
        || {
            let spans = receiver.spans();
            let urls: Vec<&String> = spans
                .iter()
                .filter_map(|span| span.attributes.get("url.full"))
                .collect();
            let both = urls
                .iter()
                .any(|url| url.contains(&ponger.address().to_string()))
                && urls.iter().any(|url| url.contains(&port.to_string()));
            both.then_some(spans)
        },
    );
    let logs = pinger.logs();
    let failures: Vec<&String> = logs
        .iter()
        .filter(|line| line.contains("ping failed"))
        .collect();
    assert!(!failures.is_empty(), "{logs:#?}");
    assert!(
        logs.iter()
            .any(|line| line.contains("pinging") && line.contains("REDACTED:REDACTED@")),
        "{logs:#?}"
    );
    for line in &logs {
        assert!(
            !line.contains("s3cret"),
            "a log line leaks the password: {line}"
        );
    }
    for span in &spans {
        let exported = format!("{:?} {:?}", span.attributes, span.resource);
        assert!(
            !exported.contains("s3cret"),
            "a span leaks the password: {exported}"
        );
        if let Some(url) = span.attributes.get("url.full") {
            assert!(
                url.starts_with("http://REDACTED:REDACTED@127.0.0.1:"),
                "{url}"
            );
        }
    }
    assert!(
        spans
            .iter()
            .filter_map(|span| span.attributes.get("url.full"))
            .any(|url| url.ends_with("/ping?sig=REDACTED")),
        "signature query values are redacted too"
    );
}

/// What a manifest sets for the pinger: its grace period and its `PINGER_*`
/// variables as flags.
struct Deployed {
    place: String,
    grace: Duration,
    flags: Vec<String>,
}

impl Deployed {
    fn config(&self) -> Config {
        let mut args = vec!["pinger".to_owned()];
        args.extend(self.flags.iter().cloned());
        Config::try_parse_from(&args)
            .unwrap_or_else(|error| panic!("{}: {args:?}: {error}", self.place))
    }
}

/// `PINGER_TARGET_NAME` -> `--target-name`.
fn flag_of(variable: &str) -> Option<String> {
    let name = variable.strip_prefix("PINGER_")?;
    Some(format!("--{}", name.to_ascii_lowercase().replace('_', "-")))
}

/// Every pinger pod template in the rendered overlays. Kubernetes' default
/// grace period is 30 s.
fn kubernetes_pingers() -> Vec<Deployed> {
    let mut found = Vec::new();
    for overlay in ["k8s/overlays/canary", "k8s/overlays/bluegreen"] {
        for object in deploycheck::kustomize(overlay) {
            let pod = &object["spec"]["template"]["spec"];
            let Some(containers) = pod["containers"].as_array() else {
                continue;
            };
            for container in containers {
                let is_pinger = container["image"]
                    .as_str()
                    .is_some_and(|image| image.contains("pinger"));
                if !is_pinger {
                    continue;
                }
                let flags = container["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|variable| {
                        let flag = flag_of(variable["name"].as_str()?)?;
                        let value = variable["value"].as_str()?;
                        Some([flag, value.to_owned()])
                    })
                    .flatten()
                    .collect();
                found.push(Deployed {
                    place: format!("{overlay}: {}", object["metadata"]["name"]),
                    grace: Duration::from_secs(
                        pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
                    ),
                    flags,
                });
            }
        }
    }
    found
}

/// The pinger of docker-compose.yml; Compose's default stop grace is 10 s.
fn compose_pinger() -> Deployed {
    let compose = deploycheck::yaml_file("docker-compose.yml");
    let service = &compose["services"]["pinger"];
    let grace = service["stop_grace_period"]
        .as_str()
        .map(|text| humantime::parse_duration(text).expect("a Compose duration"))
        .unwrap_or(Duration::from_secs(10));
    let flags = service["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some([flag_of(name)?, value])
        })
        .flatten()
        .collect();
    Deployed {
        place: "docker-compose.yml".to_owned(),
        grace,
        flags,
    }
}

#[test]
fn the_worst_case_shutdown_fits_every_grace_period_the_pinger_is_given() {
    let mut deployed = kubernetes_pingers();
    assert!(
        deployed.len() >= 2,
        "a pinger in each overlay (the blue-green one has a preview pinger too)"
    );
    deployed.push(compose_pinger());
    for place in &deployed {
        let bound = shutdown_bound(&place.config());
        assert!(
            bound < place.grace,
            "{}: shutdown may take {bound:?}, the grace period is {:?}",
            place.place,
            place.grace
        );
    }
}

/// The worst case, for real: every ping in flight hangs until its timeout, and
/// the collector accepts connections and never answers.
#[test]
fn shutdown_with_hung_pings_and_a_black_holed_collector_ends_within_the_bound() {
    let collector = FakeTarget::start(Behaviour::Silent);
    let target = FakeTarget::start(Behaviour::Silent);
    let collector_endpoint = collector.url().trim_end_matches("/ping").to_owned();
    let mut pinger = Service::pinger(
        &target.url(),
        "20",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let bound = shutdown_bound(&Config::try_parse_from(["pinger"]).expect("defaults"));
    // Pings in flight, and the collector holding an export: the first pings
    // time out after 5 s, and their spans go to the collector, which hangs.
    wait_for(
        "an export to the collector",
        Duration::from_secs(15),
        || (collector.connections() >= 1).then_some(()),
    );
    pinger.terminate();
    let signalled = Instant::now();
    let status = pinger.wait_exit(Duration::from_secs(30));
    let took = signalled.elapsed();
    println!(
        "shutdown with hung pings and a black-holed collector took {took:?} (bound {bound:?})"
    );
    assert!(status.success(), "{status}");
    // The bound plus the process' own exit; far inside Compose's 10 s.
    assert!(
        took <= bound + Duration::from_millis(500),
        "took {took:?}, bound {bound:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let logs = pinger.logs();
    assert!(
        logs.iter().any(
            |line| line.contains("pings still in flight at shutdown were abandoned")
                || line.contains("all pings answered")
        ),
        "{logs:#?}"
    );
}
