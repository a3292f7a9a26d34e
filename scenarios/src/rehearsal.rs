//! The rehearsal: the stable version as several ponger replicas behind a
//! loopback load balancer, the real pinger, a real Prometheus; then the
//! Rollout's steps with its background analysis, an abort or a promotion, and
//! a report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::analysis::{Measurement, Phase, Run, evaluate_result, scaled};
use crate::lb::{Balancer, Totals};
use crate::manifests;
use crate::plan::{AnalysisSpec, Plan, Step, go_duration};
use crate::procs::{self, Proc};
use crate::prom::{self, PodTarget, Prometheus};
use crate::report::{AnalysisOutcome, PingsInSecond, Report, Timeline, WeightCause, WeightChange};

#[derive(Clone, Debug)]
pub struct Options {
    pub version: String,
    pub manifests: PathBuf,
    pub time_scale: f64,
    pub compare: Option<PathBuf>,
    pub prometheus: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    /// Stable traffic before the rollout starts, at manifest timing.
    pub warmup: Duration,
}

/// Why a rehearsal stopped without a verdict.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: the manifests, the version, a condition, a template file.
    Input(String),
    /// The rehearsal could not run (a binary missing, Prometheus died, ...).
    Runtime(String),
    Interrupted,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Input(message) | Failure::Runtime(message) => f.write_str(message),
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Set by the signal handler; every wait checks it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

struct Printer {
    start: Instant,
}

impl Printer {
    fn line(&self, text: &str) {
        println!("[{:>7.1}s] {text}", self.start.elapsed().as_secs_f64());
    }
}

struct Replica {
    pod: String,
    canary: bool,
    proc: Proc,
}

#[derive(Clone, Debug)]
struct Snapshot {
    at: Duration,
    step: usize,
    weight: u32,
    canary: Totals,
    stable: Totals,
}

struct Slot {
    run: Run,
    queries: Vec<String>,
    primary: bool,
    decided: Option<(Phase, String, Snapshot)>,
}

/// Everything that runs; torn down on every exit path.
struct World {
    plan: Plan,
    scale: f64,
    ponger: PathBuf,
    dir: tempfile::TempDir,
    lb: Balancer,
    replicas: Vec<Replica>,
    retiring: tokio::task::JoinSet<()>,
    targets: Arc<Mutex<BTreeMap<String, PodTarget>>>,
    targets_file: PathBuf,
    pinger: Option<Proc>,
    prometheus: Option<Prometheus>,
    out: Printer,
    pod_counter: u32,
    weight: u32,
    highest_weight: u32,
    step: usize,
    rollout_start: Option<Instant>,
    slots: Vec<Slot>,
    weight_changes: Vec<WeightChange>,
}

