//! Golden files: for each `tests/golden/*.policy`, the rendered diagnostics
//! (`*.stderr`, when there are any) and, when it compiles, a readable dump of
//! the compiled policy with its hash and test results (`*.compiled.txt`).
//!
//! Refresh after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p meshward-policy --test golden`, then review
//! the diff.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};

use meshward_policy::{compile_source, dump, run_tests, Code};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixtures() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    paths
}

/// What the compiler produces for one fixture: (stderr, compiled dump).
fn outputs(path: &Path) -> (Option<String>, Option<String>) {
    let source = fs::read_to_string(path).expect("fixture");
    let name = path.file_name().expect("file name").to_string_lossy();
    match compile_source(&source, &name) {
        Err(diagnostics) => (Some(diagnostics.to_string()), None),
        Ok(compiled) => {
            let warnings = (!compiled.warnings.is_empty()).then(|| compiled.warnings.to_string());
            let report = run_tests(&compiled).expect("compiled policy loads");
            let dump = format!("{}\n# tests\n{report}", dump::render(&compiled));
            (warnings, Some(dump))
        }
    }
}

/// Compares (or with `UPDATE_GOLDEN=1` writes) one expected file; `None`
/// means the file must not exist.
fn compare(path: &Path, actual: Option<&str>, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        match actual {
            Some(text) => fs::write(path, text).expect("write golden"),
            None if path.exists() => fs::remove_file(path).expect("remove stale golden"),
            None => {}
        }
        return;
    }
    let expected = fs::read_to_string(path).ok();
    if expected.as_deref() != actual {
        failures.push(format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            expected.as_deref().unwrap_or("<no file>"),
            actual.unwrap_or("<no file>")
        ));
    }
}

#[test]
fn golden_outputs_match() {
    let mut failures = Vec::new();
    for path in fixtures() {
        let (stderr, compiled) = outputs(&path);
        compare(
            &path.with_extension("stderr"),
            stderr.as_deref(),
            &mut failures,
        );
        compare(
            &path.with_extension("compiled.txt"),
            compiled.as_deref(),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 to refresh):\n\n{}",
        failures.join("\n\n")
    );
}

/// Each diagnostic code has a fixture named after it (`e004_*.policy`) that
/// reports that code.
#[test]
fn every_code_has_a_fixture_that_reports_it() {
    let fixtures = fixtures();
    for code in Code::ALL {
        let prefix = format!("{}_", code.as_str().to_ascii_lowercase());
        let fixture = fixtures
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .unwrap_or_else(|| panic!("no golden fixture `{prefix}*.policy` for {code}"));
        let (stderr, _) = outputs(fixture);
        let stderr = stderr.unwrap_or_default();
        let needle = format!("[{}]", code.as_str());
        assert!(
            stderr.contains(&needle),
            "{} does not report {code}:\n{stderr}",
            fixture.display()
        );
    }
}
