use super::*;
use crate::compile_source;

fn graph_of(path: &str) -> Graph {
    let source = std::fs::read_to_string(path).unwrap();
    let compiled = compile_source(&source, path).unwrap_or_else(|d| panic!("{d}"));
    Graph::new(&source, &compiled)
}

fn shop() -> Graph {
    graph_of(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop.policy"))
}

#[test]
fn nodes_and_edges_of_the_shop() {
    let g = shop();
    let who: Vec<&str> = g.column(Column::Who).map(|n| n.label.as_str()).collect();
    assert!(who.contains(&"group edge"));
    assert!(who.contains(&"group support-tools"));
    assert!(who.contains(&"any_authenticated"));
    assert!(who.contains(&"spiffe://shop.example/ns/shop/**"));
    let services: Vec<&str> = g.column(Column::Where).map(|n| n.label.as_str()).collect();
    assert_eq!(services, ["frontend", "orders", "payments", "ops"]);
    let refunds = g
        .edges
        .iter()
        .find(|e| e.to == "what:payments.refund" && e.from == "who:group support-tools")
        .unwrap();
    assert!(refunds.dry_run);
    assert_eq!(refunds.effect, Some(Effect::Allow));
    let deny = g
        .edges
        .iter()
        .find(|e| e.effect == Some(Effect::Deny) && e.to == "what:ops.admin")
        .unwrap();
    assert_eq!(deny.rules, ["no-admin-from-shop"]);
    let conditional = g
        .edges
        .iter()
        .find(|e| {
            e.rules
                .iter()
                .any(|r| r.starts_with("frontend-reads-orders"))
        })
        .unwrap();
    assert_eq!(
        conditional.rules[0],
        "frontend-reads-orders · when origin group edge, complete, user scope \"orders.read\""
    );
}

#[test]
fn layout_keeps_labels_apart_and_inside() {
    let g = shop();
    let l = layout::layout(&g);
    let mut labels: Vec<layout::Rect> = l.labels.iter().flatten().copied().collect();
    labels.sort_by(|a, b| a.y.total_cmp(&b.y));
    for pair in labels.windows(2) {
        assert!(pair[0].y + pair[0].h <= pair[1].y, "{pair:?}");
    }
    for r in l.nodes.iter().chain(&labels) {
        assert!(r.x >= 0.0 && r.y >= 0.0 && r.right() <= l.width && r.y + r.h <= l.height);
    }
}

#[test]
fn outputs_escape_what_they_embed() {
    let source = "policy \"a<b>&\\\"c\" {\n  trust_domains \"x.example\"\n}\nintent i.x { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i.x\n  when header \"x-q\" == \"<script>\\\"\"\n}\n";
    let compiled = compile_source(source, "e.policy").unwrap_or_else(|d| panic!("{d}"));
    let g = Graph::new(source, &compiled);
    let html = g.to_html();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    let dot = g.to_dot();
    assert!(dot.contains(r#"a<b>&\"c"#), "{dot}");
    assert!(dot.contains(r#"== \"<script>\\\"\""#), "{dot}");
}
