//! A small layered layout for the three-column graph: column order by the
//! barycenter heuristic (a few sweeps), boxes stacked per column and
//! centered, rule labels in the first gap pushed apart so none overlap, and
//! every rule edge routed through its label. Sizes come from character
//! counts in a monospace font, so no font metrics are needed.

use super::{Column, Graph};

/// Width of one character of node text (12 px monospace).
pub(super) const CHAR_W: f64 = 7.3;
/// Width of one character of edge-label text (10 px monospace).
pub(super) const SMALL_CHAR_W: f64 = 6.1;
/// Line height of node text.
pub(super) const LINE_H: f64 = 16.0;
/// Line height of edge-label text.
pub(super) const SMALL_LINE_H: f64 = 13.0;
/// Inner padding of a box.
pub(super) const PAD: f64 = 8.0;
/// Most characters of one label line before it wraps.
pub(super) const MAX_LABEL_CHARS: usize = 48;
/// Most wrapped condition lines under one rule id.
const MAX_LABEL_LINES: usize = 4;
/// Most characters of node text.
pub(super) const MAX_NODE_CHARS: usize = 56;

const MARGIN: f64 = 24.0;
const HEADER_H: f64 = 64.0;
const NODE_GAP: f64 = 14.0;
const LABEL_GAP: f64 = 6.0;
const EDGE_RUN: f64 = 36.0;
const SERVICE_GAP: f64 = 110.0;

/// A placed box: top-left corner and size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
    pub fn right(&self) -> f64 {
        self.x + self.w
    }
}

/// Where everything goes.
#[derive(Debug, Clone, Default)]
pub(super) struct Layout {
    pub width: f64,
    pub height: f64,
    /// By node index.
    pub nodes: Vec<Rect>,
    /// By edge index; `Some` for rule edges.
    pub labels: Vec<Option<Rect>>,
    /// Column x positions and widths (who, what, where).
    pub columns: [Rect; 3],
}

fn chars(text: &str, max: usize) -> usize {
    text.chars().count().min(max)
}

/// The label lines of edge `index` (effect and rules), cut to fit.
pub(super) fn label_lines(graph: &Graph, index: usize) -> Vec<String> {
    let Some(edge) = graph.edges.get(index) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for rule in &edge.rules {
        // `id · principal · when conditions`: the id first, the rest wrapped.
        let mut parts = rule.split(" · ");
        if let Some(id) = parts.next() {
            lines.push(super::shorten(id, MAX_LABEL_CHARS));
        }
        let mut wrapped: Vec<String> = Vec::new();
        for part in parts {
            let mut line = String::from(" ");
            for word in part.split(' ') {
                if line.chars().count() + word.chars().count() + 1 > MAX_LABEL_CHARS
                    && !line.trim().is_empty()
                {
                    wrapped.push(std::mem::replace(&mut line, String::from("   ")));
                }
                line.push(' ');
                line.push_str(word);
            }
            wrapped.push(line);
        }
        if wrapped.len() > MAX_LABEL_LINES {
            wrapped.truncate(MAX_LABEL_LINES);
            if let Some(last) = wrapped.last_mut() {
                *last = super::shorten(&format!("{last} …"), MAX_LABEL_CHARS + 2);
            }
        }
        lines.extend(
            wrapped
                .into_iter()
                .map(|l| super::shorten(&l, MAX_LABEL_CHARS + 2)),
        );
    }
    lines
}

fn column_index(column: Column) -> usize {
    match column {
        Column::Who => 0,
        Column::What => 1,
        Column::Where => 2,
    }
}

