//! What `replay` found, as text for a terminal and as JSON for tools.

use std::fmt::{self, Write as _};

use meshward_engine::audit::AuditRecord;
use meshward_engine::{Decision, Policy};
use serde_json::json;

use super::FailOn;

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Recorded allow, now deny: traffic that would break.
    AllowToDeny,
    /// Recorded deny, now allow: access that would open.
    DenyToAllow,
    /// Same effect; the reason, rule, intent or dry-run outcome changed.
    Other,
}

impl ChangeKind {
    /// `allow_to_deny`, `deny_to_allow` or `other`.
    pub fn code(self) -> &'static str {
        match self {
            ChangeKind::AllowToDeny => "allow_to_deny",
            ChangeKind::DenyToAllow => "deny_to_allow",
            ChangeKind::Other => "other",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ChangeKind::AllowToDeny => "allow → deny",
            ChangeKind::DenyToAllow => "deny → allow",
            ChangeKind::Other => "same effect, different rule, reason, intent or dry-run outcome",
        }
    }
}

/// A dry-run outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WouldVerdict {
    /// `allow` / `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// Deciding rule.
    pub rule: Option<String>,
}

/// One decision in words: what the filter recorded, or what replay decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdict {
    /// `allow` / `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// Deciding rule.
    pub rule: Option<String>,
    /// Intent; `None` = unclassified (or not reached).
    pub intent: Option<String>,
    /// What dry-run rules (or a dry-run policy) would decide, when different.
    pub would: Option<WouldVerdict>,
}

impl Verdict {
    /// The verdict an audit record states.
    pub fn recorded(record: &AuditRecord) -> Verdict {
        Verdict {
            decision: record.decision.clone(),
            reason: record.reason.clone(),
            rule: record.rule.clone(),
            intent: record.intent.clone(),
            would: record.would.as_ref().map(|w| WouldVerdict {
                decision: w.decision.clone(),
                reason: w.reason.clone(),
                rule: w.rule.clone(),
            }),
        }
    }

    /// An engine decision in the policy's names.
    pub fn replayed(policy: &Policy, decision: &Decision) -> Verdict {
        Verdict {
            decision: decision.effect.as_str().to_owned(),
            reason: decision.reason.code().to_owned(),
            rule: decision.rule.map(|r| policy.rule_id(r).to_owned()),
            intent: decision.intent.map(|i| policy.intent_name(i).to_owned()),
            would: decision.would_be.map(|w| WouldVerdict {
                decision: w.effect.as_str().to_owned(),
                reason: w.reason.code().to_owned(),
                rule: w.rule.map(|r| policy.rule_id(r).to_owned()),
            }),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "decision": self.decision,
            "reason": self.reason,
            "rule": self.rule,
            "intent": self.intent,
            "would_be": self.would.as_ref().map(|w| json!({
                "decision": w.decision,
                "reason": w.reason,
                "rule": w.rule,
            })),
        })
    }
}

fn outcome_text(decision: &str, rule: Option<&str>, reason: &str) -> String {
    match rule {
        Some(rule) => format!("{decision} by {rule} ({reason})"),
        None => format!("{decision} ({reason})"),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&outcome_text(
            &self.decision,
            self.rule.as_deref(),
            &self.reason,
        ))?;
        if let Some(would) = &self.would {
            write!(
                f,
                ", would {}",
                outcome_text(&would.decision, would.rule.as_deref(), &would.reason)
            )?;
        }
        Ok(())
    }
}

/// A line that a change group is illustrated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// 1-based line number in the log.
    pub line: u64,
    /// The request's `x-request-id`, when recorded.
    pub request_id: Option<String>,
}

/// Changed decisions with the same caller, intent and old and new verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeGroup {
    /// How the effect changed.
    pub kind: ChangeKind,
    /// The recorded dry-run outcome (`would`) already had the new effect:
    /// enforcing what dry-run reported, not a surprise.
    pub predicted: bool,
    /// The caller's workload identity (peer, and JWT-SVID subject if any).
    pub caller: String,
    /// What the filter recorded.
    pub old: Verdict,
    /// What the new policy decides.
    pub new: Verdict,
    /// How many lines.
    pub count: u64,
    /// The first few lines.
    pub examples: Vec<Example>,
}

impl ChangeGroup {
    /// The intent, or `old → new` when classification changed: `unclassified`
    /// when the request matched no intent, `-` when it was refused before
    /// classification (identity, method or path).
    pub fn intent_text(&self) -> String {
        let name = |v: &Verdict| match &v.intent {
            Some(intent) => intent.clone(),
            None if v.reason == "unclassified"
                || v.would.as_ref().is_some_and(|w| w.reason == "unclassified") =>
            {
                "unclassified".to_owned()
            }
            None => "-".to_owned(),
        };
        let (old, new) = (name(&self.old), name(&self.new));
        if old == new {
            old
        } else {
            format!("{old} → {new}")
        }
    }
}

