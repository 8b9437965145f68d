//! Which build of the filter the end-to-end suites run: the proxy-wasm
//! filter (`meshward_filter.wasm` in V8) or the Envoy dynamic module
//! (`libmeshward.so`). Chosen with `MESHWARD_BUILD=wasm|native` (default
//! `wasm`); `scripts/test.sh` runs the suites once per build.
//!
//! The configs under `envoy/` and the harness's templates describe the wasm
//! filter. For the native build, [`prepare_config`] rewrites every meshward
//! wasm filter of a rendered config into the dynamic-module filter carrying
//! the *same* plugin configuration bytes, and the launchers add what the
//! process needs ([`FilterBuild::envoy_env`], [`FilterBuild::log_component`]).
//! Stats are read under the wasm names everywhere ([`FilterBuild::stat_name`]
//! maps them), so one assertion serves both builds.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_yaml::{Mapping, Value};

use crate::workspace::{repo_root, target_dir};

/// Selects the build: `wasm` (default) or `native`.
pub const BUILD_ENV: &str = "MESHWARD_BUILD";
/// Overrides the directory holding `libmeshward.so`.
pub const NATIVE_DIR_ENV: &str = "MESHWARD_NATIVE_DIR";
/// The command that builds the module.
pub const BUILD_NATIVE: &str = "cargo build -p meshward-native --profile native";

/// The wasm filter's config type.
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The dynamic-module HTTP filter's config type.
pub const MODULE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
/// `google.protobuf.StringValue`: the plugin configuration's wrapper in both builds.
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
/// The module's name: Envoy loads `lib<name>.so`.
pub const MODULE_NAME: &str = "meshward";

/// One build of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterBuild {
    /// `meshward_filter.wasm` in Envoy's V8.
    Wasm,
    /// `libmeshward.so`, an Envoy 1.40 dynamic module.
    Native,
}

/// A build fixed by the test binary itself ([`FilterBuild::pin`]).
static PINNED: OnceLock<FilterBuild> = OnceLock::new();
/// A module directory fixed by the test binary itself ([`pin_native_dir`]).
static PINNED_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Runs every native Envoy of this test process with the `libmeshward.so`
/// in `dir` (a test build, e.g. with `trap-trigger`).
pub fn pin_native_dir(dir: PathBuf) {
    let pinned = PINNED_DIR.get_or_init(|| dir.clone());
    assert_eq!(
        *pinned, dir,
        "this test process already uses another module"
    );
}

impl FilterBuild {
    /// Runs every Envoy of this test process with `build`, whatever
    /// `MESHWARD_BUILD` says: for suites about one build (`native_*`).
    /// Panics if the process already pinned the other build.
    pub fn pin(build: FilterBuild) {
        let pinned = *PINNED.get_or_init(|| build);
        assert_eq!(
            pinned, build,
            "this test process already runs the {pinned:?} build"
        );
    }

    /// The pinned build, or the one chosen by `MESHWARD_BUILD`. Panics on an
    /// unknown value (a typo must not silently test the other build).
    pub fn current() -> FilterBuild {
        if let Some(pinned) = PINNED.get() {
            return *pinned;
        }
        match std::env::var(BUILD_ENV).as_deref() {
            Err(_) | Ok("") | Ok("wasm") => FilterBuild::Wasm,
            Ok("native") => FilterBuild::Native,
            Ok(other) => panic!("{BUILD_ENV}={other}: expected `wasm` or `native`"),
        }
    }

    /// Envoy's logger the filter writes to (audit lines are `info` on it).
    pub fn log_component(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "wasm",
            FilterBuild::Native => "dynamic_modules",
        }
    }

    /// `--component-log-level` for the filter's logger at `info`.
    pub fn log_level_arg(self) -> String {
        format!("{}:info", self.log_component())
    }

    /// Environment the Envoy process needs for this build.
    pub fn envoy_env(self) -> Vec<(&'static str, String)> {
        match self {
            FilterBuild::Wasm => Vec::new(),
            FilterBuild::Native => vec![(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                native_module_dir().display().to_string(),
            )],
        }
    }

    /// The prefix Envoy gives the filter's own counters.
    pub fn stats_prefix(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "wasmcustom.",
            FilterBuild::Native => "dynamicmodulescustom.",
        }
    }

    /// A stat name as this build's Envoy spells it, from its wasm spelling
    /// (`wasmcustom.meshward.decision.allow`).
    pub fn stat_name(self, wasm_name: &str) -> String {
        match wasm_name.strip_prefix("wasmcustom.") {
            Some(rest) => format!("{}{rest}", self.stats_prefix()),
            None => wasm_name.to_owned(),
        }
    }

    /// The wasm spelling of a stat name this build's Envoy reported.
    pub fn wasm_stat_name(self, name: &str) -> String {
        match name.strip_prefix(self.stats_prefix()) {
            Some(rest) => format!("wasmcustom.{rest}"),
            None => name.to_owned(),
        }
    }
}

/// A rendered Envoy config (or ECDS resource) for the current build, and the
/// environment variables it needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The config text.
    pub yaml: String,
    /// Extra environment for the Envoy process.
    pub env: Vec<(&'static str, String)>,
}

