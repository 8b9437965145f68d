//! `meshward import istio`: Istio AuthorizationPolicy and
//! RequestAuthentication manifests → meshward policy source, one policy per
//! workload, with a per-field report of what was not converted exactly.
//!
//! ```text
//! YAML ──yaml::parse──▶ yaml::Node (lines) ──model::read_documents──▶ Document
//!      ──group by workload──▶ convert::convert_rule ──▶ sem::RuleSem (converted Istio semantics)
//!      ──intents::atoms + engine classification──▶ grants ──emit──▶ source + tests
//!      ──compile + self-check (engine vs sem::decide)──▶ ImportedPolicy
//! ```
//!
//! **Workloads.** meshward policies are per workload, Istio's are attached
//! by `selector`, `targetRefs`, namespace or the root namespace. The import
//! writes one policy per selector (or `targetRefs`) seen in a namespace,
//! holding that workload's policies plus its namespace's and the mesh's;
//! one per namespace that has namespace-wide policies (for its other
//! workloads); and one for the mesh-wide policies (for workloads in
//! namespaces without any). Selectors are compared as written: a pod that
//! two different selectors match is not detected.
//!
//! **Semantics.** DENY before ALLOW is meshward's deny-overrides. A
//! workload with no ALLOW policy is allowed everything in Istio: its policy
//! gets an explicit, flagged allow-all rule (`I006`), since meshward denies
//! by default. AUDIT policies change no decision (`I005`); CUSTOM policies
//! (an external authorizer) are not converted (`I004`). The import assumes
//! STRICT mTLS: a rule that in Istio would also admit a plaintext caller
//! admits authenticated peers only (rules naming only request principals
//! need no peer in either). Never towards more access: see [`convert`].
//!
//! **Check.** Every generated policy is compiled, its `test` blocks are
//! run, and every representative request (each principal, user, header
//! value and request shape the policies tell apart) is decided by the
//! engine and by [`sem::decide`]; a difference is reported (`I010`), never
//! hidden.

pub mod convert;
pub mod emit;
pub mod intents;
pub mod model;
pub mod report;
pub mod sem;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};

use meshward_engine::model::Effect as EngineEffect;
use serde_json::{json, Value as Json};

use crate::outcome::OfflineFilter;
use crate::{compile_source, run_tests, Compiled};
use crate::{peer_from_text, ClaimValue, SampleRequest, SampleUser};
use intents::{Atom, Cover, Shape, FRESH_SEGMENT};
use model::{Action, AuthorizationPolicy, Document, RequestAuthentication, Target};
pub use report::{Code, Finding};
use sem::{Cond, Effect, Probe, ProbeUser, RuleSem, StrMatch};

/// Import settings.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Istio's root namespace (mesh-wide policies live there).
    pub root_namespace: String,
    /// The trust domain used where policies name none (namespaces).
    pub trust_domain: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            root_namespace: "istio-system".to_owned(),
            trust_domain: "cluster.local".to_owned(),
        }
    }
}

/// One input file.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its name, as reported.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// A request the converted policy was checked on, with Istio's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The request.
    pub probe: Probe,
    /// Istio's decision (of the converted rules).
    pub allow: bool,
    /// Whether meshward decided the same.
    pub agrees: bool,
}

/// One generated policy.
#[derive(Debug, Clone)]
pub struct ImportedPolicy {
    /// The file name to write it to (`<stem>.policy`).
    pub file_name: String,
    /// Which workloads it is for.
    pub workload: String,
    /// The documents it was converted from (`Kind ns/name`).
    pub documents: Vec<String>,
    /// The meshward source.
    pub source: String,
    /// The filter configuration fragment for its user tokens
    /// (`user_tokens`, `key_fetch`), when RequestAuthentications apply.
    pub token_settings: Option<Json>,
    /// Every representative request decided in the self-check.
    pub samples: Vec<Sample>,
    /// True when no finding (other than notes) concerns its documents.
    pub exact: bool,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct ImportResult {
    /// One per workload group.
    pub policies: Vec<ImportedPolicy>,
    /// Every finding, in input order.
    pub findings: Vec<Finding>,
}

impl ImportResult {
    /// Findings `--strict` fails on (all but notes).
    pub fn strict_failures(&self) -> usize {
        self.findings.iter().filter(|f| !f.code.is_note()).count()
    }