/// An audit line that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub error: String,
}

/// Would-allow / would-deny counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WouldCounts {
    /// `would: allow`.
    pub allow: u64,
    /// `would: deny`.
    pub deny: u64,
}

impl WouldCounts {
    pub(super) fn add(&mut self, deny: bool) {
        if deny {
            self.deny += 1;
        } else {
            self.allow += 1;
        }
    }
}

/// Dry-run outcomes attributed to the rule that decided them. All rows add
/// up to Envoy's `meshward_would_be` counters; the row of a `mode dry-run`
/// rule is its `meshward_rules{mode="dry_run"}` series (docs/observability.md)
/// `would_deny` counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WouldRow {
    /// The rule the dry-run outcome names; `None` = no rule (default deny).
    pub rule: Option<String>,
    /// In the log.
    pub recorded: WouldCounts,
    /// On replay.
    pub replayed: WouldCounts,
}

/// The whole result of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The replayed policy's name.
    pub policy_name: String,
    /// Its content hash (hex).
    pub policy_hash: String,
    /// Lines read.
    pub lines: u64,
    /// Lines that were not audit lines (skipped).
    pub other_lines: u64,
    /// Lines that were audit lines (replayed or malformed).
    pub audit_lines: u64,
    /// Audit lines replayed.
    pub replayed: u64,
    /// Outbound audit lines (refused chains): counted, not replayed, since
    /// the seal check does not depend on the policy.
    pub outbound: u64,
    /// Audit lines that could not be replayed.
    pub malformed: u64,
    /// The first malformed lines.
    pub malformed_lines: Vec<MalformedLine>,
    /// Replayed lines whose decision did not change.
    pub unchanged: u64,
    /// Replayed lines whose decision changed.
    pub changed: u64,
    /// Of those: allow → deny.
    pub allow_to_deny: u64,
    /// Of the allow → deny: those the recorded `would` did not predict.
    pub unexpected_denies: u64,
    /// Of those: deny → allow.
    pub deny_to_allow: u64,
    /// Of those: same effect, something else changed.
    pub other_changes: u64,
    /// Lines recorded under the replayed policy itself.
    pub records_under_same_policy: u64,
    /// Of those, how many changed (a sign of missing inputs in the log).
    pub changed_under_same_policy: u64,
    /// Changes, grouped; allow → deny first, then by count.
    pub groups: Vec<ChangeGroup>,
    /// Changes beyond the group limit (counted, not grouped).
    pub ungrouped_changes: u64,
    /// Policy hashes the lines were recorded under, most lines first.
    pub recorded_policies: Vec<(String, u64)>,
    /// Lines recorded under further hashes.
    pub other_recorded_policies: u64,
    /// Dry-run outcomes by rule.
    pub would: Vec<WouldRow>,
    /// Things the reader should know about the replay's fidelity.
    pub warnings: Vec<String>,
}

impl ReplayReport {
    /// Whether `fail_on` is triggered.
    pub fn fails(&self, fail_on: FailOn) -> bool {
        match fail_on {
            FailOn::AllowToDeny => self.allow_to_deny > 0,
            FailOn::UnexpectedDeny => self.unexpected_denies > 0,
            FailOn::AnyChange => self.changed > 0,
            FailOn::Never => false,
        }
    }

