//! The meshward policy compiler.
//!
//! A policy file goes through one named type per phase:
//!
//! ```text
//! &str ──syntax::parse──▶ ast::PolicyFile        (every node spanned; syntax errors collected)
//!      ──check::check───▶ checked::Policy        (names resolved, IDs parsed once, all checks)
//!      ──lower::lower───▶ model::CompiledPolicy  (strings interned, groups expanded)
//!      ──codec::encode──▶ bytes + SHA-256        (what the filter loads)
//! ```
//!
//! Any phase's findings are [`Diagnostics`]: stable codes, spans rendered as
//! `file:line:col` with a caret, and a help line. [`compile_source`] runs the
//! whole pipeline; [`run_tests`] and [`explain`] evaluate requests through the
//! engine on the *decoded bytes*, exactly as the filter in Envoy does. The
//! compiler keeps a [`SourceMap`] (rule index → source location) because the
//! runtime carries only ids.
//!
//! ```
//! let source = r#"
//! policy "demo" {
//!   trust_domains "prod.example"
//! }
//! intent orders.read {
//!   method GET
//!   path "/orders/{id}"
//! }
//! allow frontend-reads {
//!   subject "spiffe://prod.example/ns/shop/sa/frontend"
//!   intent orders.read
//! }
//! test "frontend reads" {
//!   peer "spiffe://prod.example/ns/shop/sa/frontend"
//!   request GET "/orders/42"
//!   expect allow by frontend-reads
//! }
//! "#;
//! let compiled = meshward_policy::compile_source(source, "demo.policy").unwrap();
//! assert_eq!(compiled.policy.rules.len(), 1);
//! let report = meshward_policy::run_tests(&compiled).unwrap();
//! assert_eq!((report.passed(), report.failed()), (1, 0));
//! ```

pub mod ast;
pub mod check;
pub mod checked;
pub mod diagnostics;
pub mod diff;
pub mod dump;
pub mod fmt;
pub mod generate;
pub mod graph;
pub mod import;
pub mod istio;
pub mod istio_telemetry;
pub mod lower;
mod model_text;
pub mod oci;
pub mod outcome;
pub mod plugin_config;
pub mod raw;
pub mod replay;
pub mod sample;
pub mod signing;
pub mod source_map;
pub mod span;
mod suggest;
pub mod syntax;
pub mod testing;

use meshward_engine::model::CompiledPolicy;
use meshward_engine::{codec, config, Policy, PolicyError};

pub use diagnostics::{Code, Diagnostic, Diagnostics, Severity};
pub use outcome::{jwt_svid_from_text, peer_from_text, Outcome};
pub use sample::{ClaimValue, SampleChain, SampleRequest, SampleUser};
pub use source_map::{Location, SourceMap};
pub use testing::{run_tests, TestReport, TestResult};

use span::SourceFile;

/// A successfully compiled policy.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The file name given to the compiler (used in locations).
    pub file_name: String,
    /// The wire model.
    pub policy: CompiledPolicy,
    /// The encoded policy (magic, version, hash, body), as the filter loads it.
    pub bytes: Vec<u8>,
    /// SHA-256 of the body; appears in every audit line.
    pub hash: [u8; 32],
    /// Warnings (no errors), renderable like any diagnostics.
    pub warnings: Diagnostics,
    /// The policy's own tests.
    pub tests: Vec<checked::TestCase>,
    /// Source locations of rules, intents and tests.
    pub source_map: SourceMap,
    /// Token and key settings from the `identity` block (key files read).
    pub identity: checked::IdentitySettings,
    /// Warnings about the settings file, when one was given.
    pub settings_warnings: Option<Diagnostics>,
}

impl Compiled {
    /// The content hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        codec::hex(&self.hash)
    }

    /// The filter's plugin configuration (compact JSON) carrying this
    /// policy, its identity settings and the given revoked certificate
    /// serials (hex).
    pub fn plugin_config_json(&self, revoked_serials: &[String]) -> String {
        self.plugin_config_value(revoked_serials).to_string()
    }

    /// The plugin configuration as a JSON value (to pretty-print or embed):
    /// the complete configuration the filter reads, identity settings
    /// included.
    pub fn plugin_config_value(&self, revoked_serials: &[String]) -> serde_json::Value {
        let mut value = config::plugin_config_json(&self.bytes, revoked_serials);
        if let Some(obj) = value.as_object_mut() {
            obj.extend(plugin_config::identity_members(&self.identity));
        }
        value
    }

    /// Loads the engine's policy from the compiled bytes (the filter's path).
    pub fn load(&self) -> Result<Policy, PolicyError> {
        Policy::decode(&self.bytes)
    }
}

