//! Criterion: one decision, meshward vs Cedar vs regorus, at 10 / 100 / 1,000
//! / 10,000 generated rules, on the same seeded request mix.
//!
//! Setup (untimed) compiles the policy, writes the Cedar and Rego
//! equivalents from the same model, and checks that every engine gives the
//! same decision on every request (panics otherwise). Each criterion
//! iteration is one decision on the next request of a fixed shuffled order,
//! so the reported time is the mean per decision over the mix.
//!
//! `MESHWARD_BENCH_SIZES=10,1000` limits the sizes; `MESHWARD_BENCH_ALTS=0`
//! skips the alternatives (and the check). Tails (p99) come from
//! `cargo run -p meshward-bench --release --bin report`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use meshward_bench::compare::Alternatives;
use meshward_bench::stats::shuffled;
use meshward_bench::workload::{Workload, SIZES};
use meshward_engine::evaluate;

fn sizes() -> Vec<usize> {
    std::env::var("MESHWARD_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec())
}

fn with_alternatives() -> bool {
    std::env::var("MESHWARD_BENCH_ALTS").map_or(true, |v| v != "0")
}

/// Times `iters` decisions cycling through `order`.
fn cycle(iters: u64, order: &[usize], mut decide: impl FnMut(usize) -> bool) -> Duration {
    let start = Instant::now();
    let mut k = 0;
    for _ in 0..iters {
        black_box(decide(black_box(order[k])));
        k += 1;
        if k == order.len() {
            k = 0;
        }
    }
    start.elapsed()
}

fn decisions(c: &mut Criterion) {
    for rules in sizes() {
        let w = Workload::new(rules);
        let order = shuffled(w.requests.len(), 7);
        let reqs = w.engine_requests();

        let mut group = c.benchmark_group("decision");
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("meshward", rules), &rules, |b, _| {
            b.iter_custom(|iters| {
                cycle(iters, &order, |i| {
                    evaluate(&w.policy, &reqs[i]).effect == meshward_engine::model::Effect::Allow
                })
            })
        });
        if !with_alternatives() {
            group.finish();
            continue;
        }

        let mut alts = Alternatives::new(&w);
        let (allowed, would, total) = alts.check(&w);
        eprintln!(
            "{rules} rules: all engines agree on {total} requests ({allowed} allowed, {would} with dry-run rules enforced)"
        );
        if rules >= 1_000 {
            group.sampling_mode(SamplingMode::Flat);
            group.sample_size(10);
            group.warm_up_time(Duration::from_millis(500));
        }
        for (name, cedar) in [
            ("cedar-full", &alts.cedar_full),
            ("cedar-preclassified", &alts.cedar_pre),
        ] {
            group.bench_with_input(BenchmarkId::new(name, rules), &rules, |b, _| {
                b.iter_custom(|iters| cycle(iters, &order, |i| cedar.allows(i)))
            });
        }
        for (name, rego) in [
            ("regorus-rvm-full", &mut alts.rego_full),
            ("regorus-rvm-preclassified", &mut alts.rego_pre),
        ] {
            if !rego.has_vm() {
                eprintln!("{name} at {rules} rules: the RVM cannot compile the policy");
                continue;
            }
            let inputs = rego.enforced.clone();
            group.bench_with_input(BenchmarkId::new(name, rules), &rules, |b, _| {
                b.iter_custom(|iters| cycle(iters, &order, |i| rego.execute(&inputs[i])))
            });
        }
        if alts.interpreter {
            let rego = &mut alts.rego_full;
            let inputs = rego.enforced.clone();
            group.bench_with_input(
                BenchmarkId::new("regorus-interpreter-full", rules),
                &rules,
                |b, _| b.iter_custom(|iters| cycle(iters, &order, |i| rego.interpret(&inputs[i]))),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
