//! `meshward istio --telemetry`, run for real: beside the usual manifests it
//! emits the access-log and stats `EnvoyFilter`s for the same workloads, in
//! the shape Istio's `EnvoyFilter` API takes. (What the patches carry is the
//! configuration `envoy/*.yaml` ship and a real Envoy runs: the e2e test
//! `tests/tests/observability.rs` holds the two equal.)

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const MESHWARD: &str = env!("CARGO_BIN_EXE_meshward");

fn run(extra: &[&str]) -> Vec<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut args = vec![
        "istio",
        "--policy",
        "policy-compiler/examples/shop.policy",
        "--image",
        "oci://registry.example.com/meshward/filter:0.1.0",
        "--namespace",
        "shop",
        "--selector",
        "app=orders",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(MESHWARD)
        .current_dir(repo)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The `EnvoyFilter` fields and values Istio's API accepts, for what the
/// generated ones use (networking/v1alpha3/envoy_filter.proto).
fn envoy_filter_problems(filter: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = &filter["spec"];
    if filter["apiVersion"] != "networking.istio.io/v1alpha3" {
        problems.push("apiVersion".to_owned());
    }
    for key in spec.as_object().unwrap().keys() {
        if ![
            "workloadSelector",
            "configPatches",
            "targetRefs",
            "priority",
        ]
        .contains(&key.as_str())
        {
            problems.push(format!("unknown spec field `{key}`"));
        }
    }
    if spec["workloadSelector"]["labels"]
        .as_object()
        .is_none_or(|l| l.is_empty())
    {
        problems.push("no workloadSelector.labels".to_owned());
    }
    for patch in spec["configPatches"].as_array().unwrap() {
        let apply_to = patch["applyTo"].as_str().unwrap_or("");
        if !["NETWORK_FILTER", "BOOTSTRAP", "HTTP_FILTER", "LISTENER"].contains(&apply_to) {
            problems.push(format!("applyTo `{apply_to}`"));
        }
        if let Some(context) = patch["match"]["context"].as_str() {
            if !["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"].contains(&context) {
                problems.push(format!("context `{context}`"));
            }
        }
        if patch["patch"]["operation"] != "MERGE" {
            problems.push("operation".to_owned());
        }
        if !patch["patch"]["value"].is_object() {
            problems.push("patch.value".to_owned());
        }
    }
    problems
}

#[test]
fn telemetry_adds_the_access_log_and_stats_filters_for_the_same_workloads() {
    let plain = run(&["--mode", "both"]);
    let with = run(&["--mode", "both", "--telemetry"]);
    assert_eq!(with.len(), plain.len() + 2);
    assert_eq!(
        &with[..plain.len()],
        &plain[..],
        "the usual manifests unchanged"
    );
    let names: Vec<&str> = with[plain.len()..]
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["meshward-access-log", "meshward-stats"]);
    for filter in &with[plain.len()..] {
        assert_eq!(filter["kind"], "EnvoyFilter");
        assert_eq!(filter["metadata"]["namespace"], "shop");
        assert_eq!(
            filter["spec"]["workloadSelector"]["labels"]["app"],
            "orders"
        );
        let problems = envoy_filter_problems(filter);
        assert!(problems.is_empty(), "{problems:?}\n{filter}");
    }
    let stats = &with[plain.len() + 1]["spec"]["configPatches"][0]["patch"]["value"];
    assert_eq!(
        stats["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"][0]["prefix"],
        "wasmcustom.meshward."
    );
}

#[test]
fn the_envoy_filter_check_is_not_vacuous() {
    let with = run(&["--telemetry"]);
    let good = with.last().unwrap().clone();
    assert!(envoy_filter_problems(&good).is_empty());
    let mut bad = good.clone();
    bad["spec"]["configPatches"][0]["applyTo"] = Value::from("LISTENERS");
    assert!(!envoy_filter_problems(&bad).is_empty());
    let mut bad = good;
    bad["spec"]["workloadSelector"]["labels"] = serde_json::json!({});
    assert!(!envoy_filter_problems(&bad).is_empty());
}
