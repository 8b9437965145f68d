//! Runs a real Envoy: renders `envoy/demo.yaml`, starts the binary on free
//! loopback ports, waits until it serves, collects its log, reads its admin
//! endpoint, and kills it on drop (dumping the log when the test failed).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::{parse_audit_lines, AuditLine};
use crate::build::{prepare_config, FilterBuild};
use crate::http::{read_message, BodyDefault};
use crate::workspace::{envoy_binary, envoy_dir};

/// How long Envoy may take to start serving (V8 compiles the filter first; the
/// machine may be busy with other builds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

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
    let path = envoy_dir().join("demo.yaml");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Fills the template's placeholders. Panics if one is left unfilled.
pub fn render(template: &str, vars: &ConfigVars) -> String {
    let values = [
        ("MESHWARD_LISTEN_PORT", vars.listen_port.to_string()),
        ("MESHWARD_ADMIN_PORT", vars.admin_port.to_string()),
        ("MESHWARD_UPSTREAM_PORT", vars.upstream_port.to_string()),
        ("MESHWARD_CERT_DIR", vars.cert_dir.display().to_string()),
        ("MESHWARD_WASM", vars.wasm.display().to_string()),
        // It sits in a YAML single-quoted scalar: double any single quote.
        (
            "MESHWARD_PLUGIN_CONFIG",
            vars.plugin_config.replace('\'', "''"),
        ),
    ];
    let mut out = template.to_owned();
    for (name, value) in &values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // Only comment lines may still mention a placeholder (the docs at the top).
    let leftover: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("${") && !l.trim_start().starts_with('#'))
        .collect();
    assert!(leftover.is_empty(), "unfilled placeholders: {leftover:?}");
    out
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

/// A running Envoy. Killed on drop; if the current test is failing, its log is
/// printed first.
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    listener: SocketAddr,
    log: Arc<Mutex<String>>,
    log_readers: Vec<JoinHandle<()>>,
    config_path: PathBuf,
}

impl Envoy {
    /// Writes `config_yaml` to `dir/envoy.yaml`, starts Envoy and waits until
    /// the admin endpoint says it is live and the listener is bound.
    pub fn start(dir: &Path, config_yaml: &str) -> Result<Envoy, StartError> {
        let config_path = dir.join("envoy.yaml");
        let build = FilterBuild::current();
        let prepared = prepare_config(config_yaml);
        fs::write(&config_path, &prepared.yaml).expect("write envoy config");
        let admin_file = dir.join("admin-address.txt");
        let _ = fs::remove_file(&admin_file);
        let mut child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_file)
            // Other Envoys may run on this host (other tests, the demo, a
            // developer's own): each needs its own shared-memory base id.
            .arg("--use-dynamic-base-id")
            // The filter's audit lines are info on the `wasm` logger; everything
            // else only from warning up (start-up failures are error/critical).
            .args(["--concurrency", "1", "-l", "warning"])
            .args(["--component-log-level", &build.log_level_arg()])
            .envs(prepared.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_binary().display()));
        let log = Arc::new(Mutex::new(String::new()));
        let log_file = dir.join("envoy.log");
        let mut log_readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            log_readers.push(collect(out, Arc::clone(&log), log_file.clone()));
        }
        if let Some(err) = child.stderr.take() {
            log_readers.push(collect(err, Arc::clone(&log), log_file));
        }
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            log_readers,
            config_path,
        };
        match envoy.wait_ready(&admin_file) {
            Ok(()) => Ok(envoy),
            Err(e) => Err(e),
        }
    }

    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers drain what it printed.
                for r in self.log_readers.drain(..) {
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
            if self.admin.port() != 0 && self.listener.port() == 0 {
                if let Ok((200, body)) = self.try_admin_get("/ready") {
                    if body.trim() == "LIVE" {
                        if let Some(addr) = self.listener_address() {
                            self.listener = addr;
                            return Ok(());
                        }
                    }
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn listener_address(&self) -> Option<SocketAddr> {
        let (status, body) = self.try_admin_get("/listeners?format=json").ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == LISTENER)
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                let ip = sa["address"].as_str()?.parse().ok()?;
                let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
                (port != 0).then(|| SocketAddr::new(ip, port))
            })
    }

    /// The mTLS listener's address.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The admin endpoint's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The rendered config Envoy runs.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every `meshward.audit` line logged so far, parsed.
    pub fn audit_lines(&self) -> Vec<AuditLine> {
        parse_audit_lines(&self.log())
    }

    /// Waits (up to 5 s) for an audit line matching `pred` and returns it.
    /// Panics with the audit lines seen when none matches.
    pub fn wait_audit(&self, what: &str, pred: impl Fn(&AuditLine) -> bool) -> AuditLine {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.audit_lines();
            if let Some(found) = lines.iter().find(|l| pred(l)) {
                return found.clone();
            }
            if Instant::now() > deadline {
                let shown: Vec<&str> = lines.iter().map(|l| l.raw.as_str()).collect();
                panic!(
                    "no audit line {what}; {} audit lines seen:\n{}",
                    shown.len(),
                    shown.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The audit line of the request with this `x-request-id`.
    pub fn audit_for(&self, request_id: &str) -> AuditLine {
        self.wait_audit(&format!("for request_id {request_id}"), |l| {
            l.json["request_id"] == request_id
        })
    }

    /// `GET path` on the admin endpoint; panics unless 200.
    pub fn admin_get(&self, path: &str) -> String {
        match self.try_admin_get(path) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("admin GET {path}: {status} {body}"),
            Err(e) => panic!("admin GET {path}: {e}"),
        }
    }

    fn try_admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
        )?;
        let msg = read_message(&mut BufReader::new(s), BodyDefault::UntilClose)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let status = msg
            .start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, String::from_utf8_lossy(&msg.body).into_owned()))
    }

    /// Counters and gauges from `/stats` whose names start with `prefix`.
    /// The filter's own stats are named as the wasm build names them
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
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.log_readers.drain(..) {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!(
                "----- envoy log (config {}) -----\n{}\n----- end of envoy log -----",
                self.config_path.display(),
                self.log()
            );
        }
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
