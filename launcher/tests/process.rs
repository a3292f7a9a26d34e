//! The launcher on real processes (`sh`, `sleep`): readiness from the log,
//! exits at start, bounded waits, SIGTERM handled or ignored, kill on drop.

use std::time::Duration;

use launcher::{Error, Launch, Stopped};

const LISTENING_LINE: &str = r#"{"fields":{"message":"listening","address":"127.0.0.1:1234"}}"#;

fn sh(script: &str) -> Launch {
    Launch::new("script", "/bin/sh").args(["-c", script])
}

#[test]
fn the_logged_listening_address_is_found() {
    let mut process = sh(&format!(
        "echo 'starting' >&2; echo '{LISTENING_LINE}' >&2; exec sleep 30"
    ))
    .spawn()
    .unwrap();
    let address = process.wait_listening(Duration::from_secs(10)).unwrap();
    assert_eq!(address.to_string(), "127.0.0.1:1234");
    assert_eq!(process.listening_address(), Some(address));
    assert_eq!(process.logs()[0], "starting");
}

#[test]
fn stdout_can_be_read_with_stderr() {
    let mut process = sh("echo 'usage: x' >&2; sleep 0.1; echo 'x 1.0'")
        .capture_stdout()
        .spawn()
        .unwrap();
    let status = process.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    assert_eq!(process.logs(), ["usage: x", "x 1.0"]);
}

#[test]
fn an_exit_at_start_is_an_error_with_the_logs() {
    let mut process = sh("echo 'bad flag --x' >&2; exit 2").spawn().unwrap();
    let error = process.wait_listening(Duration::from_secs(10)).unwrap_err();
    let Error::ExitedAtStart { status, logs, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(status.code(), Some(2));
    assert_eq!(logs, "bad flag --x");
}

#[test]
fn waits_are_bounded_and_a_silent_process_is_killed() {
    let mut process = Launch::new("sleep", "sleep").arg("30").spawn().unwrap();
    let error = process
        .wait_listening(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(error, Error::NotListening { .. }), "{error}");
    assert!(process.try_exit().is_some(), "killed when it gave up");

    let nothing = launcher::free_loopback_address().unwrap();
    let mut process = Launch::new("sleep", "sleep").arg("30").spawn().unwrap();
    let error = process
        .wait_http_ok(nothing, "/-/ready", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(error, Error::NotReady { .. }), "{error}");
}

#[test]
fn stop_sends_sigterm_then_kills_after_the_grace_period() {
    let mut polite = sh("trap 'echo bye >&2; exit 0' TERM; while :; do sleep 0.05; done")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200)); // the trap is set
    let stopped = polite.stop(Duration::from_secs(10));
    assert!(
        matches!(stopped, Stopped::Exited(status) if status.success()),
        "{stopped}"
    );
    assert!(polite.logs().contains(&"bye".to_owned()));

    let mut deaf = sh("trap '' TERM; exec sleep 30").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stopped = deaf.stop(Duration::from_millis(300));
    assert_eq!(
        stopped,
        Stopped::Killed {
            grace: Duration::from_millis(300)
        }
    );
    assert_eq!(stopped.to_string(), "killed after the 300ms grace period");
}

#[test]
fn a_dropped_process_is_killed() {
    let process = Launch::new("sleep", "sleep").arg("30").spawn().unwrap();
    let pid = process.pid();
    drop(process);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let error = Launch::new("ghost", "/nonexistent/ghost")
        .spawn()
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .starts_with("cannot start ghost (/nonexistent/ghost)"),
        "{error}"
    );
    assert!(matches!(
        launcher::built_binary("no-such-binary"),
        Err(Error::NotBuilt { .. })
    ));
}

#[tokio::test]
async fn async_waits_poll_without_blocking_the_runtime() {
    let mut process = sh(&format!(
        "echo '{LISTENING_LINE}' >&2; trap 'exit 0' TERM; while :; do sleep 0.05; done"
    ))
    .spawn()
    .unwrap();
    // A current-thread runtime: a blocking wait would stall this ticker.
    let ticker = tokio::spawn(async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let address = process
        .wait_listening_async(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(address.port(), 1234);
    ticker.await.unwrap();
    let stopped = process.stop_async(Duration::from_secs(10)).await;
    assert!(
        matches!(stopped, Stopped::Exited(status) if status.success()),
        "{stopped}"
    );

    let mut deaf = sh("trap '' TERM; exec sleep 30").spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = deaf.stop_async(Duration::from_millis(200)).await;
    assert!(matches!(stopped, Stopped::Killed { .. }));
    let nothing = launcher::free_loopback_address().unwrap();
    let error = deaf
        .wait_http_ok_async(nothing, "/", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ExitedAtStart { .. }), "{error}");
}
