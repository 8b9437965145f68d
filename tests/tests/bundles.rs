//! Bundle distribution against a real HTTP server: nginx from Debian's
//! packages, started here on a free loopback port and serving a bundle
//! directory, and a real Envoy whose meshward filter pulls from it
//! (envoy/bundle/envoy.yaml). Publishing goes through
//! scripts/publish-bundle.sh (write, then rename).
//!
//! One scenario, in order: cold start without a bundle (`no_policy`), the
//! first bundle, conditional polls answered 304, a new revision, a truncated
//! file, a bundle signed by another key, an old revision (rollback), a 500, a
//! slow server (timeout), the server gone past the staleness bound
//! (`bundle_stale`) and back.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use meshward_e2e::envoy::EnvoyProc;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::workspace::{envoy_dir, filter_wasm, repo_root, Scratch};
use meshward_engine::config::FilterConfig;
use meshward_engine::signature::PublicKey;

const LISTENER: &str = "meshward_bundle_inbound";
const BUNDLE_PATH: &str = "/meshward/policy.bundle";
/// Filter VMs in an Envoy with `--concurrency 1`: the main thread's and the
/// worker's.
const VMS: u64 = 2;

fn policy(name: &str) -> String {
    format!(
        "policy \"{name}\" {{\n  trust_domains \"shop.example\"\n}}\nintent health {{\n  method GET\n  path \"/healthz\"\n}}\nallow anyone-health {{\n  subject any_authenticated\n  intent health\n}}\n"
    )
}

