//! The rehearsal's executor: the stable version as several ponger replicas
//! behind a loopback load balancer, the real pinger, a real Prometheus; then
//! it plays the Rollout by performing what the [`RolloutController`] asks
//! (scale canary and stable, measure), feeding back what happened, and hands
//! every action to the [`Reporter`] that builds the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::analysis::{Phase, evaluate_result, scaled};
use crate::controller::{Action, Event, Outcome, RolloutController, RolloutSpec, Scaling, Verdict};
use crate::lb::Balancer;
use crate::manifests;
use crate::narration;
use crate::plan::{AnalysisSpec, MetricSpec, Plan, Step, go_duration};
use crate::procs::{self, Proc};
use crate::prom::{self, PodTarget, Prometheus};
use crate::report::Report;
use crate::reporter::{Reporter, ServiceCounts, Traffic};

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

/// The binaries the rehearsal runs.
struct Binaries {
    ponger: PathBuf,
    pinger: PathBuf,
    prometheus: PathBuf,
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
    /// Where the rollout is (0-based step, canary weight), for error messages.
    at: (usize, u32),
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
    let comparisons = match &options.compare {
        Some(path) => vec![comparison(&plan, path)?],
        None => Vec::new(),
    };
    check_analyses(&plan, &comparisons, options.time_scale)?;
    let binaries = binaries(&options)?;
    let dir = tempfile::Builder::new()
        .prefix("rehearsal-")
        .tempdir()
        .map_err(|error| {
            Failure::Runtime(format!("cannot create a temporary directory: {error}"))
        })?;
    let lb = Balancer::start().await.map_err(Failure::Runtime)?;
    let mut world = World {
        scale: options.time_scale,
        ponger: binaries.ponger.clone(),
        targets_file: dir.path().join("targets.json"),
        dir,
        lb,
        replicas: Vec::new(),
        retiring: tokio::task::JoinSet::new(),
        targets: Arc::default(),
        pinger: None,
        prometheus: None,
        out,
        pod_counter: 0,
        at: (0, 0),
        plan,
    };
    let result = world.play(&options, &binaries, comparisons).await;
    let failed = result.is_err();
    world.teardown(failed).await;
    result
}

/// The comparison analysis (`--compare`): the AnalysisTemplates at `path`,
/// with the Rollout's arguments.
fn comparison(plan: &Plan, path: &Path) -> Result<AnalysisSpec, Failure> {
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
    plan.analysis_spec("compare", &templates)
        .map_err(|error| Failure::Input(format!("{}: {error}", path.display())))
}

/// There is an analysis to rehearse, and its queries scale: a range the
/// rehearsal cannot scale is an input error before anything starts.
fn check_analyses(plan: &Plan, comparisons: &[AnalysisSpec], scale: f64) -> Result<(), Failure> {
    let inline = plan.steps.iter().filter_map(|step| match step {
        Step::Analysis(spec) => Some(spec.as_ref()),
        _ => None,
    });
    let specs: Vec<&AnalysisSpec> = plan
        .analysis
        .iter()
        .chain(comparisons)
        .chain(inline)
        .collect();
    if specs.is_empty() {
        return Err(Failure::Input(format!(
            "{}: the Rollout has no background analysis to rehearse",
            plan.source
        )));
    }
    for metric in specs.iter().flat_map(|spec| &spec.metrics) {
        scaled_query(metric, scale).map_err(Failure::Input)?;
    }
    Ok(())
}

fn scaled_query(metric: &MetricSpec, scale: f64) -> Result<String, String> {
    prom::scale_promql(&metric.query, scale)
        .map_err(|error| format!("metric {}: {error}", metric.name))
}

