//! Policies for the tests, compiled through the real compiler library (the
//! same code as `meshward compile`).

use meshward_policy::compile_source;

/// Compiles `source` and returns the plugin configuration JSON Envoy's
/// `configuration` carries, with `revoked_serials` (hex) as runtime data.
/// Panics with the compiler's diagnostics when the policy does not compile.
pub fn plugin_config(source: &str, file_name: &str, revoked_serials: &[String]) -> String {
    match compile_source(source, file_name) {
        Ok(compiled) => compiled.plugin_config_json(revoked_serials),
        Err(diagnostics) => panic!("test policy {file_name} does not compile:\n{diagnostics}"),
    }
}
