//! The compiled-policy decoder on arbitrary bytes.
//!
//! The first byte picks the mode: even, the rest goes to `Policy::decode`
//! as is (framing, hash); odd, the rest is a *body* that gets a correct
//! header and hash first, so the fuzzer reaches the postcard decoder and the
//! index validation behind the hash (what a compiler bug, or someone who can
//! recompute the hash, would hand the filter).
//!
//! Properties: never panics; an accepted policy evaluates the fixture's
//! requests deterministically and without panicking, and re-encoding it
//! gives a policy that loads to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::codec::{self, FORMAT_VERSION, HEADER_LEN, MAGIC};
use meshward_engine::Policy;
use meshward_fuzz::fixture::fixed_requests;
use sha2::{Digest as _, Sha256};

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        framed(rest)
    } else {
        rest.to_vec()
    };
    let Ok(policy) = Policy::decode(&bytes) else {
        return;
    };
    let requests = fixed_requests();
    let first: Vec<_> = requests.iter().map(|r| r.evaluate(&policy)).collect();
    let second: Vec<_> = requests.iter().map(|r| r.evaluate(&policy)).collect();
    assert_eq!(first, second, "evaluate is not deterministic");
    for (req, d) in requests.iter().zip(&first) {
        // Indexes in a decision always resolve.
        if let Some(i) = d.intent {
            assert!(i.index() < policy.compiled().intents.len(), "{req:?}");
        }
        if let Some(r) = d.rule {
            assert!(r.index() < policy.rule_count(), "{req:?}");
        }
    }
    let (again, hash) = codec::encode(policy.compiled());
    let reloaded = Policy::decode(&again).expect("a re-encoded policy loads");
    assert_eq!(reloaded.compiled(), policy.compiled());
    assert_eq!(&hash, reloaded.hash());
});
