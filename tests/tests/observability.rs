//! Decisions where operators look, end to end against a real Envoy 1.40
//! running `envoy/demo.yaml` as shipped (its access log pointed at a file):
//!
//! - the JSON access log holds every meshward field for allow, deny and
//!   dry-run requests, and `%RESPONSE_CODE_DETAILS%` names the reason on
//!   denies;
//! - `/stats/prometheus` parses with a real Prometheus text parser and
//!   carries decision, reason, rule, intent and mode as labels;
//! - every metric and label the Grafana dashboard queries exists there;
//! - the filter's audit lines validate against `docs/audit-schema.json`;
//! - `meshward replay` reads the access-log lines Envoy wrote.
//!
//! Plus static checks of every shipped Envoy config: the same `stats_tags`
//! as the engine's table and an access log with every filter-state fact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshward_e2e::envoy::{demo_template, render, ConfigVars, Envoy};
use meshward_e2e::expect::{allowed, denied};
use meshward_e2e::policy::plugin_config;
use meshward_e2e::upstream::EchoUpstream;
use meshward_e2e::workspace::{envoy_dir, filter_wasm, repo_root, Scratch};
use meshward_e2e::{Leaf, Request, TestPki, TlsClient};
use meshward_engine::pipeline::publish::{FAMILIES, FILTER_STATE, STATS_TAGS};
use serde_json::Value;

const POLICY: &str = r#"
policy "e2e-observability" {
  trust_domains "shop.example"
}

group frontends {
  member "spiffe://shop.example/ns/shop/sa/frontend"
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

intent orders.create {
  method POST
  path "/orders"
}

allow frontend-reads-orders {
  subject group frontends
  intent orders.read
}

allow frontend-creates-orders {
  subject group frontends
  intent orders.create
}

# Being rolled out: reported as "would deny".
deny freeze-order-creation {
  subject group frontends
  intent orders.create
  mode dry-run
}
"#;

const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";
const PAYMENTS: &str = "spiffe://shop.example/ns/shop/sa/payments";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Envoy from the shipped demo config, its access log in a file.
struct Fixture {
    envoy: Envoy,
    pki: TestPki,
    access_log: PathBuf,
    _upstream: EchoUpstream,
    _scratch: Scratch,
}

impl Fixture {
    fn start(label: &str) -> Fixture {
        Fixture::start_with(label, serde_json::json!({}))
    }

    /// With `extra` members merged into the plugin configuration.
    fn start_with(label: &str, extra: Value) -> Fixture {
        let mut plugin: Value =
            serde_json::from_str(&plugin_config(POLICY, "observability.policy", &[])).unwrap();
        if let (Some(plugin), Value::Object(extra)) = (plugin.as_object_mut(), extra) {
            plugin.extend(extra);
        }
        let scratch = Scratch::new(label);
        let pki = TestPki::new();
        let cert_dir = scratch.path().join("certs");
        pki.write_envoy_files(&cert_dir).unwrap();
        let upstream = EchoUpstream::start();
        let yaml = render(
            &demo_template(),
            &ConfigVars {
                listen_port: 0,
                admin_port: 0,
                upstream_port: upstream.port(),
                cert_dir,
                wasm: filter_wasm(),
                plugin_config: plugin.to_string(),
            },
        );
        let access_log = scratch.path().join("access.log");
        let shipped = "path: /dev/stdout";
        assert_eq!(
            yaml.matches(shipped).count(),
            1,
            "envoy/demo.yaml no longer has one access log at `{shipped}`"
        );
        let yaml = yaml.replace(shipped, &format!("path: {}", access_log.display()));
        let envoy = Envoy::start(scratch.path(), &yaml).unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            envoy,
            pki,
            access_log,
            _upstream: upstream,
            _scratch: scratch,
        }
    }

    fn send(&self, who: &Leaf, request: &Request) -> meshward_e2e::Response {
        TlsClient::new(self.envoy.listener(), &self.pki.shop.cert_der(), Some(who))
            .send(request)
            .unwrap()
    }

    /// The access-log line of each request id, waiting for Envoy's flush
    /// (every second by default).
    fn access_lines(&self, ids: &[&str]) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&self.access_log).unwrap_or_default();
            let lines: BTreeMap<String, Value> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l)
                        .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
                })
                .filter_map(|v| Some((v["request_id"].as_str()?.to_owned(), v)))
                .collect();
            if ids.iter().all(|id| lines.contains_key(*id)) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "access log lacks some of {ids:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `filter_state` as a list: Envoy's access log shows the facts named and
