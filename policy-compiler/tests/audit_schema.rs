//! `docs/audit-schema.json` describes the audit lines the engine writes:
//! every line of the rollout fixture log (written by the engine's own
//! `audit_line`) and outbound lines (denied and dropped chains) validate
//! against it with a real JSON Schema validator, and the validator refuses
//! lines that break it. (`tests/tests/observability.rs` validates the lines a
//! live Envoy wrote.)

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::Path;

use meshward_engine::audit::{outbound_audit_line, OutboundAuditFacts, AUDIT_SCHEMA};
use meshward_engine::model::Effect;
use meshward_engine::{Decision, Policy, Reason};
use meshward_policy::compile_source;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/audit-schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn problems(validator: &jsonschema::Validator, line: &Value) -> Vec<String> {
    validator
        .iter_errors(line)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// The audit lines of the fixture log, except the one it truncates on purpose.
fn fixture_lines() -> Vec<Value> {
    let log =
        std::fs::read_to_string(repo().join("policy-compiler/tests/fixtures/rollout/envoy.log"))
            .unwrap();
    log.lines()
        .filter_map(|l| l.split_once("meshward.audit ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

#[test]
fn the_engines_audit_lines_match_the_schema() {
    let validator = validator();
    let lines = fixture_lines();
    assert!(lines.len() >= 15, "{}", lines.len());
    for line in &lines {
        assert_eq!(line["schema"], AUDIT_SCHEMA);
        let found = problems(&validator, line);
        assert!(found.is_empty(), "{found:?}\n{line}");
    }
}

#[test]
fn outbound_lines_match_the_schema() {
    let compiled = compile_source(
        "policy \"p\" {\n  trust_domains \"shop.example\"\n}\n",
        "p.policy",
    )
    .unwrap();
    let policy = Policy::decode(&compiled.bytes).unwrap();
    let validator = validator();
    for dropped in [false, true] {
        let mut decision = Decision::deny(Reason::ChainForged);
        if dropped {
            decision.effect = Effect::Allow;
        }
        let facts = OutboundAuditFacts {
            request_id: Some("r-1"),
            method: "GET",
            path: "/orders/1",
            authority: "orders",
            time: 1_764_380_000,
            chain_dropped: dropped,
        };
        let line: Value =
            serde_json::from_str(&outbound_audit_line(&policy, &decision, &facts)).unwrap();
        assert_eq!(line["direction"], "outbound");
        let found = problems(&validator, &line);
        assert!(found.is_empty(), "{found:?}\n{line}");
    }
}

#[test]
fn the_schema_refuses_what_breaks_it() {
    let validator = validator();
    let good = fixture_lines().remove(0);
    assert!(problems(&validator, &good).is_empty());
    type Breaker = fn(&mut Value);
    let broken: [(&str, Breaker); 5] = [
        ("unknown schema version", |l| {
            l["schema"] = "meshward.audit/v2".into()
        }),
        ("decision", |l| l["decision"] = "maybe".into()),
        ("reason code", |l| l["reason"] = "No Such Reason".into()),
        ("policy hash", |l| l["policy"] = "abc".into()),
        ("missing time", |l| {
            l.as_object_mut().unwrap().remove("time");
        }),
    ];
    for (what, breaker) in broken {
        let mut line = good.clone();
        breaker(&mut line);
        assert!(!problems(&validator, &line).is_empty(), "{what} passed");
    }
}