    /// The JSON report (`docs/schema/import.json`): the shared vocabulary
    /// of `docs/cli-json.md`, findings as `warnings` (notes included, with
    /// their `severity`).
    pub fn to_json(&self) -> Json {
        json!({
            "command": "import",
            "ok": true,
            "policy_count": self.policies.len(),
            "policies": self.policies.iter().map(|p| json!({
                "file": p.file_name,
                "workload": p.workload,
                "documents": p.documents,
                "exact": p.exact,
                "source": p.source,
                "token_settings": p.token_settings,
                "sample_count": p.samples.len(),
                "disagreement_count": p.samples.iter().filter(|s| !s.agrees).count(),
            })).collect::<Vec<_>>(),
            "warning_count": self.strict_failures(),
            "warnings": self.findings.iter().map(|f| json!({
                "severity": f.severity(),
                "code": f.code,
                "message": f.message,
                "file": f.file,
                "line": f.line,
                "document": f.document,
                "field": f.field,
            })).collect::<Vec<_>>(),
        })
    }

    /// The text report.
    pub fn report_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.to_string());
            out.push('\n');
        }
        for p in &self.policies {
            let disagreements = p.samples.iter().filter(|s| !s.agrees).count();
            out.push_str(&format!(
                "{}: {} ({} document(s), {} requests checked, {} disagreement(s){})\n",
                p.file_name,
                p.workload,
                p.documents.len(),
                p.samples.len(),
                disagreements,
                if p.exact { ", exact" } else { "" }
            ));
        }
        let notes = self.findings.len() - self.strict_failures();
        out.push_str(&format!(
            "{} polic{} written, {} finding(s) ({} note(s))\n",
            self.policies.len(),
            if self.policies.len() == 1 { "y" } else { "ies" },
            self.strict_failures(),
            notes
        ));
        out
    }
}

/// Why an import failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input is not YAML the importer reads.
    #[error("{file}: {error}")]
    Yaml {
        /// The input.
        file: String,
        /// What is wrong.
        error: yaml::YamlError,
    },
    /// A generated policy does not compile (a bug in the importer).
    #[error("the policy generated for {workload} does not compile:\n{diagnostics}")]
    Generated {
        /// The workload group.
        workload: String,
        /// The rendered diagnostics.
        diagnostics: String,
    },
}

struct Group<'a> {
    stem: String,
    workload: String,
    aps: Vec<&'a AuthorizationPolicy>,
    ras: Vec<&'a RequestAuthentication>,
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn groups<'a>(documents: &'a [Document], options: &ImportOptions) -> Vec<Group<'a>> {
    let targets = |d: &Document| match d {
        Document::Authz(a) => a.target.clone(),
        Document::Authn(r) => r.target.clone(),
    };
    let applies = |d: &Document, group: &Target| {
        let t = targets(d);
        match (&t, group) {
            (Target::Mesh, _) => true,
            (Target::Namespace(n), Target::Namespace(g)) => n == g,
            (Target::Namespace(n), Target::Selector(g, _) | Target::TargetRefs(g, _)) => n == g,
            _ => t == *group,
        }
    };
    let mut keys: BTreeSet<Target> = documents.iter().map(targets).collect();
    // Namespace groups only for namespaces with namespace-wide documents.
    keys.retain(|t| !matches!(t, Target::Namespace(n) if n == &options.root_namespace));
    keys.into_iter()
        .map(|key| {
            let (stem, workload) = match &key {
                Target::Mesh => (
                    "mesh".to_owned(),
                    "every workload in namespaces without their own policies (mesh-wide policies)"
                        .to_owned(),
                ),
                Target::Namespace(n) => (
                    format!("{n}.namespace"),
                    format!("workloads in namespace `{n}` without their own policies"),
                ),
                Target::Selector(n, labels) => {
                    let text: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let short: Vec<String> = labels.iter().map(|(_, v)| slug(v)).collect();
                    (
                        format!("{n}.{}", short.join("-")),
                        format!(
                            "workloads in namespace `{n}` selected by {}",
                            text.join(",")
                        ),
                    )
                }
                Target::TargetRefs(n, refs) => (
                    format!(
                        "{n}.{}",
                        refs.iter().map(|r| slug(r)).collect::<Vec<_>>().join("-")
                    ),
                    format!("{} in namespace `{n}` (targetRefs)", refs.join(", ")),
                ),
            };
            let mut group = Group {
                stem,
                workload,
                aps: Vec::new(),
                ras: Vec::new(),
            };
            for d in documents.iter().filter(|d| applies(d, &key)) {
                match d {
                    Document::Authz(a) => group.aps.push(a),
                    Document::Authn(r) => group.ras.push(r),
                }
            }
            group
        })
        .collect()
}

