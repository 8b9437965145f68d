//! Bundle distribution fixtures: nginx from Debian's packages serving a
//! bundle directory on a loopback port (one process, no daemon), bundles
//! packed with the engine's encoder, publishing through
//! scripts/publish-bundle.sh, and Envoy configs rendered from
//! envoy/bundle/envoy.yaml.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use meshward_engine::config::FilterConfig;

use crate::envoy::EnvoyProc;
use crate::policy::plugin_config;
use crate::workspace::{envoy_dir, filter_wasm, repo_root};

/// The listener of envoy/bundle/envoy.yaml.
pub const LISTENER: &str = "meshward_bundle_inbound";
/// Where the bundle is served.
pub const BUNDLE_PATH: &str = "/meshward/policy.bundle";
/// Filter VMs in an Envoy with `--concurrency 1`: the main thread's and the
/// worker's (each polls; counters add up over them).
pub const VMS: u64 = 2;

/// The pipelines that poll in one Envoy with `--concurrency 1` for the build
/// under test: the wasm build's [`VMS`], or the native module's one
/// pipeline per filter configuration (its polls run on the main thread).
pub fn pollers() -> u64 {
    match crate::build::FilterBuild::current() {
        crate::build::FilterBuild::Wasm => VMS,
        crate::build::FilterBuild::Native => 1,
    }
}

/// envoy/bundle/envoy.yaml for a bundle server on `port`, with `vm_config`.
pub fn envoy_yaml(port: u16, vm_config: &serde_json::Value) -> String {
    std::fs::read_to_string(envoy_dir().join("bundle/envoy.yaml"))
        .unwrap()
        .replace("${MESHWARD_LISTEN_PORT}", "0")
        .replace("${MESHWARD_ADMIN_PORT}", "0")
        .replace("${MESHWARD_BUNDLE_PORT}", &port.to_string())
        .replace("${MESHWARD_WASM}", &filter_wasm().display().to_string())
        .replace(
            "${MESHWARD_VM_CONFIG}",
            &vm_config.to_string().replace('\'', "''"),
        )
}

pub fn policy(name: &str) -> String {
    format!(
        "policy \"{name}\" {{\n  trust_domains \"shop.example\"\n}}\nintent health {{\n  method GET\n  path \"/healthz\"\n}}\nallow anyone-health {{\n  subject any_authenticated\n  intent health\n}}\n"
    )
}

/// A bundle of a small policy named `name`.
pub fn bundle(revision: u64, name: &str, key: &SigningKey) -> Vec<u8> {
    let config = plugin_config(&policy(name), "bundle.policy", &[]);
    let loaded = FilterConfig::from_json(config.as_bytes()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    meshward_engine::bundle::encode(revision, now, loaded.policy.hash(), config.as_bytes(), key)
        .unwrap()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How nginx answers the bundle path.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Serves the file (with ETag and 304s, as nginx does for static files).
    Serve,
    /// 500 for everything.
    Error,
    /// Waits 5 s before answering (longer than the filter's timeout).
    Slow,
}

/// nginx on a loopback port, one process (no daemon, no master).
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx serving `dir/www` on `port`.
    pub fn start(dir: &Path, port: u16, mode: Mode) -> Nginx {
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("meshward")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let location = match mode {
            Mode::Serve => "default_type application/octet-stream; etag on;".to_owned(),
            Mode::Error => "return 500;".to_owned(),
            Mode::Slow => "echo_sleep 5; echo late;".to_owned(),
        };
        let d = dir.display();
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/nginx-access.log;\n\
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
                 location = {BUNDLE_PATH} {{ {location} }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx from Debian's packages (scripts/setup.sh installs nginx-light)");
        let nginx = Nginx {
            child,
            dir: dir.to_owned(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}: {}",
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// Publishes `bytes` as the bundle (write, then rename).
    pub fn publish(&self, bytes: &[u8]) {
        let staged = self.dir.join("staged.bundle");
        std::fs::write(&staged, bytes).unwrap();
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/publish-bundle.sh"))
            .arg(&staged)
            .arg(self.dir.join("www/meshward"))
            .status()
            .unwrap();
        assert!(status.success(), "publish-bundle.sh failed");
    }

    /// Stops nginx; its directory and port, to start it again.
    pub fn stop(mut self) -> (PathBuf, u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.dir.clone(), self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /healthz` through Envoy: status and the deny reason, if any.
pub fn request(addr: SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, reason)
}

/// A `wasmcustom.meshward.bundle.<name>` stat, summed over the VMs.
pub fn stat(envoy: &EnvoyProc, name: &str) -> u64 {
    let full = format!("wasmcustom.meshward.bundle.{name}");
    envoy.stats(&full).get(&full).copied().unwrap_or(0)
}

/// Waits (bounded) until `cond` holds; panics with the stats and log.
pub fn wait(envoy: &EnvoyProc, what: &str, secs: u64, cond: impl Fn(&EnvoyProc) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond(envoy) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stats: {:?}\nlog:\n{}",
            envoy.stats("wasmcustom.meshward.bundle"),
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