fn binaries(options: &Options) -> Result<Binaries, Failure> {
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    Ok(Binaries {
        ponger: binary(&bin_dir, "ponger")?,
        pinger: binary(&bin_dir, "pinger")?,
        prometheus: match &options.prometheus {
            Some(path) => path.clone(),
            None => crate::prerequisites::find_or_install_prometheus().map_err(Failure::Runtime)?,
        },
    })
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
                    self.at.0 + 1,
                    self.at.1
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
        binaries: &Binaries,
        comparisons: Vec<AnalysisSpec>,
    ) -> Result<Report, Failure> {
        self.announce(&comparisons);
        let pinger_address = self.set_up(binaries).await?;
        let warmup = scaled(options.warmup, self.scale);
        self.out.line(&format!(
            "stable traffic for {} before the rollout",
            go_duration(warmup)
        ));
        self.sleep(Instant::now() + warmup).await?;
        let start = Instant::now();
        self.out.line(&format!(
            "rollout starts: new ReplicaSet {} (rollouts-pod-template-hash), stable {}",
            self.plan.canary_hash, self.plan.stable_hash
        ));
        let spec = RolloutSpec {
            steps: self.plan.steps.clone(),
            replicas: self.plan.replicas,
            starting_step: self.plan.starting_step,
            background: self.plan.analysis.clone(),
            comparisons,
        };
        let mut controller = RolloutController::new(spec, self.scale, start);
        let mut reporter = Reporter::new(start);
        let verdict = self.drive(&mut controller, &mut reporter).await?;
        self.wait_retired().await?;
        let traffic = self.traffic(pinger_address).await;
        self.out.line(&format!(
            "done: {}; canary served {} pings ({} failed), stable {} ({} failed)",
            verdict.kind(),
            traffic.service.canary.pings,
            traffic.service.canary.failed,
            traffic.service.stable.pings,
            traffic.service.stable.failed
        ));
        Ok(reporter.report(&self.plan, &controller, verdict, traffic))
    }

    fn announce(&self, comparisons: &[AnalysisSpec]) {
        let plan = &self.plan;
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
        let ours = plan
            .analysis
            .iter()
            .map(|spec| ("the Rollout's analysis", spec));
        let compared = comparisons.iter().map(|spec| ("comparison", spec));
        for (role, spec) in ours.chain(compared) {
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
    }

    /// The stable replicas, the pinger and Prometheus, until Prometheus
    /// scrapes every replica; returns the pinger's address.
    async fn set_up(&mut self, binaries: &Binaries) -> Result<std::net::SocketAddr, Failure> {
        for _ in 0..self.plan.replicas {
            self.start_replica(false).await?;
        }
        let pinger_address = self.start_pinger(&binaries.pinger).await?;
        self.start_prometheus(&binaries.prometheus).await?;
        self.wait_scraped().await?;
        Ok(pinger_address)
    }

    /// The pinger, at the manifests' rate times the time scale, so that a
    /// scaled rate window holds as many pings as the real one.
    async fn start_pinger(&mut self, pinger_bin: &Path) -> Result<std::net::SocketAddr, Failure> {
        let plan = &self.plan;
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
        let pinger = Proc::spawn("pinger", pinger_bin, &args, &[], true)
            .await
            .map_err(Failure::Runtime)?;
        self.out.line(&format!(
            "pinger (pid {}) sends {rate} pings/s to the Service at {} (a fresh connection per ping)",
            pinger.pid, self.lb.address
        ));
        let address = pinger.address.expect("waited for the address");
        self.pinger = Some(pinger);
        let target = PodTarget {
            namespace: plan.namespace.clone(),
            pod: format!(
                "pinger-{}",
                crate::plan::pod_template_hash(&plan.pinger.template)
            ),
            address,
            template: plan.pinger.template.clone(),
            extra_labels: BTreeMap::new(),
        };
        self.targets
            .lock()
            .expect("targets")
            .insert("pinger".to_owned(), target);
        self.write_targets()?;
        Ok(address)
    }

    async fn start_prometheus(&mut self, prometheus_bin: &Path) -> Result<(), Failure> {
        let (config, left_out) =
            prom::rehearsal_config(&self.plan.prometheus_config, &self.targets_file, self.scale)
                .map_err(Failure::Input)?;
        let prometheus = Prometheus::start(prometheus_bin, self.dir.path(), &config)
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
        Ok(())
    }

    /// Waits until Prometheus scrapes every replica.
    async fn wait_scraped(&mut self) -> Result<(), Failure> {
        let replicas = self.plan.replicas as usize;
        let job_ready = Instant::now() + Duration::from_secs(30);
        loop {
            self.check()?;
            let up = self
                .prometheus
                .as_ref()
                .expect("started")
                .up("ponger")
                .await;
            if up >= replicas {
                return Ok(());
            }
            if Instant::now() > job_ready {
                return Err(Failure::Runtime(format!(
                    "Prometheus scrapes {up} of {replicas} ponger replicas after 30 s: the relabeling in the manifests' Prometheus configuration does not produce job=\"ponger\""
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `until`, watching the processes.
    async fn sleep(&mut self, until: Instant) -> Result<(), Failure> {
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep_until(until.min(now + Duration::from_millis(100)).into()).await;
        }
    }

    /// Plays the rollout: performs each of the controller's actions, feeds
    /// back what happened and hands the action to the reporter.
    async fn drive(
        &mut self,
        controller: &mut RolloutController,
        reporter: &mut Reporter,
    ) -> Result<Verdict, Failure> {
        loop {
            self.check()?;
            let action = controller.poll(Instant::now());
            self.perform(&action, controller).await?;
            let now = Instant::now();
            self.at = (controller.step(), controller.weight());
            // The Service's counts are read only for the reporter's one use.
            reporter.performed(&action, controller, now, || self.lb.totals(true));
            for line in narration::lines(&action, controller) {
                self.out.line(&line);
            }
            match action {
                Action::Finish(verdict) => return Ok(verdict),
                Action::AwaitEvent => {
                    return Err(Failure::Runtime(
                        "the rehearsal's controller waits for an event that never comes".to_owned(),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Does what `action` asks and tells the controller what happened.
    async fn perform(
        &mut self,
        action: &Action,
        controller: &mut RolloutController,
    ) -> Result<(), Failure> {
        match action {
            Action::Scale(scaling) => {
                self.scale(*scaling).await?;
                controller.handle(Event::ReplicasReady, Instant::now());
            }
            Action::Measure { run, metric } => {
                let outcome = self.measure(controller.metric(*run, *metric)).await;
                controller.handle(Event::Measured(outcome), Instant::now());
            }
            Action::WaitUntil(at) => self.sleep(*at).await?,
            _ => {}
        }
        Ok(())
    }

    /// One measurement: the metric's query (scaled) and its conditions.
    async fn measure(&self, metric: &MetricSpec) -> Outcome {
        let error = |message| Outcome {
            value: String::new(),
            first_value: None,
            phase: Phase::Error,
            message,
        };
        let query = match scaled_query(metric, self.scale) {
            Ok(query) => query,
            Err(message) => return error(message),
        };
        let prometheus = self.prometheus.as_ref().expect("started");
        match prometheus.query(&query, metric.timeout).await {
            Ok((input, value)) => {
                let (phase, message) =
                    evaluate_result(metric.success.as_ref(), metric.failure.as_ref(), &input);
                Outcome {
                    value,
                    first_value: input.first_finite(),
                    phase,
                    message,
                }
            }
            Err(message) => error(message),
        }
    }

    fn service_counts(&self) -> ServiceCounts {
        ServiceCounts {
            canary: self.lb.totals(true),
            stable: self.lb.totals(false),
        }
    }

    /// What the Service and the pinger counted.
    async fn traffic(&self, pinger_address: std::net::SocketAddr) -> Traffic {
        let service = self.service_counts();
        let pings = self.lb.timeline();
        let read_at = Instant::now();
        Traffic {
            service,
            pings,
            user_pings_by_code: self.pinger_codes(pinger_address).await,
            connections_without_endpoint: self.lb.no_endpoint(),
            read_at,
        }
    }

    /// Puts the replicas of `scaling` behind the Service: new ones first
    /// (ready before they take traffic), then the surplus retired.
    async fn scale(&mut self, scaling: Scaling) -> Result<(), Failure> {
        while self.count(true) < scaling.canary as usize {
            self.start_replica(true).await?;
        }
        while self.count(false) < scaling.stable as usize {
            self.start_replica(false).await?;
        }
        for canary in [false, true] {
            let wanted = if canary {
                scaling.canary
            } else {
                scaling.stable
            } as usize;
            while self.count(canary) > wanted {
                let index = self
                    .replicas
                    .iter()
                    .position(|replica| replica.canary == canary)
                    .expect("a replica of that kind");
                self.retire(index);
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
        let args = self.ponger_args(&version)?;
        let envs = vec![("OTEL_SERVICE_NAME".to_owned(), "ponger".to_owned())];
        let proc = Proc::spawn(&pod, &self.ponger, &args, &envs, true)
            .await
            .map_err(Failure::Runtime)?;
        let address = proc.address.expect("waited for the address");
        wait_ready(&pod, address).await?;
        let mut extra = BTreeMap::new();
        extra.insert("rollouts-pod-template-hash".to_owned(), hash);
        let target = PodTarget {
            namespace: self.plan.namespace.clone(),
            pod: pod.clone(),
            address,
            template,
            extra_labels: extra,
        };
        self.targets
            .lock()
            .expect("targets")
            .insert(pod.clone(), target);
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

    fn ponger_args(&self, version: &str) -> Result<Vec<String>, Failure> {
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--profile".to_owned(),
            version.to_owned(),
            "--version".to_owned(),
            version.to_owned(),
        ];
        if let Some(delay) = &self.plan.drain_delay {
            // The drain delay lets endpoints catch up with a terminating pod;
            // it is scaled with everything else (the balancer drops the
            // replica before SIGTERM anyway).
            let delay = crate::plan::parse_duration(delay).map_err(Failure::Input)?;
            args.extend([
                "--drain-delay".to_owned(),
                go_duration(scaled(delay, self.scale).max(Duration::from_millis(100))),
            ]);
        }
        Ok(args)
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
            replica.proc.signal(nix::sys::signal::Signal::SIGTERM);
            if failed {
                // A second signal skips the drain delay.
                replica.proc.signal(nix::sys::signal::Signal::SIGTERM);
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

/// Waits until the replica at `address` is ready, as the readiness probe would see it.
async fn wait_ready(pod: &str, address: std::net::SocketAddr) -> Result<(), Failure> {
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
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::Runtime(format!(
                "replica {pod} never became ready"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
