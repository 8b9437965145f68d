//! Running a policy's own `test` blocks.
//!
//! Each test goes through the real bytes path — compiled policy → bytes →
//! `Policy::decode` → `evaluate` — so a passing test means Envoy decides the
//! same way. Only the parts a test states (`by`, `reason`, `intent`,
//! `would`) are compared besides the effect.

use std::fmt;

use serde_json::json;

use crate::checked::{Expectation, TestCase};
use crate::outcome::{OfflineFilter, Outcome};
use crate::sample::SampleRequest;
use crate::source_map::Location;
use crate::Compiled;

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Where the test is written.
    pub location: Option<Location>,
    /// What the engine decided.
    pub outcome: Outcome,
    /// One line per expectation that did not hold; empty = passed.
    pub mismatches: Vec<String>,
}

impl TestResult {
    /// True when every stated expectation held.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The results of all tests of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The file the tests came from.
    pub file: String,
    /// One per test, in source order.
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// How many passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// The JSON form used by `meshward test --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "file": self.file,
            "passed_count": self.passed(),
            "failed_count": self.failed(),
            "tests": self.results.iter().map(|r| json!({
                "name": r.name,
                "location": r.location.as_ref().map(ToString::to_string),
                "passed": r.passed(),
                "mismatches": r.mismatches,
                "outcome": r.outcome.to_json(),
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for TestReport {
    /// The text form; the last line is `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for result in &self.results {
            if result.passed() {
                writeln!(f, "test {} ... ok", result.name)?;
                continue;
            }
            writeln!(f, "test {} ... FAILED", result.name)?;
            if let Some(location) = &result.location {
                writeln!(f, "  --> {location}")?;
            }
            writeln!(f, "  got: {}", result.outcome.summary())?;
            for mismatch in &result.mismatches {
                writeln!(f, "  - {mismatch}")?;
            }
        }
        writeln!(f)?;
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs every test of `compiled` against its decoded bytes.
pub fn run_tests(compiled: &Compiled) -> Result<TestReport, String> {
    let mut filter = OfflineFilter::for_compiled(compiled)?;
    let results = compiled
        .tests
        .iter()
        .enumerate()
        .map(|(index, test)| {
            let outcome = filter.decide(&sample(test));
            TestResult {
                name: test.name.clone(),
                location: compiled.source_map.tests.get(index).cloned(),
                mismatches: mismatches(&test.expect, &outcome),
                outcome,
            }
        })
        .collect();
    Ok(TestReport {
        file: compiled.file_name.clone(),
        results,
    })
}

fn sample(test: &TestCase) -> SampleRequest {
    SampleRequest {
        peer: test
            .peer
            .clone()
            .ok_or(meshward_engine::Reason::NoPeerCertificate),
        method: test.method.clone(),
        path: test.path.clone(),
        authority: test.authority.clone(),
        headers: test.headers.clone(),
        jwt_svid: test.jwt_svid.clone(),
        user: test.user.clone(),
        chain: test.chain.clone(),
    }
}

fn show(name: Option<&str>) -> String {
    name.map_or_else(|| "none".to_owned(), |n| format!("`{n}`"))
}

fn mismatches(expect: &Expectation, outcome: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if expect.effect != outcome.effect {
        out.push(format!(
            "expected {}, got {}",
            expect.effect.as_str(),
            outcome.effect.as_str()
        ));
    }
    let actual_rule = outcome.rule.as_ref().map(|r| r.id.as_str());
    if let Some(rule) = &expect.rule {
        if Some(rule.as_str()) != actual_rule {
            out.push(format!("expected rule `{rule}`, got {}", show(actual_rule)));
        }
    }
    if let Some(reason) = expect.reason {
        if reason != outcome.reason {
            out.push(format!(
                "expected reason `{}`, got `{}`",
                reason.code(),
                outcome.reason.code()
            ));
        }
    }
    if let Some(intent) = &expect.intent {
        if intent.as_deref() != outcome.intent.as_deref() {
            let name =
                |i: Option<&str>| i.map_or_else(|| "unclassified".to_owned(), |n| format!("`{n}`"));
            out.push(format!(
                "expected intent {}, got {}",
                name(intent.as_deref()),
                name(outcome.intent.as_deref())
            ));
        }
    }
    if let Some(would) = &expect.would {
        match &outcome.would {
            None => out.push(format!(
                "expected dry-run to {}, but dry-run changes nothing",
                would.effect.as_str()
            )),
            Some(actual) => {
                if actual.effect != would.effect {
                    out.push(format!(
                        "expected dry-run to {}, got {}",
                        would.effect.as_str(),
                        actual.effect.as_str()
                    ));
                }
                let actual_rule = actual.rule.as_ref().map(|r| r.id.as_str());
                if let Some(rule) = &would.rule {
                    if Some(rule.as_str()) != actual_rule {
                        out.push(format!(
                            "expected dry-run rule `{rule}`, got {}",
                            show(actual_rule)
                        ));
                    }
                }
            }
        }
    }
    out
}
