//! `meshward replay`: re-decide the filter's recorded audit lines against
//! another policy, with the same engine, and report what would change.
//!
//! ```text
//! audit lines ──Lines (bounded)──▶ AuditRecord ──record::decide(new policy)──▶ Decision
//!     └─ recorded decision, rule, intent, would ──compare──▶ ReplayReport
//! ```
//!
//! The log is read line by line in bounded memory: [`Lines`] never keeps more
//! than [`MAX_LINE_BYTES`] of one line, changes are aggregated into at most
//! [`ReplayOptions::max_groups`] groups with at most
//! [`ReplayOptions::examples`] examples each, and at most
//! [`ReplayOptions::max_malformed_listed`] malformed lines are listed (all
//! are counted). A line is an audit line when it is a JSON object (an audit
//! `.jsonl` file) or holds the filter's `meshward.audit ` marker (a raw
//! Envoy log); other lines are counted and skipped. An audit line that does
//! not parse, or records something impossible, is *malformed*: counted and
//! listed with its line number, never silently dropped.
//!
//! A decision is unchanged when the effect, reason, intent, deciding rule and
//! the dry-run outcome (`would`) are all the same, so a dry-run rule that
//! would start denying shows up as a change even while nothing is enforced.

mod input;
mod record;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead};

use meshward_engine::audit::AuditRecord;
use meshward_engine::model::Effect;
use meshward_engine::{Decision, Policy};

use crate::outcome::OfflineFilter;

pub use input::{audit_json, Line, Lines, AUDIT_MARKER, MAX_LINE_BYTES};
pub use report::{
    ChangeGroup, ChangeKind, Example, MalformedLine, ReplayReport, Verdict, WouldRow, WouldVerdict,
};

/// When `replay` should fail (exit non-zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// Some recorded allow would become a deny (the default CI gate).
    #[default]
    AllowToDeny,
    /// Some recorded allow would become a deny that the recorded dry-run
    /// outcome (`would`) did not predict: for promoting a dry-run policy,
    /// whose would-denies are known, to an enforced one.
    UnexpectedDeny,
    /// Any decision would change (including dry-run outcomes).
    AnyChange,
    /// Never: report only.
    Never,
}

/// Limits and presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Example lines kept per change group.
    pub examples: usize,
    /// Distinct change groups kept; further changes are counted only.
    pub max_groups: usize,
    /// Malformed lines listed; all are counted.
    pub max_malformed_listed: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            examples: 3,
            max_groups: 10_000,
            max_malformed_listed: 1_000,
        }
    }
}

/// Most distinct recorded policy hashes listed.
const MAX_RECORDED_POLICIES: usize = 16;
/// Most distinct rule ids in the dry-run table.
const MAX_WOULD_RULES: usize = 1_000;
/// How often (in lines) the progress callback is called.
const PROGRESS_EVERY: u64 = 8_192;

/// Replays every line of `input` against `policy`. `progress` receives
/// (lines, bytes) read so far every few thousand lines. Fails only when
/// reading fails (or the policy cannot be loaded into the pipeline); bad
/// lines are part of the report.
pub fn replay<R: BufRead>(
    policy: &Policy,
    input: R,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<ReplayReport> {
    let mut lines = Lines::new(input, MAX_LINE_BYTES);
    let mut replayer = Replayer::new(policy, *options).map_err(io::Error::other)?;
    while let Some((number, line)) = lines.next_line()? {
        replayer.line(number, &line);
        if number % PROGRESS_EVERY == 0 {
            let bytes = lines.bytes_read();
            progress(number, bytes);
        }
    }
    progress(replayer.report.lines, lines.bytes_read());
    Ok(replayer.finish())
}

/// Replays lines one at a time (for callers with their own reading loop).
pub struct Replayer<'p> {
    policy: &'p Policy,
    /// The filter's pipeline, loaded with `policy`: what decides each line.
    filter: OfflineFilter,
    options: ReplayOptions,
    report: ReplayReport,
    groups: HashMap<GroupKey, ChangeGroup>,
    would: BTreeMap<String, WouldRow>,
    recorded_policies: BTreeMap<String, u64>,
    /// The new policy's condition headers, and how many records carried each.
    headers_seen: Vec<(String, u64)>,
    /// The new policy's user claims, and how many records' users carried each.
    claims_seen: Vec<(String, u64)>,
    records_with_user: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    kind: ChangeKind,
    caller: String,
    old: Verdict,
    new: Verdict,
}