/// `null` for the rest; the decision and its response details are the same.
#[test]
fn a_filter_state_selection_is_what_the_access_log_shows() {
    let fx = Fixture::start_with(
        "observability-selection",
        serde_json::json!({"filter_state": ["meshward_reason", "meshward_peer"]}),
    );
    let frontend = fx.pki.workload("shop", "frontend");
    let payments = fx.pki.workload("shop", "payments");
    allowed(&fx.send(
        &frontend,
        &Request::get("/orders/1").header("x-request-id", "sel-allow"),
    ));
    denied(
        &fx.send(
            &payments,
            &Request::get("/orders/1").header("x-request-id", "sel-deny"),
        ),
        403,
        "no_matching_rule",
    );
    let log = fx.access_lines(&["sel-allow", "sel-deny"]);
    let (a, d) = (&log["sel-allow"], &log["sel-deny"]);
    assert_eq!(a["reason"], "allowed_by_rule", "{a}");
    assert_eq!(a["peer"], FRONTEND, "{a}");
    assert_eq!(d["reason"], "no_matching_rule", "{d}");
    assert_eq!(d["peer"], PAYMENTS, "{d}");
    assert_eq!(
        d["response_code_details"], "meshward_denied{no_matching_rule}",
        "{d}"
    );
    for line in [a, d] {
        for unpublished in [
            "decision",
            "intent",
            "rule",
            "mode",
            "policy",
            "direction",
            "chain",
        ] {
            assert!(line[unpublished].is_null(), "`{unpublished}` in {line}");
        }
    }
}