/// Imports the inputs. Findings never stop the import; only unreadable
/// YAML (or a generated policy that does not compile) does.
pub fn import_istio(
    inputs: &[Input],
    options: &ImportOptions,
) -> Result<ImportResult, ImportError> {
    let mut findings = Vec::new();
    let mut documents = Vec::new();
    for input in inputs {
        let nodes = yaml::parse(&input.text).map_err(|error| ImportError::Yaml {
            file: input.name.clone(),
            error,
        })?;
        documents.extend(model::read_documents(
            &input.name,
            &nodes,
            &options.root_namespace,
            &mut findings,
        ));
    }
    for d in &documents {
        if let Document::Authz(ap) = d {
            match ap.action {
                Action::Audit => findings.push(ap.doc.finding(
                    Code::I005,
                    ap.action_line,
                    "spec.action",
                    "AUDIT changes no decision; meshward audits every decision (`audit_log`), so nothing is emitted",
                )),
                Action::Custom => findings.push(ap.doc.finding(
                    Code::I004,
                    ap.action_line,
                    "spec.action",
                    "CUSTOM (an external authorizer) is not converted: keep the ext_authz provider in front of meshward",
                )),
                Action::Allow | Action::Deny => {}
            }
        }
    }
    let mut policies = Vec::new();
    for group in groups(&documents, options) {
        let policy = import_group(&group, options, &mut findings)?;
        let documents_of: BTreeSet<&str> = group
            .aps
            .iter()
            .map(|a| a.doc.document.as_str())
            .chain(group.ras.iter().map(|r| r.doc.document.as_str()))
            .collect();
        let exact = !findings
            .iter()
            .any(|f| !f.code.is_note() && documents_of.contains(f.document.as_str()));
        policies.push(ImportedPolicy { exact, ..policy });
    }
    let mut seen = BTreeSet::new();
    findings.retain(|f| seen.insert(format!("{:?}", f)));
    Ok(ImportResult { policies, findings })
}

