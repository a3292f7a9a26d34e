//! Prometheus for the rehearsal on a fresh machine: use the one on PATH, or
//! install the distribution's package when that needs no question (root, or
//! sudo without a password), or name the one command that installs it.
//!
//! [`plan_prometheus`] decides from facts about the machine (sans-IO);
//! [`find_or_install_prometheus`] gathers the facts and carries the plan out.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What the machine offers, as far as getting Prometheus goes.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// `prometheus` on PATH.
    pub prometheus: Option<PathBuf>,
    /// `apt-get` on PATH (Debian, Ubuntu and their derivatives).
    pub apt_get: bool,
    /// Running as root.
    pub root: bool,
    /// `sudo -n true` succeeds: sudo without a password prompt.
    pub sudo_without_password: bool,
}

/// How to get Prometheus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrometheusPlan {
    Use(PathBuf),
    /// Run these commands, in order, then look on PATH again.
    Install(Vec<Vec<String>>),
    /// Stop, and tell the person this.
    Ask(String),
}

const PACKAGE_INSTALL: &str = "apt-get install -y prometheus";

pub fn plan_prometheus(machine: &Machine) -> PrometheusPlan {
    if let Some(path) = &machine.prometheus {
        return PrometheusPlan::Use(path.clone());
    }
    if !machine.apt_get {
        return PrometheusPlan::Ask(
            "prometheus is not on PATH: install Prometheus 2.x from your distribution's packages \
             or https://prometheus.io/download/ (e.g. `brew install prometheus` on macOS), \
             then run this again, or pass --prometheus <path>"
                .to_owned(),
        );
    }
    let prefix: &[&str] = if machine.root {
        &[]
    } else if machine.sudo_without_password {
        &["sudo", "-n"]
    } else {
        return PrometheusPlan::Ask(format!(
            "prometheus is not on PATH: install it with `sudo {PACKAGE_INSTALL}`, \
             then run this again (or pass --prometheus <path>)"
        ));
    };
    let command = |args: &[&str]| -> Vec<String> {
        prefix
            .iter()
            .chain(["env", "DEBIAN_FRONTEND=noninteractive"].iter())
            .chain(args.iter())
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    PrometheusPlan::Install(vec![
        command(&["apt-get", "update", "-qq"]),
        command(&["apt-get", "install", "-y", "-qq", "prometheus"]),
    ])
}

/// `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    crate::procs::on_path(name)
}

fn machine() -> Machine {
    let root = nix::unistd::geteuid().is_root();
    let sudo_without_password = !root
        && on_path("sudo").is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    Machine {
        prometheus: on_path("prometheus"),
        apt_get: on_path("apt-get").is_some(),
        root,
        sudo_without_password,
    }
}

/// The Prometheus executable, installed first if the plan says so. The error
/// is one message naming what to do.
pub fn find_or_install_prometheus() -> Result<PathBuf, String> {
    match plan_prometheus(&machine()) {
        PrometheusPlan::Use(path) => Ok(path),
        PrometheusPlan::Ask(message) => Err(message),
        PrometheusPlan::Install(commands) => {
            for command in &commands {
                eprintln!(
                    "prometheus is not on PATH: installing the distribution's package: {}",
                    command.join(" ")
                );
                let status = Command::new(&command[0])
                    .args(&command[1..])
                    .stdin(Stdio::null())
                    .status()
                    .map_err(|error| format!("cannot run {}: {error}", command[0]))?;
                if !status.success() {
                    return Err(format!(
                        "`{}` failed ({status}): install Prometheus with `sudo {PACKAGE_INSTALL}` \
                         and run this again",
                        command.join(" ")
                    ));
                }
            }
            on_path("prometheus").ok_or_else(|| {
                "the prometheus package is installed but `prometheus` is not on PATH \
                 (Debian installs /usr/bin/prometheus): pass --prometheus <path>"
                    .to_owned()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_on_path_is_used() {
        let machine = Machine {
            prometheus: Some(PathBuf::from("/usr/bin/prometheus")),
            ..Machine::default()
        };
        assert_eq!(
            plan_prometheus(&machine),
            PrometheusPlan::Use(PathBuf::from("/usr/bin/prometheus"))
        );
    }

    #[test]
    fn root_with_apt_installs_the_package() {
        let machine = Machine {
            apt_get: true,
            root: true,
            ..Machine::default()
        };
        let PrometheusPlan::Install(commands) = plan_prometheus(&machine) else {
            panic!("expected an install");
        };
        assert_eq!(commands.len(), 2);
        assert_eq!(
            commands[0][..3],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        );
        assert_eq!(commands[1].last().map(String::as_str), Some("prometheus"));
    }

    #[test]
    fn sudo_without_a_password_installs_through_sudo() {
        let machine = Machine {
            apt_get: true,
            sudo_without_password: true,
            ..Machine::default()
        };
        let PrometheusPlan::Install(commands) = plan_prometheus(&machine) else {
            panic!("expected an install");
        };
        assert!(commands.iter().all(|c| c[..2] == ["sudo", "-n"]));
    }

    #[test]
    fn otherwise_the_one_command_is_named() {
        let machine = Machine {
            apt_get: true,
            ..Machine::default()
        };
        let PrometheusPlan::Ask(message) = plan_prometheus(&machine) else {
            panic!("expected a question");
        };
        assert!(
            message.contains("`sudo apt-get install -y prometheus`"),
            "{message}"
        );
        let PrometheusPlan::Ask(message) = plan_prometheus(&Machine::default()) else {
            panic!("expected a question");
        };
        assert!(message.contains("--prometheus <path>"), "{message}");
    }
}
