//! A fleet pulling from one nginx: 20 Envoys (`--concurrency 1`), each with
//! the meshward filter in bundle mode (poll 2 s, jitter 0.5). Measures how
//! long a new revision takes to reach every proxy (p50 and max, printed),
//! then checks that a broken and an old revision are refused by all, and
//! that the server gone past the staleness bound makes every proxy fail
//! closed and recover when it returns. Bounded: under three minutes (on a
//! busy 2-core machine starting 20 Envoys alone takes about 40 s). The
//! fail-closed and recovery times include the probe loop's own latency (one
//! request to each of the 20 proxies per round).

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use meshward_e2e::bundle_server::{
    bundle, envoy_yaml, free_port, request, Mode, Nginx, BUNDLE_PATH, LISTENER, VMS,
};
use meshward_e2e::envoy::EnvoyProc;
use meshward_e2e::workspace::Scratch;
use meshward_engine::signature::PublicKey;

const PROXIES: usize = 20;
const POLL_SECS: u64 = 2;
const JITTER: f64 = 0.5;
const STALENESS_SECS: u64 = 10;

/// `wasmcustom.meshward.bundle.<name>` of one proxy, through a filtered
/// admin read (20 proxies are read many times a second).
fn stat(envoy: &EnvoyProc, name: &str) -> u64 {
    let full = format!("wasmcustom.meshward.bundle.{name}");
    envoy
        .admin_get(&format!("/stats?filter=^{}$", full.replace('.', "\\.")))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{full}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `cond` holds for every proxy; returns when each first did
/// (seconds since `since`). Panics after `limit`.
fn converge(
    fleet: &[EnvoyProc],
    what: &str,
    since: Instant,
    limit: Duration,
    cond: impl Fn(&EnvoyProc) -> bool,
) -> Vec<f64> {
    let mut done: Vec<Option<f64>> = vec![None; fleet.len()];
    while done.iter().any(Option::is_none) {
        if since.elapsed() >= limit {
            let late: Vec<_> = done
                .iter()
                .zip(fleet)
                .filter(|(d, _)| d.is_none())
                .map(|(_, e)| (e.name().to_owned(), request(e.listener(LISTENER))))
                .collect();
            panic!(
                "{what}: {} of {} proxies after {limit:?}; the others answer {late:?}",
                done.iter().flatten().count(),
                fleet.len()
            );
        }
        for (slot, envoy) in done.iter_mut().zip(fleet) {
            if slot.is_none() && cond(envoy) {
                *slot = Some(since.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut times: Vec<f64> = done.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    times
}

fn report(what: &str, times: &[f64]) {
    let p50 = times[times.len() / 2];
    let max = times[times.len() - 1];
    eprintln!(
        "[fleet] {what}: {} proxies, p50 {p50:.1} s, max {max:.1} s",
        times.len()
    );
}

#[test]
fn a_fleet_converges_refuses_bad_revisions_and_fails_closed_when_the_server_is_gone() {
    let started = Instant::now();
    let scratch = Scratch::new("bundle-fleet");
    let key = SigningKey::from_bytes(&[21; 32]);
    let port = free_port();
    let nginx = Nginx::start(&scratch.path().join("nginx"), port, Mode::Serve);
    nginx.publish(&bundle(1, "fleet-one", &key));
    let vm_config = serde_json::json!({"bundle": {
        "cluster": "meshward_bundles",
        "path": BUNDLE_PATH,
        "keys": [PublicKey::of_signing_key(&key).to_base64()],
        "poll_secs": POLL_SECS,
        "jitter": JITTER,
        "timeout_ms": 1000,
        "max_staleness_secs": STALENESS_SECS,
    }});
    let yaml = envoy_yaml(port, &vm_config);
    let starting: Vec<_> = (0..PROXIES)
        .map(|i| EnvoyProc::spawn(scratch.path(), &format!("fleet-{i}"), &yaml, 1))
        .collect();
    let fleet: Vec<EnvoyProc> = starting
        .into_iter()
        .map(|s| {
            s.ready(&[LISTENER])
                .unwrap_or_else(|e| panic!("Envoy did not start: {e:?}"))
        })
        .collect();
    eprintln!(
        "[fleet] {PROXIES} proxies up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    converge(
        &fleet,
        "revision 1",
        Instant::now(),
        Duration::from_secs(20),
        |e| stat(e, "activated") == VMS,
    );

    // A new revision: time until every VM of every proxy runs it.
    let published = Instant::now();
    nginx.publish(&bundle(2, "fleet-two", &key));
    let times = converge(
        &fleet,
        "revision 2",
        published,
        Duration::from_secs(15),
        |e| stat(e, "activated") == 2 * VMS,
    );
    report("revision 2 in force", &times);
    // A figure, not an assertion (machines here are shared and noisy): the
    // poll interval with its jitter is what bounds it by design.
    let bound = POLL_SECS as f64 * (1.0 + JITTER);
    eprintln!(
        "[fleet] slowest proxy {:.1} s after publishing (poll interval with jitter: {bound:.1} s)",
        times[times.len() - 1]
    );
    for envoy in &fleet {
        assert_eq!(stat(envoy, "revision"), 2, "{}", envoy.name());
    }

    // A broken revision, then an old one: refused by every VM of every proxy.
    let mut broken = bundle(3, "fleet-three", &key);
    let last = broken.len() - 1;
    broken[last] ^= 0x40;
    nginx.publish(&broken);
    converge(
        &fleet,
        "broken refused",
        Instant::now(),
        Duration::from_secs(8),
        |e| stat(e, "rejected.bad_signature") >= VMS,
    );
    nginx.publish(&bundle(1, "fleet-one", &key));
    converge(
        &fleet,
        "rollback refused",
        Instant::now(),
        Duration::from_secs(8),
        |e| stat(e, "rollback_refused") >= VMS,
    );
    for envoy in &fleet {
        assert_eq!(stat(envoy, "activated"), 2 * VMS, "{}", envoy.name());
        assert_eq!(stat(envoy, "revision"), 2, "{}", envoy.name());
    }
    // Revision 2 again: every VM confirms it (same revision, same hash).
    let before: std::collections::HashMap<String, u64> = fleet
        .iter()
        .map(|e| (e.name().to_owned(), stat(e, "not_modified")))
        .collect();
    nginx.publish(&bundle(2, "fleet-two", &key));
    converge(
        &fleet,
        "revision 2 confirmed",
        Instant::now(),
        Duration::from_secs(8),
        |e| stat(e, "not_modified") >= before[e.name()] + VMS,
    );

    // The server gone past the staleness bound: every proxy fails closed...
    let (dir, port) = nginx.stop();
    let gone = Instant::now();
    let times = converge(
        &fleet,
        "fail closed",
        gone,
        Duration::from_secs(STALENESS_SECS + 30),
        |e| request(e.listener(LISTENER)).1 == "bundle_stale",
    );
    report("bundle_stale after the server went away", &times);
    // ...and recovers when it returns.
    let nginx = Nginx::start(&dir, port, Mode::Serve);
    let back = Instant::now();
    let times = converge(&fleet, "recovered", back, Duration::from_secs(30), |e| {
        request(e.listener(LISTENER)).1 == "no_peer_certificate"
    });
    report("serving again after the server returned", &times);
    drop(nginx);
    eprintln!(
        "[fleet] whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