fn trust_domains(rules: &[RuleSem], options: &ImportOptions) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for cond in &rule.conds {
            if let Cond::Principal(ms) | Cond::NotPrincipal(ms) = cond {
                for m in ms {
                    if let StrMatch::Exact(v) | StrMatch::Prefix(v) = m {
                        if let Some((td, _)) = v.split_once('/') {
                            out.insert(td.to_owned());
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        out.insert(options.trust_domain.clone());
    }
    out
}

fn import_group(
    group: &Group<'_>,
    options: &ImportOptions,
    findings: &mut Vec<Finding>,
) -> Result<ImportedPolicy, ImportError> {
    let mut rules: Vec<RuleSem> = Vec::new();
    for ap in &group.aps {
        for rule in &ap.rules {
            rules.extend(convert::convert_rule(ap, rule, findings));
        }
    }
    let has_allow_policy = group.aps.iter().any(|a| a.action == Action::Allow);
    let mut default_allow = false;
    if !has_allow_policy {
        default_allow = true;
        // Point at the most specific document of the group.
        let rank = |t: &Target| match t {
            Target::Selector(..) | Target::TargetRefs(..) => 0,
            Target::Namespace(_) => 1,
            Target::Mesh => 2,
        };
        let (doc, line) = group
            .aps
            .iter()
            .min_by_key(|a| rank(&a.target))
            .map(|a| (a.doc.clone(), a.line))
            .or_else(|| group.ras.first().map(|r| (r.doc.clone(), r.line)))
            .unwrap_or((
                report::DocRef {
                    file: String::new(),
                    document: group.workload.clone(),
                },
                0,
            ));
        findings.push(doc.finding(
            Code::I006,
            line,
            "spec.action",
            format!(
                "no ALLOW policy applies to {}: Istio allows every request no DENY matches, meshward denies by default, so `{}.istio-default-allow` allows every authenticated peer",
                group.workload, group.stem
            ),
        ));
        rules.push(RuleSem {
            id: format!("{}.istio-default-allow", group.stem),
            effect: Effect::Allow,
            origin: "no ALLOW policy applies: Istio's allow-by-default, made explicit".to_owned(),
            conds: Vec::new(),
            needs_peer: true,
            ops: None,
            widened: false,
        });
    }
    let tds = trust_domains(&rules, options);
    let classes = intents::method_classes(&rules);
    let atoms = intents::atoms(&rules, &classes);
    let shapes = intents::shapes(&rules, &classes);
    let uses_users = rules.iter().any(|rule| {
        rule.conds
            .iter()
            .any(|c| matches!(c, Cond::Claim(..) | Cond::RequestPrincipal(..)))
    });
    let header = header_comment(group, default_allow, &tds, uses_users);
    let probe_peer = format!(
        "spiffe://{}/ns/{FRESH_SEGMENT}/sa/probe",
        tds.iter().next().cloned().unwrap_or_default()
    );
    let classified = classify(group, &header, &atoms, &shapes, &probe_peer)?;
    // Grants.
    let mut kept: Vec<(RuleSem, Vec<String>)> = Vec::new();
    for rule in &rules {
        let Some(_) = &rule.ops else {
            let mut all: Vec<String> = atoms.iter().map(|a| a.name.clone()).collect();
            all.push("unclassified".to_owned());
            kept.push((rule.clone(), all));
            continue;
        };
        let mut granted = Vec::new();
        let (doc, line, path) = rule_location(group, rule);
        let to = format!("{path}.to");
        for (intent, (cover, example)) in intents::coverage(rule, &classified) {
            let name = intent.clone().unwrap_or_else(|| "unclassified".to_owned());
            let example = example
                .map(|s| format!("{} {} {}", s.method, s.authority, s.path))
                .unwrap_or_default();
            match (cover, rule.effect) {
                (Cover::Full, _) => granted.push(name),
                (Cover::None, _) => {}
                (Cover::Partial, Effect::Allow) => findings.push(doc.finding(
                    Code::I008,
                    line,
                    &to,
                    format!(
                        "rule `{}`: meshward classifies some of its requests (e.g. `{example}`) into `{name}`, which holds requests the rule does not allow; they are denied",
                        rule.id
                    ),
                )),
                (Cover::Partial, Effect::Deny) => {
                    findings.push(doc.finding(
                        Code::I003,
                        line,
                        &to,
                        format!(
                            "rule `{}`: denies all of `{name}`, which also holds requests Istio's rule does not match (e.g. `{example}`)",
                            rule.id
                        ),
                    ));
                    granted.push(name);
                }
            }
        }
        if granted.is_empty() {
            if rule.effect == Effect::Allow {
                findings.push(doc.finding(
                    Code::I008,
                    line,
                    &to,
                    format!(
                        "rule `{}` is left with no intent that it fully covers; not converted",
                        rule.id
                    ),
                ));
            }
            continue;
        }
        kept.push((rule.clone(), granted));
    }
    let file_name = format!("{}.policy", group.stem);
    let (draft, compiled) = loop {
        let mut body = String::new();
        for atom in &atoms {
            body.push_str(&emit::intent_block(atom));
            body.push('\n');
        }
        for (rule, granted) in &kept {
            body.push_str(&emit::rule_block(rule, granted, &tds));
            body.push('\n');
        }
        let draft = format!("{header}{body}");
        match compile_source(&draft, &file_name) {
            Ok(compiled) => break (draft, compiled),
            Err(diagnostics) => {
                // An allow that a (possibly widened) deny always overrides
                // never applies in Istio either: leave it out, reported.
                let shadowed: Vec<(String, String)> = diagnostics
                    .items()
                    .iter()
                    .filter(|d| d.code == crate::Code::ShadowedAllow)
                    .filter_map(|d| {
                        let mut parts = d.message.split('`');
                        let allow = parts.nth(1)?.to_owned();
                        let deny = parts.nth(1)?.to_owned();
                        Some((allow, deny))
                    })
                    .collect();
                let errors = diagnostics
                    .items()
                    .iter()
                    .filter(|d| d.code.severity() == crate::Severity::Error)
                    .count();
                if shadowed.is_empty() || shadowed.len() != errors {
                    return Err(ImportError::Generated {
                        workload: group.workload.clone(),
                        diagnostics: format!("{diagnostics}\n--- generated source ---\n{draft}"),
                    });
                }
                for (allow, deny) in shadowed {
                    let Some(pos) = kept.iter().position(|(r, _)| r.id == allow) else {
                        return Err(ImportError::Generated {
                            workload: group.workload.clone(),
                            diagnostics: format!("{diagnostics}"),
                        });
                    };
                    let (rule, _) = kept.remove(pos);
                    let (doc, line, path) = rule_location(group, &rule);
                    let widened = kept.iter().any(|(r, _)| r.id == deny && r.widened);
                    findings.push(if widened {
                        doc.finding(
                            Code::I002,
                            line,
                            path,
                            format!("rule `{allow}` never applies in meshward: the widened deny `{deny}` always overrides it, so it is left out"),
                        )
                    } else {
                        doc.finding(
                            Code::I011,
                            line,
                            path,
                            format!("rule `{allow}` never applies, in Istio either: the deny `{deny}` always overrides it, so it is left out"),
                        )
                    });
                }
            }
        }
    };
    let kept_rules: Vec<RuleSem> = kept.iter().map(|(r, _)| r.clone()).collect();
    // Samples: the universe, decided by Istio semantics.
    let universe = universe(&kept_rules, &shapes, &tds);
    let mut filter = offline_filter(&compiled, &group.workload)?;
    let mut samples = Vec::new();
    for probe in universe {
        let (istio_allow, _) = sem::decide(&kept_rules, true, &probe);
        let meshward_allow = filter.decide(&sample_request(&probe)).effect == EngineEffect::Allow;
        samples.push(Sample {
            probe,
            allow: istio_allow,
            agrees: meshward_allow == istio_allow,
        });
    }
    let disagreements: Vec<&Sample> = samples.iter().filter(|s| !s.agrees).collect();
    if let Some(first) = disagreements.first() {
        let (doc, line) = group
            .aps
            .first()
            .map(|a| (a.doc.clone(), a.line))
            .unwrap_or((
                report::DocRef {
                    file: String::new(),
                    document: group.workload.clone(),
                },
                0,
            ));
        findings.push(doc.finding(
            Code::I010,
            line,
            "spec",
            format!(
                "{}: {} of {} checked requests are decided differently by the converted policy, e.g. `{}` (Istio: {})",
                file_name,
                disagreements.len(),
                samples.len(),
                emit::describe(&first.probe),
                if first.allow { "allow" } else { "deny" }
            ),
        ));
    }
    let tests = tests_for(&kept_rules, &samples);
    let source = format!("{draft}{tests}");
    let compiled = compile(&source, &file_name, &group.workload)?;
    if let Ok(report) = run_tests(&compiled) {
        if report.failed() > 0 {
            let failures: Vec<String> = report
                .results
                .iter()
                .filter(|r| !r.passed())
                .map(|r| format!("test `{}`: {}", r.name, r.mismatches.join("; ")))
                .collect();
            return Err(ImportError::Generated {
                workload: group.workload.clone(),
                diagnostics: format!(
                    "{} generated test(s) failed:\n{}\n--- generated source ---\n{source}",
                    report.failed(),
                    failures.join("\n")
                ),
            });
        }
    }
    Ok(ImportedPolicy {
        file_name,
        workload: group.workload.clone(),
        documents: group
            .aps
            .iter()
            .map(|a| a.doc.document.clone())
            .chain(group.ras.iter().map(|r| r.doc.document.clone()))
            .collect(),
        source,
        token_settings: token_settings(group, &kept_rules, findings),
        samples,
        exact: true,
    })
}

/// The document, line and path of the Istio rule a converted rule came from.
fn rule_location(group: &Group<'_>, rule: &RuleSem) -> (report::DocRef, usize, String) {
    for ap in &group.aps {
        for r in &ap.rules {
            let base = format!("{}.{}.r{}", ap.namespace, ap.name, r.index);
            if rule.id == base || rule.id.starts_with(&format!("{base}.v")) {
                return (ap.doc.clone(), r.line, r.path.clone());
            }
        }
    }
    (
        report::DocRef {
            file: String::new(),
            document: group.workload.clone(),
        },
        0,
        String::new(),
    )
}

fn header_comment(
    group: &Group<'_>,
    default_allow: bool,
    tds: &BTreeSet<String>,
    uses_users: bool,
) -> String {
    let mut h = String::new();
    h.push_str(&format!(
        "# Imported from Istio by `meshward import istio` for {}.\n",
        group.workload
    ));
    for ap in &group.aps {
        h.push_str(&format!("#   {} ({})\n", ap.doc.document, ap.doc.file));
    }
    for ra in &group.ras {
        h.push_str(&format!("#   {} ({})\n", ra.doc.document, ra.doc.file));
    }
    h.push_str("# DENY before ALLOW: a meshward deny overrides every allow.\n");
    if default_allow {
        h.push_str("# No ALLOW policy applies: Istio allows every request that no DENY matches,\n# meshward denies by default, so the import adds an explicit allow-all rule\n# (`*.istio-default-allow`); remove it to get default deny.\n");
    } else {
        h.push_str(
            "# An ALLOW policy applies: Istio and meshward both deny what no rule allows.\n",
        );
    }
    h.push_str("# Assumes STRICT mTLS: rules Istio would also match for plaintext callers\n# match authenticated peers only. Users come from the `user_tokens` settings\n# printed beside this policy.\n");
    let domains: Vec<String> = tds.iter().map(|t| emit::quote(t)).collect();
    h.push_str(&format!(
        "\npolicy {} {{\n  trust_domains {}\n}}\n\n",
        emit::quote(&group.stem),
        domains.join(" ")
    ));
    if uses_users {
        // The user-token settings come from the RequestAuthentications, in
        // the JSON written beside this policy: say so, so that `check` does
        // not take the users for a source nobody configured (E042).
        h.push_str("identity {\n  external\n}\n\n");
    }
    h
}

fn compile(source: &str, file_name: &str, workload: &str) -> Result<Compiled, ImportError> {
    compile_source(source, file_name).map_err(|d| ImportError::Generated {
        workload: workload.to_owned(),
        diagnostics: format!("{d}\n--- generated source ---\n{source}"),
    })
}

/// Each shape's intent as the engine classifies it.
fn classify(
    group: &Group<'_>,
    header: &str,
    atoms: &[Atom],
    shapes: &[Shape],
    probe_peer: &str,
) -> Result<Vec<(Shape, Option<String>)>, ImportError> {
    let mut source = header.to_owned();
    let mut names = Vec::new();
    for atom in atoms {
        source.push_str(&emit::intent_block(atom));
        names.push(atom.name.clone());
    }
    names.push("unclassified".to_owned());
    source.push_str(&format!(
        "allow import-probe {{\n  subject any_authenticated\n  intent {}\n}}\n",
        names.join(" ")
    ));
    let compiled = compile(
        &source,
        &format!("{}.probe.policy", group.stem),
        &group.workload,
    )?;
    let mut filter = offline_filter(&compiled, &group.workload)?;
    Ok(shapes
        .iter()
        .map(|shape| {
            let mut request =
                SampleRequest::new(peer_from_text(probe_peer), &shape.method, &shape.path);
            request.authority = shape.authority.clone();
            (shape.clone(), filter.decide(&request).intent)
        })
        .collect())
}

fn sample_request(probe: &Probe) -> SampleRequest {
    let mut request = SampleRequest::new(
        peer_from_text(probe.peer.as_deref().unwrap_or("none")),
        &probe.method,
        &probe.path,
    );
    request.authority = probe.authority.clone();
    request.headers = probe.headers.clone();
    request.user = probe.user.as_ref().map(|u| {
        Ok(SampleUser {
            subject: u.subject.clone(),
            issuer: Some(u.issuer.clone()),
            scopes: Vec::new(),
            claims: u
                .claims
                .iter()
                .map(|(k, vs)| (k.clone(), ClaimValue::List(vs.clone())))
                .collect(),
        })
    });
    request
}

/// The filter's pipeline for a compiled policy, loaded once (what
/// `explain` runs per request).
fn offline_filter(compiled: &Compiled, workload: &str) -> Result<OfflineFilter, ImportError> {
    OfflineFilter::for_compiled(compiled).map_err(|e| ImportError::Generated {
        workload: workload.to_owned(),
        diagnostics: e,
    })
}

/// Most requests checked per workload.
const MAX_SAMPLES: usize = 6000;

fn universe(rules: &[RuleSem], shapes: &[Shape], tds: &BTreeSet<String>) -> Vec<Probe> {
    let td = tds.iter().next().cloned().unwrap_or_default();
    let mut peers: BTreeSet<Option<String>> = BTreeSet::new();
    let mut users: Vec<Option<ProbeUser>> = vec![None];
    let mut issuers: Vec<String> = Vec::new();
    let mut headers: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut all_headers: BTreeMap<String, String> = BTreeMap::new();
    let mut claims: Vec<(String, String)> = Vec::new();
    peers.insert(Some(format!(
        "spiffe://{td}/ns/{FRESH_SEGMENT}/sa/stranger"
    )));
    for rule in rules {
        if !rule.needs_peer {
            peers.insert(None);
        }
        for cond in &rule.conds {
            match cond {
                Cond::Principal(ms) | Cond::NotPrincipal(ms) => {
                    for m in ms {
                        match m {
                            StrMatch::Exact(v) => {
                                peers.insert(Some(format!("spiffe://{v}")));
                            }
                            StrMatch::Prefix(v) => {
                                peers.insert(Some(format!("spiffe://{v}sa/{FRESH_SEGMENT}")));
                            }
                            _ => {}
                        }
                    }
                }
                Cond::Namespace(ns) | Cond::NotNamespace(ns) => {
                    for n in ns {
                        peers.insert(Some(format!("spiffe://{td}/ns/{n}/sa/{FRESH_SEGMENT}")));
                    }
                }
                Cond::RequestPrincipal(iss, sub) => {
                    let issuer = match iss {
                        StrMatch::Exact(i) => i.clone(),
                        _ => "https://issuer.import-probe".to_owned(),
                    };
                    let subject = match sub {
                        StrMatch::Exact(s) => s.clone(),
                        _ => "import-probe-user".to_owned(),
                    };
                    if !issuers.contains(&issuer) {
                        issuers.push(issuer.clone());
                    }
                    let user = ProbeUser {
                        issuer,
                        subject,
                        claims: Vec::new(),
                    };
                    if !users.contains(&Some(user.clone())) {
                        users.push(Some(user));
                    }
                }
                Cond::Header(name, ms) | Cond::NotHeader(name, ms) => {
                    for m in ms {
                        let value = match m {
                            StrMatch::Exact(v) => v.clone(),
                            StrMatch::Prefix(p) => format!("{p}x"),
                            _ => FRESH_SEGMENT.to_owned(),
                        };
                        all_headers.insert(name.clone(), value.clone());
                        headers.push(vec![(name.clone(), value)]);
                    }
                    headers.push(vec![(name.clone(), format!("{FRESH_SEGMENT}-other"))]);
                }
                Cond::Claim(name, value) => claims.push((name.clone(), value.clone())),
            }
        }
    }
    if all_headers.len() > 1 {
        headers.push(all_headers.into_iter().collect());
    }
    if !claims.is_empty() || users.len() > 1 {
        let issuer = issuers
            .first()
            .cloned()
            .unwrap_or_else(|| "https://issuer.import-probe".to_owned());
        users.push(Some(ProbeUser {
            issuer: issuer.clone(),
            subject: "stranger".to_owned(),
            claims: Vec::new(),
        }));
        let base: Vec<ProbeUser> = users.iter().flatten().cloned().collect();
        for (name, value) in &claims {
            for u in base.iter().take(3) {
                let mut with = u.clone();
                with.claims.push((name.clone(), vec![value.clone()]));
                users.push(Some(with));
            }
        }
    }
    let peers: Vec<Option<String>> = peers.into_iter().collect();
    let total = peers.len() * users.len() * headers.len() * shapes.len();
    let step = total.div_ceil(MAX_SAMPLES).max(1);
    let mut out = Vec::new();
    let mut i = 0usize;
    for peer in &peers {
        for user in &users {
            if peer.is_none() && user.is_none() {
                continue;
            }
            for hs in &headers {
                for shape in shapes {
                    i += 1;
                    if !i.is_multiple_of(step) {
                        continue;
                    }
                    out.push(Probe {
                        peer: peer.clone(),
                        method: shape.method.clone(),
                        authority: shape.authority.clone(),
                        path: shape.path.clone(),
                        headers: hs.clone(),
                        user: user.clone(),
                    });
                }
            }
        }
    }
    out
}

/// One allowed (or denied) sample per rule, and a near miss.
fn tests_for(rules: &[RuleSem], samples: &[Sample]) -> String {
    let mut out = String::new();
    let mut names = BTreeSet::new();
    for rule in rules {
        let deciding = samples.iter().find(|s| {
            s.agrees
                && rule.matches(&s.probe)
                && s.allow == (rule.effect == Effect::Allow)
                // The deciding rule is named only when it is the only one.
                && rules
                    .iter()
                    .filter(|r| r.effect == rule.effect && r.matches(&s.probe))
                    .count()
                    == 1
        });
        // Without a request this rule decides alone, one it matches, with
        // whatever decides it (another deny, say).
        let (hit, expect) = match deciding {
            Some(hit) => {
                let verb = if rule.effect == Effect::Allow {
                    "allow"
                } else {
                    "deny"
                };
                (hit, format!("{verb} by {}", rule.id))
            }
            None => match samples.iter().find(|s| s.agrees && rule.matches(&s.probe)) {
                Some(hit) => (hit, if hit.allow { "allow" } else { "deny" }.to_owned()),
                None => continue,
            },
        };
        let name = format!("{}: {}", rule.id, emit::describe(&hit.probe));
        if names.insert(name.clone()) {
            out.push_str(&emit::test_block(&name, &hit.probe, &expect));
            out.push('\n');
        }
        // A near miss: same request shape, and the rule does not match.
        let miss = samples.iter().find(|s| {
            s.agrees
                && !rule.matches(&s.probe)
                && s.probe.path == hit.probe.path
                && s.probe.method == hit.probe.method
        });
        if let Some(miss) = miss {
            let name = format!("{} near miss: {}", rule.id, emit::describe(&miss.probe));
            if names.insert(name.clone()) {
                let expect = if miss.allow { "allow" } else { "deny" };
                out.push_str(&emit::test_block(&name, &miss.probe, expect));
                out.push('\n');
            }
        }
    }
    out
}

fn token_settings(
    group: &Group<'_>,
    rules: &[RuleSem],
    findings: &mut Vec<Finding>,
) -> Option<Json> {
    let mut claims: BTreeSet<String> = BTreeSet::new();
    let mut uses_users = false;
    for rule in rules {
        for cond in &rule.conds {
            match cond {
                Cond::Claim(name, _) => {
                    claims.insert(name.clone());
                    uses_users = true;
                }
                Cond::RequestPrincipal(..) => uses_users = true,
                _ => {}
            }
        }
    }
    if group.ras.is_empty() {
        if uses_users {
            if let Some(ap) = group.aps.first() {
                findings.push(ap.doc.finding(
                    Code::I009,
                    ap.line,
                    "spec.rules",
                    format!(
                        "rules for {} name request principals or claims, but no RequestAuthentication applies: meshward needs `user_tokens` settings to verify users",
                        group.workload
                    ),
                ));
            }
        }
        return None;
    }
    let mut issuers = Vec::new();
    let mut key_fetch = Vec::new();
    for ra in &group.ras {
        for rule in &ra.jwt_rules {
            let mut issuer = serde_json::Map::new();
            issuer.insert("issuer".to_owned(), json!(rule.issuer));
            issuer.insert("audiences".to_owned(), json!(rule.audiences));
            if rule.audiences.is_empty() {
                findings.push(ra.doc.finding(
                    Code::I009,
                    rule.line,
                    format!("{}.audiences", rule.path),
                    "no audiences: Istio then does not check `aud`, meshward requires one; add the audience your tokens carry",
                ));
            }
            if let Some(jwks) = &rule.jwks {
                match serde_json::from_str::<Json>(jwks) {
                    Ok(v) => {
                        issuer.insert("jwks".to_owned(), v);
                    }
                    Err(e) => findings.push(ra.doc.finding(
                        Code::I007,
                        rule.line,
                        format!("{}.jwks", rule.path),
                        format!("`jwks` is not JSON ({e}); left out"),
                    )),
                }
            }
            if let Some((uri, line)) = &rule.jwks_uri {
                let rest = uri.split_once("://").map_or(uri.as_str(), |(_, r)| r);
                let (authority, path) = match rest.find('/') {
                    Some(i) => (
                        rest.get(..i).unwrap_or_default(),
                        rest.get(i..).unwrap_or("/"),
                    ),
                    None => (rest, "/"),
                };
                let cluster = format!("jwks-{}", slug(authority));
                key_fetch.push(json!({
                    "cluster": cluster,
                    "path": path,
                    "authority": authority,
                    "issuer": rule.issuer,
                }));
                findings.push(ra.doc.finding(
                    Code::I009,
                    *line,
                    format!("{}.jwksUri", rule.path),
                    format!("the filter fetches keys through an Envoy cluster: define cluster `{cluster}` for `{authority}` (TLS) in the proxy"),
                ));
            }
            for (key, line) in &rule.other {
                findings.push(ra.doc.finding(
                    Code::I009,
                    *line,
                    format!("{}.{key}", rule.path),
                    format!("`{key}` is not converted (meshward reads `Authorization: Bearer` by default; see `user_tokens.header`)"),
                ));
            }
            issuers.push(Json::Object(issuer));
        }
    }
    let mut settings = serde_json::Map::new();
    settings.insert(
        "user_tokens".to_owned(),
        json!({
            "header": "authorization",
            "scheme": "Bearer",
            "issuers": issuers,
            "claims": claims.into_iter().collect::<Vec<_>>(),
        }),
    );
    if !key_fetch.is_empty() {
        settings.insert("key_fetch".to_owned(), Json::Array(key_fetch));
    }
    Some(Json::Object(settings))
}