/// Orders the nodes of each column to keep edges short and crossings few.
fn order(graph: &Graph) -> [Vec<usize>; 3] {
    let mut columns: [Vec<usize>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if let Some(col) = columns.get_mut(column_index(node.column)) {
            col.push(i);
        }
    }
    let index_of = |id: &str| graph.nodes.iter().position(|n| n.id == id);
    let links: Vec<(usize, usize)> = graph
        .edges
        .iter()
        .filter_map(|e| Some((index_of(&e.from)?, index_of(&e.to)?)))
        .collect();
    // Sweeps: what by who, where by what, who by what.
    for _ in 0..6 {
        for (target, source, forward) in [(1usize, 0usize, true), (2, 1, true), (0, 1, false)] {
            let positions: Vec<(usize, f64)> = columns
                .get(source)
                .map(|c| c.iter().enumerate().map(|(p, n)| (*n, p as f64)).collect())
                .unwrap_or_default();
            let position = |node: usize| positions.iter().find(|(n, _)| *n == node).map(|p| p.1);
            let Some(col) = columns.get_mut(target) else {
                continue;
            };
            let mut keyed: Vec<(f64, usize, usize)> = col
                .iter()
                .enumerate()
                .map(|(current, node)| {
                    let neighbours: Vec<f64> = links
                        .iter()
                        .filter_map(|(a, b)| {
                            let (mine, other) = if forward { (*b, *a) } else { (*a, *b) };
                            (mine == *node).then(|| position(other)).flatten()
                        })
                        .collect();
                    let key = if neighbours.is_empty() {
                        current as f64
                    } else {
                        neighbours.iter().sum::<f64>() / neighbours.len() as f64
                    };
                    (key, current, *node)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *col = keyed.into_iter().map(|(_, _, node)| node).collect();
        }
    }
    columns
}

/// Lays the graph out.
pub(super) fn layout(graph: &Graph) -> Layout {
    let columns = order(graph);
    let node_w = |col: &[usize]| {
        col.iter()
            .filter_map(|i| graph.nodes.get(*i))
            .map(|n| {
                chars(&n.label, MAX_NODE_CHARS).max(chars(&n.detail, MAX_NODE_CHARS)) as f64
                    * CHAR_W
                    + 2.0 * PAD
            })
            .fold(120.0, f64::max)
    };
    let node_h = |i: usize| {
        let lines = match graph.nodes.get(i) {
            Some(n) if !n.detail.is_empty() => 2.0,
            _ => 1.0,
        };
        lines * LINE_H + 2.0 * PAD
    };
    let label_sizes: Vec<Option<(f64, f64)>> = (0..graph.edges.len())
        .map(|i| {
            let lines = label_lines(graph, i);
            (!lines.is_empty()).then(|| {
                let longest = lines
                    .iter()
                    .map(|l| chars(l, MAX_LABEL_CHARS + 2))
                    .max()
                    .unwrap_or(0);
                (
                    longest as f64 * SMALL_CHAR_W + 2.0 * 5.0,
                    lines.len() as f64 * SMALL_LINE_H + 6.0,
                )
            })
        })
        .collect();
    let label_w = label_sizes
        .iter()
        .flatten()
        .map(|(w, _)| *w)
        .fold(0.0, f64::max);
    let [who, what, where_] = &columns;
    let widths = [node_w(who), node_w(what), node_w(where_)];
    let xs = [
        MARGIN,
        MARGIN + widths[0] + label_w + 2.0 * EDGE_RUN,
        MARGIN + widths[0] + label_w + 2.0 * EDGE_RUN + widths[1] + SERVICE_GAP,
    ];
    let heights: Vec<f64> = columns
        .iter()
        .map(|col| col.iter().map(|i| node_h(*i) + NODE_GAP).sum::<f64>())
        .collect();
    let tallest = heights.iter().copied().fold(0.0, f64::max);
    let mut nodes = vec![Rect::default(); graph.nodes.len()];
    for (c, col) in columns.iter().enumerate() {
        let mut y = HEADER_H + (tallest - heights.get(c).copied().unwrap_or(0.0)) / 2.0;
        for i in col {
            let h = node_h(*i);
            if let Some(slot) = nodes.get_mut(*i) {
                *slot = Rect {
                    x: xs.get(c).copied().unwrap_or(0.0),
                    y,
                    w: widths.get(c).copied().unwrap_or(0.0),
                    h,
                };
            }
            y += h + NODE_GAP;
        }
    }
    let rect_of = |id: &str| {
        graph
            .nodes
            .iter()
            .position(|n| n.id == id)
            .and_then(|i| nodes.get(i))
            .copied()
    };
    // Labels: ideally halfway between their ends, then pushed apart.
    let label_x = xs[0] + widths[0] + EDGE_RUN;
    let mut wanted: Vec<(f64, usize, f64, f64)> = graph
        .edges
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let (w, h) = label_sizes.get(i).copied().flatten()?;
            let from = rect_of(&e.from)?;
            let to = rect_of(&e.to)?;
            Some(((from.mid_y() + to.mid_y()) / 2.0 - h / 2.0, i, w, h))
        })
        .collect();
    wanted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut labels = vec![None; graph.edges.len()];
    let mut bottom = HEADER_H;
    for (y, i, w, h) in wanted {
        let y = y.max(bottom);
        bottom = y + h + LABEL_GAP;
        if let Some(slot) = labels.get_mut(i) {
            *slot = Some(Rect {
                x: label_x + (label_w - w) / 2.0,
                y,
                w,
                h,
            });
        }
    }
    let height = (HEADER_H + tallest).max(bottom) + MARGIN;
    let width = xs[2] + widths[2] + MARGIN;
    Layout {
        width,
        height,
        nodes,
        labels,
        columns: [
            Rect {
                x: xs[0],
                y: 0.0,
                w: widths[0],
                h: 0.0,
            },
            Rect {
                x: xs[1],
                y: 0.0,
                w: widths[1],
                h: 0.0,
            },
            Rect {
                x: xs[2],
                y: 0.0,
                w: widths[2],
                h: 0.0,
            },
        ],
    }
}
