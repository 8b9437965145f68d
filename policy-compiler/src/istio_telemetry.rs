//! The observability pieces of `meshward istio --telemetry`: what makes the
//! filter's decisions reach an Istio proxy's access log and its Prometheus
//! endpoint, for the same workloads the `WasmPlugin`s select.
//!
//! * `NAME-access-log`, an `EnvoyFilter` that adds a JSON file access log
//!   (`/dev/stdout`, where Istio's own access log goes) with the meshward
//!   fields to the selected workloads' connection managers. Envoy merges a
//!   repeated field by appending, so Istio's own access logs stay. The
//!   format is the engine's `ACCESS_LOG_FIELDS`, the one every `envoy/`
//!   config ships.
//! * `NAME-stats`, an `EnvoyFilter` patching the proxies' bootstrap:
//!   `stats_config.stats_tags` (the engine's `STATS_TAGS`: decision, reason,
//!   rule, intent and mode become labels) and a `stats_matcher` inclusion of
//!   `wasmcustom.meshward.` (Istio exports only the stats its
//!   `proxyStatsMatcher` includes). Bootstrap patches apply when a proxy
//!   starts: restart the workloads once after applying it.
//!
//! The Telemetry-API route (a mesh-config `extensionProviders` entry plus a
//! `Telemetry` resource) is documented in `docs/observability.md`; it needs
//! the mesh configuration, which a namespaced manifest cannot change.

use std::collections::BTreeMap;

use meshward_engine::pipeline::publish::{ACCESS_LOG_FIELDS, ACCESS_LOG_WOULD, STATS_TAGS};
use serde_json::{json, Map, Value};

use crate::istio::{
    envoy_filter_spec, hcm_merge_patch, Attachment, Canonical, IstioOptions, Metadata, Mode,
    Resource, Spec, ENVOY_FILTER_API_VERSION,
};

/// The access-log and stats `EnvoyFilter`s for the workloads `opts` selects.
pub fn resources(opts: &IstioOptions, policy_hash: &str) -> Vec<Resource> {
    // Selector-attached plugins get the same workload selector; namespace-,
    // mesh- and target-attached ones patch every proxy of the namespace.
    let labels: BTreeMap<String, String> = match &opts.attachment {
        Attachment::Selector(labels) => labels.iter().cloned().collect(),
        Attachment::Targets(_) | Attachment::Namespace => BTreeMap::new(),
    };
    vec![
        Resource {
            api_version: ENVOY_FILTER_API_VERSION,
            kind: "EnvoyFilter",
            metadata: metadata(opts, "access-log", policy_hash),
            spec: Spec::EnvoyFilter(Canonical(access_log_filter(&labels, opts.mode))),
        },
        Resource {
            api_version: ENVOY_FILTER_API_VERSION,
            kind: "EnvoyFilter",
            metadata: metadata(opts, "stats", policy_hash),
            spec: Spec::EnvoyFilter(Canonical(stats_filter(&labels))),
        },
    ]
}

/// Envoy's `json_format` for the meshward access log.
pub fn access_log_json_format() -> Value {
    let mut format = Map::new();
    for (field, operator) in ACCESS_LOG_FIELDS {
        format.insert(field.to_owned(), Value::from(operator));
    }
    let would: Map<String, Value> = ACCESS_LOG_WOULD
        .iter()
        .map(|(field, operator)| ((*field).to_owned(), Value::from(*operator)))
        .collect();
    format.insert("would".to_owned(), Value::Object(would));
    Value::Object(format)
}

/// One file access log entry (`HttpConnectionManager.access_log[]`).
pub fn access_log_entry() -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/stdout",
            "log_format": { "json_format": access_log_json_format() }
        }
    })
}

/// `stats_config` as the bootstrap patch merges it.
pub fn stats_config() -> Value {
    let tags: Vec<Value> = STATS_TAGS
        .iter()
        .map(|(tag, regex)| json!({ "tag_name": tag, "regex": regex }))
        .collect();
    json!({
        "stats_tags": tags,
        "stats_matcher": {
            "inclusion_list": { "patterns": [{ "prefix": "wasmcustom.meshward." }] }
        }
    })
}

