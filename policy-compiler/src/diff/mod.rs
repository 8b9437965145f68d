//! `meshward diff`: what changes, semantically, between two policy versions.
//!
//! Both sides are compared as the filter sees them — the compiled model,
//! groups expanded into subjects — so renaming a group, moving a member
//! between groups or reformatting changes nothing here, while a member added
//! to a group shows up as the grants it adds. Four views:
//!
//! - **settings**: policy name, mode, trust domains, certificate lifetime
//!   bound, chain forwarders, depth and lifetime;
//! - **grants**: each (effect, principal, subject, intent) that some rule
//!   covers, with how (rule, mode, conditions); a grant appears, disappears,
//!   or is kept with different conditions or mode;
//! - **rules**, by id: added, removed, or changed effect, mode (dry-run ↔
//!   enforce, also listed on its own), principal, subjects, intents, conditions;
//! - **intents**, by name: added, removed, or changed methods, host, routes.

mod render;

use std::collections::{BTreeMap, BTreeSet};

use meshward_engine::model::{CompiledPolicy, Effect, Rule};

use crate::model_text as text;
use crate::Compiled;

/// A setting's old and new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// `name`, `mode`, `trust_domains`, `max_cert_lifetime`, `chain.max_depth`, ….
    pub setting: &'static str,
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only in the new policy.
    Added,
    /// Only in the old policy.
    Removed,
    /// In both, different.
    Changed,
}

impl Change {
    /// `added` / `removed` / `changed`.
    pub fn code(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }

    fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

/// How a rule grants (or denies) one (subject, intent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantHow {
    /// The rule.
    pub rule: String,
    /// Dry-run rather than enforced.
    pub dry_run: bool,
    /// Its conditions, in policy-language words.
    pub conditions: Vec<String>,
}

/// One (effect, principal, subject, intent) whose coverage changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantChange {
    /// Added, removed or changed (conditions or mode).
    pub change: Change,
    /// Allow or deny.
    pub effect: Effect,
    /// `peer`, `jwt_svid`, `jwt_svid via …`, `peer_bound_jwt_svid`, `user`.
    pub principal: String,
    /// The subject as written (groups expanded); `any user` for `principal user`.
    pub subject: String,
    /// Intent name or `unclassified`.
    pub intent: String,
    /// How the old policy covered it.
    pub old: Vec<GrantHow>,
    /// How the new policy covers it.
    pub new: Vec<GrantHow>,
}

/// Old and new values of a list: what was added and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListChange {
    /// In the new list only.
    pub added: Vec<String>,
    /// In the old list only.
    pub removed: Vec<String>,
}

impl ListChange {
    fn of(old: &[String], new: &[String]) -> ListChange {
        let old_set: BTreeSet<&String> = old.iter().collect();
        let new_set: BTreeSet<&String> = new.iter().collect();
        ListChange {
            added: new_set.difference(&old_set).map(|s| (*s).clone()).collect(),
            removed: old_set.difference(&new_set).map(|s| (*s).clone()).collect(),
        }
    }

    /// Nothing added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// A rule, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    /// The rule id.
    pub id: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The effect (the new one when changed).
    pub effect: Effect,
    /// `(old, new)` effect when it changed.
    pub effect_changed: Option<(Effect, Effect)>,
    /// `(old dry_run, new dry_run)` when the mode changed.
    pub mode_changed: Option<(bool, bool)>,
    /// `(old, new)` principal when it changed.
    pub principal_changed: Option<(String, String)>,
    /// Subjects added and removed (groups expanded).
    pub subjects: ListChange,
    /// Intents added and removed.
    pub intents: ListChange,
    /// Conditions added and removed.
    pub conditions: ListChange,
    /// For an added or removed rule: its one-line summary.
    pub summary: Option<String>,
}