/// The config for the current build: unchanged for wasm; for native, every
/// meshward wasm filter becomes the dynamic-module filter with the same
/// plugin configuration, and every wasm type URL (ECDS `type_urls`) the
/// module's. A `vm_config.configuration` (pinned keys) becomes the module
/// configuration (`MESHWARD_MODULE_CONFIG` in Envoy's environment).
pub fn prepare_config(yaml: &str) -> Prepared {
    let build = FilterBuild::current();
    let mut env = build.envoy_env();
    if build == FilterBuild::Wasm || !yaml.contains(WASM_TYPE) {
        return Prepared {
            yaml: yaml.to_owned(),
            env,
        };
    }
    let mut doc: Value = serde_yaml::from_str(yaml)
        .unwrap_or_else(|e| panic!("the rendered config is not YAML ({e}):\n{yaml}"));
    let mut module_config = None;
    rewrite(&mut doc, &mut module_config);
    if let Some(config) = module_config {
        env.push(("MESHWARD_MODULE_CONFIG", config));
    }
    Prepared {
        yaml: serde_yaml::to_string(&doc).expect("serialize the rewritten config"),
        env,
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

fn rewrite(value: &mut Value, module_config: &mut Option<String>) {
    match value {
        Value::String(s) if s == WASM_TYPE => *s = MODULE_TYPE.to_owned(),
        Value::Sequence(items) => items.iter_mut().for_each(|v| rewrite(v, module_config)),
        Value::Mapping(map) => {
            if map.get(key("@type")).and_then(Value::as_str) == Some(WASM_TYPE) {
                *map = module_filter(map, module_config);
            } else {
                for (_, v) in map.iter_mut() {
                    rewrite(v, module_config);
                }
            }
        }
        _ => {}
    }
}

/// The dynamic-module filter for one wasm filter config.
fn module_filter(wasm: &Mapping, module_config: &mut Option<String>) -> Mapping {
    let config = wasm.get(key("config"));
    let plugin_config = config
        .and_then(|c| c.get("configuration"))
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(pinned) = config
        .and_then(|c| c.get("vm_config"))
        .and_then(|v| v.get("configuration"))
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
    {
        *module_config = Some(pinned.to_owned());
    }
    let mut dynamic_module_config = Mapping::new();
    dynamic_module_config.insert(key("name"), key(MODULE_NAME));
    let mut filter_config = Mapping::new();
    filter_config.insert(key("@type"), key(STRING_VALUE));
    filter_config.insert(key("value"), key(plugin_config));
    let mut out = Mapping::new();
    out.insert(key("@type"), key(MODULE_TYPE));
    out.insert(
        key("dynamic_module_config"),
        Value::Mapping(dynamic_module_config),
    );
    out.insert(key("filter_name"), key(MODULE_NAME));
    out.insert(key("filter_config"), Value::Mapping(filter_config));
    out
}

/// The directory with `libmeshward.so`: the pinned one, `$MESHWARD_NATIVE_DIR`, or
/// `target/native/`. Panics with the build command when the module is
/// missing or older than a source file of the module or the engine.
pub fn native_module_dir() -> PathBuf {
    if let Some(dir) = PINNED_DIR.get() {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os(NATIVE_DIR_ENV) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("libmeshward.so").is_file(),
            "{NATIVE_DIR_ENV}={} has no libmeshward.so",
            dir.display()
        );
        return dir;
    }
    let dir = target_dir().join("native");
    let module = dir.join("libmeshward.so");
    let built = fs::metadata(&module)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "the meshward module is not built: no {}.\nRun `{BUILD_NATIVE}` (scripts/test.sh does this).",
                module.display()
            )
        });
    let root = repo_root();
    for source in ["filter/native/src", "filter/engine/src"] {
        if let Some((t, path)) = newest_source(&root.join(source)) {
            assert!(
                t <= built,
                "the meshward module at {} is older than {}.\nRebuild it: `{BUILD_NATIVE}`.",
                module.display(),
                path.display()
            );
        }
    }
    dir
}

fn newest_source(dir: &std::path::Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(t) = meta.modified() {
                    if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                        newest = Some((t, path));
                    }
                }
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM_FILTER: &str = r#"
http_filters:
- name: meshward
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: meshward
      failure_policy: FAIL_RELOAD
      vm_config:
        runtime: envoy.wasm.runtime.v8
        code: { local: { filename: "/x/meshward_filter.wasm" } }
        configuration:
          "@type": type.googleapis.com/google.protobuf.StringValue
          value: '{"require_signature": {}}'
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"policy": "it''s"}'
discovery:
  type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
"#;

    #[test]
    fn a_wasm_filter_becomes_the_module_with_the_same_plugin_configuration() {
        let mut doc: Value = serde_yaml::from_str(WASM_FILTER).unwrap();
        let mut pinned = None;
        rewrite(&mut doc, &mut pinned);
        let filter = &doc["http_filters"][0]["typed_config"];
        assert_eq!(filter["@type"].as_str(), Some(MODULE_TYPE));
        assert_eq!(
            filter["dynamic_module_config"]["name"].as_str(),
            Some("meshward")
        );
        assert_eq!(filter["filter_name"].as_str(), Some("meshward"));
        assert_eq!(
            filter["filter_config"]["@type"].as_str(),
            Some(STRING_VALUE)
        );
        assert_eq!(
            filter["filter_config"]["value"].as_str(),
            Some(r#"{"policy": "it's"}"#)
        );
        assert!(filter.get("config").is_none());
        assert_eq!(doc["discovery"]["type_urls"][0].as_str(), Some(MODULE_TYPE));
        assert_eq!(pinned.as_deref(), Some(r#"{"require_signature": {}}"#));
    }

    #[test]
    fn stat_names_map_both_ways() {
        let native = FilterBuild::Native;
        let name = "wasmcustom.meshward.decision.allow";
        assert_eq!(
            native.stat_name(name),
            "dynamicmodulescustom.meshward.decision.allow"
        );
        assert_eq!(native.wasm_stat_name(&native.stat_name(name)), name);
        assert_eq!(FilterBuild::Wasm.stat_name(name), name);
        assert_eq!(native.stat_name("http.x.rq_total"), "http.x.rq_total");
    }
}