impl<'p> Replayer<'p> {
    /// A replayer against `policy`. Fails only if the policy cannot be
    /// loaded into the filter's pipeline.
    pub fn new(policy: &'p Policy, options: ReplayOptions) -> Result<Self, String> {
        Ok(Replayer {
            policy,
            filter: OfflineFilter::for_policy(policy)?,
            options,
            report: ReplayReport {
                policy_name: policy.name().to_owned(),
                policy_hash: policy.hash_hex().to_owned(),
                ..ReplayReport::default()
            },
            groups: HashMap::new(),
            would: BTreeMap::new(),
            recorded_policies: BTreeMap::new(),
            headers_seen: policy
                .condition_headers()
                .iter()
                .map(|h| (h.clone(), 0))
                .collect(),
            claims_seen: policy
                .user_claim_names()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|c| (c.to_owned(), 0))
                .collect(),
            records_with_user: 0,
        })
    }

    /// Takes one line of the log.
    pub fn line(&mut self, number: u64, line: &Line<'_>) {
        self.report.lines += 1;
        let bytes = match line {
            Line::TooLong { bytes } => {
                self.report.audit_lines += 1;
                return self.malformed(
                    number,
                    format!("line of {bytes} bytes is longer than the {MAX_LINE_BYTES}-byte limit"),
                );
            }
            Line::Text(bytes) => *bytes,
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                let lossy = String::from_utf8_lossy(bytes);
                if audit_json(&lossy).is_none() {
                    self.report.other_lines += 1;
                    return;
                }
                self.report.audit_lines += 1;
                return self.malformed(number, "not valid UTF-8".to_owned());
            }
        };
        let Some(json) = audit_json(text) else {
            self.report.other_lines += 1;
            return;
        };
        self.report.audit_lines += 1;
        let record: AuditRecord = match input::parse_record(json) {
            Ok(Some(record)) => record,
            // An access-log line of a request the filter never decided.
            Ok(None) => {
                self.report.audit_lines -= 1;
                self.report.other_lines += 1;
                return;
            }
            Err(error) if error.is_eof() => {
                return self.malformed(number, format!("truncated JSON ({error})"))
            }
            Err(error) => return self.malformed(number, format!("not an audit record: {error}")),
        };
        if record.direction.as_deref() == Some("outbound") {
            // An outbound line records a refused chain: its seal was checked
            // with that proxy's own key, which no policy changes.
            self.report.outbound += 1;
            return;
        }
        if let Err(problem) = check_recorded(&record) {
            return self.malformed(number, problem);
        }
        match record::decide(&mut self.filter, &record) {
            Ok(decision) => self.compare(number, &record, &decision),
            Err(problem) => self.malformed(number, problem),
        }
    }

    fn malformed(&mut self, line: u64, error: String) {
        self.report.malformed += 1;
        if self.report.malformed_lines.len() < self.options.max_malformed_listed {
            self.report
                .malformed_lines
                .push(MalformedLine { line, error });
        }
    }

    fn compare(&mut self, number: u64, record: &AuditRecord, decision: &Decision) {
        let policy = self.policy;
        self.report.replayed += 1;
        self.observe(record, decision);
        let same_policy = record.policy == policy.hash_hex();
        if same_policy {
            self.report.records_under_same_policy += 1;
        }
        if unchanged(policy, record, decision) {
            self.report.unchanged += 1;
            return;
        }
        self.report.changed += 1;
        if same_policy {
            self.report.changed_under_same_policy += 1;
        }
        let kind = match (record.decision.as_str(), decision.effect) {
            ("allow", Effect::Deny) => ChangeKind::AllowToDeny,
            ("deny", Effect::Allow) => ChangeKind::DenyToAllow,
            _ => ChangeKind::Other,
        };
        let predicted = record
            .would
            .as_ref()
            .is_some_and(|w| w.decision == decision.effect.as_str());
        match kind {
            ChangeKind::AllowToDeny if !predicted => {
                self.report.allow_to_deny += 1;
                self.report.unexpected_denies += 1;
            }
            ChangeKind::AllowToDeny => self.report.allow_to_deny += 1,
            ChangeKind::DenyToAllow => self.report.deny_to_allow += 1,
            ChangeKind::Other => self.report.other_changes += 1,
        }
        let key = GroupKey {
            kind,
            caller: caller(record),
            old: Verdict::recorded(record),
            new: Verdict::replayed(policy, decision),
        };
        let examples = self.options.examples;
        if !self.groups.contains_key(&key) && self.groups.len() >= self.options.max_groups {
            self.report.ungrouped_changes += 1;
            return;
        }
        let group = self
            .groups
            .entry(key)
            .or_insert_with_key(|key| ChangeGroup {
                kind: key.kind,
                predicted,
                caller: key.caller.clone(),
                old: key.old.clone(),
                new: key.new.clone(),
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < examples {
            group.examples.push(Example {
                line: number,
                request_id: record.request_id.clone(),
            });
        }
    }

    /// Tallies what the summary tables and warnings need.
    fn observe(&mut self, record: &AuditRecord, decision: &Decision) {
        let policy = self.policy;
        if let Some(count) = self.recorded_policies.get_mut(&record.policy) {
            *count += 1;
        } else if self.recorded_policies.len() < MAX_RECORDED_POLICIES {
            self.recorded_policies.insert(record.policy.clone(), 1);
        } else {
            self.report.other_recorded_policies += 1;
        }
        if let Some(would) = &record.would {
            let deny = would.decision == "deny";
            if let Some(row) = self.would_row(would.rule.as_deref()) {
                row.recorded.add(deny);
            }
        }
        if let Some(would) = decision.would_be {
            let rule = would.rule.map(|r| policy.rule_id(r));
            if let Some(row) = self.would_row(rule) {
                row.replayed.add(would.effect == Effect::Deny);
            }
        }
        for (name, seen) in &mut self.headers_seen {
            if record.headers.contains_key(name.as_str()) {
                *seen += 1;
            }
        }
        if let Some(user) = &record.user {
            self.records_with_user += 1;
            for (name, seen) in &mut self.claims_seen {
                if user.claims.contains_key(name.as_str()) {
                    *seen += 1;
                }
            }
        }
    }

    fn would_row(&mut self, rule: Option<&str>) -> Option<&mut WouldRow> {
        let key = rule.unwrap_or_default();
        if !self.would.contains_key(key) && self.would.len() >= MAX_WOULD_RULES {
            return None;
        }
        Some(
            self.would
                .entry(key.to_owned())
                .or_insert_with(|| WouldRow {
                    rule: rule.map(str::to_owned),
                    ..WouldRow::default()
                }),
        )
    }

    /// The finished report, groups sorted (allow → deny first, then by count).
    pub fn finish(mut self) -> ReplayReport {
        let mut groups: Vec<ChangeGroup> = self.groups.into_values().collect();
        groups.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then(a.predicted.cmp(&b.predicted))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.caller.cmp(&b.caller))
                .then_with(|| a.old.cmp(&b.old))
                .then_with(|| a.new.cmp(&b.new))
        });
        self.report.groups = groups;
        self.report.would = self.would.into_values().collect();
        let mut policies: Vec<(String, u64)> = self.recorded_policies.into_iter().collect();
        policies.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.report.recorded_policies = policies;
        let warnings = &mut self.report.warnings;
        if self.report.audit_lines == 0 {
            warnings.push(
                "no audit lines found: expected one JSON audit record per line, or Envoy log lines with `meshward.audit {json}`"
                    .to_owned(),
            );
        }
        for (header, seen) in &self.headers_seen {
            if *seen == 0 && self.report.replayed > 0 {
                warnings.push(format!(
                    "the policy's conditions read header `{header}`, which no audit line recorded: the filter logs only headers its policy read, so if the recorded policy did not read `{header}` replay treats it as absent"
                ));
            }
        }
        for (claim, seen) in &self.claims_seen {
            if *seen == 0 && self.records_with_user > 0 {
                warnings.push(format!(
                    "the policy's conditions read user claim `{claim}`, which no recorded user carried: replay treats it as missing"
                ));
            }
        }
        if self.report.changed_under_same_policy > 0 {
            warnings.push(format!(
                "{} line(s) recorded under this very policy decide differently on replay: their audit lines lack an input the policy reads, or the filter that wrote them is older or newer than this engine",
                self.report.changed_under_same_policy
            ));
        }
        self.report
    }
}

