//! The bundle decoder on arbitrary bytes (what a bundle server, or anyone
//! between it and the proxy, can hand the filter).
//!
//! Properties: never panics; arbitrary bytes never verify against a fixed
//! key; a decoded bundle's configuration length matches the bytes it came
//! from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::bundle::{Bundle, HEADER_LEN, TRAILER_LEN};
use meshward_engine::signature::{PublicKey, TrustedKeys};

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let trusted = TrustedKeys::new(vec![PublicKey::of_signing_key(&key)]).expect("one key");
    let Ok(bundle) = Bundle::decode(data, 1 << 20) else {
        return;
    };
    assert_eq!(HEADER_LEN + bundle.config.len() + TRAILER_LEN, data.len());
    assert!(bundle.revision >= 1);
    assert!(bundle.verify(data, &trusted).is_err(), "forged bundle verified");
});
