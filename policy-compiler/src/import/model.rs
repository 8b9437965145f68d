//! AuthorizationPolicy and RequestAuthentication documents, read from the
//! line-marked YAML tree. Fields are kept generically (key, values, line) so
//! that the converter decides, and reports, what it supports; only the shape
//! (a list where a list belongs) is checked here.

use super::report::{Code, DocRef, Finding};
use super::yaml::{Node, Value};

/// `spec.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `ALLOW` (the default).
    Allow,
    /// `DENY`.
    Deny,
    /// `AUDIT`.
    Audit,
    /// `CUSTOM` (ext_authz).
    Custom,
}

/// One list-valued field: `principals: [...]`, `paths: [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The YAML key.
    pub key: String,
    /// Its path in the document.
    pub path: String,
    /// Its line.
    pub line: usize,
    /// The values (scalars).
    pub values: Vec<String>,
}

/// A `from[].source` or a `to[].operation`: fields that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Its path in the document.
    pub path: String,
    /// Its line.
    pub line: usize,
    /// The fields.
    pub fields: Vec<Field>,
}

impl Clause {
    /// The field `key`, if present.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key == key)
    }
}

/// A `when` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Its path in the document.
    pub path: String,
    /// Its line.
    pub line: usize,
    /// `key`.
    pub key: String,
    /// `values` (empty when absent).
    pub values: Vec<String>,
    /// `notValues` (empty when absent).
    pub not_values: Vec<String>,
    /// Line of `values` (of the condition when absent).
    pub values_line: usize,
    /// Line of `notValues` (of the condition when absent).
    pub not_values_line: usize,
}

/// One rule of an AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// Its path.
    pub path: String,
    /// Its line.
    pub line: usize,
    /// `from` sources (any may match); empty = any source.
    pub from: Vec<Clause>,
    /// `to` operations (any may match); empty = any operation.
    pub to: Vec<Clause>,
    /// `when` conditions (all must hold).
    pub when: Vec<Condition>,
}

/// Which workloads a document applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// In the root namespace without a selector: every workload of the mesh.
    Mesh,
    /// Without a selector: every workload of the namespace.
    Namespace(String),
    /// `selector.matchLabels` (sorted) in a namespace.
    Selector(String, Vec<(String, String)>),
    /// `targetRefs` (`Kind/name`, sorted) in a namespace.
    TargetRefs(String, Vec<String>),
}

/// An AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// Where it came from.
    pub doc: DocRef,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// Line of the document's first node.
    pub line: usize,
    /// `spec.action`.
    pub action: Action,
    /// Line of `spec.action` (or of the document).
    pub action_line: usize,
    /// What it applies to.
    pub target: Target,
    /// `spec.rules` (none: an ALLOW policy then allows nothing, a DENY
    /// denies nothing).
    pub rules: Vec<Rule>,
}

/// One `jwtRules` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRule {
    /// Its path.
    pub path: String,
    /// Its line.
    pub line: usize,
    /// `issuer`.
    pub issuer: String,
    /// `audiences`.
    pub audiences: Vec<String>,
    /// `jwks` (a JWKS document as a string).
    pub jwks: Option<String>,
    /// `jwksUri`.
    pub jwks_uri: Option<(String, usize)>,
    /// Other keys, with their lines (`fromHeaders`, `outputPayloadToHeader`...).
    pub other: Vec<(String, usize)>,
}

/// A RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuthentication {
    /// Where it came from.
    pub doc: DocRef,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// Line of the document.
    pub line: usize,
    /// What it applies to.
    pub target: Target,
    /// `spec.jwtRules`.
    pub jwt_rules: Vec<JwtRule>,
}

/// A document the importer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An AuthorizationPolicy.
    Authz(AuthorizationPolicy),
    /// A RequestAuthentication.
    Authn(RequestAuthentication),
}

struct Reader<'a> {
    doc: DocRef,
    findings: &'a mut Vec<Finding>,
}

