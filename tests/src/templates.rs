//! The one filler of the Envoy config templates under `envoy/`: `${NAME}`
//! placeholders replaced by values, what `envsubst` does for a person
//! following `envoy/README.md`.

use std::fs;

use crate::workspace::envoy_dir;

/// Reads a template under `envoy/` (`demo.yaml`, `sidecar/envoy.yaml`...).
pub fn template(relative: &str) -> String {
    let path = envoy_dir().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Fills `${NAME}` placeholders; panics if a non-comment line still has one
/// (the comments at the top of a template name them). Values go in
/// verbatim: quote-doubling for YAML single-quoted strings is the caller's
/// (see [`yaml_single_quoted`]).
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    let leftover: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("${") && !l.trim_start().starts_with('#'))
        .collect();
    assert!(leftover.is_empty(), "unfilled placeholders: {leftover:?}");
    out
}

/// What the README's `sed "s/'/''/g"` does: a value for a YAML single-quoted
/// scalar.
pub fn yaml_single_quoted(value: &str) -> String {
    value.replace('\'', "''")
}
