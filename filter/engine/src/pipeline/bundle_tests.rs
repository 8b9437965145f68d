//! The bundle pull state machine through the offline host: cold start,
//! conditional polls with jitter, every refusal (broken, too large,
//! truncated, unknown key, rollback, equivocation, hash mismatch), the
//! staleness bound and recovery, embedded bundles.

use ed25519_dalek::SigningKey;
use serde_json::json;

use super::super::offline::Callout;
use super::super::{OfflineHost, Pipeline};
use super::{counters, REVISION_GAUGE};
use crate::bundle;
use crate::codec;
use crate::decision::Reason;
use crate::model::{ChainSettings, CompiledPolicy, Limits, StrId};
use crate::signature::PublicKey;

const T: u64 = 1_800_000_000;
const CLUSTER: &str = "bundles";
const PATH: &str = "/meshward/policy.bundle";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A plugin configuration whose policy is named `name` (so its hash differs).
fn config(name: &str) -> (Vec<u8>, [u8; 32]) {
    let policy = CompiledPolicy {
        name: StrId(0),
        dry_run: false,
        strings: vec![name.to_owned(), "prod.example".to_owned()],
        trust_domains: vec![StrId(1)],
        limits: Limits::default(),
        intents: vec![],
        rules: vec![],
        chain: ChainSettings::default(),
    };
    let (bytes, hash) = codec::encode(&policy);
    let json = crate::config::plugin_config_json(&bytes, &[]).to_string();
    (json.into_bytes(), hash)
}

fn bundle_of(revision: u64, name: &str, signer: u8) -> Vec<u8> {
    let (config, hash) = config(name);
    bundle::encode(revision, T, &hash, &config, &key(signer)).unwrap()
}

fn vm_config(extra: serde_json::Value) -> Vec<u8> {
    let mut source = json!({
        "cluster": CLUSTER,
        "path": PATH,
        "keys": [PublicKey::of_signing_key(&key(1)).to_base64()],
        "poll_secs": 10,
        "jitter": 0.5,
        "max_bytes": 4096,
        "max_staleness_secs": 60,
    });
    if let (Some(object), serde_json::Value::Object(extra)) = (source.as_object_mut(), extra) {
        object.extend(extra);
    }
    json!({ "bundle": source }).to_string().into_bytes()
}

fn started(plugin_config: &[u8]) -> (Pipeline, OfflineHost) {
    let mut host = OfflineHost::at(T);
    host.vm_configuration = Some(vm_config(json!({})));
    host.plugin_configuration = Some(plugin_config.to_vec());
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host), "{:?}", host.logs);
    assert!(pipeline.on_configure(&mut host), "{:?}", host.logs);
    (pipeline, host)
}

fn set_time(host: &mut OfflineHost, secs: u64) {
    host.now_nanos = Some(u128::from(secs) * 1_000_000_000);
}

/// The reason a plain request (no client certificate) is decided with.
fn reason(pipeline: &mut Pipeline, host: &mut OfflineHost) -> Reason {
    host.headers = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), b"/".to_vec()),
        (":authority".into(), b"app".to_vec()),
    ];
    match pipeline.read_request(host) {
        Err(reason) => reason,
        Ok(input) => pipeline.decide(&input, host).verdict.decision.reason,
    }
}

/// Ticks until a poll is dispatched; returns its call id.
fn poll(pipeline: &mut Pipeline, host: &mut OfflineHost) -> u32 {
    let before = host.callouts.len();
    pipeline.on_tick(host);
    assert_eq!(host.callouts.len(), before + 1, "no poll: {:?}", host.logs);
    host.callouts.last().unwrap().id
}

fn answer(
    pipeline: &mut Pipeline,
    host: &mut OfflineHost,
    call: u32,
    status: Option<u16>,
    body: Option<Vec<u8>>,
    etag: Option<&str>,
) {
    host.call_response_headers.clear();
    if let Some(etag) = etag {
        host.call_response_headers
            .insert("etag".into(), etag.as_bytes().to_vec());
    }
    pipeline.on_http_call_response(host, call, status, body);
}

/// One poll and its answer: at `at` (Unix seconds), when given, ticks until
/// the poll goes out, then answers it with `status`, `body` and `etag`.
/// Returns the poll as it was dispatched.
fn exchange(
    pipeline: &mut Pipeline,
    host: &mut OfflineHost,
    at: Option<u64>,
    status: Option<u16>,
    body: Option<Vec<u8>>,
    etag: Option<&str>,
) -> Callout {
    if let Some(secs) = at {
        set_time(host, secs);
    }
    let call = poll(pipeline, host);
    let sent = host.callouts.last().unwrap().clone();
    answer(pipeline, host, call, status, body, etag);
    sent
}

