//! The engine on arbitrary requests against the fixed fixture policy.
//!
//! Properties: never panics; deterministic (same request, same policy, or
//! the same policy decoded twice: same decision); a request that an enforced
//! deny rule matches (computed independently, `fixture::reference`) is never
//! allowed; and the whole decision (effect, reason, intent, rule, dry-run
//! outcome) equals the reference evaluator's.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshward_engine::Policy;
use meshward_fuzz::fixture::{self, check_against_reference, Req};

fn policies() -> &'static (Policy, Policy) {
    static POLICIES: OnceLock<(Policy, Policy)> = OnceLock::new();
    POLICIES.get_or_init(|| (fixture::policy(), fixture::policy()))
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = policies();
    let req = Req::from_bytes(data);
    let first = match check_against_reference(a, &req) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(first, req.evaluate(a), "not deterministic");
    assert_eq!(
        first,
        req.evaluate(b),
        "differs between two loads of one policy"
    );
});
