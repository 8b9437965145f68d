//! Corrupting a valid compiled policy.
//!
//! The input is a list of edits `(offset: u16 LE, xor: u8)` applied to the
//! fixture policy's bytes (header and body alike, hash left as it was).
//!
//! Property (issue 8): the corrupted bytes are rejected, or they decode to a
//! policy whose decisions on a fixed request set are identical to the
//! original's. A corruption that loads and changes a decision is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshward_engine::{Decision, Policy};
use meshward_fuzz::fixture::{fixed_requests, policy_bytes, Req};

struct Fixed {
    bytes: Vec<u8>,
    requests: Vec<Req>,
    decisions: Vec<Decision>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let bytes = policy_bytes();
        let policy = Policy::decode(&bytes).expect("fixture loads");
        let requests = fixed_requests();
        let decisions = requests.iter().map(|r| r.evaluate(&policy)).collect();
        Fixed {
            bytes,
            requests,
            decisions,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let mut bytes = fixed.bytes.clone();
    let mut changed = false;
    for edit in data.chunks_exact(3) {
        let offset = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % bytes.len();
        bytes[offset] ^= edit[2];
        changed |= edit[2] != 0;
    }
    let Ok(policy) = Policy::decode(&bytes) else {
        return;
    };
    let decisions: Vec<Decision> = fixed.requests.iter().map(|r| r.evaluate(&policy)).collect();
    assert!(
        decisions == fixed.decisions,
        "a corrupted policy (changed: {changed}) loaded and decides differently"
    );
});
