//! Fixed keys, the configuration that trusts them, and tokens minted with
//! them. Everything is deterministic (Ed25519, and ECDSA with RFC 6979), so
//! a crash input reproduces.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use meshward_engine::config::FilterConfig;
use serde_json::{json, Value};

use crate::fixture;
use crate::NOW;

/// The JWT-SVID audience this workload accepts.
pub const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/payments";
/// The trusted end-user token issuer.
pub const ISSUER: &str = "https://idp.example";
/// The audience user tokens must name.
pub const USER_AUDIENCE: &str = "shop";
/// The header carrying JWT-SVIDs.
pub const SVID_HEADER: &str = "x-jwt-svid";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ed25519() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

fn es256() -> p256::ecdsa::SigningKey {
    // Any scalar below the group order is a key; this one is fixed.
    p256::ecdsa::SigningKey::from_slice(&[0x11u8; 32]).expect("fixed P-256 scalar")
}

/// The public keys as JWKs: an ES256 key `k-es` and an EdDSA key `k-ed`.
fn jwks(spiffe: bool) -> Value {
    let point = es256().verifying_key().to_encoded_point(false);
    let mut es = json!({"kty": "EC", "crv": "P-256", "kid": "k-es",
        "x": b64(point.x().map(|x| x.as_slice()).unwrap_or_default()),
        "y": b64(point.y().map(|y| y.as_slice()).unwrap_or_default())});
    let mut ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k-ed",
        "x": b64(ed25519().verifying_key().as_bytes())});
    if spiffe {
        es["use"] = json!("jwt-svid");
        ed["use"] = json!("jwt-svid");
        json!({"keys": [es, ed], "spiffe_sequence": 1})
    } else {
        json!({"keys": [es, ed]})
    }
}

/// The plugin configuration: the fixture policy, JWT-SVIDs and user tokens
/// on, the fixed keys trusted, one `jti` revoked.
pub fn config_json() -> String {
    json!({
        "policy": STANDARD.encode(fixture::policy_bytes()),
        "jwt_svid": {
            "header": SVID_HEADER,
            "audiences": [AUDIENCE],
            "max_lifetime_secs": 3600,
        },
        "user_tokens": {
            "claims": ["groups"],
            "issuers": [{"issuer": ISSUER, "audiences": [USER_AUDIENCE], "jwks": jwks(false)}],
        },
        "trust_bundles": {"shop.example": jwks(true)},
        "revoked": {"spiffe_ids": [], "serials": [], "jtis": ["revoked-jti"]},
    })
    .to_string()
}

/// The loaded configuration.
pub fn config() -> FilterConfig {
    FilterConfig::from_json(config_json().as_bytes()).expect("the fuzz configuration loads")
}

/// Signs `header.claims` with the key its `alg` names (`ES256` or `EdDSA`).
pub fn mint(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match header["alg"].as_str() {
        Some("EdDSA") => ed25519().sign(input.as_bytes()).to_bytes().to_vec(),
        _ => {
            let sig: p256::ecdsa::Signature = es256().sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
    };
    format!("{input}.{}", b64(&sig))
}

/// Tokens minted with the trusted keys: some verify, some are refused for a
/// reason other than the signature (expired, wrong audience, revoked,
/// untrusted domain...). Every token the verifiers accept must be one of
/// these: nothing else carries a valid signature.
pub fn minted() -> Vec<String> {
    let es = json!({"alg": "ES256", "kid": "k-es", "typ": "JWT"});
    let ed = json!({"alg": "EdDSA", "kid": "k-ed"});
    let svid = |sub: &str, aud: &str, exp: u64| json!({"sub": sub, "aud": [aud], "iat": NOW - 10, "exp": exp, "jti": "svid-1"});
    let user = |aud: &str, jti: &str| {
        json!({"iss": ISSUER, "sub": "alice", "aud": aud, "iat": NOW - 10, "exp": NOW + 600,
               "jti": jti, "scope": "orders.read", "groups": ["admins"]})
    };
    vec![
        mint(&es, &svid(fixture::ORDERS, AUDIENCE, NOW + 290)),
        mint(&ed, &svid(fixture::FRONTEND, AUDIENCE, NOW + 290)),
        mint(
            &es,
            &svid(fixture::ORDERS, "spiffe://shop.example/other", NOW + 290),
        ),
        mint(&es, &svid(fixture::ORDERS, AUDIENCE, NOW - 100)),
        mint(&ed, &svid(fixture::PARTNER, AUDIENCE, NOW + 290)),
        mint(&ed, &svid("not-spiffe", AUDIENCE, NOW + 290)),
        mint(&es, &user(USER_AUDIENCE, "user-1")),
        mint(&ed, &user(USER_AUDIENCE, "user-2")),
        mint(&es, &user("elsewhere", "user-3")),
        mint(&ed, &user(USER_AUDIENCE, "revoked-jti")),
    ]
}

/// The signed part (`header.payload`) of a compact JWS, if it has one.
pub fn signing_input(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(input, _)| input)
}