/// Compiles policy source. `file_name` is used in messages and locations,
/// and files the policy names (key sets in the `identity` block) are read
/// relative to its directory. On failure the diagnostics hold every error
/// found (and any warnings); on success the warnings travel in
/// [`Compiled::warnings`].
pub fn compile_source(source: &str, file_name: &str) -> Result<Compiled, Diagnostics> {
    let file = SourceFile::new(file_name, source);
    let (ast, syntax_errors) = syntax::parse(source);
    if !syntax_errors.is_empty() {
        // Checking a partial tree would mostly report follow-on errors.
        return Err(Diagnostics::new(file, syntax_errors));
    }
    let base_dir = std::path::Path::new(file_name).parent();
    let (checked, diagnostics) = check::check_in(&ast, base_dir);
    let Some(checked) = checked else {
        return Err(Diagnostics::new(file, diagnostics));
    };
    let policy = lower::lower(&checked);
    let (bytes, hash) = codec::encode(&policy);
    Ok(Compiled {
        file_name: file_name.to_owned(),
        policy,
        bytes,
        hash,
        source_map: SourceMap::new(&file, &checked),
        tests: checked.tests,
        identity: checked.identity,
        warnings: Diagnostics::new(file, diagnostics),
        settings_warnings: None,
    })
}

/// Why a policy with a settings file did not compile: each file's
/// diagnostics (errors and warnings), rendered against its own source.
#[derive(Debug, Clone)]
pub struct CompileErrors {
    /// The policy file's.
    pub policy: Diagnostics,
    /// The settings file's.
    pub settings: Diagnostics,
}

/// Compiles a policy whose identity settings come from a settings file
/// (`meshward compile POLICY --settings FILE`): the settings file holds one
/// `identity { ... }` block, which replaces the policy's own, so one policy
/// serves several environments. Key files are read relative to the
/// settings file's directory. The cross-checks between rules and identity
/// sources run as for [`compile_source`].
pub fn compile_with_settings(
    source: &str,
    file_name: &str,
    settings_source: &str,
    settings_name: &str,
) -> Result<Compiled, Box<CompileErrors>> {
    let file = SourceFile::new(file_name, source);
    let settings_file = SourceFile::new(settings_name, settings_source);
    let (ast, syntax_errors) = syntax::parse(source);
    let (settings_ast, settings_syntax_errors) = syntax::parse(settings_source);
    if !syntax_errors.is_empty() || !settings_syntax_errors.is_empty() {
        return Err(Box::new(CompileErrors {
            policy: Diagnostics::new(file, syntax_errors),
            settings: Diagnostics::new(settings_file, settings_syntax_errors),
        }));
    }
    let checked = check::check_with_settings(
        &ast,
        std::path::Path::new(file_name).parent(),
        check::SettingsFile {
            file: &settings_ast,
            base_dir: std::path::Path::new(settings_name).parent(),
        },
    );
    let policy_diagnostics = Diagnostics::new(file.clone(), checked.policy_diagnostics);
    let settings_diagnostics = Diagnostics::new(settings_file, checked.settings_diagnostics);
    let Some(checked) = checked.policy else {
        return Err(Box::new(CompileErrors {
            policy: policy_diagnostics,
            settings: settings_diagnostics,
        }));
    };
    let policy = lower::lower(&checked);
    let (bytes, hash) = codec::encode(&policy);
    Ok(Compiled {
        file_name: file_name.to_owned(),
        policy,
        bytes,
        hash,
        source_map: SourceMap::new(&file, &checked),
        tests: checked.tests,
        identity: checked.identity,
        warnings: policy_diagnostics,
        settings_warnings: Some(settings_diagnostics),
    })
}

/// Decides one request against a compiled policy, through its bytes.
pub fn explain(compiled: &Compiled, request: &SampleRequest) -> Result<Outcome, String> {
    explain_why_not(compiled, request, None)
}

/// [`explain`], also saying how the rule `why_not` fared (`Err` when the
/// policy has no rule with that id).
pub fn explain_why_not(
    compiled: &Compiled,
    request: &SampleRequest,
    why_not: Option<&str>,
) -> Result<Outcome, String> {
    let mut filter = outcome::OfflineFilter::for_compiled(compiled)?;
    if let (Some(name), Some(policy)) = (why_not, filter.policy()) {
        if !(0..policy.rule_count() as u32)
            .any(|r| policy.rule_id(meshward_engine::RuleIdx(r)) == name)
        {
            return Err(format!("--why-not: the policy has no rule `{name}`"));
        }
    }
    Ok(filter.explain(request, why_not))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_stop_before_checking() {
        let Err(diagnostics) = compile_source("intent a {\n  pth \"/\"\n}\n", "x.policy") else {
            panic!("expected errors");
        };
        let codes: Vec<_> = diagnostics.items().iter().map(|d| d.code).collect();
        // No E003 (missing policy) or E020 follow-ons: only the syntax error.
        assert_eq!(codes, [Code::UnexpectedToken]);
    }

    #[test]
    fn compiled_bytes_load_and_carry_the_hash() {
        let compiled = compile_source(
            "policy \"p\" {\n  trust_domains \"a.example\"\n}\nintent i { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            "p.policy",
        )
        .unwrap();
        let policy = compiled.load().unwrap();
        assert_eq!(policy.hash(), &compiled.hash);
        assert_eq!(policy.rule_id(meshward_engine::RuleIdx(0)), "r");
        assert_eq!(compiled.source_map.rules[0].to_string(), "p.policy:5:7");
        let config = meshward_engine::config::FilterConfig::from_json(
            compiled
                .plugin_config_json(&["0A:1B".to_owned()])
                .as_bytes(),
        )
        .unwrap();
        assert!(config.revoked_serials.contains("a1b"));
        assert_eq!(config.policy.hash(), &compiled.hash);
    }
}