    /// The report as JSON (`log` and `policy_file` name the inputs).
    pub fn to_json(&self, log: &str, policy_file: &str) -> serde_json::Value {
        json!({
            "policy": {"file": policy_file, "name": self.policy_name, "policy_hash": self.policy_hash},
            "log": log,
            "lines": self.lines,
            "other_lines": self.other_lines,
            "audit_lines": self.audit_lines,
            "replayed": self.replayed,
            "outbound": self.outbound,
            "malformed": self.malformed,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "allow_to_deny": self.allow_to_deny,
            "unexpected_denies": self.unexpected_denies,
            "deny_to_allow": self.deny_to_allow,
            "other_changes": self.other_changes,
            "groups": self.groups.iter().map(|g| json!({
                "kind": g.kind.code(),
                "predicted_by_dry_run": g.predicted,
                "count": g.count,
                "caller": g.caller,
                "old": g.old.to_json(),
                "new": g.new.to_json(),
                "examples": g.examples.iter().map(|e| json!({
                    "line": e.line,
                    "request_id": e.request_id,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "ungrouped_changes": self.ungrouped_changes,
            "malformed_lines": self.malformed_lines.iter().map(|m| json!({
                "line": m.line,
                "error": m.error,
            })).collect::<Vec<_>>(),
            "malformed_lines_listed": self.malformed_lines.len(),
            "would_be_by_rule": self.would.iter().map(|w| json!({
                "rule": w.rule,
                "recorded": {"would_allow": w.recorded.allow, "would_deny": w.recorded.deny},
                "replayed": {"would_allow": w.replayed.allow, "would_deny": w.replayed.deny},
            })).collect::<Vec<_>>(),
            "recorded_policies": self.recorded_policies.iter().map(|(hash, lines)| json!({
                "policy_hash": hash,
                "lines": lines,
                "this_policy": *hash == self.policy_hash,
            })).collect::<Vec<_>>(),
            "other_recorded_policies": self.other_recorded_policies,
            "warning_count": self.warnings.len(),
            "warnings": self.warnings.iter().map(|w| json!({"message": w})).collect::<Vec<_>>(),
        })
    }

    /// The report as text (`log` and `policy_file` name the inputs).
    pub fn to_text(&self, log: &str, policy_file: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "replay of `{log}` against `{policy_file}` (policy `{}`, sha256 {})",
            self.policy_name, self.policy_hash
        );
        let _ = writeln!(
            out,
            "  lines {}: audit lines {}, other lines skipped {}, malformed {}",
            self.lines, self.audit_lines, self.other_lines, self.malformed
        );
        let _ = writeln!(
            out,
            "  replayed {}: unchanged {}, changed {} (allow → deny {}, of which not predicted by dry-run {}; deny → allow {}; other {})",
            self.replayed,
            self.unchanged,
            self.changed,
            self.allow_to_deny,
            self.unexpected_denies,
            self.deny_to_allow,
            self.other_changes
        );
        if self.outbound > 0 {
            let _ = writeln!(
                out,
                "  outbound lines (refused caller chains, decided by the proxy's seal key, not the policy): {}",
                self.outbound
            );
        }
        let mut current = None;
        for group in &self.groups {
            if current != Some(group.kind) {
                current = Some(group.kind);
                let total = match group.kind {
                    ChangeKind::AllowToDeny => self.allow_to_deny,
                    ChangeKind::DenyToAllow => self.deny_to_allow,
                    ChangeKind::Other => self.other_changes,
                };
                let _ = writeln!(out, "\n{} ({total})", group.kind.title());
            }
            let note = match (group.kind, group.predicted) {
                (_, true) => "  [predicted by dry-run]",
                (ChangeKind::AllowToDeny, false) => "  [NOT predicted by dry-run]",
                (_, false) => "",
            };
            let _ = writeln!(
                out,
                "  {:>6}×  {}  {}{note}",
                group.count,
                group.caller,
                group.intent_text()
            );
            let _ = writeln!(out, "           was  {}", group.old);
            let _ = writeln!(out, "           now  {}", group.new);
            let examples: Vec<String> = group
                .examples
                .iter()
                .map(|e| match &e.request_id {
                    Some(id) => format!("line {} (request {id})", e.line),
                    None => format!("line {}", e.line),
                })
                .collect();
            if !examples.is_empty() {
                let _ = writeln!(out, "           e.g. {}", examples.join(", "));
            }
        }
        if self.ungrouped_changes > 0 {
            let _ = writeln!(
                out,
                "\n{} more changed line(s) beyond the group limit",
                self.ungrouped_changes
            );
        }
        if !self.would.is_empty() {
            let _ = writeln!(
                out,
                "\ndry-run outcomes by deciding rule: the rows add up to Envoy's meshward_would_be counters;\na `mode dry-run` rule's row is its meshward_rules{{mode=\"dry_run\"}} series"
            );
            let width = self
                .would
                .iter()
                .map(|w| w.rule.as_deref().map_or(9, str::len))
                .max()
                .unwrap_or(0)
                .max(4);
            let _ = writeln!(
                out,
                "  {:<width$}  {:>15}  {:>11}  {:>15}  {:>11}",
                "rule", "recorded: allow", "deny", "replayed: allow", "deny"
            );
            for row in &self.would {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>15}  {:>11}  {:>15}  {:>11}",
                    row.rule.as_deref().unwrap_or("(no rule)"),
                    row.recorded.allow,
                    row.recorded.deny,
                    row.replayed.allow,
                    row.replayed.deny
                );
            }
        }
        if self.malformed > 0 {
            let _ = writeln!(out, "\nmalformed lines ({})", self.malformed);
            for m in &self.malformed_lines {
                let _ = writeln!(out, "  line {}: {}", m.line, m.error);
            }
            let unlisted = self.malformed - self.malformed_lines.len() as u64;
            if unlisted > 0 {
                let _ = writeln!(out, "  … and {unlisted} more");
            }
        }
        if !self.recorded_policies.is_empty() {
            let _ = writeln!(out, "\nrecorded under");
            for (hash, lines) in &self.recorded_policies {
                let this = if *hash == self.policy_hash {
                    " (this policy)"
                } else {
                    ""
                };
                let _ = writeln!(out, "  {hash}  {lines} line(s){this}");
            }
            if self.other_recorded_policies > 0 {
                let _ = writeln!(
                    out,
                    "  … and {} line(s) under other policies",
                    self.other_recorded_policies
                );
            }
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "\nwarning: {warning}");
        }
        out
    }
}
