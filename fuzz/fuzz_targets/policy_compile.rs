//! The policy compiler on arbitrary UTF-8.
//!
//! Properties: never panics; compiling is deterministic; whatever it accepts,
//! the filter loads (a compiled policy the filter refused would take a
//! listener down at deploy time), with the same hash, inside a plugin
//! configuration the filter accepts; the policy's own tests run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::codec;
use meshward_engine::config::FilterConfig;

fuzz_target!(|source: &str| {
    // Big inputs only slow the fuzzer down; the parser is linear.
    if source.len() > 16 * 1024 {
        return;
    }
    let Ok(compiled) = meshward_policy::compile_source(source, "fuzz.policy") else {
        return;
    };
    let again = meshward_policy::compile_source(source, "fuzz.policy")
        .unwrap_or_else(|e| panic!("second compile of the same source failed:\n{e}"));
    assert_eq!(
        again.bytes, compiled.bytes,
        "compiling is not deterministic"
    );

    let policy = compiled
        .load()
        .unwrap_or_else(|e| panic!("the compiler wrote a policy the filter refuses: {e}"));
    assert_eq!(policy.hash(), &compiled.hash);
    assert_eq!(codec::encode(&compiled.policy).0, compiled.bytes);

    let json = compiled.plugin_config_json(&["0a1b".to_owned()]);
    if let Err(e) = FilterConfig::from_json(json.as_bytes()) {
        panic!("the compiler's plugin configuration is refused: {e}");
    }
    let _ = meshward_policy::run_tests(&compiled);
});