/// An intent, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentChange {
    /// The intent's name.
    pub name: String,
    /// Added, removed or changed.
    pub change: Change,
    /// `(old, new)` methods when changed (`any` = every method).
    pub methods: Option<(String, String)>,
    /// `(old, new)` host when changed (`any` = every host).
    pub host: Option<(String, String)>,
    /// Routes added and removed.
    pub routes: ListChange,
    /// For an added or removed intent: its routes on one line.
    pub summary: Option<String>,
}

/// Everything that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiff {
    /// Old policy name and hash.
    pub old: (String, String),
    /// New policy name and hash.
    pub new: (String, String),
    /// Policy-level settings.
    pub settings: Vec<SettingChange>,
    /// Grants, sorted by intent, subject, effect.
    pub grants: Vec<GrantChange>,
    /// Rules, in id order.
    pub rules: Vec<RuleChange>,
    /// Intents, in name order.
    pub intents: Vec<IntentChange>,
}

impl PolicyDiff {
    /// No semantic difference.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.grants.is_empty()
            && self.rules.is_empty()
            && self.intents.is_empty()
    }

    /// Rules whose mode moved between dry-run and enforce.
    pub fn mode_changes(&self) -> impl Iterator<Item = (&str, bool, bool)> {
        self.rules
            .iter()
            .filter_map(|r| r.mode_changed.map(|(old, new)| (r.id.as_str(), old, new)))
    }
}

/// Compares two compiled policies.
pub fn diff(old: &Compiled, new: &Compiled) -> PolicyDiff {
    let (o, n) = (&old.policy, &new.policy);
    PolicyDiff {
        old: (text::string(o, o.name).to_owned(), old.hash_hex()),
        new: (text::string(n, n.name).to_owned(), new.hash_hex()),
        settings: settings(o, n),
        grants: grants(o, n),
        rules: rules(o, n),
        intents: intents(o, n),
    }
}

fn mode(dry_run: bool) -> &'static str {
    if dry_run {
        "dry-run"
    } else {
        "enforce"
    }
}

fn settings(o: &CompiledPolicy, n: &CompiledPolicy) -> Vec<SettingChange> {
    let mut out = Vec::new();
    let mut compare = |setting: &'static str, old: String, new: String| {
        if old != new {
            out.push(SettingChange { setting, old, new });
        }
    };
    compare(
        "name",
        text::string(o, o.name).to_owned(),
        text::string(n, n.name).to_owned(),
    );
    compare(
        "mode",
        mode(o.dry_run).to_owned(),
        mode(n.dry_run).to_owned(),
    );
    let domains = |p: &CompiledPolicy| {
        let set: BTreeSet<&str> = p
            .trust_domains
            .iter()
            .map(|d| text::string(p, *d))
            .collect();
        set.into_iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    compare("trust_domains", domains(o), domains(n));
    let lifetime = |p: &CompiledPolicy| {
        p.limits
            .max_cert_lifetime_secs
            .map_or_else(|| "none".to_owned(), |s| format!("{s}s"))
    };
    compare("max_cert_lifetime", lifetime(o), lifetime(n));
    let forwarders = |p: &CompiledPolicy| {
        let set: BTreeSet<String> = p
            .chain
            .forwarders
            .iter()
            .map(|s| text::subject(p, s))
            .collect();
        if set.is_empty() {
            "none".to_owned()
        } else {
            set.into_iter().collect::<Vec<_>>().join(" ")
        }
    };
    compare("chain.forwarders", forwarders(o), forwarders(n));
    compare(
        "chain.max_depth",
        o.chain.max_depth.to_string(),
        n.chain.max_depth.to_string(),
    );
    compare(
        "chain.lifetime",
        format!("{}s", o.chain.lifetime_secs),
        format!("{}s", n.chain.lifetime_secs),
    );
    out
}

/// The subject a `principal user` rule stands for.
const ANY_USER: &str = "any user";