/// What a record must hold for its verdict to be compared.
fn check_recorded(record: &AuditRecord) -> Result<(), String> {
    let effect_ok = |d: &str| d == "allow" || d == "deny";
    if !effect_ok(&record.decision) {
        return Err(format!(
            "`decision` is `{}`, not `allow` or `deny`",
            record.decision
        ));
    }
    if let Some(would) = &record.would {
        if !effect_ok(&would.decision) {
            return Err(format!(
                "`would.decision` is `{}`, not `allow` or `deny`",
                would.decision
            ));
        }
    }
    Ok(())
}

/// Whether the replayed decision says exactly what the record says.
fn unchanged(policy: &Policy, record: &AuditRecord, decision: &Decision) -> bool {
    let would_same = match (&record.would, decision.would_be) {
        (None, None) => true,
        (Some(old), Some(new)) => {
            old.decision == new.effect.as_str()
                && old.reason == new.reason.code()
                && old.rule.as_deref() == new.rule.map(|r| policy.rule_id(r))
        }
        _ => false,
    };
    would_same
        && record.decision == decision.effect.as_str()
        && record.reason == decision.reason.code()
        && record.rule.as_deref() == decision.rule.map(|r| policy.rule_id(r))
        && record.intent.as_deref() == decision.intent.map(|i| policy.intent_name(i))
}

/// Who called, in workload identities (users are not grouped on: too many).
fn caller(record: &AuditRecord) -> String {
    let mut caller = match (&record.peer, &record.peer_error) {
        (Some(peer), _) => peer.clone(),
        (None, Some(reason)) => format!("no peer ({reason})"),
        (None, None) => "no peer".to_owned(),
    };
    match (&record.jwt_svid, &record.jwt_svid_error) {
        (Some(subject), _) => {
            caller.push_str(" + jwt_svid ");
            caller.push_str(subject);
        }
        (None, Some(reason)) => {
            caller.push_str(" + jwt_svid refused (");
            caller.push_str(reason);
            caller.push(')');
        }
        (None, None) => {}
    }
    caller
}

#[cfg(test)]
mod tests;
