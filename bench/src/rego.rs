//! The equivalent policy in Rego, evaluated by `regorus` 0.14: both by its
//! tree-walking interpreter (`Engine::eval_rule`) and by its register VM (RVM:
//! the policy compiled to a bytecode `Program`, then `set_input` + `execute`
//! per decision, which is regorus's fastest hot path).
//!
//! Two encodings, as for Cedar: **full** (Rego classifies the request into
//! `intent` from method, host and path segments) and **pre-classified**
//! (`input.intent` is given, classified outside the timed loop).
//!
//! ```rego
//! allow if { allow_hit; not deny_hit }
//! intent := "svc-0.read" if { input.method in {"GET", "HEAD"}; count(input.segs) == 2; ... }
//! r0 if { intent == "svc-0.read"; s0 }          # rule svc-0-read
//! s0 if input.peer == "spiffe://..."            # one body per subject
//! allow_hit if r0                               # enforced allow
//! allow_hit if { input.dry_run; r2 }            # dry-run allow
//! ```

use std::fmt::Write as _;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, PolicyLengthConfig, Rc, Value};
use serde_json::json;

use crate::mix::RequestSpec;
use crate::translate::{quote, HeaderTestView, PolicyView, RouteSeg, SubjectView};

/// Which encoding.
pub use crate::cedar::Encoding;

/// The rule regorus evaluates.
pub const ENTRY: &str = "data.meshward.allow";

fn header_lines(name: &str, test: &HeaderTestView) -> Vec<String> {
    let val = format!("input.headers[{}]", quote(name));
    match test {
        HeaderTestView::Present => vec![val],
        HeaderTestView::Absent => vec![format!("not {val}")],
        HeaderTestView::Equals(v) => vec![format!("{val} == {}", quote(v))],
        HeaderTestView::NotEquals(v) => vec![format!("not {val} == {}", quote(v))],
        HeaderTestView::OneOf(vs) => {
            let vs: Vec<String> = vs.iter().map(|v| quote(v)).collect();
            vec![format!("{val} in {{{}}}", vs.join(", "))]
        }
        HeaderTestView::Prefix(v) => vec![format!("startswith({val}, {})", quote(v))],
    }
}

fn subject_lines(s: &SubjectView) -> Vec<String> {
    match s {
        SubjectView::AnyTrusted(tds) => {
            let tds: Vec<String> = tds.iter().map(|t| quote(t)).collect();
            vec![format!("input.peer_td in {{{}}}", tds.join(", "))]
        }
        SubjectView::Domain(td) => vec![format!("input.peer_td == {}", quote(td))],
        SubjectView::Exact(id) => vec![format!("input.peer == {}", quote(id))],
        SubjectView::Pattern { td, segs, rest } => {
            let mut lines = vec![format!("input.peer_td == {}", quote(td))];
            let op = if *rest { ">=" } else { "==" };
            lines.push(format!("count(input.peer_segs) {op} {}", segs.len()));
            for (i, seg) in segs.iter().enumerate() {
                if let Some(l) = seg {
                    lines.push(format!("input.peer_segs[{i}] == {}", quote(l)));
                }
            }
            lines
        }
    }
}

fn body(lines: &[String]) -> String {
    format!("{{\n\t{}\n}}", lines.join("\n\t"))
}

/// The Rego module.
pub fn policy_text(view: &PolicyView, encoding: Encoding) -> String {
    let mut out = String::from(
        "package meshward\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\tallow_hit\n\tnot deny_hit\n}\n\n",
    );
    let intent_ref = match encoding {
        Encoding::Full => "intent",
        Encoding::PreClassified => "input.intent",
    };
    if encoding == Encoding::Full {
        for intent in &view.intents {
            for route in &intent.routes {
                let mut lines = Vec::new();
                if !intent.methods.is_empty() {
                    let methods: Vec<String> = intent.methods.iter().map(|m| quote(m)).collect();
                    lines.push(format!("input.method in {{{}}}", methods.join(", ")));
                }
                if let Some(host) = &intent.host {
                    lines.push(format!("input.host == {}", quote(host)));
                }
                let op = if route.rest { ">=" } else { "==" };
                lines.push(format!("count(input.segs) {op} {}", route.segs.len()));
                for (i, seg) in route.segs.iter().enumerate() {
                    if let RouteSeg::Lit(l) = seg {
                        lines.push(format!("input.segs[{i}] == {}", quote(l)));
                    }
                }
                let _ = writeln!(
                    out,
                    "intent := {} if {}\n",
                    quote(&intent.name),
                    body(&lines)
                );
            }
        }
    }
    for (idx, rule) in view.rules.iter().enumerate() {
        let _ = writeln!(out, "# rule {}", rule.id);
        let mut lines = Vec::new();
        let names: Vec<String> = rule
            .intents
            .iter()
            .map(|i| quote(&view.intents[*i].name))
            .collect();
        match names.as_slice() {
            [one] => lines.push(format!("{intent_ref} == {one}")),
            _ => lines.push(format!("{intent_ref} in {{{}}}", names.join(", "))),
        }
        lines.push(format!("s{idx}"));
        for c in &rule.conditions {
            lines.extend(header_lines(&c.name, &c.test));
        }
        let _ = writeln!(out, "r{idx} if {}\n", body(&lines));
        for subject in &rule.subjects {
            let _ = writeln!(out, "s{idx} if {}\n", body(&subject_lines(subject)));
        }
        let hit = if rule.deny { "deny_hit" } else { "allow_hit" };
        if rule.dry_run {
            let _ = writeln!(out, "{hit} if {{\n\tinput.dry_run\n\tr{idx}\n}}\n");
        } else {
            let _ = writeln!(out, "{hit} if r{idx}\n");
        }
    }
    out
}