/// Started without an embedded bundle, then revision `revision` of policy
/// `name` served by the first poll with `etag`.
fn serving(revision: u64, name: &str, etag: &str) -> (Pipeline, OfflineHost) {
    let (mut pipeline, mut host) = started(b"");
    exchange(
        &mut pipeline,
        &mut host,
        None,
        Some(200),
        Some(bundle_of(revision, name, 1)),
        Some(etag),
    );
    assert_eq!(pipeline.bundle_revision(), Some(revision));
    (pipeline, host)
}

#[test]
fn cold_start_fails_closed_until_the_first_bundle_then_polls_conditionally() {
    let (mut pipeline, mut host) = started(b"");
    assert_eq!(pipeline.bundle_revision(), Some(0));
    assert_eq!(host.gauges.get(REVISION_GAUGE), Some(&0));
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPolicy);
    assert_eq!(host.tick_period, Some(std::time::Duration::from_secs(1)));

    let call = poll(&mut pipeline, &mut host);
    let callout = host.callouts.last().unwrap().clone();
    assert_eq!(
        (callout.cluster.as_str(), callout.path.as_str()),
        (CLUSTER, PATH)
    );
    assert_eq!(callout.authority, CLUSTER);
    assert!(
        callout.headers.is_empty(),
        "no etag yet: {:?}",
        callout.headers
    );
    // One poll in flight at a time.
    set_time(&mut host, T + 100);
    pipeline.on_tick(&mut host);
    assert_eq!(host.callouts.len(), 1);

    answer(
        &mut pipeline,
        &mut host,
        call,
        Some(200),
        Some(bundle_of(1, "one", 1)),
        Some("\"e1\""),
    );
    assert_eq!(pipeline.bundle_revision(), Some(1));
    assert_eq!(host.gauges.get(REVISION_GAUGE), Some(&1));
    assert_eq!(host.counter(counters::ACTIVATED), 1);
    assert_eq!(pipeline.config().unwrap().policy.name(), "one");
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPeerCertificate);

    // The next poll is conditional.
    let sent = exchange(&mut pipeline, &mut host, None, Some(304), None, None);
    assert_eq!(
        sent.headers,
        vec![("if-none-match".to_owned(), "\"e1\"".to_owned())]
    );
    assert_eq!(host.counter(counters::NOT_MODIFIED), 1);
    assert_eq!(pipeline.bundle_revision(), Some(1));
}

#[test]
fn polls_are_spread_by_jitter_within_the_bounds() {
    let (mut pipeline, mut host) = started(b"");
    let mut now = T;
    let mut last_poll = T;
    let mut gaps = Vec::new();
    // 600 simulated seconds at one tick per second: poll_secs 10, jitter 0.5.
    for _ in 0..600 {
        now += 1;
        set_time(&mut host, now);
        let before = host.callouts.len();
        pipeline.on_tick(&mut host);
        if host.callouts.len() > before {
            gaps.push(now - last_poll);
            last_poll = now;
            let call = host.callouts.last().unwrap().id;
            answer(&mut pipeline, &mut host, call, Some(500), None, None);
        }
    }
    // The first poll is at start-up (the first tick).
    assert_eq!(gaps.remove(0), 1);
    assert!(gaps.len() >= 40, "{gaps:?}");
    assert!(gaps.iter().all(|g| (5..=15).contains(g)), "{gaps:?}");
    let distinct: std::collections::BTreeSet<_> = gaps.iter().collect();
    assert!(distinct.len() >= 5, "no jitter: {gaps:?}");
    assert_eq!(host.counter(counters::FETCH_FAILED), gaps.len() as u64 + 1);
}

