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

use ed25519_dalek::SigningKey;
use meshward_e2e::bundle_server::{
    bundle, envoy_yaml, free_port, pollers, request, stat, wait, Mode, Nginx, BUNDLE_PATH, LISTENER,
};
use meshward_e2e::envoy::EnvoyProc;
use meshward_e2e::workspace::Scratch;
use meshward_engine::signature::PublicKey;

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
    }});
    let yaml = envoy_yaml(port, &vm_config);
    // Pipelines polling: counters add up over them.
    let vms = pollers();
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
        stat(e, "activated") == vms
    });
    assert_eq!(request(addr).1, "no_peer_certificate", "policy in force");
    // Conditional polls: nginx answers 304 to the ETag.
    wait(&envoy, "304s", 10, |e| stat(e, "not_modified") >= 2);

    nginx.publish(&bundle(2, "rev-two", &key));
    wait(&envoy, "revision 2", 10, |e| {
        stat(e, "activated") == 2 * vms
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
        stat(e, "activated") == 3 * vms
    });
    assert_eq!(stat(&envoy, "revision"), 3);

    // A 500, then a server slower than the timeout: failures, policy kept.
    // Between one nginx and the next the port is closed and Envoy answers
    // the callout itself (503), so each step waits for its own status in
    // the log, not for any failed fetch.
    let (dir, port) = nginx.stop();
    let nginx = Nginx::start(&dir, port, Mode::Error);
    wait(&envoy, "a 500", 10, |e| {
        e.log().contains("failed: status 500")
    });
    assert_eq!(request(addr).1, "no_peer_certificate");
    let (dir, port) = nginx.stop();
    let nginx = Nginx::start(&dir, port, Mode::Slow);
    // Envoy answers a callout past its timeout with a local 504.
    wait(&envoy, "a timeout (504)", 10, |e| {
        e.log().contains("failed: status 504")
    });

    // Gone past the staleness bound (8 s): every request fails closed.
    let (dir, port) = nginx.stop();
    wait(&envoy, "stale", 25, |e| stat(e, "stale") == vms);
    assert_eq!(request(addr), (403, "bundle_stale".to_owned()));

    // Back: confirmed again (304), serving.
    let nginx = Nginx::start(&dir, port, Mode::Serve);
    wait(&envoy, "recovered", 10, |e| stat(e, "recovered") == vms);
    assert_eq!(request(addr).1, "no_peer_certificate");
    assert_eq!(stat(&envoy, "revision"), 3);
    drop(nginx);
}
