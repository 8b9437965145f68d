//! Instruction-count harness for `evaluate` (valgrind's callgrind counts
//! instructions, which stay repeatable on a busy machine):
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
//!   cargo build -p meshward-bench --release --bin callgrind
//! valgrind --tool=callgrind --toggle-collect='*decide_passes*' \
//!   target/release/callgrind 10 20
//! ```
//!
//! Arguments: rules, passes over the 256-request mix (default 20). Only
//! `decide_passes` is collected, so total instructions / (passes × 256) is
//! the cost per decision. `--dump` instead prints every decision of a
//! 4,096-request mix (to compare before and after a change); `--time` times
//! decisions as `report` does (400k samples), for quick checks.
//!
//! `--pipeline allow|deny` runs the whole request pipeline instead
//! (`Pipeline::on_request_headers` over an `OfflineHost`, configured as the
//! Envoy benchmark ships it: `peer_certificate: forwarded`, `audit_log:
//! denies`) for one typical request of the mix, from a real certificate in
//! an Envoy-style XFCC header bound by the connection digest, `passes` times
//! (default 10,000; the first request, which parses the certificate, runs
//! before collection):
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*pipeline_passes*' \
//!   target/release/callgrind 10 10000 --pipeline allow
//! ```
//!
//! Collected / passes is the cost per request, the offline host's own work
//! included (`callgrind_annotate --inclusive=yes` shows `OfflineHost`'s
//! share). It prints the host calls one request makes, by kind.

use std::hint::black_box;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshward_bench::workload::Workload;
use meshward_e2e::pki::Ca;
use meshward_engine::config::plugin_config_json;
use meshward_engine::model::Effect;
use meshward_engine::pipeline::{
    Action, CallId, Host, HostError, LocalResponse, LogLevel, MetricId, OfflineHost, Pipeline,
};
use meshward_engine::{evaluate, Policy, Request};

#[inline(never)]
fn decide_passes(policy: &Policy, reqs: &[Request<'_>], passes: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..passes {
        for r in reqs {
            let d = evaluate(black_box(policy), black_box(r));
            allowed += usize::from(d.effect == meshward_engine::model::Effect::Allow);
        }
    }
    allowed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rules: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    if let Some(i) = args.iter().position(|a| a == "--pipeline") {
        let allow = match args.get(i + 1).map(String::as_str) {
            Some("allow") => true,
            Some("deny") => false,
            other => panic!("--pipeline allow|deny, not {other:?}"),
        };
        let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        pipeline_main(rules, passes, allow);
        return;
    }
    if args.iter().any(|a| a == "--dump") {
        let w = Workload::with_mix(rules, 4096);
        for (i, r) in w.engine_requests().iter().enumerate() {
            println!("{i} {:?}", evaluate(&w.policy, r));
        }
        return;
    }
    if args.iter().any(|a| a == "--time") {
        use meshward_bench::stats::{fmt_ns, shuffled, time_decisions, timer_overhead_ns};
        let w = Workload::new(rules);
        let reqs = w.engine_requests();
        let overhead = timer_overhead_ns();
        let order = shuffled(reqs.len(), 7);
        let s = time_decisions(
            &order,
            400_000,
            std::time::Duration::from_secs(1),
            overhead,
            |i| evaluate(&w.policy, &reqs[i]).effect == meshward_engine::model::Effect::Allow,
        );
        println!(
            "{rules} rules: median {} p99 {} mean {}",
            fmt_ns(s.median_ns),
            fmt_ns(s.p99_ns),
            fmt_ns(s.mean_ns)
        );
        return;
    }
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let w = Workload::new(rules);
    let reqs = w.engine_requests();
    // Warm once outside the collected function.
    for r in &reqs {
        black_box(evaluate(black_box(&w.policy), black_box(r)));
    }
    let allowed = decide_passes(&w.policy, &reqs, passes);
    println!(
        "{rules} rules: {} decisions, {allowed} allowed",
        passes * reqs.len()
    );
}

/// A host that counts the calls the pipeline makes, by kind, and passes
/// them on to an [`OfflineHost`].
struct Counting {
    inner: OfflineHost,
    calls: BTreeMap<&'static str, u64>,
}

impl Counting {
    fn count(&mut self, kind: &'static str) {
        *self.calls.entry(kind).or_insert(0) += 1;
    }
}

