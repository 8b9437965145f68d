//! Live policy updates in a standalone Envoy (`envoy/ecds/`): the filter's
//! configuration arrives through ECDS from a watched directory, and an atomic
//! move of a newly rendered file swaps the policy without a restart.
//!
//! Under continuous load (two client threads, bounded in count and time) the
//! policy is swapped back and forth, and one broken update is pushed:
//!
//! - every response is a decision of the old or the new policy: 200 or 403,
//!   never a 5xx or a failed connection, and the audit line of every request
//!   names one of the two policy hashes and agrees with the status;
//! - once a request has been decided by the new policy, every request sent
//!   after that is decided by it too (no flapping back);
//! - a new policy takes effect within a bound (10 s; typically milliseconds);
//! - the broken update is rejected (Envoy's `update_rejected`, the filter's
//!   `meshward: rejected configuration` line and counter) and the last good
//!   policy keeps deciding, then a good update after it still works.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use meshward_e2e::ecds::EcdsMesh;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::{Leaf, Request};

/// v1 lets the frontend read orders, not create them; v2 the opposite. Every
/// request therefore shows which policy decided it.
fn policy(version: u8) -> String {
    let (granted, other) = if version == 1 {
        ("orders.read", "orders.create")
    } else {
        ("orders.create", "orders.read")
    };
    format!(
        r#"
policy "rollout-v{version}" {{
  trust_domains "shop.example"
}}
intent orders.read {{
  method GET
  path "/orders/{{id}}"
}}
intent orders.create {{
  method POST
  path "/orders"
}}
allow frontend-{granted} {{
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent {granted}
}}
deny nobody-{other} {{
  subject "spiffe://shop.example/ns/nobody/sa/nobody"
  intent {other}
}}
"#
    )
}

/// The status `version` gives a GET (`post == false`) or a POST.
fn expected(version: u8, post: bool) -> u16 {
    match (version, post) {
        (1, false) | (2, true) => 200,
        _ => 403,
    }
}

/// Which policy a status means for this request kind.
fn decided_by(status: u16, post: bool) -> Option<u8> {
    [1, 2].into_iter().find(|v| expected(*v, post) == status)
}

#[derive(Debug, Clone)]
struct Record {
    id: String,
    post: bool,
    sent: Instant,
    received: Instant,
    result: Result<u16, String>,
}

/// Two threads sending alternately GET /orders/1 and POST /orders as the
/// frontend until told to stop, at most `MAX_PER_THREAD` requests each.
struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

const MAX_PER_THREAD: usize = 4000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(45);