#[test]
fn access_log_stats_dashboard_and_audit_schema_against_a_real_envoy() {
    let fx = Fixture::start("observability");
    let frontend = fx.pki.workload("shop", "frontend");
    let payments = fx.pki.workload("shop", "payments");

    // allow, deny (no rule), deny (unclassified), dry-run would-deny.
    allowed(
        &fx.send(
            &frontend,
            &Request::get("/orders/1")
                .header("x-request-id", "obs-allow")
                .header("traceparent", TRACEPARENT),
        ),
    );
    denied(
        &fx.send(
            &payments,
            &Request::get("/orders/1").header("x-request-id", "obs-deny"),
        ),
        403,
        "no_matching_rule",
    );
    denied(
        &fx.send(
            &frontend,
            &Request::get("/elsewhere").header("x-request-id", "obs-unclassified"),
        ),
        403,
        "unclassified",
    );
    allowed(
        &fx.send(
            &frontend,
            &Request::post("/orders", b"{}")
                .header("x-request-id", "obs-dry-run")
                .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ),
    );

    let ids = ["obs-allow", "obs-deny", "obs-unclassified", "obs-dry-run"];
    let log = fx.access_lines(&ids);
    let policy_hash = log["obs-allow"]["policy"].as_str().unwrap().to_owned();
    assert_eq!(policy_hash.len(), 64, "{}", log["obs-allow"]);

    // Allow: every decision fact, the peer and the trace context.
    let a = &log["obs-allow"];
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["reason"], "allowed_by_rule", "{a}");
    assert_eq!(a["intent"], "orders.read", "{a}");
    assert_eq!(a["rule"], "frontend-reads-orders", "{a}");
    assert_eq!(a["mode"], "enforce", "{a}");
    assert_eq!(a["peer"], FRONTEND, "{a}");
    assert_eq!(a["direction"], "inbound", "{a}");
    assert_eq!(a["traceparent"], TRACEPARENT, "{a}");
    assert_eq!(a["status"], 200, "{a}");
    assert_eq!(a["would"]["decision"], Value::Null, "{a}");

    // Deny: the same facts, and the response code details.
    let d = &log["obs-deny"];
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["reason"], "no_matching_rule", "{d}");
    assert_eq!(d["intent"], "orders.read", "{d}");
    assert_eq!(d["rule"], Value::Null, "no rule decided: {d}");
    assert_eq!(d["peer"], PAYMENTS, "{d}");
    assert_eq!(d["policy"], policy_hash.as_str(), "{d}");
    assert_eq!(d["status"], 403, "{d}");
    assert_eq!(
        d["response_code_details"], "meshward_denied{no_matching_rule}",
        "{d}"
    );
    let u = &log["obs-unclassified"];
    assert_eq!(
        u["response_code_details"], "meshward_denied{unclassified}",
        "{u}"
    );
    assert_eq!(u["intent"], Value::Null, "{u}");

    // Dry-run: allowed, and what the dry-run rule would have done.
    let w = &log["obs-dry-run"];
    assert_eq!(w["decision"], "allow", "{w}");
    assert_eq!(w["rule"], "frontend-creates-orders", "{w}");
    assert_eq!(w["would"]["decision"], "deny", "{w}");
    assert_eq!(w["would"]["reason"], "denied_by_rule", "{w}");
    assert_eq!(w["would"]["rule"], "freeze-order-creation", "{w}");
    assert_eq!(w["x_b3_traceid"], "80f198ee56343ba864fe8b2a57d3eff7", "{w}");

    // Every fact the filter can publish has a field in the shipped format.
    for line in log.values() {
        for field in [
            "decision",
            "reason",
            "intent",
            "rule",
            "mode",
            "would",
            "peer",
            "chain_origin",
            "chain_user",
            "chain_purpose",
            "chain",
            "policy",
            "direction",
            "response_code_details",
            "request_id",
            "traceparent",
        ] {
            assert!(line.get(field).is_some(), "no `{field}` in {line}");
        }
    }

    // Prometheus: parses, with labels.
    let scrape = scrape(&fx.envoy);
    // Kept with the scratch directory (MESHWARD_KEEP_SCRATCH=1) for docs.
    let text = fx.envoy.admin_get("/stats/prometheus");
    fs::write(fx.access_log.with_file_name("prometheus.txt"), text).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value(
            "meshward_decisions",
            &[("decision", "deny"), ("reason", "no_matching_rule")]
        ),
        1.0
    );
    assert_eq!(value("meshward_decisions", &[("decision", "allow")]), 2.0);
    assert_eq!(
        value(
            "meshward_rules",
            &[
                ("rule", "frontend_reads_orders"),
                ("mode", "enforce"),
                ("decision", "allow")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "meshward_rules",
            &[
                ("rule", "freeze_order_creation"),
                ("mode", "dry_run"),
                ("decision", "deny")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "meshward_intents",
            &[("intent", "orders_read"), ("decision", "deny")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "meshward_would_be",
            &[("decision", "deny"), ("reason", "denied_by_rule")]
        ),
        1.0
    );
    // No meshward sample kept a `=` pair in its name (a tag regex missed).
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("meshward_"))
    {
        assert!(
            FAMILIES.iter().any(|(f, _, _)| sample.metric == *f),
            "unexpected meshward metric {}",
            sample.metric
        );
    }

    // The dashboard queries only what is there.
    let dashboard = dashboard_queries();
    assert!(!dashboard.is_empty());
    for query in &dashboard {
        check_query(&scrape, query);
    }

    // Audit lines: real ones, valid against the published schema.
    let schema: Value = serde_json::from_str(
        &fs::read_to_string(repo_root().join("docs/audit-schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for id in ids {
        let line = fx.envoy.audit_for(id);
        let errors: Vec<String> = validator
            .iter_errors(&line.json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{id}: {errors:?}\n{}", line.json);
        assert_eq!(line.json["schema"], "meshward.audit/v1");
    }
    assert_eq!(
        fx.envoy.audit_for("obs-allow").json["traceparent"],
        TRACEPARENT
    );

    // `meshward replay` reads the access-log file Envoy wrote: against the
    // same policy every decision replays unchanged.
    let report = replay(&fx.access_log);
    assert_eq!(
        (report.replayed, report.malformed, report.changed),
        (4, 0, 0),
        "{:?}",
        report.malformed_lines
    );
    assert_eq!(report.policy_hash, policy_hash);
}

/// `/stats/prometheus`, through `prometheus-parse`. That parser does not
/// accept the empty label set `{}` Envoy writes for unlabelled series (valid
/// exposition format) and skips such lines without a word, so `{}` is
/// dropped first, and every counter and gauge line must come out as a
/// sample: nothing is skipped.
fn scrape(envoy: &Envoy) -> prometheus_parse::Scrape {
    let text = envoy.admin_get("/stats/prometheus").replace("{} ", " ");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/stats/prometheus does not parse: {e}\n{text}"));
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name, kind);
        }
    }
    let simple_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap();
            matches!(types.get(name), Some(&"counter") | Some(&"gauge"))
        })
        .count();
    let simple_samples = scrape
        .samples
        .iter()
        .filter(|s| {
            matches!(
                s.value,
                prometheus_parse::Value::Counter(_) | prometheus_parse::Value::Gauge(_)
            )
        })
        .count();
    assert!(simple_lines > 0);
    assert_eq!(
        simple_samples, simple_lines,
        "some counter or gauge lines were not parsed"
    );
    scrape
}

/// Replays the access log against the test's policy.
fn replay(log: &Path) -> meshward_policy::replay::ReplayReport {
    let compiled = meshward_policy::compile_source(POLICY, "observability.policy").unwrap();
    let policy = meshward_engine::Policy::decode(&compiled.bytes).unwrap();
    let file = fs::File::open(log).unwrap();
    meshward_policy::replay::replay(
        &policy,
        std::io::BufReader::new(file),
        &Default::default(),
        &mut |_, _| {},
    )
    .unwrap()
}