fn bundle(revision: u64, name: &str, key: &SigningKey) -> Vec<u8> {
    let config = plugin_config(&policy(name), "bundle.policy", &[]);
    let loaded = FilterConfig::from_json(config.as_bytes()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    meshward_engine::bundle::encode(revision, now, loaded.policy.hash(), config.as_bytes(), key)
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How nginx answers the bundle path.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Serves the file (with ETag and 304s, as nginx does for static files).
    Serve,
    /// 500 for everything.
    Error,
    /// Waits 5 s before answering (longer than the filter's timeout).
    Slow,
}

/// nginx on a loopback port, one process (no daemon, no master).
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, port: u16, mode: Mode) -> Nginx {
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

    fn publish(&self, bytes: &[u8]) {
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

    fn stop(mut self) -> (PathBuf, u16) {
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
fn request(addr: SocketAddr) -> (u16, String) {
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

fn stat(envoy: &EnvoyProc, name: &str) -> u64 {
    let full = format!("wasmcustom.meshward.bundle.{name}");
    envoy.stats(&full).get(&full).copied().unwrap_or(0)
}

fn wait(envoy: &EnvoyProc, what: &str, secs: u64, cond: impl Fn(&EnvoyProc) -> bool) {
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

#[test]
fn bundles_from_nginx_every_failure_mode() {
    let scratch = Scratch::new("bundles");
    let key = SigningKey::from_bytes(&[11; 32]);
    let other = SigningKey::from_bytes(&[12; 32]);
    let port = free_port();
    let nginx = Nginx::start(&scratch.path().join("nginx"), port, Mode::Serve);

    let vm_config = serde_json::json!({"bundle": {
        "cluster": "meshward_bundles",
        "authority": "bundles.local",
        "path": BUNDLE_PATH,
        "keys": [PublicKey::of_signing_key(&key).to_base64()],
        "poll_secs": 1,
        "jitter": 0,
        "timeout_ms": 1000,
        "max_bytes": 65536,
        "max_staleness_secs": 8,
    }})
    .to_string();
    let yaml = std::fs::read_to_string(envoy_dir().join("bundle/envoy.yaml"))
        .unwrap()
        .replace("${MESHWARD_LISTEN_PORT}", "0")
        .replace("${MESHWARD_ADMIN_PORT}", "0")
        .replace("${MESHWARD_BUNDLE_PORT}", &port.to_string())
        .replace("${MESHWARD_WASM}", &filter_wasm().display().to_string())
        .replace("${MESHWARD_VM_CONFIG}", &vm_config.replace('\'', "''"));
    let envoy = EnvoyProc::start(scratch.path(), "bundle-envoy", &yaml, 1, &[LISTENER])
        .unwrap_or_else(|e| panic!("Envoy did not start: {e:?}"));
    let addr = envoy.listener(LISTENER);

    // Cold start, nothing published: 404s, every request denied no_policy.
    wait(&envoy, "a failed poll", 10, |e| {
        stat(e, "fetch_failed") >= 1
    });
    assert_eq!(request(addr), (403, "no_policy".to_owned()));

    // The first bundle: in force within a poll or two, in every VM (Envoy
    // runs one on the main thread and one per worker; each polls, and the
    // counters add up over them).
    nginx.publish(&bundle(1, "rev-one", &key));
    wait(&envoy, "revision 1", 10, |e| stat(e, "revision") == 1);
    wait(&envoy, "revision 1 in every VM", 10, |e| {
        stat(e, "activated") == VMS
    });
    assert_eq!(request(addr).1, "no_peer_certificate", "policy in force");
    // Conditional polls: nginx answers 304 to the ETag.
    wait(&envoy, "304s", 10, |e| stat(e, "not_modified") >= 2);

    nginx.publish(&bundle(2, "rev-two", &key));
    wait(&envoy, "revision 2", 10, |e| {
        stat(e, "activated") == 2 * VMS
    });
    assert_eq!(stat(&envoy, "revision"), 2);
    assert!(envoy.log().contains("bundle revision 2 in force"));

    // A truncated file, another signer, an old revision: refused, counted,
    // revision 2 keeps serving.
    let three = bundle(3, "rev-three", &key);
    nginx.publish(&three[..three.len() - 20]);
    wait(&envoy, "truncated refused", 10, |e| {
        stat(e, "rejected.truncated") >= 1
    });
    nginx.publish(&bundle(3, "rev-three", &other));
    wait(&envoy, "unknown key refused", 10, |e| {
        stat(e, "rejected.unknown_key") >= 1
    });
    nginx.publish(&bundle(1, "rev-one", &key));
    wait(&envoy, "rollback refused", 10, |e| {
        stat(e, "rollback_refused") >= 1
    });
    assert_eq!(stat(&envoy, "revision"), 2);
    assert_eq!(request(addr).1, "no_peer_certificate");
    nginx.publish(&three);
    wait(&envoy, "revision 3", 10, |e| {
        stat(e, "activated") == 3 * VMS
    });
    assert_eq!(stat(&envoy, "revision"), 3);

    // A 500, then a server slower than the timeout: failures, policy kept.
    let (dir, port) = nginx.stop();
    let failed = stat(&envoy, "fetch_failed");
    let nginx = Nginx::start(&dir, port, Mode::Error);
    wait(&envoy, "a 500", 10, |e| stat(e, "fetch_failed") > failed);
    assert_eq!(request(addr).1, "no_peer_certificate");
    let (dir, port) = nginx.stop();
    let failed = stat(&envoy, "fetch_failed");
    let nginx = Nginx::start(&dir, port, Mode::Slow);
    wait(&envoy, "a timeout", 10, |e| {
        stat(e, "fetch_failed") > failed
    });
    // Envoy answers a callout past its timeout with a local 504.
    assert!(envoy.log().contains("failed: status 504"));

    // Gone past the staleness bound (8 s): every request fails closed.
    let (dir, port) = nginx.stop();
    wait(&envoy, "stale", 25, |e| stat(e, "stale") == VMS);
    assert_eq!(request(addr), (403, "bundle_stale".to_owned()));

    // Back: confirmed again (304), serving.
    let nginx = Nginx::start(&dir, port, Mode::Serve);
    wait(&envoy, "recovered", 10, |e| stat(e, "recovered") == VMS);
    assert_eq!(request(addr).1, "no_peer_certificate");
    assert_eq!(stat(&envoy, "revision"), 3);
    drop(nginx);
}