impl Reader<'_> {
    fn bad(&mut self, line: usize, path: &str, message: String) {
        self.findings
            .push(self.doc.finding(Code::I007, line, path, message));
    }

    fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(s) => Some(s.to_owned()),
                    None => {
                        self.bad(
                            item.line,
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}; ignored", item.kind()),
                        );
                        None
                    }
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.bad(
                    node.line,
                    path,
                    format!("expected a list of strings, found {}; ignored", node.kind()),
                );
                Vec::new()
            }
        }
    }

    fn clause(&mut self, node: &Node, path: &str) -> Clause {
        let fields = node
            .entries()
            .iter()
            .map(|(key, value)| {
                let field_path = format!("{path}.{key}");
                Field {
                    key: key.clone(),
                    line: value.line,
                    values: self.strings(value, &field_path),
                    path: field_path,
                }
            })
            .collect();
        Clause {
            path: path.to_owned(),
            line: node.line,
            fields,
        }
    }

    /// `from: [{source: {...}}]` or `to: [{operation: {...}}]`.
    fn clauses(&mut self, node: Option<&Node>, path: &str, inner: &str) -> Vec<Clause> {
        let Some(node) = node else {
            return Vec::new();
        };
        let Value::Seq(items) = &node.value else {
            if node.value != Value::Null {
                self.bad(
                    node.line,
                    path,
                    format!("expected a list, found {}", node.kind()),
                );
            }
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = format!("{path}[{i}].{inner}");
                match item.get(inner) {
                    Some(body) => self.clause(body, &item_path),
                    None => {
                        self.bad(item.line, &item_path, format!("missing `{inner}`"));
                        Clause {
                            path: item_path,
                            line: item.line,
                            fields: Vec::new(),
                        }
                    }
                }
            })
            .collect()
    }

    fn conditions(&mut self, node: Option<&Node>, path: &str) -> Vec<Condition> {
        let Some(Value::Seq(items)) = node.map(|n| &n.value) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = format!("{path}[{i}]");
                let key = item.get("key").and_then(Node::as_str).unwrap_or_default();
                if key.is_empty() {
                    self.bad(item.line, &item_path, "condition without `key`".to_owned());
                }
                let values = item
                    .get("values")
                    .map(|v| self.strings(v, &format!("{item_path}.values")))
                    .unwrap_or_default();
                let not_values = item
                    .get("notValues")
                    .map(|v| self.strings(v, &format!("{item_path}.notValues")))
                    .unwrap_or_default();
                Condition {
                    path: item_path,
                    line: item.line,
                    key: key.to_owned(),
                    values,
                    not_values,
                    values_line: item.get("values").map_or(item.line, |v| v.line),
                    not_values_line: item.get("notValues").map_or(item.line, |v| v.line),
                }
            })
            .collect()
    }

    fn rules(&mut self, spec: &Node) -> Vec<Rule> {
        let Some(Value::Seq(items)) = spec.get("rules").map(|n| &n.value) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let path = format!("spec.rules[{index}]");
                for (key, value) in item.entries() {
                    if !matches!(key.as_str(), "from" | "to" | "when") {
                        self.bad(
                            value.line,
                            &format!("{path}.{key}"),
                            format!("unknown rule field `{key}`"),
                        );
                    }
                }
                Rule {
                    index,
                    line: item.line,
                    from: self.clauses(item.get("from"), &format!("{path}.from"), "source"),
                    to: self.clauses(item.get("to"), &format!("{path}.to"), "operation"),
                    when: self.conditions(item.get("when"), &format!("{path}.when")),
                    path,
                }
            })
            .collect()
    }

    fn target(&mut self, spec: Option<&Node>, namespace: &str, root_namespace: &str) -> Target {
        let selector = spec
            .and_then(|s| s.get("selector"))
            .and_then(|s| s.get("matchLabels"));
        if let Some(labels) = selector {
            let mut pairs: Vec<(String, String)> = labels
                .entries()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            pairs.sort();
            if !pairs.is_empty() {
                return Target::Selector(namespace.to_owned(), pairs);
            }
        }
        let refs = spec.and_then(|s| s.get("targetRefs").or_else(|| s.get("targetRef")));
        if let Some(refs) = refs {
            let list: Vec<&Node> = match &refs.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![refs],
            };
            let mut names: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r.get("kind").and_then(Node::as_str).unwrap_or("Service"),
                        r.get("name").and_then(Node::as_str).unwrap_or_default()
                    )
                })
                .collect();
            names.sort();
            if !names.is_empty() {
                return Target::TargetRefs(namespace.to_owned(), names);
            }
        }
        if namespace == root_namespace {
            Target::Mesh
        } else {
            Target::Namespace(namespace.to_owned())
        }
    }
}

