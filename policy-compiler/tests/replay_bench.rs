//! Replay throughput on a generated log of a million lines (raw Envoy lines
//! holding the fixture's audit records, each with its own request id).
//! Not part of the normal run; measure with
//!
//! ```text
//! cargo test --release -p meshward-policy --test replay_bench -- --ignored --nocapture
//! ```

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use meshward_policy::replay::{self, ReplayOptions};

const LINES: usize = 1_000_000;

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn replay_a_million_lines() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rollout");
    let sample = fs::read_to_string(fixtures.join("envoy.log")).unwrap();
    let audit: Vec<&str> = sample
        .lines()
        .filter(|l| l.contains("meshward.audit {") && l.ends_with('}'))
        .collect();
    assert!(audit.len() > 10);
    let dir = std::env::temp_dir().join(format!("meshward-replay-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("envoy.log");
    {
        let mut out = BufWriter::new(fs::File::create(&log).unwrap());
        for n in 0..LINES {
            let line = audit[n % audit.len()];
            // A unique request id per line, same length as the original.
            let line = line.replacen(
                "\"request_id\":\"5f0c",
                &format!("\"request_id\":\"{:04x}", n % 0xffff),
                1,
            );
            writeln!(out, "{line}").unwrap();
        }
    }
    let bytes = fs::metadata(&log).unwrap().len();
    let source = fs::read_to_string(fixtures.join("shop-v2.policy")).unwrap();
    let compiled = meshward_policy::compile_source(&source, "shop-v2.policy").unwrap();
    let policy = compiled.load().unwrap();

    // The library, reading the file.
    let started = Instant::now();
    let file = std::io::BufReader::with_capacity(256 * 1024, fs::File::open(&log).unwrap());
    let report = replay::replay(&policy, file, &ReplayOptions::default(), &mut |_, _| {}).unwrap();
    let lib = started.elapsed().as_secs_f64();
    assert_eq!(report.lines, LINES as u64);
    assert_eq!(report.malformed, 0);

    // The CLI, as an operator runs it.
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(["replay", "--policy", "shop-v2.policy", "--log"])
        .arg(&log)
        .args(["--fail-on", "never", "--format", "json"])
        .current_dir(&fixtures)
        .output()
        .unwrap();
    let cli = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["lines"], LINES as u64);

    println!(
        "replay: {LINES} lines ({:.0} MB): library {:.2} s = {:.0} lines/s ({:.0} MB/s); `meshward replay` {:.2} s = {:.0} lines/s",
        bytes as f64 / 1e6,
        lib,
        LINES as f64 / lib,
        bytes as f64 / 1e6 / lib,
        cli,
        LINES as f64 / cli
    );
    let _ = fs::remove_dir_all(&dir);
}