fn access_log_filter(labels: &BTreeMap<String, String>, mode: Mode) -> Value {
    let contexts: &[&str] = match mode {
        Mode::Server => &["SIDECAR_INBOUND"],
        Mode::Client => &["SIDECAR_OUTBOUND"],
        Mode::Both => &["SIDECAR_INBOUND", "SIDECAR_OUTBOUND"],
        Mode::Gateway => &["GATEWAY"],
        // istiod builds a waypoint's listeners with the sidecar-inbound
        // listener class (the plugin itself attaches with `match: SERVER`).
        Mode::Waypoint => &["SIDECAR_INBOUND"],
    };
    let patches = contexts
        .iter()
        .map(|context| hcm_merge_patch(context, json!({ "access_log": [access_log_entry()] })))
        .collect();
    envoy_filter_spec(patches, Some(labels), None)
}

fn stats_filter(labels: &BTreeMap<String, String>) -> Value {
    let patch = json!({
        "applyTo": "BOOTSTRAP",
        "patch": { "operation": "MERGE", "value": { "stats_config": stats_config() } }
    });
    envoy_filter_spec(vec![patch], Some(labels), None)
}

fn metadata(opts: &IstioOptions, suffix: &str, policy_hash: &str) -> Metadata {
    let mut labels = BTreeMap::new();
    labels.insert("app.kubernetes.io/name".to_owned(), "meshward".to_owned());
    labels.insert("app.kubernetes.io/component".to_owned(), suffix.to_owned());
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "meshward".to_owned(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert("meshward.io/policy-hash".to_owned(), policy_hash.to_owned());
    Metadata {
        name: format!("{}-{suffix}", opts.name),
        namespace: opts.namespace.clone(),
        labels,
        annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: Mode) -> IstioOptions {
        let mut opts = IstioOptions::new(
            "shop",
            vec![("app".to_owned(), "orders".to_owned())],
            "oci://registry.example/meshward:1",
        );
        opts.mode = mode;
        opts
    }

    #[test]
    fn patches_the_selected_workloads_on_each_enforced_side() {
        let resources = resources(&opts(Mode::Both), "ab");
        assert_eq!(resources.len(), 2);
        let access = serde_json::to_value(&resources[0]).unwrap();
        assert_eq!(access["metadata"]["name"], "meshward-access-log");
        assert_eq!(
            access["spec"]["workloadSelector"]["labels"]["app"],
            "orders"
        );
        let patches = access["spec"]["configPatches"].as_array().unwrap();
        let contexts: Vec<&str> = patches
            .iter()
            .map(|p| p["match"]["context"].as_str().unwrap())
            .collect();
        assert_eq!(contexts, ["SIDECAR_INBOUND", "SIDECAR_OUTBOUND"]);
        let log = &patches[0]["patch"]["value"]["typed_config"]["access_log"][0];
        let format = &log["typed_config"]["log_format"]["json_format"];
        assert_eq!(
            format["reason"],
            "%FILTER_STATE(wasm.meshward_reason:PLAIN)%"
        );
        assert_eq!(
            format["would"]["decision"],
            "%FILTER_STATE(wasm.meshward_would_be:PLAIN)%"
        );
        let stats = serde_json::to_value(&resources[1]).unwrap();
        let patch = &stats["spec"]["configPatches"][0];
        assert_eq!(patch["applyTo"], "BOOTSTRAP");
        let tags = patch["patch"]["value"]["stats_config"]["stats_tags"]
            .as_array()
            .unwrap();
        assert_eq!(tags.len(), STATS_TAGS.len());
    }

    #[test]
    fn a_gateway_is_patched_in_the_gateway_context() {
        let access = serde_json::to_value(&resources(&opts(Mode::Gateway), "ab")[0]).unwrap();
        assert_eq!(
            access["spec"]["configPatches"][0]["match"]["context"],
            "GATEWAY"
        );
    }
}