/// Reads every document of one file. Documents of other kinds are reported
/// (`I007`) and skipped.
pub fn read_documents(
    file: &str,
    nodes: &[Node],
    root_namespace: &str,
    findings: &mut Vec<Finding>,
) -> Vec<Document> {
    let mut documents = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        if node.value == Value::Null {
            continue;
        }
        let kind = node.get("kind").and_then(Node::as_str).unwrap_or_default();
        let metadata = node.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str)
            .unwrap_or("default")
            .to_owned();
        let doc = DocRef {
            file: file.to_owned(),
            document: if name.is_empty() {
                format!("document {}", index + 1)
            } else {
                format!("{kind} {namespace}/{name}")
            },
        };
        let mut reader = Reader {
            doc: doc.clone(),
            findings,
        };
        if name.is_empty() && matches!(kind, "AuthorizationPolicy" | "RequestAuthentication") {
            reader.bad(node.line, "metadata.name", format!("{kind} without a name"));
            continue;
        }
        let api = node
            .get("apiVersion")
            .and_then(Node::as_str)
            .unwrap_or_default();
        if !api.starts_with("security.istio.io/") {
            reader.bad(
                node.line,
                "apiVersion",
                format!("`{kind}` of `{api}` is not an Istio security resource; skipped"),
            );
            continue;
        }
        let spec = node.get("spec");
        let target = reader.target(spec, &namespace, root_namespace);
        match kind {
            "AuthorizationPolicy" => {
                let action_node = spec.and_then(|s| s.get("action"));
                let action = match action_node.and_then(Node::as_str).unwrap_or("ALLOW") {
                    "ALLOW" => Action::Allow,
                    "DENY" => Action::Deny,
                    "AUDIT" => Action::Audit,
                    "CUSTOM" => Action::Custom,
                    other => {
                        reader.bad(
                            action_node.map_or(node.line, |n| n.line),
                            "spec.action",
                            format!("unknown action `{other}`; the policy is skipped"),
                        );
                        continue;
                    }
                };
                let rules = spec.map(|s| reader.rules(s)).unwrap_or_default();
                documents.push(Document::Authz(AuthorizationPolicy {
                    doc,
                    name,
                    namespace,
                    line: node.line,
                    action,
                    action_line: action_node.map_or(node.line, |n| n.line),
                    target,
                    rules,
                }));
            }
            "RequestAuthentication" => {
                let jwt_rules = spec
                    .and_then(|s| s.get("jwtRules"))
                    .map(|rules| jwt_rules(&mut reader, rules))
                    .unwrap_or_default();
                documents.push(Document::Authn(RequestAuthentication {
                    doc,
                    name,
                    namespace,
                    line: node.line,
                    target,
                    jwt_rules,
                }));
            }
            other => reader.bad(
                node.line,
                "kind",
                format!("`{other}` is not imported (only AuthorizationPolicy and RequestAuthentication); skipped"),
            ),
        }
    }
    documents
}

fn jwt_rules(reader: &mut Reader<'_>, rules: &Node) -> Vec<JwtRule> {
    let Value::Seq(items) = &rules.value else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let path = format!("spec.jwtRules[{i}]");
            let Some(issuer) = item.get("issuer").and_then(Node::as_str) else {
                reader.bad(
                    item.line,
                    &path,
                    "jwt rule without `issuer`; skipped".to_owned(),
                );
                return None;
            };
            let mut rule = JwtRule {
                path: path.clone(),
                line: item.line,
                issuer: issuer.to_owned(),
                audiences: Vec::new(),
                jwks: None,
                jwks_uri: None,
                other: Vec::new(),
            };
            for (key, value) in item.entries() {
                match key.as_str() {
                    "issuer" => {}
                    "audiences" => {
                        rule.audiences = reader.strings(value, &format!("{path}.audiences"));
                    }
                    "jwks" => rule.jwks = value.as_str().map(str::to_owned),
                    "jwksUri" => {
                        rule.jwks_uri = value.as_str().map(|s| (s.to_owned(), value.line));
                    }
                    _ => rule.other.push((key.clone(), value.line)),
                }
            }
            Some(rule)
        })
        .collect()
}
