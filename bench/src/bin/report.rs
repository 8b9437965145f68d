//! Writes `bench/results/engine.md`: per-decision median / p99 / mean for
//! meshward, Cedar and regorus at 10 / 100 / 1,000 / 10,000 rules (our own
//! timed loop, see `meshward_bench::stats`), the ratios against the targets of
//! issue 6, and the native footprint numbers (compile time, bytes per rule,
//! `FilterConfig::from_json` time, release `.wasm` size).
//!
//! `cargo run -p meshward-bench --release --bin report [-- --sizes 10,1000] [--quick] [--meshward-only]`
//!
//! `--meshward-only` times meshward alone, prints it and writes nothing.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshward_bench::compare::Alternatives;
use meshward_bench::stats::{fmt_ns, shuffled, time_decisions, timer_overhead_ns, Summary};
use meshward_bench::workload::{Workload, SIZES};
use meshward_engine::config::{plugin_config_json, FilterConfig};
use meshward_engine::evaluate;
use meshward_engine::model::Effect;

/// Requests the regorus interpreter is checked and timed on above
/// `INTERPRETER_MAX_RULES` (seconds per decision there).
const INTERPRETER_SAMPLE: usize = 4;

struct Row {
    rules: usize,
    agree: (usize, usize, usize),
    meshward: Summary,
    alts: Vec<(&'static str, Option<Summary>)>,
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    // Not `available_parallelism`: that is this process's affinity (taskset).
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} vCPU; {rustc}; release profile of the workspace (LTO, codegen-units=1, opt-level \"s\")")
}

fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Duration::from_secs_f64(times[times.len() / 2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let meshward_only = args.iter().any(|a| a == "--meshward-only");
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    let scale = if quick { 10 } else { 1 };

    let overhead = timer_overhead_ns();
    eprintln!("timer overhead (Instant pair, median): {overhead:.1} ns");
    let mut rows = Vec::new();
    let mut footprint = String::new();
    for &rules in &sizes {
        let w = Workload::new(rules);
        let order = shuffled(w.requests.len(), 7);
        let reqs = w.engine_requests();
        let meshward = time_decisions(
            &order,
            4_000_000 / scale,
            Duration::from_secs(4 / scale as u64 + 1),
            overhead,
            |i| evaluate(&w.policy, &reqs[i]).effect == Effect::Allow,
        );
        eprintln!(
            "{rules:>6} rules  meshward  median {} p99 {}",
            fmt_ns(meshward.median_ns),
            fmt_ns(meshward.p99_ns)
        );
        if meshward_only {
            eprintln!(
                "{rules:>6} rules  meshward  mean {}  ({} samples)",
                fmt_ns(meshward.mean_ns),
                meshward.samples
            );
            continue;
        }
        let t = Instant::now();
        let mut alts = Alternatives::new(&w);
        eprintln!("{rules:>6} rules  alternatives loaded in {:?}", t.elapsed());
        let t = Instant::now();
        let agree = alts.check(&w);
        eprintln!(
            "{rules:>6} rules  all engines agree on {} requests ({} allowed) [{:?}]",
            agree.2,
            agree.0,
            t.elapsed()
        );
        let budget = Duration::from_secs(if rules >= 10_000 { 6 } else { 3 } / scale as u64 + 1);
        let max = 200_000 / scale;
        let mut out: Vec<(&str, Option<Summary>)> = Vec::new();
        for (name, cedar) in [
            ("Cedar (full request)", &alts.cedar_full),
            ("Cedar (pre-classified action)", &alts.cedar_pre),
        ] {
            out.push((
                name,
                Some(time_decisions(&order, max, budget, overhead, |i| {
                    cedar.allows(i)
                })),
            ));
        }
        for (name, rego) in [
            ("regorus RVM (full request)", &mut alts.rego_full),
            ("regorus RVM (pre-classified intent)", &mut alts.rego_pre),
        ] {
            if !rego.has_vm() {
                out.push((name, None));
                continue;
            }
            let inputs = rego.enforced.clone();
            out.push((
                name,
                Some(time_decisions(&order, max, budget, overhead, |i| {
                    rego.execute(&inputs[i])
                })),
            ));
        }
        if !alts.interpreter {
            // Too slow for the whole mix: check and time a small sample.
            let rego = &mut alts.rego_full;
            let sample: Vec<usize> = order.iter().copied().take(INTERPRETER_SAMPLE).collect();
            for &i in &sample {
                let want = w.decide(i).effect == Effect::Allow;
                let input = rego.enforced[i].clone();
                assert_eq!(
                    rego.interpret(&input),
                    want,
                    "DECISIONS DIFFER: regorus interpreter at {rules} rules, request #{i}"
                );
            }
            let inputs = rego.enforced.clone();
            out.push((
                "regorus interpreter (full request, sample)",
                Some(time_decisions(
                    &sample,
                    sample.len(),
                    Duration::ZERO,
                    overhead,
                    |i| rego.interpret(&inputs[i]),
                )),
            ));
        } else {
            let rego = &mut alts.rego_full;
            let inputs = rego.enforced.clone();
            out.push((
                "regorus interpreter (full request)",
                Some(time_decisions(&order, max, budget, overhead, |i| {
                    rego.interpret(&inputs[i])
                })),
            ));
        }
        for (name, s) in &out {
            match s {
                Some(s) => eprintln!(
                    "{rules:>6} rules  {name:<36} median {} p99 {}",
                    fmt_ns(s.median_ns),
                    fmt_ns(s.p99_ns)
                ),
                None => eprintln!("{rules:>6} rules  {name:<36} not run"),
            }
        }
        rows.push(Row {
            rules,
            agree,
            meshward,
            alts: out,
        });

        // Footprint at this size.
        let json = plugin_config_json(&w.bytes, &[]).to_string();
        let runs = if rules >= 10_000 { 7 } else { 21 };
        let compile = median_time(runs, || {
            black_box(meshward_policy::compile_source(&w.source, "bench.policy").is_ok());
        });
        let load = median_time(runs, || {
            black_box(FilterConfig::from_json(json.as_bytes()).is_ok());
        });
        let _ = writeln!(
            footprint,
            "| {rules} | {} | {:.1} | {} | {} | {:.1} ms | {:.1} ms |",
            w.bytes.len(),
            w.bytes.len() as f64 / rules as f64,
            json.len(),
            w.policy.route_nodes(),
            compile.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
        );
    }

    if meshward_only {
        return;
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Engine benchmarks (native)\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run -p meshward-bench --release --bin report`.\n"
    );
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(
        md,
        "Method: one sample = one decision timed with an `Instant::now()` pair; the pair's own cost ({overhead:.0} ns, median of 100k back-to-back pairs) is subtracted. Requests visited in a fixed shuffled order over the whole {}-request seeded mix, many passes; median and p99 by nearest rank. The same requests (prepared outside the timed loop) for every engine, and every engine gave the same decision on every request (checked before timing).\n",
        rows.first().map_or(0, |r| r.agree.2)
    );
    let _ = writeln!(md, "## meshward `evaluate`\n");
    let _ = writeln!(
        md,
        "| rules | samples | median | p99 | mean | median vs 10 rules | allowed in mix |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.first().map_or(1.0, |r| r.meshward.median_ns);
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2}× | {}/{} |",
            r.rules,
            r.meshward.samples,
            fmt_ns(r.meshward.median_ns),
            fmt_ns(r.meshward.p99_ns),
            fmt_ns(r.meshward.mean_ns),
            r.meshward.median_ns / base,
            r.agree.0,
            r.agree.2
        );
    }
    let _ = writeln!(md, "\n## Alternatives on the same requests\n");
    let _ = writeln!(
        md,
        "Ratio = the alternative's median / meshward's median at the same size (p99 ratio likewise).\n"
    );
    let _ = writeln!(
        md,
        "| rules | engine | samples | median | p99 | median ratio | p99 ratio |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        for (name, s) in &r.alts {
            let Some(s) = s else {
                let why = if name.contains("RVM") {
                    "cannot compile: the RVM caps a program at 65,535 instructions"
                } else {
                    "not run: super-linear (see `INTERPRETER_MAX_RULES`)"
                };
                let _ = writeln!(md, "| {} | {name} | — | {why} | | | |", r.rules);
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | {name} | {} | {} | {} | {:.0}× | {:.0}× |",
                r.rules,
                s.samples,
                fmt_ns(s.median_ns),
                fmt_ns(s.p99_ns),
                s.median_ns / r.meshward.median_ns,
                s.p99_ns / r.meshward.p99_ns
            );
        }
    }
    let _ = writeln!(md, "\n## Footprint (native)\n");
    let _ = writeln!(md, "| rules | compiled bytes | bytes/rule | plugin config JSON bytes | route trie nodes | compile (`compile_source`, median) | load (`FilterConfig::from_json`, median) |");
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    md.push_str(&footprint);
    let wasm = std::env::var_os("MESHWARD_WASM").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip1/release/meshward_filter.wasm")
        },
        PathBuf::from,
    );
    match std::fs::metadata(&wasm) {
        Ok(m) => {
            let _ = writeln!(
                md,
                "\nRelease `meshward_filter.wasm`: {} bytes ({:.1} KiB).",
                m.len(),
                m.len() as f64 / 1024.0
            );
        }
        Err(_) => {
            let _ = writeln!(md, "\nRelease `meshward_filter.wasm`: not built.");
        }
    }
    let dir = results_dir();
    std::fs::create_dir_all(&dir).expect("results dir");
    let path = dir.join("engine.md");
    std::fs::write(&path, &md).expect("write results");
    print!("{md}");
    eprintln!("wrote {}", path.display());
}
