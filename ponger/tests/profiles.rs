//! Each profile, driven by the real pinger over loopback, injects the error
//! fraction and the delay mix its spec says.
//!
//! Statistical bound: with n pings, an outcome of probability p is seen
//! n·p ± 5·sqrt(n·p·(1-p)) times except with probability below 1e-6, so a
//! correct ponger fails this test practically never, while a ponger that
//! never chooses an entry (the original demo's "slow" never slept 200 ms) or
//! swaps error rates is caught: with ~1,400 pings the 5% entry's window is
//! about 29 to 111, never 0.

use std::time::Duration;

use testkit::{Exposition, Service, scrape};

struct Expected {
    profile: &'static str,
    success_percent: f64,
    /// (delay, percent) as in the spec.
    mix: &'static [(f64, f64)],
}

const PROFILES: [Expected; 4] = [
    Expected {
        profile: "initial",
        success_percent: 95.0,
        mix: &[(0.5, 90.0), (0.2, 10.0)],
    },
    Expected {
        profile: "errors",
        success_percent: 65.0,
        mix: &[(0.5, 90.0), (0.2, 10.0)],
    },
    Expected {
        profile: "slow",
        success_percent: 95.0,
        mix: &[(0.5, 50.0), (0.2, 5.0), (2.0, 45.0)],
    },
    Expected {
        profile: "best",
        success_percent: 97.0,
        mix: &[(0.0, 90.0), (0.2, 10.0)],
    },
];

/// The histogram bucket bounds that bracket each injected delay: a ping
/// whose server-side duration falls between them took that delay. The bounds
/// are the bucket edges nearest the midpoints between the delays, so that a
/// ping delayed by a busy machine (tests run side by side) is still counted
/// as the delay it drew; how exact each delay is, the benchmarks measure.
fn bracket(delay: f64) -> (&'static str, &'static str) {
    match delay {
        0.0 => ("0", "0.1"),
        0.2 => ("0.1", "0.3"),
        0.5 => ("0.3", "1.0"),
        2.0 => ("1.0", "+Inf"),
        other => panic!("no bracket for {other}"),
    }
}

fn cumulative(metrics: &Exposition, le: &str) -> f64 {
    if le == "0" {
        return 0.0;
    }
    metrics.sum(
        "http_request_duration_seconds_bucket",
        &[("handler", "/ping"), ("le", le)],
    )
}

fn assert_within_bound(what: &str, observed: f64, samples: f64, percent: f64) {
    let p = percent / 100.0;
    let sigma = (samples * p * (1.0 - p)).sqrt().max(1.0);
    let expected = samples * p;
    assert!(
        (observed - expected).abs() <= 5.0 * sigma,
        "{what}: observed {observed} of {samples}, expected {expected:.0} ± {:.0}",
        5.0 * sigma
    );
}

#[test]
fn every_profile_matches_its_error_fraction_and_delay_mix() {
    let pongers: Vec<Service> = PROFILES
        .iter()
        .map(|expected| Service::ponger(&["--profile", expected.profile], &[]))
        .collect();
    let mut pingers: Vec<Service> = pongers
        .iter()
        .map(|ponger| Service::pinger(&ponger.url("/ping"), "200", &[], &[]))
        .collect();
    std::thread::sleep(Duration::from_secs(7));
    let client_totals: Vec<Exposition> = pingers
        .iter_mut()
        .map(|pinger| {
            let metrics = scrape(&pinger.url("/metrics"), true);
            // Shutdown waits for the pings in flight, the slowest taking 2 s.
            pinger.terminate();
            metrics
        })
        .collect();
    for pinger in &mut pingers {
        assert!(pinger.wait_exit(Duration::from_secs(15)).success());
        assert!(!pinger.logs().iter().any(|line| line.contains("abandoned")));
    }

    for ((expected, ponger), client) in PROFILES.iter().zip(&pongers).zip(&client_totals) {
        let server = scrape(&ponger.url("/metrics"), true);
        let name = expected.profile;
        let total = server.sum("http_requests_total", &[("handler", "/ping")]);
        assert!(total >= 1000.0, "{name}: only {total} pings served");
        assert_eq!(
            server.sum("http_requests_in_flight", &[("handler", "/ping")]),
            0.0
        );

        let successes = server.sum(
            "http_requests_total",
            &[("handler", "/ping"), ("code", "200")],
        );
        let failures = server.sum(
            "http_requests_total",
            &[("handler", "/ping"), ("code", "500")],
        );
        assert_eq!(
            successes + failures,
            total,
            "{name}: only 200 and 500 are answered"
        );
        assert_within_bound(
            &format!("{name} successes"),
            successes,
            total,
            expected.success_percent,
        );

        // What the pinger saw agrees with what the ponger did, ping for ping,
        // up to the pings still in flight when the pinger was scraped.
        let client_ok = client.sum("http_client_requests_total", &[("code", "200")]);
        let client_failed = client.sum("http_client_requests_total", &[("code", "500")]);
        assert!(
            client_ok <= successes && client_failed <= failures,
            "{name}: client saw more than was served"
        );
        assert!(
            client.sum("http_client_requests_total", &[]) == client_ok + client_failed,
            "{name}: the pinger saw timeouts or errors:\n{}",
            client.text
        );

        let mut classified = 0.0;
        for (delay, percent) in expected.mix {
            let (low, high) = bracket(*delay);
            let observed = cumulative(&server, high) - cumulative(&server, low);
            classified += observed;
            assert_within_bound(
                &format!("{name} {delay}s delays"),
                observed,
                total,
                *percent,
            );
        }
        // Every ping took one of the configured delays, give or take scheduling.
        assert!(
            total - classified <= total * 0.01,
            "{name}: {} of {total} pings took none of the configured delays",
            total - classified
        );
    }
}
