//! The plugin configuration `meshward compile` writes: the compiled policy
//! (see [`meshward_engine::config::plugin_config_json`]) plus the identity
//! settings of the policy's `identity` block, as the JSON members the
//! filter's [`meshward_engine::config::FilterConfig`] reads (`jwt_svid`,
//! `user_tokens`, `trust_bundles`, `key_fetch`, `revoked`, `chain`).
//! A member the source leaves unset is left out, so the filter's default
//! applies.

use serde_json::{json, Map, Value};

use crate::checked::{FetchSource, IdentitySettings, TokenSettings};

/// The identity members of the plugin configuration.
pub fn identity_members(identity: &IdentitySettings) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(svid) = &identity.jwt_svid {
        let mut obj = token_settings(&svid.settings);
        obj.insert("audiences".into(), json!(svid.audiences));
        out.insert("jwt_svid".into(), Value::Object(obj));
    }
    let mut key_fetch: Vec<Value> = Vec::new();
    if let Some(user) = &identity.user_tokens {
        let mut obj = token_settings(&user.settings);
        let issuers: Vec<Value> = user
            .issuers
            .iter()
            .map(|issuer| {
                let mut entry = Map::new();
                entry.insert("issuer".into(), json!(issuer.issuer));
                entry.insert("audiences".into(), json!(issuer.audiences));
                if let Some(keys) = &issuer.keys {
                    entry.insert("jwks".into(), keys.clone());
                }
                if let Some(fetch) = &issuer.fetch {
                    key_fetch.push(fetch_entry(fetch, "issuer", json!(issuer.issuer)));
                }
                Value::Object(entry)
            })
            .collect();
        obj.insert("issuers".into(), Value::Array(issuers));
        if !user.claims.is_empty() {
            obj.insert("claims".into(), json!(user.claims));
        }
        out.insert("user_tokens".into(), Value::Object(obj));
    }
    let mut bundles = Map::new();
    for bundle in &identity.trust_bundles {
        if let Some(keys) = &bundle.keys {
            bundles.insert(bundle.trust_domain.clone(), keys.clone());
        }
        if let Some(fetch) = &bundle.fetch {
            key_fetch.push(fetch_entry(
                fetch,
                "trust_domain",
                json!(bundle.trust_domain),
            ));
        }
    }
    if !bundles.is_empty() {
        out.insert("trust_bundles".into(), Value::Object(bundles));
    }
    for fetch in &identity.revocation_fetch {
        key_fetch.push(fetch_entry(fetch, "revocation", json!(true)));
    }
    if !key_fetch.is_empty() {
        out.insert("key_fetch".into(), Value::Array(key_fetch));
    }
    let revoked = [
        ("spiffe_ids", &identity.revoked_spiffe_ids),
        ("serials", &identity.revoked_serials),
        ("jtis", &identity.revoked_jtis),
    ];
    if revoked.iter().any(|(_, list)| !list.is_empty()) {
        let obj: Map<String, Value> = revoked
            .iter()
            .map(|(name, list)| ((*name).to_owned(), json!(list)))
            .collect();
        out.insert("revoked".into(), Value::Object(obj));
    }
    if let Some(hand_off) = &identity.chain_hand_off {
        out.insert("chain".into(), json!({ "hand_off": hand_off }));
    }
    out
}

fn token_settings(settings: &TokenSettings) -> Map<String, Value> {
    let mut obj = Map::new();
    let mut set = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            obj.insert(name.to_owned(), value);
        }
    };
    set("header", settings.header.as_ref().map(|v| json!(v)));
    set("scheme", settings.scheme.as_ref().map(|v| json!(v)));
    set(
        "max_lifetime_secs",
        settings.max_lifetime_secs.map(|v| json!(v)),
    );
    set(
        "clock_skew_secs",
        settings.clock_skew_secs.map(|v| json!(v)),
    );
    set("algorithms", settings.algorithms.as_ref().map(|v| json!(v)));
    set(
        "max_token_bytes",
        settings.max_token_bytes.map(|v| json!(v)),
    );
    obj
}

fn fetch_entry(fetch: &FetchSource, target: &str, value: Value) -> Value {
    let mut obj = Map::new();
    obj.insert("cluster".into(), json!(fetch.cluster));
    obj.insert("path".into(), json!(fetch.path));
    obj.insert(target.to_owned(), value);
    if let Some(authority) = &fetch.authority {
        obj.insert("authority".into(), json!(authority));
    }
    if let Some(secs) = fetch.refresh_secs {
        obj.insert("refresh_secs".into(), json!(secs));
    }
    if let Some(secs) = fetch.max_staleness_secs {
        obj.insert("max_staleness_secs".into(), json!(secs));
    }
    if let Some(ms) = fetch.timeout_ms {
        obj.insert("timeout_ms".into(), json!(ms));
    }
    Value::Object(obj)
}