pub async fn rehearse(options: Options) -> Result<Report, Failure> {
    let out = Printer {
        start: Instant::now(),
    };
    if !(options.time_scale.is_finite() && options.time_scale >= 1.0 && options.time_scale <= 60.0)
    {
        return Err(Failure::Input(format!(
            "--time-scale {} is out of range: expected a number from 1 (the manifests' timing) to 60",
            options.time_scale
        )));
    }
    let plan = Plan::load(&options.manifests, &options.version).map_err(Failure::Input)?;
    let mut specs: Vec<(AnalysisSpec, bool)> = Vec::new();
    if let Some(spec) = &plan.analysis {
        specs.push((spec.clone(), true));
    }
    if let Some(path) = &options.compare {
        let objects = manifests::render(path).map_err(Failure::Input)?;
        let templates: Vec<rollout_model::AnalysisTemplate> = objects
            .objects
            .iter()
            .filter(|object| {
                object["kind"] == "AnalysisTemplate" || object["kind"] == "ClusterAnalysisTemplate"
            })
            .map(rollout_model::model::from_value)
            .collect::<Result<_, _>>()
            .map_err(|error| Failure::Input(format!("{}: {error}", path.display())))?;
        if templates.is_empty() {
            return Err(Failure::Input(format!(
                "{}: no AnalysisTemplate",
                path.display()
            )));
        }
        let spec = plan
            .analysis_spec("compare", &templates)
            .map_err(|error| Failure::Input(format!("{}: {error}", path.display())))?;
        specs.push((spec, false));
    }
    if specs.is_empty() {
        return Err(Failure::Input(format!(
            "{}: the Rollout has no background analysis to rehearse",
            plan.source
        )));
    }
    // Queries scaled up front, so that a range the rehearsal cannot scale is an input error.
    let mut scaled_specs = Vec::new();
    for (spec, primary) in specs {
        let queries = spec
            .metrics
            .iter()
            .map(|metric| {
                prom::scale_promql(&metric.query, options.time_scale)
                    .map_err(|error| Failure::Input(format!("metric {}: {error}", metric.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        scaled_specs.push((spec, queries, primary));
    }

    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let ponger = binary(&bin_dir, "ponger")?;
    let pinger = binary(&bin_dir, "pinger")?;
    let prometheus_bin = match &options.prometheus {
        Some(path) => path.clone(),
        None => crate::prerequisites::find_or_install_prometheus().map_err(Failure::Runtime)?,
    };

    let dir = tempfile::Builder::new()
        .prefix("rehearsal-")
        .tempdir()
        .map_err(|error| {
            Failure::Runtime(format!("cannot create a temporary directory: {error}"))
        })?;
    let targets_file = dir.path().join("targets.json");
    let lb = Balancer::start().await.map_err(Failure::Runtime)?;
    let mut world = World {
        scale: options.time_scale,
        ponger,
        dir,
        lb,
        replicas: Vec::new(),
        retiring: tokio::task::JoinSet::new(),
        targets: Arc::default(),
        targets_file,
        pinger: None,
        prometheus: None,
        out,
        pod_counter: 0,
        weight: 0,
        highest_weight: 0,
        step: 0,
        rollout_start: None,
        slots: Vec::new(),
        weight_changes: Vec::new(),
        plan,
    };
    let result = world
        .play(&options, pinger, prometheus_bin, scaled_specs)
        .await;
    let failed = result.is_err();
    world.teardown(failed).await;
    result
}

fn binary(dir: &Path, name: &str) -> Result<PathBuf, Failure> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Failure::Runtime(format!(
            "{} is missing: build it with `cargo build --release -p ponger -p pinger` \
             (or run the rehearsal with `cargo run --release -p scenarios -- rehearse ...`, which builds them), \
             or pass --bin-dir",
            path.display()
        )))
    }
}

impl World {
    fn check(&mut self) -> Result<(), Failure> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Failure::Interrupted);
        }
        if let Some(prometheus) = &mut self.prometheus {
            if let Some(status) = prometheus.proc.try_exited() {
                let tail = prometheus.proc.log_tail();
                return Err(Failure::Runtime(format!(
                    "Prometheus (pid {}) exited during the rehearsal ({status}) at step {} (canary weight {}%); \
                     the analysis cannot measure without it. Its last log lines:\n{tail}",
                    prometheus.proc.pid,
                    self.step + 1,
                    self.weight
                )));
            }
        }
        if let Some(pinger) = &mut self.pinger {
            if let Some(status) = pinger.try_exited() {
                return Err(Failure::Runtime(format!(
                    "the pinger exited during the rehearsal ({status}):\n{}",
                    pinger.log_tail()
                )));
            }
        }
        for replica in &mut self.replicas {
            if let Some(status) = replica.proc.try_exited() {
                return Err(Failure::Runtime(format!(
                    "replica {} exited unexpectedly ({status}):\n{}",
                    replica.pod,
                    replica.proc.log_tail()
                )));
            }
        }
        Ok(())
    }

    async fn play(
        &mut self,
        options: &Options,
        pinger_bin: PathBuf,
        prometheus_bin: PathBuf,
        specs: Vec<(AnalysisSpec, Vec<String>, bool)>,
    ) -> Result<Report, Failure> {
        let plan = self.plan.clone();
        self.out.line(&format!(
            "rehearsing Rollout {}/{} from {}: {} -> {} over {} replicas, steps: {}; time scale {}x",
            plan.namespace,
            plan.rollout_name,
            plan.source,
            plan.stable_version,
            plan.canary_version,
            plan.replicas,
            plan.steps.iter().map(Step::describe).collect::<Vec<_>>().join(", "),
            self.scale
        ));
        for (spec, _, primary) in &specs {
            let role = if *primary {
                "the Rollout's analysis"
            } else {
                "comparison"
            };
            self.out.line(&format!(
                "{role} {}: metrics {}",
                spec.templates.join("+"),
                spec.metrics
                    .iter()
                    .map(|metric| metric.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Stable replicas, behind the balancer.
        for _ in 0..plan.replicas {
            self.start_replica(false).await?;
        }
        // The pinger, at the manifests' rate times the time scale, so that a
        // scaled rate window holds as many pings as the real one.
        let rate = plan.pinger.rate * self.scale;
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--target".to_owned(),
            format!("http://{}/ping", self.lb.address),
            "--target-name".to_owned(),
            plan.pinger.target_name.clone(),
            "--rate".to_owned(),
            format!("{rate}"),
        ];
        if let Some(timeout) = &plan.pinger.timeout {
            args.extend(["--timeout".to_owned(), timeout.clone()]);
        }
        let pinger = Proc::spawn("pinger", &pinger_bin, &args, &[], true)
            .await
            .map_err(Failure::Runtime)?;
        self.out.line(&format!(
            "pinger (pid {}) sends {rate} pings/s to the Service at {} (a fresh connection per ping)",
            pinger.pid, self.lb.address
        ));
        let pinger_address = pinger.address.expect("waited for the address");
        self.pinger = Some(pinger);
        self.targets.lock().expect("targets").insert(
            "pinger".to_owned(),
            PodTarget {
                namespace: plan.namespace.clone(),
                pod: format!(
                    "pinger-{}",
                    crate::plan::pod_template_hash(&plan.pinger.template)
                ),
                address: pinger_address,
                template: plan.pinger.template.clone(),
                extra_labels: BTreeMap::new(),
            },
        );
        self.write_targets()?;
        let (config, left_out) =
            prom::rehearsal_config(&plan.prometheus_config, &self.targets_file, self.scale)
                .map_err(Failure::Input)?;
        let prometheus = Prometheus::start(&prometheus_bin, self.dir.path(), &config)
            .await
            .map_err(Failure::Runtime)?;
        self.out.line(&format!(
            "prometheus (pid {}) at {}: scrape interval {}, the manifests' pod relabeling, exemplar storage on{}",
            prometheus.proc.pid,
            prometheus.base,
            config["global"]["scrape_interval"].as_str().unwrap_or("?"),
            if left_out.is_empty() { String::new() } else { format!("; not rehearsed: job(s) {}", left_out.join(", ")) }
        ));
        self.prometheus = Some(prometheus);
        // Wait until every replica is scraped, then let stable traffic build up.
        let job_ready = Instant::now() + Duration::from_secs(30);
        loop {
            self.check()?;
            let up = self
                .prometheus
                .as_ref()
                .expect("started")
                .up("ponger")
                .await;
            if up >= plan.replicas as usize {
                break;
            }
            if Instant::now() > job_ready {
                return Err(Failure::Runtime(format!(
                    "Prometheus scrapes {up} of {} ponger replicas after 30 s: the relabeling in the manifests' Prometheus configuration does not produce job=\"ponger\"",
                    plan.replicas
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let warmup = scaled(options.warmup, self.scale);
        self.out.line(&format!(
            "stable traffic for {} before the rollout",
            go_duration(warmup)
        ));
        self.sleep(Instant::now() + warmup).await?;

        // The rollout.
        let start = Instant::now();
        self.rollout_start = Some(start);
        self.out.line(&format!(
            "rollout starts: new ReplicaSet {} (rollouts-pod-template-hash), stable {}",
            plan.canary_hash, plan.stable_hash
        ));
        let mut shadow_noted = false;
        for (index, step) in plan.steps.iter().enumerate() {
            self.step = index;
            if plan.starting_step == Some(index) && self.slots.is_empty() {
                for (spec, queries, primary) in &specs {
                    self.out.line(&format!(
                        "AnalysisRun {} starts ({})",
                        spec.templates.join("+"),
                        if *primary {
                            "background analysis"
                        } else {
                            "comparison, same traffic"
                        }
                    ));
                    self.slots.push(Slot {
                        run: Run::start(spec.clone(), Instant::now()),
                        queries: queries.clone(),
                        primary: *primary,
                        decided: None,
                    });
                }
            }
            self.out.line(&format!(
                "step {}/{}: {}",
                index + 1,
                plan.steps.len(),
                step.describe()
            ));
            match step {
                Step::SetWeight(weight) => {
                    self.set_weight(*weight).await?;
                    self.measure_due().await?;
                }
                Step::Pause(Some(duration)) => {
                    let until = Instant::now() + scaled(*duration, self.scale);
                    self.sleep(until).await?;
                }
                Step::Pause(None) => self.out.line(
                    "a pause without duration waits for `kubectl argo rollouts promote`: the rehearsal promotes it at once",
                ),
            }
            if self.primary_decided() {
                if self.all_decided() {
                    break;
                }
                if !shadow_noted {
                    shadow_noted = true;
                    self.out.line(
                        "the Rollout's analysis decided; the steps go on (canary kept) only until the comparison decides too",
                    );
                }
            }
        }
        let steps_done_at = Instant::now();
        // Runs still undecided when the steps end are terminated: Successful.
        for slot in &mut self.slots {
            if slot.decided.is_none() {
                slot.run.terminate();
            }
        }
        let primary = self
            .slots
            .iter()
            .find(|slot| slot.primary)
            .expect("a primary run");
        let (verdict, reason, decision) = match &primary.decided {
            Some((Phase::Inconclusive, message, snapshot)) => {
                ("Paused", message.clone(), snapshot.clone())
            }
            Some((phase, message, snapshot)) => {
                let _ = phase;
                ("Aborted", message.clone(), snapshot.clone())
            }
            None => (
                "Promoted",
                "every analysis measurement passed or was tolerated".to_owned(),
                self.snapshot_at(steps_done_at),
            ),
        };
        match verdict {
            "Aborted" => {
                self.out.line(&format!("ABORT: {reason}; canary replicas go, stable ones come back"));
                self.abort().await?;
            }
            "Paused" => self.out.line(&format!(
                "PAUSED: {reason}; Argo Rollouts would wait for `kubectl argo rollouts promote` or `abort`"
            )),
            _ => {
                self.out.line("all steps passed: PROMOTE, the new version becomes stable");
                self.promote().await?;
            }
        }
        let finished = Instant::now();
        self.wait_retired().await?;
        let canary = self.lb.totals(true);
        let stable = self.lb.totals(false);
        let timeline = self.timeline(start);
        let pinger_codes = self.pinger_codes(pinger_address).await;
        self.out.line(&format!(
            "done: {verdict}; canary served {} pings ({} failed), stable {} ({} failed)",
            canary.pings, canary.failed, stable.pings, stable.failed
        ));
        let analyses = self
            .slots
            .iter()
            .map(|slot| {
                let decided = slot.decided.as_ref().map(|(phase, message, snapshot)| {
                    (
                        *phase,
                        message.clone(),
                        snapshot.at,
                        snapshot.step,
                        snapshot.weight,
                        snapshot.canary.clone(),
                        snapshot.stable.clone(),
                    )
                });
                AnalysisOutcome::from_run(&slot.run, slot.primary, decided.as_ref())
            })
            .collect();
        Ok(Report::new(
            &plan,
            self.scale,
            verdict,
            reason,
            decision.at,
            decision.step,
            if verdict == "Promoted" {
                self.highest_weight
            } else {
                decision.weight
            },
            self.highest_weight,
            finished.duration_since(start),
            canary,
            stable,
            pinger_codes,
            self.lb.no_endpoint(),
            analyses,
            timeline,
        ))
    }

    /// The weight changes and the Service's per-second ping counts (seconds
    /// that have ended), on the rollout's time axis.
    fn timeline(&self, rollout_start: Instant) -> Timeline {
        let pings_per_second = self
            .lb
            .timeline()
            .map(|pings| {
                let offset = rollout_start
                    .saturating_duration_since(pings.origin())
                    .as_secs_f64();
                pings
                    .complete_seconds(Instant::now())
                    .iter()
                    .enumerate()
                    .map(|(index, counts)| PingsInSecond {
                        from_seconds: ((index as f64 - offset) * 1000.0).round() / 1000.0,
                        counts: *counts,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Timeline {
            weight_changes: self.weight_changes.clone(),
            pings_per_second,
        }
    }

    fn note_weight(&mut self, cause: WeightCause) {
        let at = self
            .rollout_start
            .map(|start| start.elapsed())
            .unwrap_or_default();
        self.weight_changes.push(WeightChange {
            at_seconds: (at.as_secs_f64() * 1000.0).round() / 1000.0,
            step: self.step + 1,
            weight: self.weight,
            cause,
        });
    }

    fn snapshot_at(&self, at: Instant) -> Snapshot {
        Snapshot {
            at: at.duration_since(self.rollout_start.unwrap_or(at)),
            step: self.step,
            weight: self.weight,
            canary: self.lb.totals(true),
            stable: self.lb.totals(false),
        }
    }

    fn primary_decided(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.primary && slot.decided.is_some())
    }

    fn all_decided(&self) -> bool {
        self.slots.iter().all(|slot| slot.decided.is_some())
    }

    /// Waits until `until`, measuring whatever falls due and watching the processes.
    async fn sleep(&mut self, until: Instant) -> Result<(), Failure> {
        loop {
            self.check()?;
            self.measure_due().await?;
            if self.primary_decided() && self.all_decided() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let next = self
                .slots
                .iter()
                .filter(|slot| slot.decided.is_none())
                .filter_map(|slot| slot.run.next_due(self.scale))
                .min()
                .unwrap_or(until)
                .min(until)
                .min(now + Duration::from_millis(100));
            tokio::time::sleep_until(next.max(now).into()).await;
        }
    }

    async fn measure_due(&mut self) -> Result<(), Failure> {
        let scale = self.scale;
        for slot_index in 0..self.slots.len() {
            if self.slots[slot_index].decided.is_some() {
                continue;
            }
            for metric_index in 0..self.slots[slot_index].run.metrics.len() {
                let Some(due) = self.slots[slot_index].run.due_at(metric_index, scale) else {
                    continue;
                };
                if due > Instant::now() {
                    continue;
                }
                self.check()?;
                let (query, spec) = {
                    let slot = &self.slots[slot_index];
                    (
                        slot.queries[metric_index].clone(),
                        slot.run.metrics[metric_index].spec.clone(),
                    )
                };
                let prometheus = self.prometheus.as_ref().expect("started");
                let (phase, value, first_value, message) = match prometheus
                    .query(&query, spec.timeout)
                    .await
                {
                    Ok((input, text)) => {
                        let (phase, message) =
                            evaluate_result(spec.success.as_ref(), spec.failure.as_ref(), &input);
                        (phase, text, input.first_finite(), message)
                    }
                    Err(error) => (Phase::Error, String::new(), None, error),
                };
                let at = self
                    .rollout_start
                    .map(|start| start.elapsed())
                    .unwrap_or_default();
                let slot = &mut self.slots[slot_index];
                let measurement = Measurement {
                    at_seconds: at.as_secs_f64(),
                    step: self.step + 1,
                    weight: self.weight,
                    value: value.clone(),
                    first_value,
                    phase,
                    message: message.clone(),
                };
                slot.run.record(metric_index, measurement, Instant::now());
                let metric = &slot.run.metrics[metric_index];
                let label = if slot.primary { "" } else { "[compare] " };
                self.out.line(&format!(
                    "  {label}{} #{} at weight {}%: {} -> {:?} ({message}){}",
                    spec.name,
                    metric.measurements.len(),
                    self.weight,
                    if value.is_empty() {
                        "no value"
                    } else {
                        value.as_str()
                    },
                    phase,
                    if metric.phase.completed() {
                        format!("; metric {:?}", metric.phase)
                    } else {
                        String::new()
                    }
                ));
                if slot.run.phase.completed() && slot.run.phase != Phase::Successful {
                    let run_phase = slot.run.phase;
                    let run_message = slot.run.message.clone();
                    let templates = slot.run.spec.templates.join("+");
                    let primary = slot.primary;
                    let snapshot = self.snapshot_at(Instant::now());
                    self.out.line(&format!(
                        "AnalysisRun {templates} {run_phase:?}: {run_message} (at weight {}%, {:.1}s into the rollout){}",
                        snapshot.weight,
                        snapshot.at.as_secs_f64(),
                        if primary { "" } else { " [comparison]" }
                    ));
                    self.slots[slot_index].decided = Some((run_phase, run_message, snapshot));
                    break;
                }
            }
        }
        Ok(())
    }

    fn write_targets(&self) -> Result<(), Failure> {
        let targets: Vec<PodTarget> = self
            .targets
            .lock()
            .expect("targets")
            .values()
            .cloned()
            .collect();
        prom::write_targets(&self.targets_file, &targets).map_err(Failure::Runtime)
    }

    async fn start_replica(&mut self, canary: bool) -> Result<(), Failure> {
        let plan = &self.plan;
        let (version, hash, template) = if canary {
            (
                plan.canary_version.clone(),
                plan.canary_hash.clone(),
                plan.canary_template(),
            )
        } else {
            (
                plan.stable_version.clone(),
                plan.stable_hash.clone(),
                plan.template.clone(),
            )
        };
        self.pod_counter += 1;
        let pod = format!(
            "{}-{hash}-{}",
            plan.rollout_name,
            pod_suffix(self.pod_counter)
        );
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--profile".to_owned(),
            version.clone(),
            "--version".to_owned(),
            version.clone(),
        ];
        if let Some(delay) = &plan.drain_delay {
            // The drain delay lets endpoints catch up with a terminating pod;
            // it is scaled with everything else (the balancer drops the
            // replica before SIGTERM anyway).
            let delay = crate::plan::parse_duration(delay).map_err(Failure::Input)?;
            args.extend([
                "--drain-delay".to_owned(),
                go_duration(scaled(delay, self.scale).max(Duration::from_millis(100))),
            ]);
        }
        let envs = vec![("OTEL_SERVICE_NAME".to_owned(), "ponger".to_owned())];
        let proc = Proc::spawn(&pod, &self.ponger, &args, &envs, true)
            .await
            .map_err(Failure::Runtime)?;
        let address = proc.address.expect("waited for the address");
        // Readiness, as the probe would see it.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| Failure::Runtime(error.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = client
                .get(format!("http://{address}/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(Failure::Runtime(format!(
                    "replica {pod} never became ready"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut extra = BTreeMap::new();
        extra.insert("rollouts-pod-template-hash".to_owned(), hash);
        self.targets.lock().expect("targets").insert(
            pod.clone(),
            PodTarget {
                namespace: plan.namespace.clone(),
                pod: pod.clone(),
                address,
                template,
                extra_labels: extra,
            },
        );
        self.write_targets()?;
        self.lb.add(&pod, address, canary);
        self.out.line(&format!(
            "  + {pod} ({version}{}, pid {}) ready at {address}",
            if canary { ", canary" } else { "" },
            proc.pid
        ));
        self.replicas.push(Replica { pod, canary, proc });
        Ok(())
    }

    /// Takes a replica out of the Service, then retires it like a pod:
    /// SIGTERM, its in-flight pings finish, SIGKILL after the grace period.
    fn retire(&mut self, index: usize) {
        let replica = self.replicas.remove(index);
        self.lb.remove(&replica.pod);
        self.out.line(&format!(
            "  - {} (pid {}) removed from the Service, SIGTERM",
            replica.pod, replica.proc.pid
        ));
        let grace = self.plan.grace_period;
        let targets = self.targets.clone();
        let targets_file = self.targets_file.clone();
        self.retiring.spawn(async move {
            let mut proc = replica.proc;
            let _status = proc.terminate(grace).await;
            let remaining: Vec<PodTarget> = {
                let mut targets = targets.lock().expect("targets");
                targets.remove(&replica.pod);
                targets.values().cloned().collect()
            };
            let _ = prom::write_targets(&targets_file, &remaining);
        });
    }

    fn count(&self, canary: bool) -> usize {
        self.replicas
            .iter()
            .filter(|replica| replica.canary == canary)
            .count()
    }

    /// Replica counts for a weight, as Argo Rollouts without a traffic
    /// router: canary = ceil(replicas x weight / 100), stable = the rest.
    async fn set_weight(&mut self, weight: u32) -> Result<(), Failure> {
        let replicas = self.plan.replicas as usize;
        let canary_wanted = (replicas * weight as usize).div_ceil(100).min(replicas);
        let stable_wanted = replicas - canary_wanted;
        while self.count(true) < canary_wanted {
            self.start_replica(true).await?;
        }
        while self.count(false) > stable_wanted {
            let index = self
                .replicas
                .iter()
                .position(|replica| !replica.canary)
                .expect("a stable replica");
            self.retire(index);
        }
        while self.count(true) > canary_wanted {
            let index = self
                .replicas
                .iter()
                .position(|replica| replica.canary)
                .expect("a canary replica");
            self.retire(index);
        }
        while self.count(false) < stable_wanted {
            self.start_replica(false).await?;
        }
        self.weight = weight;
        self.highest_weight = self.highest_weight.max(weight);
        self.note_weight(WeightCause::SetWeight);
        self.out.line(&format!(
            "  weight {weight}%: {canary_wanted} canary + {stable_wanted} stable replicas behind the Service"
        ));
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), Failure> {
        while self.count(false) < self.plan.replicas as usize {
            self.start_replica(false).await?;
        }
        while let Some(index) = self.replicas.iter().position(|replica| replica.canary) {
            self.retire(index);
        }
        self.weight = 0;
        self.note_weight(WeightCause::Abort);
        Ok(())
    }

    async fn promote(&mut self) -> Result<(), Failure> {
        while self.count(true) < self.plan.replicas as usize {
            self.start_replica(true).await?;
        }
        while let Some(index) = self.replicas.iter().position(|replica| !replica.canary) {
            self.retire(index);
        }
        self.weight = 100;
        self.highest_weight = 100;
        self.note_weight(WeightCause::Promote);
        Ok(())
    }

    async fn wait_retired(&mut self) -> Result<(), Failure> {
        while !self.retiring.is_empty() {
            self.check()?;
            tokio::select! {
                _ = self.retiring.join_next() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        // Let the pings answered last be scraped-free counted by the pinger too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    async fn pinger_codes(&self, address: std::net::SocketAddr) -> BTreeMap<String, u64> {
        let mut codes = BTreeMap::new();
        let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
            return codes;
        };
        let Ok(response) = client
            .get(format!("http://{address}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            return codes;
        };
        let text = response.text().await.unwrap_or_default();
        let Ok(page) = launcher::Exposition::parse(String::new(), text) else {
            return codes;
        };
        for sample in page.find("http_client_requests_total", &[]) {
            let code = sample.labels.get("code").cloned().unwrap_or_default();
            *codes.entry(code).or_insert(0) += sample.value as u64;
        }
        codes
    }

    /// Stops everything: the pinger first (its in-flight pings end), then the
    /// replicas, then Prometheus. On a failure nothing waits long.
    async fn teardown(&mut self, failed: bool) {
        let quick = Duration::from_secs(if failed { 3 } else { 10 });
        if let Some(mut pinger) = self.pinger.take() {
            pinger.terminate(quick).await;
        }
        let mut replicas = std::mem::take(&mut self.replicas);
        for replica in &mut replicas {
            self.lb.remove(&replica.pod);
            procs::signal(replica.proc.pid, nix::sys::signal::Signal::SIGTERM);
            if failed {
                // A second signal skips the drain delay.
                procs::signal(replica.proc.pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for replica in &mut replicas {
            replica
                .proc
                .terminate(self.plan.grace_period.min(quick))
                .await;
        }
        let deadline = tokio::time::Instant::now() + quick + Duration::from_secs(1);
        while !self.retiring.is_empty() {
            if tokio::time::timeout_at(deadline, self.retiring.join_next())
                .await
                .is_err()
            {
                break;
            }
        }
        self.retiring.abort_all();
        while self.retiring.join_next().await.is_some() {}
        if let Some(mut prometheus) = self.prometheus.take() {
            prometheus.proc.terminate(Duration::from_secs(5)).await;
        }
        self.lb.stop();
        procs::kill_all();
    }
}

fn pod_suffix(counter: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = counter as u64 * 7_919 + 104_729;
    let mut out = String::new();
    for _ in 0..5 {
        out.push(ALPHABET[(value % ALPHABET.len() as u64) as usize] as char);
        value /= ALPHABET.len() as u64;
    }
    out
}