impl Load {
    fn start(mesh: &EcdsMesh, frontend: &Leaf) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..2)
            .map(|t| {
                let client = mesh.client(Some(frontend));
                let stop = Arc::clone(&stop);
                let records = Arc::clone(&records);
                thread::spawn(move || {
                    for n in 0..MAX_PER_THREAD {
                        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
                            break;
                        }
                        let post = n % 2 == 1;
                        let id = format!("load-{t}-{n}");
                        let request = if post {
                            Request::post("/orders", b"{}")
                        } else {
                            Request::get("/orders/1")
                        }
                        .header("x-request-id", &id);
                        let sent = Instant::now();
                        let result = client
                            .send(&request)
                            .map(|r| r.status)
                            .map_err(|e| e.to_string());
                        let received = Instant::now();
                        records.lock().unwrap().push(Record {
                            id,
                            post,
                            sent,
                            received,
                            result,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            records,
            threads,
        }
    }

    fn snapshot(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until a request sent after `since` was decided by `version`;
    /// returns when that response arrived.
    fn wait_for(&self, version: u8, since: Instant, bound: Duration) -> Instant {
        let deadline = since + bound;
        loop {
            let hit = self
                .snapshot()
                .into_iter()
                .filter(|r| r.sent > since)
                .filter(|r| {
                    r.result.as_ref().ok().and_then(|s| decided_by(*s, r.post)) == Some(version)
                })
                .map(|r| r.received)
                .min();
            if let Some(at) = hit {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "policy v{version} did not take effect within {bound:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets the load run a little longer (more requests across the switch).
    fn run_for(&self, time: Duration) {
        let before = self.snapshot().len();
        thread::sleep(time);
        assert!(self.snapshot().len() > before, "the load stalled");
    }

    fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.records).unwrap().into_inner().unwrap()
    }
}

/// The broken update: v2's configuration with its compiled policy damaged
/// (valid base64, wrong bytes: the content hash no longer matches).
fn corrupted(config: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(config).unwrap();
    let policy = value["policy"].as_str().unwrap().to_owned();
    let mid = policy.len() / 2;
    let flipped = if &policy[mid..=mid] == "A" { "B" } else { "A" };
    value["policy"] = format!("{}{flipped}{}", &policy[..mid], &policy[mid + 1..]).into();
    value.to_string()
}

#[test]
fn policy_swaps_under_load_decide_by_old_or_new_and_a_broken_update_is_rejected() {
    let v1 = plugin_config(&policy(1), "rollout-v1.policy", &[]);
    let v2 = plugin_config(&policy(2), "rollout-v2.policy", &[]);
    let hash = |version: u8| {
        meshward_policy::compile_source(&policy(version), "rollout.policy")
            .unwrap()
            .hash_hex()
    };
    let hashes = [hash(1), hash(2)];
    let version_of = |h: &str| hashes.iter().position(|x| x == h).map(|i| i as u8 + 1);

    let mesh = EcdsMesh::start("live-updates", &v1).unwrap_or_else(|e| panic!("{e}"));
    mesh.wait_ecds_counter("update_success", 1, Duration::from_secs(10));
    let frontend = mesh.pki.workload("shop", "frontend");
    let load = Load::start(&mesh, &frontend);
    let started = Instant::now();
    let bound = Duration::from_secs(10);

    // (published at, version, first response decided by it)
    let mut switches = vec![(started, 1u8, load.wait_for(1, started, bound))];
    let mut successes = 1;
    for version in [2u8, 1, 2] {
        let config = if version == 1 { &v1 } else { &v2 };
        let published = Instant::now();
        mesh.publish(config);
        let effective = load.wait_for(version, published, bound);
        successes += 1;
        mesh.wait_ecds_counter("update_success", successes, bound);
        eprintln!(
            "v{version} took effect {:?} after the move",
            effective.saturating_duration_since(published)
        );
        switches.push((published, version, effective));
        load.run_for(Duration::from_millis(400));
    }

    // A broken update on a good one: rejected, v2 keeps deciding.
    let rejected_before = mesh.ecds_counter("update_rejected");
    let broken_at = Instant::now();
    mesh.publish(&corrupted(&v2));
    mesh.wait_ecds_counter("update_rejected", rejected_before + 1, bound);
    load.run_for(Duration::from_millis(600));
    let log = mesh.envoy.log();
    assert!(
        log.contains("meshward: rejected configuration: compiled policy is corrupt"),
        "the filter did not log why it refused the update"
    );
    assert!(
        mesh.envoy.counter("wasmcustom.meshward.config_rejected") >= 1,
        "the filter did not count the refused configuration"
    );
    assert_eq!(
        mesh.ecds_counter("update_success"),
        successes,
        "a broken configuration was accepted"
    );

    // And a good update after the broken one still takes effect.
    let published = Instant::now();
    mesh.publish(&v1);
    let effective = load.wait_for(1, published, bound);
    switches.push((published, 1, effective));
    load.run_for(Duration::from_millis(300));
    let records = load.finish();

    // Every response: 200 or 403, from one of the two policies, agreeing
    // with its audit line. Envoy writes the log asynchronously: wait until
    // the lines of every request are there before reading them all.
    let logged: std::collections::HashSet<String> = mesh
        .envoy
        .audit_lines()
        .iter()
        .filter_map(|a| a.str("request_id").map(str::to_owned))
        .collect();
    for r in records.iter().filter(|r| !logged.contains(&r.id)) {
        mesh.envoy.audit_for(&r.id);
    }
    let audits = mesh.envoy.audit_lines();
    let by_id: std::collections::HashMap<&str, &meshward_e2e::audit::AuditLine> = audits
        .iter()
        .filter_map(|a| Some((a.str("request_id")?, a)))
        .collect();
    assert!(
        records.len() > 50,
        "too little load: {} requests",
        records.len()
    );
    for r in &records {
        let status = match &r.result {
            Ok(status) => *status,
            Err(e) => panic!("{}: no response: {e}", r.id),
        };
        assert!(status == 200 || status == 403, "{}: status {status}", r.id);
        let audit = by_id
            .get(r.id.as_str())
            .unwrap_or_else(|| panic!("{}: no audit line", r.id));
        let version = version_of(audit.str("policy").unwrap_or(""))
            .unwrap_or_else(|| panic!("{}: decided by neither policy: {}", r.id, audit.raw));
        assert_eq!(
            status,
            expected(version, r.post),
            "{}: status disagrees with policy v{version}",
            r.id
        );
        // A request is decided by the policy in force while it was in
        // flight: the one seen taking effect before it was sent (either side
        // of a switch still in flight), or one moved in while it was on its
        // way. Never an older one.
        let mut allowed = Vec::new();
        if let Some(j) = switches.iter().rposition(|(p, _, _)| *p <= r.sent) {
            let (_, now, effective) = switches[j];
            allowed.push(now);
            if effective >= r.sent && j > 0 {
                allowed.push(switches[j - 1].1);
            }
        }
        allowed.extend(
            switches
                .iter()
                .filter(|(p, _, _)| *p > r.sent && *p < r.received)
                .map(|(_, v, _)| *v),
        );
        assert!(
            allowed.contains(&version),
            "{}: decided by v{version}, but only {allowed:?} were in force while it was in flight",
            r.id
        );
        if r.sent > broken_at && r.received < published {
            assert_eq!(version, 2, "{}: the broken update changed a decision", r.id);
        }
    }
    eprintln!(
        "{} requests in {:?}, {} policy switches, 1 rejected update",
        records.len(),
        started.elapsed(),
        switches.len() - 1
    );
}