/// Every PromQL expression of the shipped dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = repo_root().join("dashboards/meshward.json");
    let dashboard: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// Each `meshward_*` metric a query names exists in the scrape, and so does
/// each label it groups by or matches on, with the matched value.
fn check_query(scrape: &prometheus_parse::Scrape, query: &str) {
    let metrics = promql_metrics(query);
    assert!(!metrics.is_empty(), "no meshward metric in `{query}`");
    for (metric, matchers) in &metrics {
        let samples: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == *metric)
            .collect();
        assert!(
            !samples.is_empty(),
            "dashboard query `{query}` uses `{metric}`, which Envoy does not emit"
        );
        for (label, value) in matchers {
            assert!(
                samples
                    .iter()
                    .any(|s| s.labels.get(label) == Some(value.as_str())),
                "`{query}`: no `{metric}` sample with {label}=\"{value}\""
            );
        }
        for label in grouping_labels(query) {
            assert!(
                samples.iter().any(|s| s.labels.get(&label).is_some()),
                "`{query}` groups `{metric}` by `{label}`, a label it does not have"
            );
        }
    }
}

/// The `meshward_*` metric names of a PromQL expression and their
/// `label="value"` matchers.
fn promql_metrics(query: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while let Some(at) = query[i..].find("meshward_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = query[start..end].to_owned();
        let mut matchers = Vec::new();
        if query[end..].starts_with('{') {
            let close = end + query[end..].find('}').unwrap();
            for part in query[end + 1..close].split(',') {
                let (label, value) = part.split_once('=').unwrap();
                matchers.push((
                    label.trim().to_owned(),
                    value.trim().trim_matches('"').to_owned(),
                ));
            }
            i = close;
        } else {
            i = end;
        }
        out.push((name, matchers));
    }
    out
}

/// The labels of every `by (…)` clause.
fn grouping_labels(query: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("by (") {
        let after = &rest[at + 4..];
        let close = after.find(')').unwrap();
        out.extend(after[..close].split(',').map(|l| l.trim().to_owned()));
        rest = &after[close..];
    }
    out
}

/// Every shipped Envoy config that runs the filter carries the engine's
/// `stats_tags`, and an access log with every filter-state fact.
#[test]
fn shipped_configs_carry_the_stats_tags_and_the_access_log() {
    let configs = [
        "demo.yaml",
        "chain/gateway.yaml",
        "ecds/envoy.yaml",
        "edge/envoy.yaml",
        "sidecar/envoy.yaml",
        "tokens/backend.yaml",
    ];
    for name in configs {
        let text = fs::read_to_string(envoy_dir().join(name)).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&without_placeholders(&text))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tags: Vec<(String, String)> = yaml["stats_config"]["stats_tags"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no stats_config.stats_tags"))
            .iter()
            .map(|t| {
                (
                    t["tag_name"].as_str().unwrap().to_owned(),
                    t["regex"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = STATS_TAGS
            .iter()
            .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
            .collect();
        assert_eq!(tags, expected, "{name}");
        // The very access log `meshward istio --telemetry` patches into an
        // Istio proxy, and the stats config its bootstrap patch merges.
        let json: Value = serde_json::to_value(&yaml).unwrap();
        let mut entries = Vec::new();
        access_log_entries(&json, &mut entries);
        assert!(!entries.is_empty(), "{name}: no access_log");
        for entry in entries {
            assert_eq!(
                entry,
                &meshward_policy::istio_telemetry::access_log_entry(),
                "{name}"
            );
        }
        assert_eq!(
            json["stats_config"]["stats_tags"],
            meshward_policy::istio_telemetry::stats_config()["stats_tags"],
            "{name}"
        );
        let access_logs = text.matches("envoy.access_loggers.file").count();
        let filters = text.matches("- name: meshward\n").count();
        assert_eq!(
            access_logs, filters,
            "{name}: one access log per meshward HCM"
        );
        for (fact, _) in FILTER_STATE {
            assert!(
                text.contains(&format!("%FILTER_STATE(wasm.{fact}:PLAIN)%")),
                "{name}: the access log lacks {fact}"
            );
        }
        assert!(text.contains("%RESPONSE_CODE_DETAILS%"), "{name}");
    }
}

/// The template with each `${NAME}` placeholder replaced by `NAME`, so it
/// parses as YAML.
fn without_placeholders(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let close = at + rest[at..].find('}').unwrap();
        out.push_str(&rest[at + 2..close]);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every `access_log` entry anywhere in a config.
fn access_log_entries<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("access_log", Value::Array(items)) => out.extend(items),
                    _ => access_log_entries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| access_log_entries(v, out)),
        _ => {}
    }
}
