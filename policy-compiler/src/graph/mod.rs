//! `meshward graph`: who may do what, drawn.
//!
//! Three columns: **who** (subjects as the rules write them: groups, IDs,
//! patterns, trust domains, `any_authenticated`, end users) → **what**
//! (intents) → **where** (services: an intent's `host`, or its name before
//! the first `.`). Each rule draws an edge from each of its subjects to each
//! of its intents: allow edges green, deny edges red, dry-run edges dashed,
//! labelled with the rule id, principal and conditions. Rules that share
//! the same subject, intent, effect and mode share one edge.
//!
//! Output: Graphviz DOT ([`Graph::to_dot`]), or a self-contained HTML page
//! with an SVG laid out here, without Graphviz or any network
//! ([`Graph::to_html`]).

mod dot;
mod html;
mod layout;
mod svg;

use std::collections::BTreeMap;

use meshward_engine::model::Effect;

use crate::ast::{EffectKw, Item, Mode, PrincipalExpr, RuleStatement, SubjectExpr};
use crate::span::Span;
use crate::{model_text, syntax, Compiled};

/// Which column a node sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    /// Subjects.
    Who,
    /// Intents.
    What,
    /// Services.
    Where,
}

/// A box in the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Stable id (`who:group:edge`, `what:orders.read`, `where:orders`).
    pub id: String,
    /// Column.
    pub column: Column,
    /// First line.
    pub label: String,
    /// Second line (intent routes, group size), may be empty.
    pub detail: String,
    /// Hover text (group members, full routes).
    pub tooltip: String,
}

/// An arrow between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// `Some` for rule edges (who → what); `None` for intent → service.
    pub effect: Option<Effect>,
    /// A dry-run rule (or a rule of a dry-run policy).
    pub dry_run: bool,
    /// One line per rule: id, principal, conditions.
    pub rules: Vec<String>,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Policy name.
    pub name: String,
    /// Content hash (hex).
    pub hash: String,
    /// Whole-policy dry-run.
    pub dry_run: bool,
    /// Nodes, by column, in first-use order.
    pub nodes: Vec<Node>,
    /// Edges.
    pub edges: Vec<Edge>,
}