#[test]
fn refused_bundles_keep_the_last_good_one_and_are_counted() {
    let (mut pipeline, mut host) = serving(2, "two", "e2");

    let good3 = bundle_of(3, "three", 1);
    let mut flipped = good3.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let big = bundle_of(3, &"x".repeat(5000), 1);
    let (wrong_config, _) = config("three");
    let mismatched = bundle::encode(3, T, &[9; 32], &wrong_config, &key(1)).unwrap();
    /// Status, body, the counter it must bump.
    type Case = (Option<u16>, Option<Vec<u8>>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Some(200),
            Some(flipped),
            "meshward.bundle.rejected.bad_signature",
        ),
        (Some(200), Some(big), "meshward.bundle.rejected.too_large"),
        (
            Some(200),
            Some(good3[..good3.len() - 10].to_vec()),
            "meshward.bundle.rejected.truncated",
        ),
        (
            Some(200),
            Some(bundle_of(3, "three", 2)),
            "meshward.bundle.rejected.unknown_key",
        ),
        (
            Some(200),
            Some(b"<html>oops</html>".to_vec()),
            "meshward.bundle.rejected.bad_magic",
        ),
        (
            Some(200),
            Some(mismatched),
            "meshward.bundle.rejected.policy_hash",
        ),
        (
            Some(200),
            Some(bundle_of(2, "other", 1)),
            "meshward.bundle.rejected.equivocation",
        ),
        (
            Some(200),
            Some(bundle_of(1, "one", 1)),
            counters::ROLLBACK_REFUSED,
        ),
        (Some(500), Some(b"error".to_vec()), counters::FETCH_FAILED),
        (None, None, counters::FETCH_FAILED),
        // 304 to a poll is fine; a 304 without a bundle in force is not.
        (Some(404), None, counters::FETCH_FAILED),
    ];
    let mut now = T;
    for (status, body, counter) in cases {
        let before = host.counter(counter);
        now += 20;
        let sent = exchange(
            &mut pipeline,
            &mut host,
            Some(now),
            status,
            body,
            Some("bad-etag"),
        );
        // Every poll still carries the etag of the bundle in force.
        assert_eq!(sent.headers[0].1, "e2");
        assert_eq!(
            host.counter(counter),
            before + 1,
            "{counter}: {:?}",
            host.logs
        );
        assert_eq!(pipeline.bundle_revision(), Some(2), "{counter}");
        assert_eq!(pipeline.config().unwrap().policy.name(), "two", "{counter}");
        assert_eq!(host.gauges.get(REVISION_GAUGE), Some(&2));
    }
    assert_eq!(host.counter(counters::REJECTED), 7);
    // The same bundle again is a confirmation; a newer one goes into force.
    now += 20;
    exchange(
        &mut pipeline,
        &mut host,
        Some(now),
        Some(200),
        Some(bundle_of(2, "two", 1)),
        Some("e2"),
    );
    assert_eq!(pipeline.bundle_revision(), Some(2));
    now += 20;
    exchange(
        &mut pipeline,
        &mut host,
        Some(now),
        Some(200),
        Some(good3),
        Some("e3"),
    );
    assert_eq!(pipeline.bundle_revision(), Some(3));
    assert_eq!(host.gauges.get(REVISION_GAUGE), Some(&3));
    assert_eq!(host.counter(counters::ACTIVATED), 2);
}

#[test]
fn past_the_staleness_bound_requests_fail_closed_and_recover() {
    let (mut pipeline, mut host) = serving(1, "one", "e1");
    // The server goes away: every poll fails.
    let mut now = T;
    let mut polls = host.callouts.len();
    while now < T + 60 {
        now += 1;
        set_time(&mut host, now);
        pipeline.on_tick(&mut host);
        if host.callouts.len() > polls {
            polls = host.callouts.len();
            let call = host.callouts.last().unwrap().id;
            answer(&mut pipeline, &mut host, call, None, None, None);
        }
        assert_eq!(
            reason(&mut pipeline, &mut host),
            Reason::NoPeerCertificate,
            "at {now}"
        );
    }
    assert_eq!(host.counter(counters::STALE), 0);
    set_time(&mut host, T + 61);
    assert_eq!(reason(&mut pipeline, &mut host), Reason::BundleStale);
    pipeline.on_tick(&mut host);
    assert_eq!(host.counter(counters::STALE), 1);
    assert!(host
        .logs
        .iter()
        .any(|(_, l)| l.contains("denying every request (bundle_stale)")));
    // Still stale a while later: counted once.
    exchange(
        &mut pipeline,
        &mut host,
        Some(T + 200),
        Some(503),
        None,
        None,
    );
    assert_eq!(host.counter(counters::STALE), 1);
    assert_eq!(reason(&mut pipeline, &mut host), Reason::BundleStale);
    // The server is back and confirms the bundle in force.
    exchange(
        &mut pipeline,
        &mut host,
        Some(T + 300),
        Some(304),
        None,
        None,
    );
    assert_eq!(host.counter(counters::RECOVERED), 1);
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPeerCertificate);
}

