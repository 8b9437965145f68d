//! The laid-out graph as one standalone SVG element.

use std::fmt::Write as _;

use meshward_engine::model::Effect;

use super::dot::{ALLOW, DENY, PLAIN};
use super::layout::{self, Rect, CHAR_W, LINE_H, MAX_NODE_CHARS, PAD, SMALL_LINE_H};
use super::{shorten, Column, Graph};

/// Escapes text for XML content and attribute values.
pub(super) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn fill(column: Column) -> &'static str {
    match column {
        Column::Who => "#ddf4ff",
        Column::What => "#fff8c5",
        Column::Where => "#eaeef2",
    }
}

fn curve(out: &mut String, from: (f64, f64), to: (f64, f64)) {
    let mid = (from.0 + to.0) / 2.0;
    let _ = write!(
        out,
        "M{:.1},{:.1} C{mid:.1},{:.1} {mid:.1},{:.1} {:.1},{:.1}",
        from.0, from.1, from.1, to.1, to.0, to.1
    );
}

impl Graph {
    /// The drawing as an `<svg>` element (no scripts, no external references).
    pub fn to_svg(&self) -> String {
        let layout = layout::layout(self);
        let rect_of = |id: &str| -> Option<Rect> {
            self.nodes
                .iter()
                .position(|n| n.id == id)
                .and_then(|i| layout.nodes.get(i))
                .copied()
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"meshward-graph\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-labelledby=\"graph-title\" font-family=\"ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace\" font-size=\"12\">",
            w = layout.width,
            h = layout.height
        );
        let _ = writeln!(
            out,
            "<title id=\"graph-title\">who may do what: policy {}</title>",
            xml(&self.name)
        );
        let _ = writeln!(
            out,
            "<defs>\n<marker id=\"head-allow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{ALLOW}\"/></marker>\n<marker id=\"head-deny\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M8,0 L8,10\" stroke=\"{DENY}\" stroke-width=\"3\"/></marker>\n</defs>"
        );
        let _ = writeln!(
            out,
            "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
        );
        // Column headings.
        for (column, title) in
            layout
                .columns
                .iter()
                .zip(["who", "may do what (intents)", "on which service"])
        {
            let _ = writeln!(
                out,
                "<text class=\"heading\" x=\"{:.1}\" y=\"26\" font-size=\"14\" font-weight=\"bold\" fill=\"#24292f\">{}</text>",
                column.x,
                xml(title)
            );
        }
        // Legend.
        let legend_x = layout.columns[0].x;
        let _ = writeln!(
            out,
            "<g class=\"legend\" font-size=\"11\" fill=\"#57606a\"><path d=\"M{x:.1},44 h28\" stroke=\"{ALLOW}\" stroke-width=\"2\" marker-end=\"url(#head-allow)\"/><text x=\"{t1:.1}\" y=\"48\">allow</text><path d=\"M{x2:.1},44 h28\" stroke=\"{DENY}\" stroke-width=\"2\" marker-end=\"url(#head-deny)\"/><text x=\"{t2:.1}\" y=\"48\">deny</text><path d=\"M{x3:.1},44 h28\" stroke=\"#57606a\" stroke-width=\"2\" stroke-dasharray=\"5 4\"/><text x=\"{t3:.1}\" y=\"48\">dry-run (reported, not enforced)</text></g>",
            x = legend_x,
            t1 = legend_x + 34.0,
            x2 = legend_x + 80.0,
            t2 = legend_x + 114.0,
            x3 = legend_x + 154.0,
            t3 = legend_x + 188.0,
        );
        // Edges under everything else.
        for (i, edge) in self.edges.iter().enumerate() {
            let (Some(from), Some(to)) = (rect_of(&edge.from), rect_of(&edge.to)) else {
                continue;
            };
            let (color, class, marker) = match edge.effect {
                Some(Effect::Allow) => (ALLOW, "edge allow", "url(#head-allow)"),
                Some(Effect::Deny) => (DENY, "edge deny", "url(#head-deny)"),
                None => (PLAIN, "edge service", ""),
            };
            let mut d = String::new();
            let start = (from.right(), from.mid_y());
            let end = (to.x - 2.0, to.mid_y());
            match layout.labels.get(i).copied().flatten() {
                Some(label) => {
                    curve(&mut d, start, (label.x, label.mid_y()));
                    let _ = write!(d, " L{:.1},{:.1} ", label.right(), label.mid_y());
                    curve(&mut d, (label.right(), label.mid_y()), end);
                }
                None => curve(&mut d, start, end),
            }
            let dash = if edge.dry_run {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let marker = if marker.is_empty() {
                String::new()
            } else {
                format!(" marker-end=\"{marker}\"")
            };
            let width = if edge.effect == Some(Effect::Deny) {
                "2"
            } else {
                "1.5"
            };
            let _ = writeln!(
                out,
                "<path class=\"{class}\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{dash}{marker}><title>{}</title></path>",
                xml(&edge_title(self, i))
            );
        }
        // Edge labels.
        for (i, edge) in self.edges.iter().enumerate() {
            let Some(label) = layout.labels.get(i).copied().flatten() else {
                continue;
            };
            let color = match edge.effect {
                Some(Effect::Deny) => DENY,
                _ => ALLOW,
            };
            let dash = if edge.dry_run {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<g class=\"edge-label\"><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"3\" fill=\"#ffffff\" stroke=\"{color}\" stroke-width=\"0.8\"{dash}/>",
                xml(&edge_title(self, i)),
                label.x,
                label.y,
                label.w,
                label.h
            );
            for (n, line) in layout::label_lines(self, i).iter().enumerate() {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{color}\" xml:space=\"preserve\"{}>{}</text>",
                    label.x + 5.0,
                    label.y + 3.0 + SMALL_LINE_H * (n as f64 + 1.0) - 3.0,
                    if line.starts_with(' ') { "" } else { " font-weight=\"bold\"" },
                    xml(line)
                );
            }
            let _ = writeln!(out, "</g>");
        }
        // Nodes.
        for (node, rect) in self.nodes.iter().zip(&layout.nodes) {
            let shape = match node.column {
                Column::Where => "rx=\"14\"",
                _ => "rx=\"6\"",
            };
            let _ = writeln!(
                out,
                "<g class=\"node\" data-id=\"{}\"><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" {shape} fill=\"{}\" stroke=\"#57606a\" stroke-width=\"1\"/>",
                xml(&node.id),
                xml(&node.tooltip),
                rect.x,
                rect.y,
                rect.w,
                rect.h,
                fill(node.column)
            );
            let _ = writeln!(
                out,
                "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#24292f\">{}</text>",
                rect.x + PAD,
                rect.y + PAD + LINE_H - 4.0,
                xml(&shorten(&node.label, MAX_NODE_CHARS))
            );
            if !node.detail.is_empty() {
                let _ = writeln!(
                    out,
                    "<text class=\"detail\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10.5\" fill=\"#57606a\">{}</text>",
                    rect.x + PAD,
                    rect.y + PAD + 2.0 * LINE_H - 4.0,
                    xml(&shorten(&node.detail, MAX_NODE_CHARS))
                );
            }
            let _ = writeln!(out, "</g>");
        }
        let _ = CHAR_W;
        out.push_str("</svg>\n");
        out
    }
}

/// The full text of an edge: effect, mode, every rule line uncut.
pub(super) fn edge_title(graph: &Graph, index: usize) -> String {
    let Some(edge) = graph.edges.get(index) else {
        return String::new();
    };
    let node_label = |id: &str| {
        graph
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(id, |n| n.label.as_str())
            .to_owned()
    };
    match edge.effect {
        None => format!(
            "{} is served by {}",
            node_label(&edge.from),
            node_label(&edge.to)
        ),
        Some(effect) => format!(
            "{} {} → {}{}: {}",
            effect.as_str(),
            node_label(&edge.from),
            node_label(&edge.to),
            if edge.dry_run { " (dry-run)" } else { "" },
            edge.rules.join("; ")
        ),
    }
}
