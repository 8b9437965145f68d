//! Instruction-count harness for `evaluate` (valgrind's callgrind counts
//! instructions, which stay repeatable on a busy machine):
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
//!   cargo build -p meshward-bench --release --bin callgrind
//! valgrind --tool=callgrind --toggle-collect='*decide_passes*' \
//!   target/release/callgrind 10 20
//! ```
//!
//! Arguments: rules, passes over the 256-request mix (default 20). Only
//! `decide_passes` is collected, so total instructions / (passes × 256) is
//! the cost per decision. `--dump` instead prints every decision of a
//! 4,096-request mix (to compare before and after a change); `--time` times
//! decisions as `report` does (400k samples), for quick checks.

use std::hint::black_box;

use meshward_bench::workload::Workload;
use meshward_engine::{evaluate, Policy, Request};

#[inline(never)]
fn decide_passes(policy: &Policy, reqs: &[Request<'_>], passes: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..passes {
        for r in reqs {
            let d = evaluate(black_box(policy), black_box(r));
            allowed += usize::from(d.effect == meshward_engine::model::Effect::Allow);
        }
    }
    allowed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rules: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    if args.iter().any(|a| a == "--dump") {
        let w = Workload::with_mix(rules, 4096);
        for (i, r) in w.engine_requests().iter().enumerate() {
            println!("{i} {:?}", evaluate(&w.policy, r));
        }
        return;
    }
    if args.iter().any(|a| a == "--time") {
        use meshward_bench::stats::{fmt_ns, shuffled, time_decisions, timer_overhead_ns};
        let w = Workload::new(rules);
        let reqs = w.engine_requests();
        let overhead = timer_overhead_ns();
        let order = shuffled(reqs.len(), 7);
        let s = time_decisions(
            &order,
            400_000,
            std::time::Duration::from_secs(1),
            overhead,
            |i| evaluate(&w.policy, &reqs[i]).effect == meshward_engine::model::Effect::Allow,
        );
        println!(
            "{rules} rules: median {} p99 {} mean {}",
            fmt_ns(s.median_ns),
            fmt_ns(s.p99_ns),
            fmt_ns(s.mean_ns)
        );
        return;
    }
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let w = Workload::new(rules);
    let reqs = w.engine_requests();
    // Warm once outside the collected function.
    for r in &reqs {
        black_box(evaluate(black_box(&w.policy), black_box(r)));
    }
    let allowed = decide_passes(&w.policy, &reqs, passes);
    println!(
        "{rules} rules: {} decisions, {allowed} allowed",
        passes * reqs.len()
    );
}