fn rule_intents(p: &CompiledPolicy, rule: &Rule) -> Vec<String> {
    let mut names: Vec<String> = rule
        .intents
        .iter()
        .map(|i| {
            p.intents.get(i.index()).map_or_else(
                || format!("<intent #{i}>"),
                |intent| text::string(p, intent.name).to_owned(),
            )
        })
        .collect();
    if rule.unclassified {
        names.push("unclassified".to_owned());
    }
    names
}

fn rule_subjects(p: &CompiledPolicy, rule: &Rule) -> Vec<String> {
    if rule.subjects.is_empty() {
        return vec![ANY_USER.to_owned()];
    }
    rule.subjects.iter().map(|s| text::subject(p, s)).collect()
}

fn rule_conditions(p: &CompiledPolicy, rule: &Rule) -> Vec<String> {
    let mut conditions: Vec<String> = rule
        .conditions
        .iter()
        .map(|c| text::condition(p, c))
        .collect();
    conditions.sort();
    conditions
}

type GrantKey = (String, String, String, &'static str);

/// (intent, subject, principal, effect) → how each rule covers it.
fn grant_map(p: &CompiledPolicy) -> BTreeMap<GrantKey, Vec<GrantHow>> {
    let mut map: BTreeMap<GrantKey, Vec<GrantHow>> = BTreeMap::new();
    for rule in &p.rules {
        let how = GrantHow {
            rule: text::string(p, rule.id).to_owned(),
            dry_run: rule.dry_run,
            conditions: rule_conditions(p, rule),
        };
        let principal = text::principal(p, &rule.principal);
        for intent in rule_intents(p, rule) {
            for subject in rule_subjects(p, rule) {
                map.entry((
                    intent.clone(),
                    subject,
                    principal.clone(),
                    rule.effect.as_str(),
                ))
                .or_default()
                .push(how.clone());
            }
        }
    }
    for hows in map.values_mut() {
        hows.sort();
    }
    map
}

/// Coverage without the rule ids: a renamed rule changes no grant.
fn coverage(hows: &[GrantHow]) -> Vec<(bool, &[String])> {
    let mut cover: Vec<(bool, &[String])> = hows
        .iter()
        .map(|h| (h.dry_run, h.conditions.as_slice()))
        .collect();
    cover.sort();
    cover.dedup();
    cover
}

fn grants(o: &CompiledPolicy, n: &CompiledPolicy) -> Vec<GrantChange> {
    let old = grant_map(o);
    let new = grant_map(n);
    let keys: BTreeSet<&GrantKey> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let before = old.get(key).cloned().unwrap_or_default();
        let after = new.get(key).cloned().unwrap_or_default();
        let change = match (before.is_empty(), after.is_empty()) {
            (true, _) => Change::Added,
            (_, true) => Change::Removed,
            _ if coverage(&before) != coverage(&after) => Change::Changed,
            _ => continue,
        };
        let (intent, subject, principal, effect) = key;
        out.push(GrantChange {
            change,
            effect: if *effect == "deny" {
                Effect::Deny
            } else {
                Effect::Allow
            },
            principal: principal.clone(),
            subject: subject.clone(),
            intent: intent.clone(),
            old: before,
            new: after,
        });
    }
    out
}

fn rule_summary(p: &CompiledPolicy, rule: &Rule) -> String {
    let mut parts = vec![format!(
        "{} {}",
        rule_subjects(p, rule).join(" "),
        rule_intents(p, rule).join(" ")
    )];
    if rule.principal != meshward_engine::model::Principal::Peer {
        parts.push(format!("principal {}", text::principal(p, &rule.principal)));
    }
    let conditions = rule_conditions(p, rule);
    if !conditions.is_empty() {
        parts.push(format!("when {}", conditions.join(", ")));
    }
    if rule.dry_run {
        parts.push("dry-run".to_owned());
    }
    parts.join("; ")
}

