//! What a JWT-SVID costs the filter: a full verification (cache miss: parse,
//! claims, ES256 signature) and a verified-token cache hit (hash lookup plus
//! the checks that are repeated on every hit: clock, audience, trust domain,
//! key still in force, revocation).
//!
//! Runs natively and, compiled to wasm32-wasip1, under Node's V8 (the engine
//! Envoy embeds), so the numbers show what the filter pays inside Envoy:
//!
//! ```sh
//! cargo run -p meshward-engine --release --example token_cost
//! cargo build -p meshward-engine --release --example token_cost --target wasm32-wasip1
//! node --no-warnings scripts/wasi-run.mjs target/wasm32-wasip1/release/examples/token_cost.wasm
//! ```
//!
//! A benchmark, not a test: it prints medians and asserts nothing about time.
//! It does check that every timed call verified (a failing token would time
//! the wrong path).

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark program over fixed inputs: failing loudly is right"
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use meshward_engine::identity::{
    verify_jwt_svid, JwtSvid, JwtSvidContext, JwtSvidSettings, RevocationList, TokenCache,
    TokenRules,
};
use meshward_engine::identity::{KeyOwner, KeyPurpose, KeySet, KeyStore};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};

const TD: &str = "shop.example";
const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/orders";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn mint(key: &SigningKey, subject: &str, now: u64) -> String {
    let header = b64(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": subject, "aud": [AUDIENCE], "iat": now, "exp": now + 240,
        "jti": format!("jti-{subject}"),
    });
    let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let key = SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar");
    let point = key.verifying_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        panic!("uncompressed point has coordinates");
    };
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "jwt-svid",
        "x": b64(x), "y": b64(y),
    }]});
    let mut keys = KeyStore::new();
    let set = KeySet::parse(jwks.to_string().as_bytes(), KeyPurpose::JwtSvid).expect("JWKS");
    keys.replace(&KeyOwner::TrustDomain(TD.into()), set, now);
    let settings = JwtSvidSettings {
        header: "x-jwt-svid".into(),
        audiences: vec![AUDIENCE.into()],
        rules: TokenRules::default(),
    };
    let revocation = RevocationList::new();
    let trusts = |td: &str| td == TD;
    let ctx = JwtSvidContext {
        settings: &settings,
        keys: &keys,
        revocation: &revocation,
        trusts_domain: &trusts,
        policy_max_lifetime_secs: None,
    };

    // Distinct tokens, as many workloads would send.
    let tokens: Vec<String> = (0..64)
        .map(|i| mint(&key, &format!("spiffe://{TD}/ns/shop/sa/caller-{i}"), now))
        .collect();
    let token_bytes = tokens.first().map_or(0, String::len);

    // Misses: a fresh cache per call, so every call verifies the signature.
    let mut misses = Vec::new();
    for token in tokens.iter().cycle().take(200) {
        let mut cache: TokenCache<JwtSvid> = TokenCache::new(16);
        let start = Instant::now();
        let ok = verify_jwt_svid(&ctx, token, now, &mut cache).is_ok();
        misses.push(start.elapsed());
        assert!(ok, "the minted token must verify");
    }

    // Hits: every token verified once, then looked up again and again.
    let mut cache: TokenCache<JwtSvid> = TokenCache::new(1024);
    for token in &tokens {
        assert!(verify_jwt_svid(&ctx, token, now, &mut cache).is_ok());
    }
    // Timed per round of 64 lookups (a clock read costs more than a hit
    // inside V8), reported per lookup.
    let mut hits = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let verified = tokens
            .iter()
            .filter(|token| verify_jwt_svid(&ctx, token, now, &mut cache).is_ok())
            .count();
        hits.push(start.elapsed() / tokens.len() as u32);
        assert_eq!(verified, tokens.len());
    }
    let stats = cache.stats();
    assert_eq!(stats.hits, 200 * tokens.len() as u64);

    let target = if cfg!(target_family = "wasm") {
        "wasm32-wasip1 (run under Node's V8)"
    } else {
        "native"
    };
    let miss = median(misses);
    let hit = median(hits);
    println!("JWT-SVID cost, {target}; ES256, {token_bytes}-byte token");
    println!("| path | median |");
    println!("|---|---:|");
    println!(
        "| cache miss (full verification) | {:.1} µs |",
        miss.as_secs_f64() * 1e6
    );
    println!("| cache hit | {:.2} µs |", hit.as_secs_f64() * 1e6);
    println!(
        "miss / hit: {:.0}x",
        miss.as_secs_f64() / hit.as_secs_f64().max(1e-12)
    );
}
