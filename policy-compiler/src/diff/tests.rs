use super::*;
use crate::compile_source;

const OLD: &str = r#"
policy "shop" {
  trust_domains "shop.example"
  mode dry-run
}
group readers {
  member "spiffe://shop.example/ns/shop/sa/frontend"
  member "spiffe://shop.example/ns/shop/sa/cart"
}
intent orders.read {
  method GET
  path "/orders/{id}"
}
intent orders.write {
  method POST
  path "/orders"
}
allow readers-read {
  subject group readers
  intent orders.read
  when header "x-env" == "prod"
}
allow cart-writes {
  subject "spiffe://shop.example/ns/shop/sa/cart"
  intent orders.write
  mode dry-run
}
"#;

fn compiled(source: &str) -> Compiled {
    compile_source(source, "p.policy").unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn identical_and_reformatted_policies_do_not_differ() {
    let a = compiled(OLD);
    assert!(diff(&a, &a).is_empty());
    // Same meaning, written differently: the group inlined, comments added.
    let b = compiled(
        &OLD.replace("  subject group readers\n", "  # inlined\n  subject \"spiffe://shop.example/ns/shop/sa/cart\"\n  subject \"spiffe://shop.example/ns/shop/sa/frontend\"\n")
            .replace("group readers {", "group unused {"),
    );
    let d = diff(&a, &b);
    assert!(d.is_empty(), "{}", d.to_text("a", "b"));
}

#[test]
fn grants_rules_modes_and_settings() {
    let a = compiled(OLD);
    let new = OLD
        .replace("  mode dry-run\n}\ngroup", "}\ngroup")
        .replace(
            "  member \"spiffe://shop.example/ns/shop/sa/cart\"\n",
            "  member \"spiffe://shop.example/ns/shop/sa/cart\"\n  member \"spiffe://shop.example/ns/shop/sa/search\"\n",
        )
        .replace("== \"prod\"", "in [\"prod\", \"stage\"]")
        .replace("  intent orders.write\n  mode dry-run\n", "  intent orders.write\n")
        .replace("  path \"/orders\"\n", "  path \"/orders\" \"/orders/batch\"\n");
    let b = compiled(&new);
    let d = diff(&a, &b);
    assert_eq!(
        d.settings,
        vec![SettingChange {
            setting: "mode",
            old: "dry-run".into(),
            new: "enforce".into()
        }]
    );
    let grants: Vec<(Change, &str, &str)> = d
        .grants
        .iter()
        .map(|g| (g.change, g.subject.as_str(), g.intent.as_str()))
        .collect();
    assert_eq!(
        grants,
        vec![
            (
                Change::Changed,
                "\"spiffe://shop.example/ns/shop/sa/cart\"",
                "orders.read"
            ),
            (
                Change::Changed,
                "\"spiffe://shop.example/ns/shop/sa/frontend\"",
                "orders.read"
            ),
            (
                Change::Added,
                "\"spiffe://shop.example/ns/shop/sa/search\"",
                "orders.read"
            ),
            (
                Change::Changed,
                "\"spiffe://shop.example/ns/shop/sa/cart\"",
                "orders.write"
            ),
        ]
    );
    assert_eq!(
        d.mode_changes().collect::<Vec<_>>(),
        vec![("cart-writes", true, false)]
    );
    let readers = d.rules.iter().find(|r| r.id == "readers-read").unwrap();
    assert_eq!(
        readers.subjects.added,
        ["\"spiffe://shop.example/ns/shop/sa/search\""]
    );
    assert_eq!(readers.conditions.removed, ["header \"x-env\" == \"prod\""]);
    assert_eq!(
        readers.conditions.added,
        ["header \"x-env\" in [\"prod\", \"stage\"]"]
    );
    assert_eq!(d.intents.len(), 1);
    assert_eq!(d.intents[0].routes.added, ["/orders/batch"]);
    let json = d.to_json("a", "b");
    assert_eq!(json["changed"], true);
    assert_eq!(json["mode_changes"][0]["rule"], "cart-writes");
    let text = d.to_text("a", "b");
    assert!(
        text.contains(
            "rules moved between dry-run and enforce\n  ~ cart-writes: dry-run → enforce"
        ),
        "{text}"
    );
}

#[test]
fn renamed_rules_change_no_grant_and_removed_intents_remove_grants() {
    let a = compiled(OLD);
    let b = compiled(&OLD.replace("readers-read", "readers-get"));
    let d = diff(&a, &b);
    assert!(d.grants.is_empty());
    assert_eq!(d.rules.len(), 2);
    let c = compiled(
        &OLD.replace(
            "allow cart-writes {\n  subject \"spiffe://shop.example/ns/shop/sa/cart\"\n  intent orders.write\n  mode dry-run\n}\n",
            "",
        )
        .replace("intent orders.write {\n  method POST\n  path \"/orders\"\n}\n", ""),
    );
    let d = diff(&a, &c);
    assert_eq!(d.grants.len(), 1);
    assert_eq!(d.grants[0].change, Change::Removed);
    assert_eq!(d.intents[0].change, Change::Removed);
    assert_eq!(d.intents[0].summary.as_deref(), Some("POST /orders"));
}
