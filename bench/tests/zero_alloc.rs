//! `evaluate` makes no heap allocation per decision: a counting global
//! allocator (this test binary's) around every call, on the whole request
//! mix of generated policies, with the policy loaded and the requests
//! prepared beforehand. An allocation count, not a timing: no timing
//! assertion belongs in a test.

use std::hint::black_box;

use meshward_bench::alloc::{count, Counting};
use meshward_bench::workload::Workload;
use meshward_engine::evaluate;

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn evaluate_allocates_nothing_per_decision() {
    for rules in [10, 100, 1_000] {
        let w = Workload::new(rules);
        let reqs = w.engine_requests();
        // Warm: nothing lazily initialized may hide in the first call.
        for r in &reqs {
            black_box(evaluate(&w.policy, r));
        }
        let mut allowed = 0;
        for r in &reqs {
            let (decision, allocations, bytes) = count(|| evaluate(&w.policy, black_box(r)));
            assert_eq!(
                (allocations, bytes),
                (0, 0),
                "{rules} rules: evaluate allocated on {:?}",
                r.method
            );
            allowed += usize::from(decision.effect == meshward_engine::model::Effect::Allow);
        }
        // The mix exercises both outcomes.
        assert!(allowed > 0 && allowed < reqs.len(), "{allowed}");
    }
}