fn rules(o: &CompiledPolicy, n: &CompiledPolicy) -> Vec<RuleChange> {
    let by_id = |p: &'_ CompiledPolicy| -> BTreeMap<String, Rule> {
        p.rules
            .iter()
            .map(|r| (text::string(p, r.id).to_owned(), r.clone()))
            .collect()
    };
    let (old, new) = (by_id(o), by_id(n));
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let base = |change, rule: &Rule, p: &CompiledPolicy| RuleChange {
            id: id.clone(),
            change,
            effect: rule.effect,
            effect_changed: None,
            mode_changed: None,
            principal_changed: None,
            subjects: ListChange::default(),
            intents: ListChange::default(),
            conditions: ListChange::default(),
            summary: Some(rule_summary(p, rule)),
        };
        match (old.get(id), new.get(id)) {
            (None, Some(rule)) => out.push(base(Change::Added, rule, n)),
            (Some(rule), None) => out.push(base(Change::Removed, rule, o)),
            (Some(a), Some(b)) => {
                let (pa, pb) = (
                    text::principal(o, &a.principal),
                    text::principal(n, &b.principal),
                );
                let change = RuleChange {
                    id: id.clone(),
                    change: Change::Changed,
                    effect: b.effect,
                    effect_changed: (a.effect != b.effect).then_some((a.effect, b.effect)),
                    mode_changed: (a.dry_run != b.dry_run).then_some((a.dry_run, b.dry_run)),
                    principal_changed: (pa != pb).then_some((pa, pb)),
                    subjects: ListChange::of(&rule_subjects(o, a), &rule_subjects(n, b)),
                    intents: ListChange::of(&rule_intents(o, a), &rule_intents(n, b)),
                    conditions: ListChange::of(&rule_conditions(o, a), &rule_conditions(n, b)),
                    summary: None,
                };
                let changed = change.effect_changed.is_some()
                    || change.mode_changed.is_some()
                    || change.principal_changed.is_some()
                    || !change.subjects.is_empty()
                    || !change.intents.is_empty()
                    || !change.conditions.is_empty();
                if changed {
                    out.push(change);
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn intents(o: &CompiledPolicy, n: &CompiledPolicy) -> Vec<IntentChange> {
    let by_name = |p: &'_ CompiledPolicy| -> BTreeMap<String, meshward_engine::model::Intent> {
        p.intents
            .iter()
            .map(|i| (text::string(p, i.name).to_owned(), i.clone()))
            .collect()
    };
    let (old, new) = (by_name(o), by_name(n));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    let any = |s: Option<String>| s.unwrap_or_else(|| "any".to_owned());
    for name in names {
        let base = |change, summary| IntentChange {
            name: name.clone(),
            change,
            methods: None,
            host: None,
            routes: ListChange::default(),
            summary: Some(summary),
        };
        match (old.get(name), new.get(name)) {
            (None, Some(i)) => out.push(base(Change::Added, text::intent_summary(n, i))),
            (Some(i), None) => out.push(base(Change::Removed, text::intent_summary(o, i))),
            (Some(a), Some(b)) => {
                let methods = (any(text::methods(a.methods)), any(text::methods(b.methods)));
                let host = (
                    any(a.host.map(|h| text::string(o, h).to_owned())),
                    any(b.host.map(|h| text::string(n, h).to_owned())),
                );
                let routes = ListChange::of(
                    &a.routes
                        .iter()
                        .map(|r| text::route(o, r))
                        .collect::<Vec<_>>(),
                    &b.routes
                        .iter()
                        .map(|r| text::route(n, r))
                        .collect::<Vec<_>>(),
                );
                let change = IntentChange {
                    name: name.clone(),
                    change: Change::Changed,
                    methods: (methods.0 != methods.1).then_some(methods),
                    host: (host.0 != host.1).then_some(host),
                    routes,
                    summary: None,
                };
                if change.methods.is_some() || change.host.is_some() || !change.routes.is_empty() {
                    out.push(change);
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
