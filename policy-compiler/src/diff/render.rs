//! `PolicyDiff` as text for a terminal and JSON for tools.

use std::fmt::Write as _;

use meshward_engine::model::Effect;
use serde_json::json;

use super::{mode, GrantHow, ListChange, PolicyDiff};

fn how_text(how: &GrantHow) -> String {
    let mut text = format!("by {}", how.rule);
    if how.dry_run {
        text.push_str(" (dry-run)");
    }
    if !how.conditions.is_empty() {
        text.push_str(" when ");
        text.push_str(&how.conditions.join(", "));
    }
    text
}

fn hows_text(hows: &[GrantHow]) -> String {
    hows.iter().map(how_text).collect::<Vec<_>>().join("; ")
}

fn list_text(change: &ListChange) -> String {
    let mut parts: Vec<String> = change.added.iter().map(|a| format!("+ {a}")).collect();
    parts.extend(change.removed.iter().map(|r| format!("- {r}")));
    parts.join(", ")
}

fn how_json(how: &GrantHow) -> serde_json::Value {
    json!({"rule": how.rule, "mode": mode(how.dry_run), "conditions": how.conditions})
}

fn list_json(change: &ListChange) -> serde_json::Value {
    json!({"added": change.added, "removed": change.removed})
}

impl PolicyDiff {
    /// Readable text; `old_file` and `new_file` name the inputs.
    pub fn to_text(&self, old_file: &str, new_file: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "diff `{old_file}` → `{new_file}`");
        let _ = writeln!(
            out,
            "  policy `{}` (sha256 {}) → `{}` (sha256 {})",
            self.old.0, self.old.1, self.new.0, self.new.1
        );
        if self.is_empty() {
            let _ = writeln!(out, "\nno semantic changes");
            return out;
        }
        if !self.settings.is_empty() {
            let _ = writeln!(out, "\npolicy settings");
            for s in &self.settings {
                let _ = writeln!(out, "  ~ {}: {} → {}", s.setting, s.old, s.new);
            }
        }
        if !self.grants.is_empty() {
            let _ = writeln!(out, "\ngrants (effect subject → intent; groups expanded)");
            for g in &self.grants {
                let principal = if g.principal == "peer" {
                    String::new()
                } else {
                    format!(" [principal {}]", g.principal)
                };
                let _ = writeln!(
                    out,
                    "  {} {} {}{principal} → {}",
                    g.change.sign(),
                    g.effect.as_str(),
                    g.subject,
                    g.intent
                );
                match (g.old.is_empty(), g.new.is_empty()) {
                    (true, _) => {
                        let _ = writeln!(out, "      {}", hows_text(&g.new));
                    }
                    (_, true) => {
                        let _ = writeln!(out, "      was {}", hows_text(&g.old));
                    }
                    _ => {
                        let _ = writeln!(out, "      was {}", hows_text(&g.old));
                        let _ = writeln!(out, "      now {}", hows_text(&g.new));
                    }
                }
            }
        }
        let moved: Vec<(&str, bool, bool)> = self.mode_changes().collect();
        if !moved.is_empty() {
            let _ = writeln!(out, "\nrules moved between dry-run and enforce");
            for (id, old, new) in moved {
                let _ = writeln!(out, "  ~ {id}: {} → {}", mode(old), mode(new));
            }
        }
        if !self.rules.is_empty() {
            let _ = writeln!(out, "\nrules");
            for r in &self.rules {
                let mut details = Vec::new();
                if let Some(summary) = &r.summary {
                    details.push(summary.clone());
                }
                if let Some((old, new)) = r.effect_changed {
                    details.push(format!("effect {} → {}", old.as_str(), new.as_str()));
                }
                if let Some((old, new)) = r.mode_changed {
                    details.push(format!("mode {} → {}", mode(old), mode(new)));
                }
                if let Some((old, new)) = &r.principal_changed {
                    details.push(format!("principal {old} → {new}"));
                }
                for (what, change) in [
                    ("subjects", &r.subjects),
                    ("intents", &r.intents),
                    ("conditions", &r.conditions),
                ] {
                    if !change.is_empty() {
                        details.push(format!("{what} {}", list_text(change)));
                    }
                }
                let _ = writeln!(
                    out,
                    "  {} {} {}: {}",
                    r.change.sign(),
                    r.effect.as_str(),
                    r.id,
                    details.join("; ")
                );
            }
        }
        if !self.intents.is_empty() {
            let _ = writeln!(out, "\nintents");
            for i in &self.intents {
                let mut details = Vec::new();
                if let Some(summary) = &i.summary {
                    details.push(summary.clone());
                }
                if let Some((old, new)) = &i.methods {
                    details.push(format!("methods {old} → {new}"));
                }
                if let Some((old, new)) = &i.host {
                    details.push(format!("host {old} → {new}"));
                }
                if !i.routes.is_empty() {
                    details.push(format!("routes {}", list_text(&i.routes)));
                }
                let _ = writeln!(
                    out,
                    "  {} {}: {}",
                    i.change.sign(),
                    i.name,
                    details.join("; ")
                );
            }
        }
        let added = self
            .grants
            .iter()
            .filter(|g| g.effect == Effect::Allow && g.change == super::Change::Added)
            .count();
        let removed = self
            .grants
            .iter()
            .filter(|g| g.effect == Effect::Allow && g.change == super::Change::Removed)
            .count();
        let _ = writeln!(
            out,
            "\n{} setting(s), {} grant(s) ({added} allow added, {removed} allow removed), {} rule(s), {} intent(s) changed",
            self.settings.len(),
            self.grants.len(),
            self.rules.len(),
            self.intents.len()
        );
        out
    }

    /// JSON; `old_file` and `new_file` name the inputs.
    pub fn to_json(&self, old_file: &str, new_file: &str) -> serde_json::Value {
        json!({
            "old": {"file": old_file, "name": self.old.0, "policy_hash": self.old.1},
            "new": {"file": new_file, "name": self.new.0, "policy_hash": self.new.1},
            "changed": !self.is_empty(),
            "settings": self.settings.iter().map(|s| json!({
                "setting": s.setting, "old": s.old, "new": s.new,
            })).collect::<Vec<_>>(),
            "grants": self.grants.iter().map(|g| json!({
                "change": g.change.code(),
                "effect": g.effect.as_str(),
                "principal": g.principal,
                "subject": g.subject,
                "intent": g.intent,
                "old": g.old.iter().map(how_json).collect::<Vec<_>>(),
                "new": g.new.iter().map(how_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "mode_changes": self.mode_changes().map(|(id, old, new)| json!({
                "rule": id, "old": mode(old), "new": mode(new),
            })).collect::<Vec<_>>(),
            "rules": self.rules.iter().map(|r| json!({
                "id": r.id,
                "change": r.change.code(),
                "effect": r.effect.as_str(),
                "summary": r.summary,
                "effect_changed": r.effect_changed.map(|(o, n)| json!({"old": o.as_str(), "new": n.as_str()})),
                "mode_changed": r.mode_changed.map(|(o, n)| json!({"old": mode(o), "new": mode(n)})),
                "principal_changed": r.principal_changed.as_ref().map(|(o, n)| json!({"old": o, "new": n})),
                "subjects": list_json(&r.subjects),
                "intents": list_json(&r.intents),
                "conditions": list_json(&r.conditions),
            })).collect::<Vec<_>>(),
            "intents": self.intents.iter().map(|i| json!({
                "name": i.name,
                "change": i.change.code(),
                "summary": i.summary,
                "methods": i.methods.as_ref().map(|(o, n)| json!({"old": o, "new": n})),
                "host": i.host.as_ref().map(|(o, n)| json!({"old": o, "new": n})),
                "routes": list_json(&i.routes),
            })).collect::<Vec<_>>(),
        })
    }
}