/// The input document of one request.
pub fn input(spec: &RequestSpec, intent: Option<&str>, dry_run: bool) -> Value {
    let headers: serde_json::Map<String, serde_json::Value> = spec
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let doc = json!({
        "peer": spec.peer,
        "peer_td": spec.peer_trust_domain(),
        "peer_segs": spec.peer_segments(),
        "method": spec.method,
        "segs": spec.segments(),
        "host": spec.host(),
        "headers": headers,
        "dry_run": dry_run,
        "intent": intent.unwrap_or("unclassified"),
    });
    Value::from_json_str(&doc.to_string()).expect("rego input")
}

/// A loaded Rego policy (interpreter and RVM) and its prepared inputs.
pub struct RegoBench {
    /// Which encoding.
    pub encoding: Encoding,
    /// The module text.
    pub text: String,
    /// The interpreter with the policy loaded.
    pub engine: Engine,
    /// A VM with the compiled program loaded, or why regorus could not
    /// compile it (the RVM caps a program at 65,535 instructions).
    pub vm: Result<RegoVM, String>,
    /// Inputs with `dry_run: false` (the timed ones).
    pub enforced: Vec<Value>,
    /// The same with `dry_run: true`.
    pub shadow: Vec<Value>,
}

impl RegoBench {
    /// Writes, parses and compiles the policy; prepares the inputs.
    pub fn new(
        view: &PolicyView,
        encoding: Encoding,
        specs: &[RequestSpec],
        intents: &[Option<String>],
    ) -> Self {
        let text = policy_text(view, encoding);
        let mut engine = Engine::new();
        // A 10,000-rule module is ~150k lines: lift the parser's size limits.
        engine.set_policy_length_config(PolicyLengthConfig {
            max_col: NonZeroU32::new(1 << 16).expect("nonzero"),
            max_file_bytes: NonZeroUsize::new(1 << 30).expect("nonzero"),
            max_lines: NonZeroUsize::new(1 << 26).expect("nonzero"),
        });
        engine
            .add_policy("meshward.rego".to_owned(), text.clone())
            .unwrap_or_else(|e| {
                panic!(
                    "regorus rejects the generated policy: {e}\n{}",
                    &text[..text.len().min(2000)]
                )
            });
        let compiled = engine
            .compile_with_entrypoint(&Rc::from(ENTRY))
            .expect("regorus compile");
        let vm = Compiler::compile_from_policy(&compiled, &[ENTRY])
            .map(|program: Arc<Program>| {
                let mut vm = RegoVM::new();
                vm.load_program(program);
                vm
            })
            .map_err(|e| format!("{e:?}"));
        let intent_for = |i: usize| match encoding {
            Encoding::Full => None,
            Encoding::PreClassified => intents[i].as_deref(),
        };
        let enforced = specs
            .iter()
            .enumerate()
            .map(|(i, s)| input(s, intent_for(i), false))
            .collect();
        let shadow = specs
            .iter()
            .enumerate()
            .map(|(i, s)| input(s, intent_for(i), true))
            .collect();
        RegoBench {
            encoding,
            text,
            engine,
            vm,
            enforced,
            shadow,
        }
    }

    /// One decision by the interpreter.
    pub fn interpret(&mut self, input: &Value) -> bool {
        self.engine.set_input(input.clone());
        let v = self
            .engine
            .eval_rule(ENTRY.to_owned())
            .unwrap_or_else(|e| panic!("regorus eval: {e}"));
        v == Value::Bool(true)
    }

    /// Whether the RVM could compile this policy.
    pub fn has_vm(&self) -> bool {
        self.vm.is_ok()
    }

    /// One decision by the RVM (panics if [`RegoBench::has_vm`] is false).
    pub fn execute(&mut self, input: &Value) -> bool {
        let vm = self
            .vm
            .as_mut()
            .unwrap_or_else(|e| panic!("no RVM program: {e}"));
        vm.set_input(input.clone());
        let v = vm.execute().unwrap_or_else(|e| panic!("rvm execute: {e}"));
        v == Value::Bool(true)
    }
}
