//! What `meshward test` says is what Envoy does: every `test` block of every
//! example policy is replayed as a real request, with a real SVID for its
//! peer, through Envoy and the filter, and the answer is compared with the
//! block's expectation.
//!
//! Two differences are expected, both on the safe side, and checked as such:
//! - Envoy normalizes the path before the filter runs (`/orders/../admin`
//!   becomes `/admin`), so for a path Envoy changed only "denied" is compared
//!   (the policy test sees the raw path: `non_canonical_path`; Envoy's filter
//!   sees the normalized one and denies it by rule).
//! - A peer Envoy cannot authenticate (no certificate, a trust domain with no
//!   CA bundle in `envoy/demo.yaml`) is refused in the TLS handshake, before
//!   the filter; the policy test expects a deny.

use std::fs;

use meshward_e2e::client::ClientError;
use meshward_e2e::expect::app_header_one;
use meshward_e2e::pki::{Ca, PARTNER, SHOP};
use meshward_e2e::workspace::repo_root;
use meshward_e2e::{Leaf, Mesh, Request};
use meshward_engine::model::Effect;
use meshward_policy::checked::TestCase;
use meshward_policy::compile_source;

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// Replays one case; returns a description of the mismatch, if any.
fn replay(mesh: &Mesh, foreign: &Ca, case: &TestCase, n: usize) -> Result<(), String> {
    let peer: Option<Leaf> = case.peer.as_ref().map(|id| {
        let ca = match id.trust_domain() {
            SHOP => &mesh.pki.shop,
            PARTNER => &mesh.pki.partner,
            _ => foreign,
        };
        ca.leaf_with_uris(&[id.as_str()]).issue()
    });
    let id = format!("case-{n}");
    let mut request = Request::new(&case.method, &case.path).header("x-request-id", &id);
    if !case.authority.is_empty() {
        request = request.header("host", &case.authority);
    }
    for (name, value) in &case.headers {
        request = request.header(name, value);
    }
    let expect = &case.expect;
    let response = match mesh.try_send(peer.as_ref(), &request) {
        Err(ClientError::Tls(e)) => {
            let envoy_knows_domain = case
                .peer
                .as_ref()
                .is_some_and(|p| [SHOP, PARTNER].contains(&p.trust_domain()));
            return if expect.effect == Effect::Deny && !envoy_knows_domain {
                Ok(())
            } else {
                Err(format!(
                    "expected {}, but the TLS handshake was refused: {e}",
                    effect_name(expect.effect)
                ))
            };
        }
        Err(e) => return Err(format!("no response: {e}")),
        Ok(r) => r,
    };
    let got = if response.status == 200 {
        Effect::Allow
    } else {
        Effect::Deny
    };
    if got != expect.effect {
        return Err(format!(
            "expected {}, Envoy answered {} {}",
            effect_name(expect.effect),
            response.status,
            response.text()
        ));
    }
    let audit = mesh.envoy.audit_for(&id);
    if audit.str("path") != Some(case.path.as_str()) {
        // Envoy normalized the path; the deny (checked above) is what matters.
        return if expect.effect == Effect::Deny {
            Ok(())
        } else {
            Err(format!(
                "an allow whose path Envoy changed to {:?}",
                audit.str("path")
            ))
        };
    }
    let mut wrong = Vec::new();
    if let Some(rule) = &expect.rule {
        if audit.str("rule") != Some(rule.as_str()) {
            wrong.push(format!("rule {rule} != {}", audit.json["rule"]));
        }
    }
    if let Some(reason) = expect.reason {
        if audit.str("reason") != Some(reason.code()) {
            wrong.push(format!(
                "reason {} != {}",
                reason.code(),
                audit.json["reason"]
            ));
        }
    }
    if let Some(intent) = &expect.intent {
        if audit.str("intent") != intent.as_deref() {
            wrong.push(format!("intent {intent:?} != {}", audit.json["intent"]));
        }
    }
    if let Some(would) = &expect.would {
        let w = &audit.json["would"];
        if w["decision"] != effect_name(would.effect) {
            wrong.push(format!("would {} != {w}", effect_name(would.effect)));
        }
        if let Some(rule) = &would.rule {
            if w["rule"] != rule.as_str() {
                wrong.push(format!("would rule {rule} != {w}"));
            }
        }
    }
    if got == Effect::Allow {
        let echo = response.json();
        let intent = app_header_one(&echo, "x-meshward-intent");
        if audit.str("intent").unwrap_or("unclassified") != intent {
            wrong.push(format!(
                "app saw intent {intent}, audit {}",
                audit.json["intent"]
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

#[test]
fn example_policy_tests_give_the_same_answers_in_envoy() {
    let dir = repo_root().join("policy-compiler/examples");
    let mut policies: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    policies.sort();
    assert!(
        !policies.is_empty(),
        "no example policies in {}",
        dir.display()
    );

    let foreign = Ca::new("elsewhere.example");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for path in &policies {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = fs::read_to_string(path).unwrap();
        let compiled = compile_source(&source, &name)
            .unwrap_or_else(|d| panic!("{name} does not compile:\n{d}"));
        let mesh = Mesh::builder(&source).label(&name).start();
        for (n, case) in compiled.tests.iter().enumerate() {
            // Credentials this harness does not mint yet (JWT-SVIDs, user
            // tokens, caller chains) are covered by their own tests.
            if case.jwt_svid.is_some() || case.user.is_some() || case.chain.is_some() {
                continue;
            }
            replayed += 1;
            if let Err(why) = replay(&mesh, &foreign, case, n) {
                failures.push(format!(
                    "{name}: test \"{}\" ({} {}): {why}",
                    case.name, case.method, case.path
                ));
            }
        }
    }
    assert!(replayed > 0, "no policy test cases were replayed");
    assert!(
        failures.is_empty(),
        "{} of {replayed} policy test cases differ in Envoy:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("replayed {replayed} policy test cases through Envoy");
}
