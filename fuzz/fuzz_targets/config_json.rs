//! The plugin configuration parser (`FilterConfig::from_json`) on arbitrary
//! bytes: the JSON Envoy's `configuration` or Istio's `pluginConfig` delivers.
//!
//! Properties: never panics; an accepted configuration builds its key store,
//! and its policy decides the fixture's requests deterministically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::config::FilterConfig;
use meshward_fuzz::fixture::fixed_requests;
use meshward_fuzz::NOW;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = FilterConfig::from_json(data) else {
        return;
    };
    let _ = config.key_store(NOW);
    for req in fixed_requests() {
        assert_eq!(req.evaluate(&config.policy), req.evaluate(&config.policy));
    }
});
