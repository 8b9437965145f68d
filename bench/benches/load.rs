//! Criterion: the configuration-time costs at 10,000 rules — compiling the
//! policy source, and `FilterConfig::from_json` on the plugin configuration
//! JSON (what `on_configure` runs in the filter: JSON, base64, decode, hash
//! check, index build).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use meshward_engine::config::{plugin_config_json, FilterConfig};
use meshward_policy::generate::generate_policy;

const RULES: usize = 10_000;

fn load(c: &mut Criterion) {
    let source = generate_policy(RULES);
    let compiled = meshward_policy::compile_source(&source, "bench.policy").expect("compiles");
    let json = plugin_config_json(&compiled.bytes, &[]).to_string();

    let mut group = c.benchmark_group("config-10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("compile_source", |b| {
        b.iter(|| meshward_policy::compile_source(black_box(&source), "bench.policy").is_ok())
    });
    group.bench_function("from_json", |b| {
        b.iter(|| FilterConfig::from_json(black_box(json.as_bytes())).is_ok())
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