impl Host for Counting {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.count("request_headers");
        self.inner.request_headers()
    }
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.count("property");
        self.inner.property(path)
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.count("remove_request_header");
        self.inner.remove_request_header(name)
    }
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.count("add_request_header");
        self.inner.add_request_header(name, value)
    }
    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError> {
        self.count("send_response");
        self.inner.send_response(response)
    }
    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.count("set_filter_state");
        self.inner.set_filter_state(name, value)
    }
    fn now_nanos(&mut self) -> Result<u128, HostError> {
        self.count("now_nanos");
        self.inner.now_nanos()
    }
    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        self.count("random");
        self.inner.random(buf)
    }
    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        self.inner.plugin_configuration()
    }
    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        self.inner.vm_configuration()
    }
    fn environment_variable(&mut self, name: &str) -> Result<Option<String>, HostError> {
        self.inner.environment_variable(name)
    }
    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.count("shared_data");
        self.inner.shared_data(key)
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.count("set_shared_data");
        self.inner.set_shared_data(key, value)
    }
    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        self.inner.define_counter(name)
    }
    fn increment(&mut self, id: MetricId, by: u64) {
        self.count("increment");
        self.inner.increment(id, by);
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.count("log");
        self.inner.log(level, message);
    }
    fn dispatch_get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        self.count("dispatch_get");
        self.inner.dispatch_get(cluster, authority, path, timeout)
    }
    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        self.inner.set_tick_period(period)
    }
    fn define_gauge(&mut self, name: &str) -> Option<MetricId> {
        self.inner.define_gauge(name)
    }
    fn set_gauge(&mut self, id: MetricId, value: u64) {
        self.count("set_gauge");
        self.inner.set_gauge(id, value);
    }
}

/// URL-encodes as Envoy does for XFCC `Cert` (unreserved bytes kept).
fn url_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(der);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[inline(never)]
fn pipeline_passes(pipeline: &mut Pipeline, host: &mut Counting, passes: usize) -> usize {
    let mut continued = 0;
    for _ in 0..passes {
        host.inner.reset_request();
        let action = pipeline.on_request_headers(black_box(&mut *host));
        continued += usize::from(action == Action::Continue);
    }
    continued
}

/// The full pipeline for one typical request of the mix (`allow`: the first
/// allowed request; otherwise the first denied one whose peer the policy
/// trusts, so the deny comes from the rules, not the identity checks).
fn pipeline_main(rules: usize, passes: usize, allow: bool) {
    let w = Workload::new(rules);
    let index = (0..w.requests.len())
        .find(|&i| {
            let d = w.decide(i);
            let trusted = w
                .policy
                .trusts_domain(w.requests[i].spec.peer_trust_domain());
            (d.effect == Effect::Allow) == allow && trusted
        })
        .expect("the mix has such a request");
    let spec = &w.requests[index].spec;
    let ca = Ca::new(spec.peer_trust_domain());
    let leaf = ca.leaf_with_uris(&[spec.peer.as_str()]).issue();
    let digest = sha256_hex(&leaf.cert_der);
    let xfcc = format!(
        "By=spiffe://{}/ns/bench/sa/server;Hash={digest};Cert=\"{}\";URI={}",
        spec.peer_trust_domain(),
        url_encode(&leaf.cert_pem),
        spec.peer
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut inner = OfflineHost::at(now);
    let mut plugin = plugin_config_json(&w.bytes, &[]);
    plugin["audit_log"] = serde_json::json!("denies");
    inner.plugin_configuration = Some(plugin.to_string().into_bytes());
    // What Envoy hands a filter behind an mTLS listener with SANITIZE_SET.
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":authority".into(), spec.authority.clone().into_bytes()),
        (":path".into(), spec.path.clone().into_bytes()),
        (":method".into(), spec.method.into()),
        (":scheme".into(), "http".into()),
        ("user-agent".into(), "wrk".into()),
        ("accept".into(), "*/*".into()),
        ("x-forwarded-proto".into(), "https".into()),
        (
            "x-request-id".into(),
            "0b6a7f35-4c1e-4a8e-9f5d-2d7c1e0a9b11".into(),
        ),
        ("x-forwarded-client-cert".into(), xfcc.into_bytes()),
    ];
    headers.extend(
        spec.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    inner.headers = headers;
    inner.properties.insert(
        "connection.sha256_peer_certificate_digest".into(),
        digest.into_bytes(),
    );
    inner.properties.insert(
        "connection.uri_san_local_certificate".into(),
        b"spiffe://cluster.local/ns/bench/sa/server".to_vec(),
    );
    let mut host = Counting {
        inner,
        calls: BTreeMap::new(),
    };
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    assert!(pipeline.on_configure(&mut host), "{:?}", host.inner.logs);
    // The first request parses the certificate (once per certificate).
    host.inner.reset_request();
    let first = pipeline.on_request_headers(&mut host);
    assert_eq!(
        first == Action::Continue,
        allow,
        "{:?} {:?}",
        host.inner.response,
        host.inner.logs
    );
    host.calls.clear();
    let continued = pipeline_passes(&mut pipeline, &mut host, passes);
    assert_eq!(continued, if allow { passes } else { 0 });
    let per_request: Vec<String> = host
        .calls
        .iter()
        .map(|(kind, n)| format!("{kind} {}", *n as f64 / passes as f64))
        .collect();
    let total: u64 = host.calls.values().sum();
    println!(
        "{rules} rules, {} request #{index} ({} {}), {passes} passes: {} host calls / request: {}",
        if allow { "allow" } else { "deny" },
        spec.method,
        spec.path,
        total as f64 / passes as f64,
        per_request.join(", ")
    );
}
