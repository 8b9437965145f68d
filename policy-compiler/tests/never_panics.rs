//! Property tests: the compiler never panics, whatever it is fed, and always
//! answers with either a compiled policy or renderable diagnostics.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use meshward_policy::{compile_source, run_tests, syntax};
use proptest::prelude::*;

const SHOP: &str = include_str!("../examples/shop.policy");

/// Pieces of the language, so random input gets past the lexer often.
const TOKENS: &[&str] = &[
    "policy",
    "group",
    "intent",
    "allow",
    "deny",
    "test",
    "member",
    "subject",
    "domain",
    "any_authenticated",
    "method",
    "path",
    "host",
    "grpc",
    "when",
    "header",
    "mode",
    "dry-run",
    "enforce",
    "trust_domains",
    "max_cert_lifetime",
    "peer",
    "none",
    "request",
    "expect",
    "by",
    "reason",
    "would",
    "unclassified",
    "present",
    "absent",
    "in",
    "starts_with",
    "GET",
    "POST",
    "24h",
    "0d",
    "{",
    "}",
    "[",
    "]",
    ",",
    "==",
    "!=",
    "\n",
    "\n",
    "\"",
    "\"/a/{id}\"",
    "\"/**\"",
    "\"spiffe://prod.example/ns/*\"",
    "\"spiffe://prod.example/**\"",
    "\"prod.example\"",
    "\"x-env\"",
    "#",
    "\\",
    "@",
    "é",
    "a.b",
    "r1",
    "chain",
    "forwarder",
    "max_depth",
    "lifetime",
    "principal",
    "jwt_svid",
    "via",
    "peer_bound_jwt_svid",
    "user",
    "origin",
    "any_hop",
    "no_hop",
    "depth",
    "complete",
    "purpose",
    "issuer",
    "scope",
    "claim",
    "contains",
    "invalid",
    "incomplete",
    "chain_user",
    "chain_scope",
    "jwt_expired",
    "<=",
    ">=",
    "<",
    "0",
    "3",
    "17",
    "2..4",
    "4..2",
    "60s",
    "\"spiffe://prod.example/ns/a\"",
    "\"spiffe://prod.example/ns/b\"",
    "\"alice\"",
    "identity",
    "user_tokens",
    "trust_bundle",
    "revocation",
    "external",
    "chain_hand_off",
    "audiences",
    "algorithms",
    "keys",
    "inline",
    "fetch",
    "cluster",
    "path",
    "refresh",
    "max_staleness",
    "claims",
    "\"a[b.c].d\"",
    "\"a..b\"",
    "\"/jwks\"",
    "\"{\\\"keys\\\": []}\"",
];

/// Compiles, formats and renders everything; any panic fails the property.
/// Whatever formats, formats idempotently and compiles as before.
fn exercise(source: &str) {
    let _ = syntax::parse(source);
    let compiled = compile_source(source, "fuzz.policy");
    if let Ok(formatted) = meshward_policy::fmt::format_source(source, "fuzz.policy") {
        let again = meshward_policy::fmt::format_source(&formatted, "fuzz.policy")
            .expect("formatted source parses");
        assert_eq!(again, formatted, "fmt is not idempotent on {source:?}");
        match (&compiled, compile_source(&formatted, "fuzz.policy")) {
            (Ok(original), Ok(reformatted)) => {
                assert_eq!(original.hash_hex(), reformatted.hash_hex(), "{source:?}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("formatting changed whether {source:?} compiles"),
        }
    }
    match compiled {
        Ok(compiled) => {
            let _ = compiled.warnings.to_string();
            let _ = compiled.plugin_config_json(&[]);
            let report = run_tests(&compiled).expect("compiled bytes always load");
            let _ = report.to_string();
        }
        Err(diagnostics) => {
            assert!(diagnostics.has_errors());
            let _ = diagnostics.to_string();
            let _ = diagnostics.to_json();
        }
    }
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|tokens| tokens.join(" "))
}

/// One edit to a char vector: delete, insert, duplicate or replace a range.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, t)| Edit::Insert(at, t.to_owned())),
        (any::<usize>(), 1..200usize).prop_map(|(at, len)| Edit::Duplicate(at, len)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::Replace(at, c)),
    ]
}

fn apply(source: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match edit {
            Edit::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                chars.drain(start.min(end)..end);
            }
            Edit::Insert(at, text) => {
                let at = (at % len).min(chars.len());
                chars.splice(at..at, text.chars());
            }
            Edit::Duplicate(at, n) => {
                let start = (at % len).min(chars.len());
                let end = (start + n).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
            Edit::Replace(at, c) => {
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        exercise(&source);
    }

    #[test]
    fn token_soup_never_panics(source in token_soup()) {
        exercise(&source);
    }

    #[test]
    fn mutated_valid_policies_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
        exercise(&apply(SHOP, &edits));
    }
}

#[test]
fn the_unmutated_example_compiles() {
    let compiled = compile_source(SHOP, "shop.policy").expect("example compiles");
    let report = run_tests(&compiled).expect("loads");
    assert_eq!(report.failed(), 0, "{report}");
}