/// The text of `span` in `source`, `when ` dropped and whitespace collapsed.
fn source_text(source: &str, span: Span) -> String {
    let text = source.get(span.start..span.end).unwrap_or_default();
    let text = text.strip_prefix("when").map_or(text, str::trim_start);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Graph {
    /// Builds the graph of a policy that compiled (`compiled` is `source`'s).
    pub fn new(source: &str, compiled: &Compiled) -> Graph {
        let policy = &compiled.policy;
        let (ast, _) = syntax::parse(source);
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for item in &ast.items {
            if let Item::Group(group) = item {
                groups.insert(
                    &group.name.value,
                    group.members.iter().map(|m| m.value.as_str()).collect(),
                );
            }
        }
        let mut graph = Graph {
            name: model_text::string(policy, policy.name).to_owned(),
            hash: compiled.hash_hex(),
            dry_run: policy.dry_run,
            nodes: Vec::new(),
            edges: Vec::new(),
        };
        // Intents and services in declaration order.
        for intent in &policy.intents {
            let name = model_text::string(policy, intent.name);
            let summary = model_text::intent_summary(policy, intent);
            graph.add_node(Node {
                id: format!("what:{name}"),
                column: Column::What,
                label: name.to_owned(),
                detail: shorten(&summary, 40),
                tooltip: summary,
            });
            let service = match intent.host {
                Some(host) => model_text::string(policy, host).to_owned(),
                None => name.split('.').next().unwrap_or(name).to_owned(),
            };
            graph.add_node(Node {
                id: format!("where:{service}"),
                column: Column::Where,
                label: service.clone(),
                detail: String::new(),
                tooltip: format!("service {service}"),
            });
            graph.add_edge(
                format!("what:{name}"),
                format!("where:{service}"),
                None,
                false,
                None,
            );
        }
        for item in &ast.items {
            let Item::Rule(rule) = item else { continue };
            let effect = match rule.effect.value {
                EffectKw::Allow => Effect::Allow,
                EffectKw::Deny => Effect::Deny,
            };
            let mut dry_run = policy.dry_run;
            let mut principal = None;
            let mut subjects = Vec::new();
            let mut intents = Vec::new();
            let mut conditions = Vec::new();
            for statement in &rule.statements {
                match statement {
                    RuleStatement::Subject(subject) => subjects.push(subject),
                    RuleStatement::Intents { intents: refs, .. } => intents.extend(refs),
                    RuleStatement::When(condition) => {
                        conditions.push(source_text(source, condition.span));
                    }
                    RuleStatement::Mode { mode, .. } => {
                        dry_run = dry_run || mode.value == Mode::DryRun;
                    }
                    RuleStatement::Principal { principal: p, .. } => principal = Some(p),
                }
            }
            let mut label = rule.id.value.clone();
            match principal {
                None | Some(PrincipalExpr::Peer(_)) => {}
                Some(PrincipalExpr::JwtSvid(_)) => label.push_str(" · as JWT-SVID"),
                Some(PrincipalExpr::JwtSvidVia { via, .. }) => {
                    let via: Vec<String> = via.iter().map(subject_label).collect();
                    label.push_str(&format!(" · as JWT-SVID via {}", via.join(" ")));
                }
                Some(PrincipalExpr::PeerBoundJwtSvid(_)) => {
                    label.push_str(" · as peer-bound JWT-SVID");
                }
                Some(PrincipalExpr::User(_)) => {}
            }
            if !conditions.is_empty() {
                label.push_str(" · when ");
                label.push_str(&conditions.join(", "));
            }
            let mut froms = Vec::new();
            if matches!(principal, Some(PrincipalExpr::User(_))) {
                graph.add_node(Node {
                    id: "who:user".to_owned(),
                    column: Column::Who,
                    label: "any verified user".to_owned(),
                    detail: "principal user".to_owned(),
                    tooltip: "an end user from a verified token (or the chain)".to_owned(),
                });
                froms.push("who:user".to_owned());
            }
            for subject in subjects {
                let node = subject_node(subject, &groups);
                froms.push(node.id.clone());
                graph.add_node(node);
            }
            for intent in intents {
                let to = match intent {
                    crate::ast::IntentRef::Named(name) => format!("what:{}", name.value),
                    crate::ast::IntentRef::Unclassified(_) => {
                        graph.add_node(Node {
                            id: "what:unclassified".to_owned(),
                            column: Column::What,
                            label: "unclassified".to_owned(),
                            detail: "requests that match no intent".to_owned(),
                            tooltip: "requests that match no intent".to_owned(),
                        });
                        "what:unclassified".to_owned()
                    }
                };
                for from in &froms {
                    graph.add_edge(
                        from.clone(),
                        to.clone(),
                        Some(effect),
                        dry_run,
                        Some(&label),
                    );
                }
            }
        }
        graph
    }

    fn add_node(&mut self, node: Node) {
        if !self.nodes.iter().any(|n| n.id == node.id) {
            self.nodes.push(node);
        }
    }

    fn add_edge(
        &mut self,
        from: String,
        to: String,
        effect: Option<Effect>,
        dry_run: bool,
        rule: Option<&str>,
    ) {
        let existing = self
            .edges
            .iter_mut()
            .find(|e| e.from == from && e.to == to && e.effect == effect && e.dry_run == dry_run);
        let edge = match existing {
            Some(edge) => edge,
            None => {
                self.edges.push(Edge {
                    from,
                    to,
                    effect,
                    dry_run,
                    rules: Vec::new(),
                });
                match self.edges.last_mut() {
                    Some(edge) => edge,
                    None => return,
                }
            }
        };
        if let Some(rule) = rule {
            if !edge.rules.iter().any(|r| r == rule) {
                edge.rules.push(rule.to_owned());
            }
        }
    }

    /// Nodes of one column, in order.
    pub fn column(&self, column: Column) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.column == column)
    }
}

fn subject_label(subject: &SubjectExpr) -> String {
    match subject {
        SubjectExpr::Group(name) => format!("group {}", name.value),
        SubjectExpr::Id(id) => id.value.clone(),
        SubjectExpr::Domain(td) => format!("domain {}", td.value),
        SubjectExpr::AnyAuthenticated(_) => "any_authenticated".to_owned(),
    }
}

fn subject_node(subject: &SubjectExpr, groups: &BTreeMap<&str, Vec<&str>>) -> Node {
    let label = subject_label(subject);
    let (detail, tooltip) = match subject {
        SubjectExpr::Group(name) => {
            let members = groups.get(name.value.as_str()).cloned().unwrap_or_default();
            let detail = match members.as_slice() {
                [only] => shorten(only, 40),
                _ => format!("{} members", members.len()),
            };
            (
                detail,
                format!("group {}: {}", name.value, members.join(", ")),
            )
        }
        SubjectExpr::Id(id) if id.value.contains('*') => (
            "pattern".to_owned(),
            format!("SPIFFE ID pattern {}", id.value),
        ),
        SubjectExpr::Id(id) => (String::new(), format!("workload {}", id.value)),
        SubjectExpr::Domain(td) => (
            "whole trust domain".to_owned(),
            format!("every workload of trust domain {}", td.value),
        ),
        SubjectExpr::AnyAuthenticated(_) => (
            "any verified peer".to_owned(),
            "any verified peer of a trusted domain".to_owned(),
        ),
    };
    Node {
        id: format!("who:{label}"),
        column: Column::Who,
        label,
        detail,
        tooltip,
    }
}

/// At most `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
