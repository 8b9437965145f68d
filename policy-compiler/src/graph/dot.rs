//! The graph as Graphviz DOT (`dot -Tsvg graph.dot > graph.svg`).

use std::fmt::Write as _;

use meshward_engine::model::Effect;

use super::{Column, Graph};

/// A DOT double-quoted string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) const ALLOW: &str = "#1a7f37";
pub(super) const DENY: &str = "#cf222e";
pub(super) const PLAIN: &str = "#8c959f";

impl Graph {
    /// Graphviz DOT: columns as clusters, allow edges green, deny edges red
    /// with a bar head, dry-run edges dashed, labels = rules and conditions.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let mode = if self.dry_run { " (dry-run)" } else { "" };
        let _ = writeln!(
            out,
            "// meshward graph: policy {} sha256 {}\ndigraph meshward {{",
            quoted(&self.name),
            self.hash
        );
        let _ = writeln!(
            out,
            "  graph [rankdir=LR, ranksep=1.4, nodesep=0.25, fontname=\"Helvetica\", labelloc=t, label={}];",
            quoted(&format!("who may do what: policy {}{mode}", self.name))
        );
        let _ = writeln!(
            out,
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];"
        );
        let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=9];");
        for (column, cluster, title, fill, shape) in [
            (Column::Who, "who", "who", "#ddf4ff", "box"),
            (
                Column::What,
                "what",
                "may do what (intents)",
                "#fff8c5",
                "box",
            ),
            (
                Column::Where,
                "where",
                "on which service",
                "#eaeef2",
                "cylinder",
            ),
        ] {
            let _ = writeln!(
                out,
                "  subgraph cluster_{cluster} {{\n    label={};\n    color=\"#d0d7de\";",
                quoted(title)
            );
            for node in self.column(column) {
                let label = if node.detail.is_empty() {
                    node.label.clone()
                } else {
                    format!("{}\n{}", node.label, node.detail)
                };
                let _ = writeln!(
                    out,
                    "    {} [label={}, tooltip={}, shape={shape}, fillcolor=\"{fill}\"];",
                    quoted(&node.id),
                    quoted(&label),
                    quoted(&node.tooltip)
                );
            }
            let _ = writeln!(out, "  }}");
        }
        for edge in &self.edges {
            let mut attrs = Vec::new();
            match edge.effect {
                Some(Effect::Allow) => {
                    attrs.push(format!("color=\"{ALLOW}\""));
                    attrs.push(format!("fontcolor=\"{ALLOW}\""));
                }
                Some(Effect::Deny) => {
                    attrs.push(format!("color=\"{DENY}\""));
                    attrs.push(format!("fontcolor=\"{DENY}\""));
                    attrs.push("arrowhead=tee".to_owned());
                    attrs.push("penwidth=1.6".to_owned());
                }
                None => {
                    attrs.push(format!("color=\"{PLAIN}\""));
                    attrs.push("arrowhead=none".to_owned());
                }
            }
            if edge.dry_run {
                attrs.push("style=dashed".to_owned());
            }
            if let Some(effect) = edge.effect {
                let mut lines: Vec<String> = Vec::new();
                lines.push(format!(
                    "{}{}",
                    effect.as_str(),
                    if edge.dry_run { " (dry-run)" } else { "" }
                ));
                lines.extend(edge.rules.iter().cloned());
                attrs.push(format!("label={}", quoted(&lines.join("\n"))));
            }
            let _ = writeln!(
                out,
                "  {} -> {} [{}];",
                quoted(&edge.from),
                quoted(&edge.to),
                attrs.join(", ")
            );
        }
        out.push_str("}\n");
        out
    }
}
