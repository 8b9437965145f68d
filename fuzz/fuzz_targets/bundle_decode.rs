//! The bundle decoder on arbitrary bytes (what a bundle server, or anyone
//! between it and the proxy, can hand the filter).
//!
//! Properties: never panics; a decoded bundle's configuration length matches
//! the bytes it came from and its revision is at least 1; the only bytes that
//! verify against the fuzz key are exactly what the encoder writes for that
//! key (the seeds are signed with it, so mutations reach the signature
//! check), and the configuration of such a bundle loads or is refused
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::bundle::{self, Bundle, HEADER_LEN, TRAILER_LEN};
use meshward_engine::config::FilterConfig;
use meshward_engine::signature::{PublicKey, TrustedKeys};

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let trusted = TrustedKeys::new(vec![PublicKey::of_signing_key(&key)]).expect("one key");
    let Ok(bundle) = Bundle::decode(data, 1 << 20) else {
        return;
    };
    assert_eq!(HEADER_LEN + bundle.config.len() + TRAILER_LEN, data.len());
    assert!(bundle.revision >= 1);
    if bundle.verify(data, &trusted).is_ok() {
        // Ed25519 signing is deterministic: a bundle the key really signed
        // is byte for byte what the encoder writes.
        let canonical = bundle::encode(
            bundle.revision,
            bundle.issued_at,
            &bundle.policy_hash,
            &bundle.config,
            &key,
        );
        assert_eq!(canonical.as_deref(), Some(data), "forged bundle verified");
        let _ = FilterConfig::from_json(&bundle.config);
    }
});
