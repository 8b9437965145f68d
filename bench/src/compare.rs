//! The alternatives, built from the same compiled model as meshward, and the
//! setup-time check that every engine gives the same decision on every
//! request of the mix (enforced, and with the dry-run rules enforced). A
//! disagreement panics with the request, both verdicts and the policy text:
//! a benchmark of engines that disagree would compare nothing.

use crate::cedar::{CedarBench, Encoding};
use crate::mix::RequestSpec;
use crate::rego::RegoBench;
use crate::translate::PolicyView;
use crate::workload::{Verdict, Workload};

/// Largest policy the regorus interpreter is run on: it is super-linear in
/// rules here (~70 µs at 10 rules, ~0.7 ms at 100, ~24 ms at 1,000), so at
/// 10,000 one pass of checks would take tens of minutes.
pub const INTERPRETER_MAX_RULES: usize = 1_000;

/// Cedar and regorus, both encodings, loaded with the workload's policy.
pub struct Alternatives {
    /// Whether the regorus interpreter is run at this size.
    pub interpreter: bool,
    /// Cedar, classifying in `when` clauses.
    pub cedar_full: CedarBench,
    /// Cedar, action = intent classified outside.
    pub cedar_pre: CedarBench,
    /// Rego, classifying into `intent`.
    pub rego_full: RegoBench,
    /// Rego, `input.intent` classified outside.
    pub rego_pre: RegoBench,
}

/// meshward's intent for each request (the classification handed to the
/// pre-classified encodings).
pub fn intents(w: &Workload) -> Vec<Option<String>> {
    (0..w.requests.len())
        .map(|i| {
            w.decide(i)
                .intent
                .map(|idx| w.policy.intent_name(idx).to_owned())
        })
        .collect()
}

impl Alternatives {
    /// Writes both policies in both encodings and prepares the requests.
    pub fn new(w: &Workload) -> Self {
        let view = PolicyView::of(&w.model);
        let specs: Vec<RequestSpec> = w.requests.iter().map(|r| r.spec.clone()).collect();
        let intents = intents(w);
        Alternatives {
            interpreter: w.rules <= INTERPRETER_MAX_RULES,
            cedar_full: CedarBench::new(&view, Encoding::Full, &specs, &intents),
            cedar_pre: CedarBench::new(&view, Encoding::PreClassified, &specs, &intents),
            rego_full: RegoBench::new(&view, Encoding::Full, &specs, &intents),
            rego_pre: RegoBench::new(&view, Encoding::PreClassified, &specs, &intents),
        }
    }

    /// Checks that every engine agrees with meshward on every request.
    /// Returns `(allowed, would_allowed, total)` for the report. Panics on the
    /// first disagreement.
    pub fn check(&mut self, w: &Workload) -> (usize, usize, usize) {
        let mut allowed = 0;
        let mut would = 0;
        for (i, req) in w.requests.iter().enumerate() {
            let decision = w.decide(i);
            let want = Verdict::of(&decision);
            allowed += usize::from(want.allow);
            would += usize::from(want.would_allow);
            let mut got: Vec<(&str, Verdict)> = Vec::new();
            for (name, cedar) in [
                ("cedar (full)", &self.cedar_full),
                ("cedar (pre-classified)", &self.cedar_pre),
            ] {
                let verdict = |r| {
                    cedar
                        .decide_checked(r)
                        .unwrap_or_else(|e| panic!("{name}: evaluation errors on {req:?}: {e}"))
                };
                got.push((
                    name,
                    Verdict {
                        allow: verdict(&cedar.enforced[i]),
                        would_allow: verdict(&cedar.shadow[i]),
                    },
                ));
            }
            for (name, rego) in [
                ("regorus (full)", &mut self.rego_full),
                ("regorus (pre-classified)", &mut self.rego_pre),
            ] {
                let (enforced, shadow) = (rego.enforced[i].clone(), rego.shadow[i].clone());
                if self.interpreter {
                    let interp = Verdict {
                        allow: rego.interpret(&enforced),
                        would_allow: rego.interpret(&shadow),
                    };
                    got.push((name, interp));
                }
                if rego.has_vm() {
                    let vm = Verdict {
                        allow: rego.execute(&enforced),
                        would_allow: rego.execute(&shadow),
                    };
                    got.push((name, vm));
                }
            }
            for (name, verdict) in got {
                assert_eq!(
                    verdict, want,
                    "DECISIONS DIFFER at {} rules, request #{i}: meshward {want:?} ({decision:?}), {name} {verdict:?}\nrequest: {:?}",
                    w.rules, req.spec
                );
            }
        }
        (allowed, would, w.requests.len())
    }
}