#[test]
fn an_embedded_bundle_serves_from_the_start_and_other_configurations_are_refused() {
    use base64::Engine as _;
    let embedded = base64::engine::general_purpose::STANDARD.encode(bundle_of(4, "four", 1));
    let (mut pipeline, mut host) = started(embedded.as_bytes());
    assert_eq!(pipeline.bundle_revision(), Some(4));
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPeerCertificate);
    // Raw bytes work as well; an older embedded bundle is not an update.
    assert!(pipeline.configure_bundled(&mut host, &bundle_of(3, "three", 1)));
    assert_eq!(pipeline.bundle_revision(), Some(4));
    assert_eq!(host.counter(counters::ROLLBACK_REFUSED), 1);

    // A plain plugin configuration (or a forged bundle) is refused in bundle mode.
    let mut host = OfflineHost::at(T);
    host.vm_configuration = Some(vm_config(json!({})));
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    host.plugin_configuration = Some(config("plain").0);
    assert!(!pipeline.on_configure(&mut host));
    host.plugin_configuration = Some(bundle_of(1, "forged", 2));
    assert!(!pipeline.on_configure(&mut host));
    assert_eq!(host.counter("meshward.bundle.rejected.unknown_key"), 1);
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPolicy);
}

#[test]
fn a_malformed_bundle_member_refuses_the_vm() {
    for bad in [
        json!({"poll_secs": 0}),
        json!({"jitter": 2.0}),
        json!({"max_staleness_secs": 5}),
        json!({"keys": []}),
        json!({"keys": ["not a key"]}),
        json!({"path": "relative"}),
        json!({"polls": 3}),
    ] {
        let mut host = OfflineHost::at(T);
        host.vm_configuration = Some(vm_config(bad.clone()));
        let mut pipeline = Pipeline::new();
        assert!(!pipeline.on_vm_start(&mut host), "{bad}");
        assert!(
            host.logs.iter().any(|(_, l)| l.contains("`bundle")),
            "{bad}: {:?}",
            host.logs
        );
    }
}

/// The `bundle` object alone (what `MESHWARD_BUNDLE` carries).
fn source_json(extra: serde_json::Value) -> String {
    let vm: serde_json::Value = serde_json::from_slice(&vm_config(extra)).unwrap();
    vm["bundle"].to_string()
}

#[test]
fn the_source_may_come_from_the_vm_environment_instead() {
    let mut host = OfflineHost::at(T);
    host.environment
        .insert(super::BUNDLE_ENV.to_owned(), source_json(json!({})));
    host.plugin_configuration = Some(Vec::new());
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host), "{:?}", host.logs);
    assert!(pipeline.on_configure(&mut host), "{:?}", host.logs);
    assert_eq!(pipeline.bundle_revision(), Some(0));
    let sent = exchange(
        &mut pipeline,
        &mut host,
        None,
        Some(200),
        Some(bundle_of(1, "one", 1)),
        Some("e1"),
    );
    assert_eq!((sent.cluster.as_str(), sent.path.as_str()), (CLUSTER, PATH));
    assert_eq!(pipeline.bundle_revision(), Some(1));
    assert_eq!(reason(&mut pipeline, &mut host), Reason::NoPeerCertificate);
    // Its keys are the pinned ones: another signer is refused.
    exchange(
        &mut pipeline,
        &mut host,
        Some(T + 20),
        Some(200),
        Some(bundle_of(2, "two", 2)),
        Some("e2"),
    );
    assert_eq!(host.counter("meshward.bundle.rejected.unknown_key"), 1);
    assert_eq!(pipeline.bundle_revision(), Some(1));
}

#[test]
fn a_malformed_or_doubly_set_environment_source_refuses_the_vm() {
    let cases = [
        // Both places: which one would be in force?
        (
            Some(vm_config(json!({}))),
            source_json(json!({})),
            "set it in one place",
        ),
        (None, "not json".to_owned(), "`MESHWARD_BUNDLE`"),
        (None, "[]".to_owned(), "`MESHWARD_BUNDLE`"),
        (None, source_json(json!({"keys": []})), "`bundle.keys`"),
        (
            None,
            source_json(json!({"poll_secs": 0})),
            "`bundle.poll_secs`",
        ),
    ];
    for (vm, env, message) in cases {
        let mut host = OfflineHost::at(T);
        host.vm_configuration = vm;
        host.environment
            .insert(super::BUNDLE_ENV.to_owned(), env.clone());
        let mut pipeline = Pipeline::new();
        assert!(!pipeline.on_vm_start(&mut host), "{env}");
        assert!(
            host.logs.iter().any(|(_, l)| l.contains(message)),
            "{env}: {:?}",
            host.logs
        );
    }
}
