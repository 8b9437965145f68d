//! JWT-SVIDs, end-user tokens, key sets, revocation and the token cache, over
//! tokens minted here with keys generated at test time.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::claim_path::ClaimPath;
use super::jwks::{JwksError, KeyOwner, KeyPurpose, KeySet, KeyStore, Rotation};
use super::jwt::{verify_jwt_svid, JwtSvid, JwtSvidContext, JwtSvidSettings, TokenRules};
use super::revocation::{RevocationList, RevokedConfig};
use super::test_tokens::*;
use super::token_cache::{TokenCache, TokenCacheStats};
use super::tokens::{
    verify_user_token, ClaimValue, IssuerSettings, UserClaims, UserTokenContext, UserTokenSettings,
};
use super::{Alg, AlgSet};
use crate::decision::Reason;

// ---------------------------------------------------------------- fixtures

fn svid_settings() -> JwtSvidSettings {
    JwtSvidSettings {
        header: "x-jwt-svid".into(),
        audiences: vec![AUDIENCE.into()],
        rules: TokenRules {
            max_lifetime_secs: Some(300),
            ..TokenRules::default()
        },
    }
}

fn trusts(td: &str) -> bool {
    td == TD || td == OTHER_TD
}

/// A verifier for JWT-SVIDs: settings, keys, revocation, cache.
struct Svids {
    settings: JwtSvidSettings,
    keys: KeyStore,
    revocation: RevocationList,
    cache: TokenCache<JwtSvid>,
    policy_bound: Option<u64>,
}

impl Svids {
    /// Trust domain `TD` with `key` as `k1`, `OTHER_TD` with `other` as `p1`.
    fn new(key: &TestKey, other: &TestKey) -> Svids {
        let mut keys = KeyStore::new();
        let td = KeyOwner::TrustDomain(TD.into());
        let set = KeySet::parse(&jwks(&[(key, "k1", json!({}))]), KeyPurpose::JwtSvid).unwrap();
        keys.replace(&td, set, NOW - 60);
        let other_td = KeyOwner::TrustDomain(OTHER_TD.into());
        let set = KeySet::parse(&jwks(&[(other, "p1", json!({}))]), KeyPurpose::JwtSvid).unwrap();
        keys.replace(&other_td, set, NOW - 60);
        Svids {
            settings: svid_settings(),
            keys,
            revocation: RevocationList::new(),
            cache: TokenCache::new(16),
            policy_bound: None,
        }
    }

    fn verify_at(&mut self, token: &str, now: u64) -> Result<JwtSvid, Reason> {
        let ctx = JwtSvidContext {
            settings: &self.settings,
            keys: &self.keys,
            revocation: &self.revocation,
            trusts_domain: &trusts,
            policy_max_lifetime_secs: self.policy_bound,
        };
        verify_jwt_svid(&ctx, token, now, &mut self.cache).cloned()
    }

    fn verify(&mut self, token: &str) -> Result<JwtSvid, Reason> {
        self.verify_at(token, NOW)
    }

    fn reason(&mut self, token: &str) -> Reason {
        self.verify(token).unwrap_err()
    }
}

fn es() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(TestKey::es256)
}

fn other_es() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(TestKey::es256)
}

fn svids() -> Svids {
    Svids::new(es(), other_es())
}

fn good_svid() -> String {
    es().mint(&header(es(), "k1"), &svid_claims(ORDERS))
}

fn with(mut value: Value, member: &str, v: Value) -> Value {
    value[member] = v;
    value
}

fn without(mut value: Value, member: &str) -> Value {
    value.as_object_mut().unwrap().remove(member);
    value
}

/// An unsigned-looking token: header and claims as given, signature bytes as given.
fn raw_token(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(sig))
}

// ---------------------------------------------------------------- happy paths

#[test]
fn es256_svid_verifies() {
    let mut v = svids();
    let svid = v.verify(&good_svid()).unwrap();
    assert_eq!(svid.subject.as_str(), ORDERS);
    assert_eq!(svid.audiences, [AUDIENCE]);
    assert_eq!(svid.expires_at, NOW + 290);
    assert_eq!(svid.issued_at, Some(NOW - 10));
    assert_eq!(svid.jti.as_deref(), Some("svid-1"));
    assert_eq!(svid.alg, Alg::Es256);
    assert_eq!(svid.kid.as_deref(), Some("k1"));
}

#[test]
fn eddsa_svid_verifies() {
    let ed = TestKey::ed25519();
    let mut v = Svids::new(&ed, other_es());
    let token = ed.mint(&header(&ed, "k1"), &svid_claims(ORDERS));
    assert_eq!(v.verify(&token).unwrap().alg, Alg::EdDsa);
    // `typ` is optional; `JOSE` is allowed too.
    let token = ed.mint(
        &json!({"alg": "EdDSA", "kid": "k1"}),
        &svid_claims(CHECKOUT),
    );
    assert!(v.verify(&token).is_ok());
    let token = ed.mint(
        &json!({"alg": "EdDSA", "kid": "k1", "typ": "JOSE"}),
        &svid_claims(ORDERS),
    );
    assert!(v.verify(&token).is_ok());
}

/// RSA key generation is slow in debug wasm: native only.
#[cfg(not(target_family = "wasm"))]
fn rsa_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(TestKey::rsa)
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn rs256_and_ps256_svids_verify() {
    let rsa = rsa_key();
    let mut v = Svids::new(rsa, other_es());
    let rs = rsa.mint(&json!({"alg": "RS256", "kid": "k1"}), &svid_claims(ORDERS));
    assert_eq!(v.verify(&rs).unwrap().alg, Alg::Rs256);
    let ps = rsa.mint(&json!({"alg": "PS256", "kid": "k1"}), &svid_claims(ORDERS));
    assert_eq!(v.verify(&ps).unwrap().alg, Alg::Ps256);
    // A PKCS#1 v1.5 signature presented as PSS (and vice versa) fails.
    let (input, sig) = rs.rsplit_once('.').unwrap();
    let (_, rest) = input.split_once('.').unwrap();
    let as_ps = format!("{}.{rest}.{sig}", b64(br#"{"alg":"PS256","kid":"k1"}"#));
    assert_eq!(v.reason(&as_ps), Reason::JwtBadSignature);
    // A key pinned to RS256 refuses PS256.
    let set = KeySet::parse(
        &jwks(&[(rsa, "k1", json!({"alg": "RS256"}))]),
        KeyPurpose::JwtSvid,
    )
    .unwrap();
    v.keys.replace(&KeyOwner::TrustDomain(TD.into()), set, NOW);
    let ps2 = rsa.mint(
        &json!({"alg": "PS256", "kid": "k1"}),
        &svid_claims(CHECKOUT),
    );
    assert_eq!(v.reason(&ps2), Reason::JwtAlgNotAllowed);
    let rs2 = rsa.mint(
        &json!({"alg": "RS256", "kid": "k1"}),
        &svid_claims(CHECKOUT),
    );
    assert!(v.verify(&rs2).is_ok());
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn rsa_public_key_as_hmac_secret_is_refused() {
    use hmac::{Hmac, Mac as _};
    let rsa = rsa_key();
    let mut v = Svids::new(rsa, other_es());
    let h = json!({"alg": "HS256", "kid": "k1"});
    let input = signing_input(&h, &svid_claims(ORDERS));
    let jwk_text = rsa.jwk("k1", json!({})).to_string();
    for secret in [rsa.public_bytes(), jwk_text.into_bytes()] {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(v.reason(&token), Reason::JwtAlgNotAllowed);
    }
}

#[test]
fn bearer_scheme_when_configured() {
    let mut v = svids();
    v.settings.rules.scheme = Some("Bearer".into());
    let token = good_svid();
    assert!(v.verify(&format!("Bearer {token}")).is_ok());
    assert!(v.verify(&format!("bearer  {token}")).is_ok());
    for bad in [
        token.clone(),
        format!("Bearer{token}"),
        format!("Basic {token}"),
        "Bearer ".into(),
        "Bearer".into(),
        String::new(),
    ] {
        assert_eq!(v.reason(&bad), Reason::JwtMalformed, "{bad}");
    }
    // Without a configured scheme the prefix is part of the (bad) token.
    v.settings.rules.scheme = None;
    assert_eq!(v.reason(&format!("Bearer {token}")), Reason::JwtMalformed);
}

// ---------------------------------------------------------------- bad input, one reason each

#[test]
fn malformed_base64() {
    let mut v = svids();
    let token = good_svid();
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        format!("*{}.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}%", parts[0], parts[1], parts[2]),
        // Padding is not base64url as JWS uses it.
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        // Standard-alphabet characters.
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            parts[2].replace('-', "+").replace('_', "/") + "+/"
        ),
    ] {
        assert_eq!(v.reason(&bad), Reason::JwtMalformed, "{bad}");
    }
}

#[test]
fn malformed_json() {
    let mut v = svids();
    let good_header = b64(br#"{"alg":"ES256","kid":"k1"}"#);
    let good_claims = b64(svid_claims(ORDERS).to_string().as_bytes());
    let sig = b64(&[0; 64]);
    for (h, c) in [
        (b64(b"{\"alg\":"), good_claims.clone()),
        (b64(b"[]"), good_claims.clone()),
        (b64(br#"["ES256", "k1"]"#), good_claims.clone()),
        (b64(b"\"ES256\""), good_claims.clone()),
        (
            b64(br#"{"alg":"ES256","alg":"ES256","kid":"k1"}"#),
            good_claims.clone(),
        ),
        (b64(br#"{"alg":"ES256","kid":7}"#), good_claims.clone()),
        (b64(br#"{"alg":"ES256","kid":"k1"} x"#), good_claims.clone()),
        (good_header.clone(), b64(b"{\"sub\":")),
        (good_header.clone(), b64(b"[1,2]")),
        (good_header.clone(), b64(b"")),
        (good_header.clone(), b64(&[0xff, 0xfe])),
    ] {
        let token = format!("{h}.{c}.{sig}");
        assert_eq!(v.reason(&token), Reason::JwtMalformed, "{token}");
    }
}

#[test]
fn wrong_segment_count() {
    let mut v = svids();
    let token = good_svid();
    let (a, rest) = token.split_once('.').unwrap();
    let (b, c) = rest.split_once('.').unwrap();
    for bad in [
        a.to_owned(),
        format!("{a}.{b}"),
        format!("{a}.{b}.{c}.{c}"),
        format!("{a}.{b}.{c}."),
        format!(".{a}.{b}.{c}"),
        format!("{a}..{c}"),
        "..".to_owned(),
        ".".to_owned(),
    ] {
        assert_eq!(v.reason(&bad), Reason::JwtMalformed, "{bad}");
    }
}

#[test]
fn alg_none_is_refused() {
    let mut v = svids();
    let claims = svid_claims(ORDERS);
    for alg in ["none", "None", "NONE", ""] {
        let h = json!({"alg": alg, "kid": "k1"});
        assert_eq!(
            v.reason(&raw_token(&h, &claims, &[])),
            Reason::JwtAlgNotAllowed,
            "{alg}"
        );
        assert_eq!(
            v.reason(&raw_token(&h, &claims, b"sig")),
            Reason::JwtAlgNotAllowed
        );
    }
    // No `alg` at all is malformed.
    assert_eq!(
        v.reason(&raw_token(&json!({"kid": "k1"}), &claims, &[])),
        Reason::JwtMalformed
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    use hmac::{Hmac, Mac as _};
    let mut v = svids();
    let jwk_text = es().jwk("k1", json!({})).to_string();
    let x = es().jwk("k1", json!({}))["x"].as_str().unwrap().to_owned();
    for alg in ["HS256", "HS384", "HS512"] {
        let h = json!({"alg": alg, "kid": "k1"});
        let input = signing_input(&h, &svid_claims(ORDERS));
        for secret in [
            es().public_bytes(),
            jwk_text.clone().into_bytes(),
            x.clone().into_bytes(),
        ] {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input.as_bytes());
            let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
            assert_eq!(v.reason(&token), Reason::JwtAlgNotAllowed, "{alg}");
        }
    }
}

#[test]
fn alg_outside_allowlist_or_not_fitting_the_key() {
    let mut v = svids();
    v.settings.rules.algorithms = AlgSet::EMPTY.with(Alg::EdDsa);
    assert_eq!(v.reason(&good_svid()), Reason::JwtAlgNotAllowed);
    v.settings.rules.algorithms = AlgSet::ALL;
    // An EC key asked to verify RS256 / EdDSA / PS256: confusion, refused.
    let claims = svid_claims(ORDERS);
    for alg in ["RS256", "PS256", "EdDSA"] {
        let token = raw_token(&json!({"alg": alg, "kid": "k1"}), &claims, &[1; 64]);
        assert_eq!(v.reason(&token), Reason::JwtAlgNotAllowed, "{alg}");
    }
    // Algorithms we do not support at all.
    for alg in ["ES384", "ES512", "RS512", "ES256K", "es256"] {
        let token = raw_token(&json!({"alg": alg, "kid": "k1"}), &claims, &[1; 64]);
        assert_eq!(v.reason(&token), Reason::JwtAlgNotAllowed, "{alg}");
    }
}

#[test]
fn unknown_kid() {
    let mut v = svids();
    let token = es().mint(&header(es(), "k2"), &svid_claims(ORDERS));
    assert_eq!(v.reason(&token), Reason::JwtUnknownKid);
    // No kid: JWT-SVIDs must name their key.
    let token = es().mint(&json!({"alg": "ES256"}), &svid_claims(ORDERS));
    assert_eq!(v.reason(&token), Reason::JwtUnknownKid);
    // An empty kid is malformed.
    let token = es().mint(&json!({"alg": "ES256", "kid": ""}), &svid_claims(ORDERS));
    assert_eq!(v.reason(&token), Reason::JwtMalformed);
}

#[test]
fn key_of_another_trust_domain_is_not_used() {
    let mut v = svids();
    // Subject in shop.example, signed by partner.example's key (kid `p1`):
    // shop.example's set has no `p1`.
    let token = other_es().mint(&header(other_es(), "p1"), &svid_claims(ORDERS));
    assert_eq!(v.reason(&token), Reason::JwtUnknownKid);
    // Same token with partner's subject verifies: the key is fine, the domain was wrong.
    let token = other_es().mint(
        &header(other_es(), "p1"),
        &svid_claims("spiffe://partner.example/ns/x/sa/y"),
    );
    assert!(v.verify(&token).is_ok());
}

#[test]
fn token_for_domain_a_signed_by_b_key_with_colliding_kid() {
    // Both domains use kid `k1`; the token claims A but is signed by B's key.
    let a = TestKey::es256();
    let b = TestKey::es256();
    let mut v = Svids::new(&a, other_es());
    let set = KeySet::parse(&jwks(&[(&b, "k1", json!({}))]), KeyPurpose::JwtSvid).unwrap();
    v.keys
        .replace(&KeyOwner::TrustDomain(OTHER_TD.into()), set, NOW);
    let token = b.mint(&header(&b, "k1"), &svid_claims(ORDERS));
    assert_eq!(v.reason(&token), Reason::JwtBadSignature);
    let token = b.mint(
        &header(&b, "k1"),
        &svid_claims("spiffe://partner.example/w"),
    );
    assert!(v.verify(&token).is_ok());
}

#[test]
fn embedded_jwk_header_is_ignored() {
    let mut v = svids();
    let attacker = TestKey::es256();
    for kid in ["k1", "attacker"] {
        let h = json!({"alg": "ES256", "kid": kid, "jwk": attacker.jwk(kid, json!({})),
                       "jku": "https://evil.example/jwks", "x5u": "https://evil.example/c"});
        let token = attacker.mint(&h, &svid_claims(ORDERS));
        let want = if kid == "k1" {
            Reason::JwtBadSignature
        } else {
            Reason::JwtUnknownKid
        };
        assert_eq!(v.reason(&token), want);
    }
}

#[test]
fn bad_signature() {
    let mut v = svids();
    let token = good_svid();
    let (input, sig) = token.rsplit_once('.').unwrap();
    // Claims changed after signing.
    let (h, _) = input.split_once('.').unwrap();
    let forged = format!(
        "{h}.{}.{sig}",
        b64(svid_claims(CHECKOUT).to_string().as_bytes())
    );
    assert_eq!(v.reason(&forged), Reason::JwtBadSignature);
    // Signature bytes changed, truncated, empty, zero.
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    raw[10] ^= 1;
    for bad_sig in [
        raw.clone(),
        raw[..63].to_vec(),
        vec![],
        vec![0; 64],
        [raw.clone(), vec![0]].concat(),
    ] {
        let token = format!("{input}.{}", b64(&bad_sig));
        assert_eq!(v.reason(&token), Reason::JwtBadSignature);
    }
    // Signed by a stranger's key under our kid.
    let stranger = TestKey::es256();
    assert_eq!(
        v.reason(&stranger.mint(&header(es(), "k1"), &svid_claims(ORDERS))),
        Reason::JwtBadSignature
    );
}

#[test]
fn expired() {
    let mut v = svids();
    let claims = with(svid_claims(ORDERS), "exp", json!(NOW - 31));
    let token = es().mint(&header(es(), "k1"), &claims);
    assert_eq!(v.reason(&token), Reason::JwtExpired);
    // Within the 30 s skew: still good; at exp + skew: expired.
    let claims = with(svid_claims(ORDERS), "exp", json!(NOW - 29));
    assert!(v.verify(&es().mint(&header(es(), "k1"), &claims)).is_ok());
    let claims = with(svid_claims(CHECKOUT), "exp", json!(NOW - 30));
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &claims)),
        Reason::JwtExpired
    );
    // Zero skew.
    v.settings.rules.clock_skew_secs = 0;
    let claims = with(svid_claims(ORDERS), "exp", json!(NOW));
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &claims)),
        Reason::JwtExpired
    );
}

#[test]
fn not_yet_valid() {
    let mut v = svids();
    let nbf = with(svid_claims(ORDERS), "nbf", json!(NOW + 60));
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &nbf)),
        Reason::JwtNotYetValid
    );
    let iat = with(svid_claims(ORDERS), "iat", json!(NOW + 60));
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &iat)),
        Reason::JwtNotYetValid
    );
    // Within skew: fine.
    let nbf = with(svid_claims(ORDERS), "nbf", json!(NOW + 30));
    assert!(v.verify(&es().mint(&header(es(), "k1"), &nbf)).is_ok());
    // Fractional NumericDates are accepted (truncated).
    let frac = with(svid_claims(CHECKOUT), "nbf", json!(NOW as f64 + 0.5));
    assert!(v.verify(&es().mint(&header(es(), "k1"), &frac)).is_ok());
}

#[test]
fn lifetime_over_the_bound() {
    let mut v = svids();
    // 5 min + 1 s between iat and exp, bound 300 s.
    let claims = json!({"sub": ORDERS, "aud": AUDIENCE, "iat": NOW - 1, "exp": NOW + 300});
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &claims)),
        Reason::JwtLifetimeExceedsBound
    );
    // Without iat, the time left counts.
    let claims = json!({"sub": ORDERS, "aud": AUDIENCE, "exp": NOW + 301});
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &claims)),
        Reason::JwtLifetimeExceedsBound
    );
    let claims = json!({"sub": ORDERS, "aud": AUDIENCE, "exp": NOW + 300});
    assert!(v.verify(&es().mint(&header(es(), "k1"), &claims)).is_ok());
    // The policy's bound applies when stricter.
    v.policy_bound = Some(60);
    assert_eq!(v.reason(&good_svid()), Reason::JwtLifetimeExceedsBound);
    v.policy_bound = Some(3600);
    assert!(v.verify(&good_svid()).is_ok());
    // No bound at all.
    v.policy_bound = None;
    v.settings.rules.max_lifetime_secs = None;
    let claims = json!({"sub": ORDERS, "aud": AUDIENCE, "iat": NOW, "exp": NOW + 86400 * 365});
    assert!(v.verify(&es().mint(&header(es(), "k1"), &claims)).is_ok());
}

#[test]
fn wrong_audience() {
    let mut v = svids();
    for aud in [
        json!("spiffe://shop.example/other"),
        json!(["a", "b"]),
        json!([]),
    ] {
        let claims = with(svid_claims(ORDERS), "aud", aud.clone());
        assert_eq!(
            v.reason(&es().mint(&header(es(), "k1"), &claims)),
            Reason::JwtWrongAudience,
            "{aud}"
        );
    }
    // Any one match is enough, string or array.
    let claims = with(svid_claims(ORDERS), "aud", json!(["x", AUDIENCE]));
    assert!(v.verify(&es().mint(&header(es(), "k1"), &claims)).is_ok());
    let claims = with(svid_claims(CHECKOUT), "aud", json!(AUDIENCE));
    assert!(v.verify(&es().mint(&header(es(), "k1"), &claims)).is_ok());
}

#[test]
fn missing_and_mistyped_claims() {
    let mut v = svids();
    for member in ["sub", "aud", "exp"] {
        let claims = without(svid_claims(ORDERS), member);
        assert_eq!(
            v.reason(&es().mint(&header(es(), "k1"), &claims)),
            Reason::JwtMissingClaim,
            "{member}"
        );
    }
    for (member, value) in [
        ("sub", json!(7)),
        ("aud", json!(7)),
        ("aud", json!([AUDIENCE, 7])),
        ("exp", json!("tomorrow")),
        ("exp", json!(-1)),
        ("exp", json!(1e300)),
        ("iat", json!(null)),
        ("nbf", json!([1])),
        ("jti", json!(1)),
        ("iss", json!({})),
    ] {
        let claims = with(svid_claims(ORDERS), member, value.clone());
        assert_eq!(
            v.reason(&es().mint(&header(es(), "k1"), &claims)),
            Reason::JwtMalformed,
            "{member}={value}"
        );
    }
}

#[test]
fn duplicate_claims_crit_and_typ() {
    let mut v = svids();
    let h = header(es(), "k1");
    let dup = format!(
        r#"{{"sub":"{CHECKOUT}","sub":"{ORDERS}","aud":"{AUDIENCE}","exp":{}}}"#,
        NOW + 60
    );
    let input = format!("{}.{}", b64(h.to_string().as_bytes()), b64(dup.as_bytes()));
    let token = format!("{input}.{}", b64(&es().sign("ES256", input.as_bytes())));
    assert_eq!(v.reason(&token), Reason::JwtMalformed);
    let crit = json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]});
    assert_eq!(
        v.reason(&es().mint(&crit, &svid_claims(ORDERS))),
        Reason::JwtMalformed
    );
    let typ = json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"});
    assert_eq!(
        v.reason(&es().mint(&typ, &svid_claims(ORDERS))),
        Reason::JwtMalformed
    );
}

#[test]
fn subject_not_spiffe() {
    let mut v = svids();
    for sub in [
        "orders",
        "https://shop.example/orders",
        "spiffe://Shop.example/a",
        "spiffe://shop.example/a/../b",
        "",
    ] {
        let claims = svid_claims(sub);
        assert_eq!(
            v.reason(&es().mint(&header(es(), "k1"), &claims)),
            Reason::JwtSubjectNotSpiffe,
            "{sub}"
        );
    }
}

#[test]
fn subject_in_untrusted_domain() {
    let mut v = svids();
    let claims = svid_claims("spiffe://evil.example/ns/x/sa/y");
    assert_eq!(
        v.reason(&es().mint(&header(es(), "k1"), &claims)),
        Reason::JwtUntrustedDomain
    );
}

/// Revoking the token's `jti`, then its subject, denies `token` with the
/// matching reason; the revocation list is left empty.
fn assert_revocation_denies(v: &mut Svids, token: &str) {
    v.revocation = RevocationList::from_config(
        &RevokedConfig {
            jtis: vec!["svid-1".into()],
            ..RevokedConfig::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(v.reason(token), Reason::JwtRevoked);
    v.revocation = RevocationList::from_config(
        &RevokedConfig {
            spiffe_ids: vec![ORDERS.into()],
            ..RevokedConfig::default()
        },
        &[],
    )
    .unwrap();
    assert_eq!(v.reason(token), Reason::SpiffeIdRevoked);
    v.revocation = RevocationList::new();
}

#[test]
fn revoked_jti_and_subject() {
    let mut v = svids();
    let token = good_svid();
    assert_revocation_denies(&mut v, &token);
    assert!(v.verify(&token).is_ok());
}

#[test]
fn oversized() {
    let mut v = svids();
    let claims = with(svid_claims(ORDERS), "pad", json!("x".repeat(9000)));
    let token = es().mint(&header(es(), "k1"), &claims);
    assert_eq!(v.reason(&token), Reason::JwtTooLarge);
    assert_eq!(v.reason(&"a".repeat(8193)), Reason::JwtTooLarge);
    v.settings.rules.max_token_bytes = 64 * 1024;
    assert!(v.verify(&token).is_ok());
}

#[test]
fn duplicate_header_reason_is_a_401() {
    for r in [
        Reason::JwtDuplicateHeader,
        Reason::UserTokenDuplicateHeader,
        Reason::JwtMissing,
    ] {
        assert!(r.is_identity_failure());
    }
    assert_eq!(Reason::JwtDuplicateHeader.code(), "jwt_duplicate_header");
    // Every code is unique.
    let codes: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes.len(), Reason::ALL.len());
}

// ---------------------------------------------------------------- keys: rotation, staleness

#[test]
fn rotation_old_key_stops_new_key_works() {
    let mut v = svids();
    let old_token = good_svid();
    assert!(v.verify(&old_token).is_ok());
    // Cached now; rotate to k2 only.
    let new = TestKey::es256();
    let rotation = v
        .keys
        .apply_fetched(
            &KeyOwner::TrustDomain(TD.into()),
            &jwks(&[(&new, "k2", json!({}))]),
            NOW,
        )
        .unwrap();
    assert_eq!(
        rotation,
        Rotation {
            added: vec!["k2".into()],
            removed: vec!["k1".into()],
            replaced: vec![],
            kept: 0
        }
    );
    assert!(rotation.changed());
    // The cached old token stops at once (its kid is gone).
    assert_eq!(v.reason(&old_token), Reason::JwtUnknownKid);
    let new_token = new.mint(&header(&new, "k2"), &svid_claims(ORDERS));
    assert!(v.verify(&new_token).is_ok());
    // A new key under the *same* kid: a cached token signed by the old one fails too.
    let mut v = svids();
    assert!(v.verify(&old_token).is_ok());
    let rotation = v
        .keys
        .apply_fetched(
            &KeyOwner::TrustDomain(TD.into()),
            &jwks(&[(&new, "k1", json!({}))]),
            NOW,
        )
        .unwrap();
    assert_eq!(rotation.replaced, ["k1"]);
    assert_eq!(v.reason(&old_token), Reason::JwtBadSignature);
    // Refetching the same set changes nothing.
    let again = v
        .keys
        .apply_fetched(
            &KeyOwner::TrustDomain(TD.into()),
            &jwks(&[(&new, "k1", json!({}))]),
            NOW,
        )
        .unwrap();
    assert!(!again.changed());
    assert_eq!(again.kept, 1);
}

#[test]
fn failed_fetch_keeps_the_last_good_set_until_stale() {
    let mut v = svids();
    let td = KeyOwner::TrustDomain(TD.into());
    v.keys.expect_fetches(&td, Some(3600), NOW - 100);
    let token = good_svid();
    assert!(v.verify(&token).is_ok());
    // A bad document is refused; the set stays.
    assert!(v.keys.apply_fetched(&td, b"<html>", NOW).is_err());
    assert!(v
        .keys
        .apply_fetched(&td, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, NOW)
        .is_err());
    assert!(v.verify_at(&token, NOW + 100).is_ok());
    // Past the bound (counted from the last success), fail closed, cache hit included.
    let stale_at = NOW - 100 + 3601;
    let fresh = es().mint(
        &header(es(), "k1"),
        &json!({"sub": CHECKOUT, "aud": AUDIENCE, "exp": stale_at + 60}),
    );
    assert_eq!(v.verify_at(&token, stale_at), Err(Reason::KeysStale));
    assert_eq!(v.verify_at(&fresh, stale_at), Err(Reason::KeysStale));
    // A successful fetch renews it.
    v.keys
        .apply_fetched(&td, &jwks(&[(es(), "k1", json!({}))]), stale_at)
        .unwrap();
    assert!(v.verify_at(&fresh, stale_at).is_ok());
}

#[test]
fn keys_unavailable() {
    let mut v = svids();
    v.keys = KeyStore::new();
    assert_eq!(v.reason(&good_svid()), Reason::KeysUnavailable);
    // Fetched but never fetched successfully yet.
    v.keys
        .expect_fetches(&KeyOwner::TrustDomain(TD.into()), Some(60), NOW);
    assert_eq!(v.reason(&good_svid()), Reason::KeysUnavailable);
}

#[test]
fn spiffe_bundle_as_is() {
    let jwt_key = TestKey::es256();
    let x509_key = TestKey::es256();
    let doc = json!({
        "spiffe_refresh_hint": 300,
        "spiffe_sequence": 7,
        "keys": [
            x509_key.jwk("", json!({"use": "x509-svid", "x5c": ["MIIB..."]})),
            jwt_key.jwk("j1", json!({"use": "jwt-svid"})),
        ]
    });
    let set = KeySet::parse(doc.to_string().as_bytes(), KeyPurpose::JwtSvid).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.refresh_hint_secs(), Some(300));
    assert_eq!(set.sequence(), Some(7));
    assert_eq!(set.keys()[0].kid(), Some("j1"));
    assert_eq!(set.keys()[0].kty(), "EC");
    let mut v = Svids::new(&jwt_key, other_es());
    v.keys.replace(&KeyOwner::TrustDomain(TD.into()), set, NOW);
    assert!(v
        .verify(&jwt_key.mint(&header(&jwt_key, "j1"), &svid_claims(ORDERS)))
        .is_ok());
    // An x509-svid key never verifies a JWT-SVID, whatever kid is claimed.
    let doc =
        json!({"spiffe_sequence": 8, "keys": [x509_key.jwk("x1", json!({"use": "x509-svid"}))]});
    v.keys
        .apply_fetched(
            &KeyOwner::TrustDomain(TD.into()),
            doc.to_string().as_bytes(),
            NOW,
        )
        .unwrap();
    assert_eq!(
        v.reason(&x509_key.mint(&header(&x509_key, "x1"), &svid_claims(ORDERS))),
        Reason::JwtUnknownKid
    );
    // In a SPIFFE bundle a key without `use` is an error; an older sequence is refused.
    let doc = json!({"spiffe_sequence": 9, "keys": [jwt_key.jwk("j1", json!({}))]});
    assert_eq!(
        KeySet::parse(doc.to_string().as_bytes(), KeyPurpose::JwtSvid).unwrap_err(),
        JwksError::BadUse {
            index: 0,
            key_use: String::new()
        }
    );
    let doc =
        json!({"spiffe_sequence": 3, "keys": [jwt_key.jwk("j1", json!({"use": "jwt-svid"}))]});
    assert_eq!(
        v.keys
            .apply_fetched(
                &KeyOwner::TrustDomain(TD.into()),
                doc.to_string().as_bytes(),
                NOW
            )
            .unwrap_err(),
        JwksError::SequenceRollback { have: 8, got: 3 }
    );
}

#[test]
fn jwks_rejects_what_it_should() {
    let ec = TestKey::es256();
    let ed = TestKey::ed25519();
    let parse = |doc: Value, purpose| KeySet::parse(doc.to_string().as_bytes(), purpose);
    let svid = KeyPurpose::JwtSvid;
    let user = KeyPurpose::UserToken;
    let ec_jwk = |extra: Value| ec.jwk("k1", extra);
    let cases: Vec<(Value, KeyPurpose, JwksError)> = vec![
        (
            json!({"keys": [ec_jwk(json!({})), ed.jwk("k1", json!({}))]}),
            svid,
            JwksError::DuplicateKid("k1".into()),
        ),
        (
            json!({"keys": [ec.jwk("", json!({})), ed.jwk("", json!({}))]}),
            user,
            JwksError::DuplicateKid(String::new()),
        ),
        (
            json!({"keys": [{"kty": "FOO", "kid": "a"}]}),
            svid,
            JwksError::UnsupportedKeyType {
                index: 0,
                kty: "FOO".into(),
            },
        ),
        (
            json!({"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}),
            user,
            JwksError::UnsupportedKeyType {
                index: 0,
                kty: "oct".into(),
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"d": "AAAA"}))]}),
            svid,
            JwksError::PrivateKeyMaterial { index: 0 },
        ),
        (
            json!({"keys": [ec_jwk(json!({"alg": "RS256"}))]}),
            svid,
            JwksError::AlgConflict {
                index: 0,
                alg: "RS256".into(),
                kty: "EC".into(),
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"alg": "HS256"}))]}),
            svid,
            JwksError::AlgConflict {
                index: 0,
                alg: "HS256".into(),
                kty: "EC".into(),
            },
        ),
        (
            json!({"keys": [ed.jwk("k1", json!({"alg": "ES256"}))]}),
            svid,
            JwksError::AlgConflict {
                index: 0,
                alg: "ES256".into(),
                kty: "OKP".into(),
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"crv": "P-384"}))]}),
            svid,
            JwksError::UnsupportedCurve {
                index: 0,
                crv: "P-384".into(),
            },
        ),
        (
            json!({"keys": [ed.jwk("k1", json!({"crv": "X25519"}))]}),
            svid,
            JwksError::UnsupportedCurve {
                index: 0,
                crv: "X25519".into(),
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"x": "!!"}))]}),
            svid,
            JwksError::BadMember {
                index: 0,
                member: "x",
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"x": b64(&[1; 31])}))]}),
            svid,
            JwksError::BadMember {
                index: 0,
                member: "x",
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"y": b64(&[7; 32])}))]}),
            svid,
            JwksError::InvalidKey { index: 0 },
        ),
        (
            json!({"keys": [ed.jwk("k1", json!({"x": b64(&{ let mut p = [0u8; 32]; p[0] = 1; p })}))]}),
            svid,
            JwksError::InvalidKey { index: 0 },
        ),
        (
            json!({"keys": [without(ec_jwk(json!({})), "y")]}),
            svid,
            JwksError::MissingMember {
                index: 0,
                member: "y",
            },
        ),
        (
            json!({"keys": [ec.jwk("", json!({}))]}),
            svid,
            JwksError::MissingMember {
                index: 0,
                member: "kid",
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"use": "signing"}))]}),
            svid,
            JwksError::BadUse {
                index: 0,
                key_use: "signing".into(),
            },
        ),
        (
            json!({"keys": [ec_jwk(json!({"use": "jwt-svid"}))]}),
            user,
            JwksError::BadUse {
                index: 0,
                key_use: "jwt-svid".into(),
            },
        ),
        (
            json!({"keys": [{"kty": "RSA", "kid": "r", "n": b64(&[0xc1; 128]), "e": "AQAB"}]}),
            svid,
            JwksError::RsaKeySize {
                index: 0,
                bits: 1024,
            },
        ),
        (
            json!({"keys": [{"kty": "RSA", "kid": "r", "n": b64(&[0xc1; 256]), "e": "AA"}]}),
            svid,
            JwksError::InvalidKey { index: 0 },
        ),
        (
            json!({"spiffe_sequence": -1, "keys": []}),
            svid,
            JwksError::BadSpiffeMember("spiffe_sequence"),
        ),
    ];
    for (doc, purpose, want) in cases {
        assert_eq!(parse(doc.clone(), purpose).unwrap_err(), want, "{doc}");
    }
    for doc in [
        json!([[]]),
        json!([]),
        json!({}),
        json!({"keys": {}}),
        json!({"keys": [1]}),
        json!({"keys": [{"kid": "a"}]}),
    ] {
        assert!(
            matches!(parse(doc.clone(), svid), Err(JwksError::Json(_))),
            "{doc}"
        );
    }
    let many: Vec<Value> = (0..65)
        .map(|i| ec.jwk(&format!("k{i}"), json!({})))
        .collect();
    assert_eq!(
        parse(json!({"keys": many}), svid).unwrap_err(),
        JwksError::TooManyKeys(65)
    );
    assert!(matches!(
        KeySet::parse(&vec![b' '; 2 << 20], svid),
        Err(JwksError::TooLarge(_))
    ));
    // `enc` keys are skipped, a kid-less key is fine for an issuer, padding tolerated.
    let padded = ec.jwk("k1", json!({}));
    let mut padded = padded.clone();
    padded["x"] = json!(format!("{}=", padded["x"].as_str().unwrap()));
    let set = parse(
        json!({"keys": [padded, ed.jwk("", json!({})), {"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"}]}),
        user,
    )
    .unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.find(None).is_some());
    assert!(KeySet::parse(br#"{"keys":[]}"#, svid).unwrap().is_empty());
}

#[test]
fn carry_over_keeps_fetched_sets_across_reconfiguration() {
    let td = KeyOwner::TrustDomain(TD.into());
    let inline = KeySet::parse(&jwks(&[(es(), "k1", json!({}))]), KeyPurpose::JwtSvid).unwrap();
    let mut old = KeyStore::new();
    old.replace(&td, inline.clone(), NOW - 500);
    old.expect_fetches(&td, Some(3600), NOW - 500);
    let new_key = TestKey::es256();
    old.apply_fetched(&td, &jwks(&[(&new_key, "k2", json!({}))]), NOW - 100)
        .unwrap();
    let mut next = KeyStore::new();
    next.replace(&td, inline, NOW);
    next.expect_fetches(&td, Some(3600), NOW);
    next.carry_over(&old);
    assert!(next.get(&td).unwrap().find(Some("k2")).is_some());
    assert_eq!(next.fetched_at(&td), Some(NOW - 100));
    // Owners not fetched keep their inline set.
    let mut inline_only = KeyStore::new();
    inline_only.replace(
        &td,
        KeySet::parse(&jwks(&[(es(), "k1", json!({}))]), KeyPurpose::JwtSvid).unwrap(),
        NOW,
    );
    inline_only.carry_over(&old);
    assert!(inline_only.get(&td).unwrap().find(Some("k1")).is_some());
    assert_eq!(inline_only.owners().count(), 1);
}

// ---------------------------------------------------------------- the token cache

#[test]
fn cache_hit_skips_verification_and_rechecks_the_rest() {
    let mut v = svids();
    let token = good_svid();
    assert!(v.verify(&token).is_ok());
    assert_eq!(v.cache.stats().misses, 1);
    assert!(v.verify(&token).is_ok());
    assert!(v.verify_at(&token, NOW + 100).is_ok());
    assert_eq!((v.cache.stats().hits, v.cache.stats().inserts), (2, 1));
    // Revoked after caching: effective on the next request.
    assert_revocation_denies(&mut v, &token);
    // Audience, trust, allowlist and lifetime bound move too.
    v.settings.audiences = vec!["spiffe://shop.example/other".into()];
    assert_eq!(v.reason(&token), Reason::JwtWrongAudience);
    v.settings.audiences = vec![AUDIENCE.into()];
    v.policy_bound = Some(10);
    assert_eq!(v.reason(&token), Reason::JwtLifetimeExceedsBound);
    v.policy_bound = None;
    v.settings.rules.algorithms = AlgSet::EMPTY.with(Alg::Rs256);
    assert_eq!(v.reason(&token), Reason::JwtAlgNotAllowed);
    v.settings.rules.algorithms = AlgSet::ALL;
    assert!(v.verify(&token).is_ok());
    assert_eq!(v.cache.stats().inserts, 1);
}

#[test]
fn cache_entries_expire_with_the_token() {
    let mut v = svids();
    let token = good_svid(); // exp NOW + 290, skew 30
    assert!(v.verify(&token).is_ok());
    assert_eq!(
        v.verify_at(&token, NOW + 319),
        Ok(v.verify(&token).unwrap())
    );
    assert_eq!(v.verify_at(&token, NOW + 320), Err(Reason::JwtExpired));
    assert!(v.cache.is_empty());
    assert_eq!(v.cache.stats().expirations, 1);
    // The clock going back does not revive it through the cache: full check.
    assert!(v.verify(&token).is_ok());
    assert_eq!(v.cache.stats().inserts, 2);
}

#[test]
fn cache_is_bounded() {
    let mut v = svids();
    v.cache = TokenCache::new(3);
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            es().mint(
                &header(es(), "k1"),
                &with(svid_claims(ORDERS), "jti", json!(format!("t{i}"))),
            )
        })
        .collect();
    for t in &tokens {
        assert!(v.verify(t).is_ok());
    }
    assert_eq!(v.cache.len(), 3);
    assert_eq!(v.cache.stats().evictions, 2);
    // The oldest were evicted: verifying them again is a miss.
    let before = v.cache.stats();
    assert!(v.verify(&tokens[0]).is_ok());
    assert!(v.verify(&tokens[4]).is_ok());
    let after = v.cache.stats();
    assert_eq!(
        (after.misses - before.misses, after.hits - before.hits),
        (1, 1)
    );
}

#[test]
fn failures_are_not_cached() {
    let mut v = svids();
    let token = es().mint(&header(es(), "k1"), &svid_claims("spiffe://evil.example/x"));
    assert_eq!(v.reason(&token), Reason::JwtUntrustedDomain);
    assert_eq!(v.reason(&token), Reason::JwtUntrustedDomain);
    assert!(v.cache.is_empty());
    assert_eq!(
        v.cache.stats(),
        TokenCacheStats {
            misses: 2,
            ..TokenCacheStats::default()
        }
    );
}

/// Counts this thread's allocations, to prove the hit path allocates nothing.
#[cfg(not(target_family = "wasm"))]
#[expect(
    unsafe_code,
    reason = "a counting global allocator (test only): the one unsafe code in the engine"
)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    // SAFETY: delegates to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub(super) fn allocations() -> u64 {
        ALLOCS.with(Cell::get)
    }
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn cache_hits_do_not_allocate() {
    let mut v = svids();
    let token = good_svid();
    let ctx = JwtSvidContext {
        settings: &v.settings,
        keys: &v.keys,
        revocation: &v.revocation,
        trusts_domain: &trusts,
        policy_max_lifetime_secs: Some(600),
    };
    assert!(verify_jwt_svid(&ctx, &token, NOW, &mut v.cache).is_ok());
    let before = counting::allocations();
    for _ in 0..10 {
        assert!(verify_jwt_svid(&ctx, &token, NOW, &mut v.cache).is_ok());
    }
    assert_eq!(counting::allocations(), before);

    let mut u = Users::new();
    let value = format!("Bearer {}", user_token(&user_claims()));
    let ctx = UserTokenContext {
        settings: &u.settings,
        keys: &u.keys,
        revocation: &u.revocation,
    };
    assert!(verify_user_token(&ctx, &value, NOW, &mut u.cache).is_ok());
    let before = counting::allocations();
    for _ in 0..10 {
        assert!(verify_user_token(&ctx, &value, NOW, &mut u.cache).is_ok());
    }
    assert_eq!(counting::allocations(), before);
}

// ---------------------------------------------------------------- end-user tokens

struct Users {
    settings: UserTokenSettings,
    keys: KeyStore,
    revocation: RevocationList,
    cache: TokenCache<UserClaims>,
}

impl Users {
    fn new() -> Users {
        let mut keys = KeyStore::new();
        let set = KeySet::parse(
            &jwks(&[(es(), "u1", json!({"use": "sig"}))]),
            KeyPurpose::UserToken,
        )
        .unwrap();
        keys.replace(&KeyOwner::Issuer(ISSUER.into()), set, NOW);
        let set = KeySet::parse(
            &jwks(&[(other_es(), "o1", json!({}))]),
            KeyPurpose::UserToken,
        )
        .unwrap();
        keys.replace(&KeyOwner::Issuer(OTHER_ISSUER.into()), set, NOW);
        Users {
            settings: UserTokenSettings {
                header: "authorization".into(),
                issuers: vec![
                    IssuerSettings {
                        issuer: ISSUER.into(),
                        audiences: vec!["shop".into()],
                    },
                    IssuerSettings {
                        issuer: OTHER_ISSUER.into(),
                        audiences: vec!["shop".into()],
                    },
                ],
                claims: [
                    "groups",
                    "tenant",
                    "level",
                    "iss",
                    "realm_access.roles",
                    "resource_access[shop.api].roles",
                    "[https://shop.example/tier]",
                    "org.name",
                    "org.size",
                    "org.flags",
                    "org.mixed",
                    "deep.a.b.c.d.e.f.g",
                ]
                .iter()
                .map(|p| ClaimPath::parse(p).unwrap())
                .collect(),
                rules: TokenRules {
                    scheme: Some("Bearer".into()),
                    ..TokenRules::default()
                },
            },
            keys,
            revocation: RevocationList::new(),
            cache: TokenCache::new(8),
        }
    }

    fn verify(&mut self, value: &str) -> Result<UserClaims, Reason> {
        let ctx = UserTokenContext {
            settings: &self.settings,
            keys: &self.keys,
            revocation: &self.revocation,
        };
        verify_user_token(&ctx, value, NOW, &mut self.cache).cloned()
    }

    fn reason(&mut self, token: &str) -> Reason {
        self.verify(&format!("Bearer {token}")).unwrap_err()
    }
}

fn user_token(claims: &Value) -> String {
    es().mint(
        &json!({"alg": "ES256", "kid": "u1", "typ": "at+jwt"}),
        claims,
    )
}

#[test]
fn user_token_exposes_subject_scopes_and_claims() {
    let mut u = Users::new();
    let claims = with(user_claims(), "scp", json!(["orders.read", "admin"]));
    let user = u
        .verify(&format!("Bearer {}", user_token(&claims)))
        .unwrap();
    assert_eq!(user.issuer, ISSUER);
    assert_eq!(user.subject, "alice");
    assert_eq!(user.scopes, ["orders.read", "orders.write", "admin"]);
    assert!(user.has_scope("admin") && !user.has_scope("orders"));
    assert_eq!(
        user.claim("groups"),
        Some(&ClaimValue::List(vec!["admins".into(), "ops".into()]))
    );
    assert!(user.claim("groups").unwrap().contains("ops"));
    assert_eq!(user.claim("tenant"), Some(&ClaimValue::Str("acme".into())));
    assert!(user.claim("tenant").unwrap().contains("acme"));
    assert_eq!(user.claim("iss"), Some(&ClaimValue::Str(ISSUER.into())));
    // A named claim of another type is left out; unnamed claims are not kept.
    assert_eq!(user.claim("level"), None);
    assert_eq!(user.claim("jti"), None);
    // `scp` as a space-separated string works too.
    let claims = with(without(user_claims(), "scope"), "scp", json!("a b"));
    assert_eq!(
        u.verify(&format!("Bearer {}", user_token(&claims)))
            .unwrap()
            .scopes,
        ["a", "b"]
    );
    // Second time: a cache hit.
    assert!(u.verify(&format!("Bearer {}", user_token(&claims))).is_ok());
    assert_eq!(u.cache.stats().hits, 1);
}

#[test]
fn user_token_exposes_nested_claims_by_path() {
    let mut u = Users::new();
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": "shop", "iat": NOW - 10, "exp": NOW + 3590,
        "realm_access": {"roles": ["admin", "offline_access"]},
        "resource_access": {"shop.api": {"roles": ["buyer"]}, "shop": {"roles": ["nope"]}},
        "https://shop.example/tier": "gold",
        "org": {"name": "acme", "size": 12, "flags": [true], "mixed": ["a", 1]},
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": "bottom"}}}}}}},
        "groups": {"not": "a list"}
    });
    let user = u
        .verify(&format!("Bearer {}", user_token(&claims)))
        .unwrap();
    let list = |items: &[&str]| ClaimValue::List(items.iter().map(|s| (*s).to_owned()).collect());
    assert_eq!(
        user.claim("realm_access.roles"),
        Some(&list(&["admin", "offline_access"]))
    );
    assert_eq!(
        user.claim("resource_access[shop.api].roles"),
        Some(&list(&["buyer"]))
    );
    assert_eq!(
        user.claim("[https://shop.example/tier]"),
        Some(&ClaimValue::Str("gold".into()))
    );
    assert_eq!(
        user.claim("org.name"),
        Some(&ClaimValue::Str("acme".into()))
    );
    assert_eq!(
        user.claim("deep.a.b.c.d.e.f.g"),
        Some(&ClaimValue::Str("bottom".into()))
    );
    // Numbers, lists of booleans, mixed lists and objects are absent to rules.
    for absent in ["org.size", "org.flags", "org.mixed", "groups", "tenant"] {
        assert_eq!(user.claim(absent), None, "{absent}");
    }
    // The same token with a list where an object was expected: absent, no panic.
    let claims = with(claims, "realm_access", json!([{"roles": ["admin"]}]));
    let user = u
        .verify(&format!("Bearer {}", user_token(&claims)))
        .unwrap();
    assert_eq!(user.claim("realm_access.roles"), None);
}

#[test]
fn user_token_bad_inputs() {
    let mut u = Users::new();
    let good = user_token(&user_claims());
    assert_eq!(u.verify(&good).unwrap_err(), Reason::UserTokenMalformed);
    assert_eq!(
        u.verify(&format!("Basic {good}")).unwrap_err(),
        Reason::UserTokenMalformed
    );
    assert_eq!(
        u.verify(&format!("Bearer {}", "a".repeat(9000)))
            .unwrap_err(),
        Reason::UserTokenTooLarge
    );
    assert_eq!(u.reason("a.b"), Reason::UserTokenMalformed);
    assert_eq!(
        u.reason(&raw_token(&json!({"alg": "none"}), &user_claims(), &[])),
        Reason::UserTokenAlgNotAllowed
    );
    assert_eq!(
        u.reason(&raw_token(
            &json!({"alg": "HS256", "kid": "u1"}),
            &user_claims(),
            &[0; 32]
        )),
        Reason::UserTokenAlgNotAllowed
    );
    assert_eq!(
        u.reason(&es().mint(&json!({"alg": "ES256", "kid": "zz"}), &user_claims())),
        Reason::UserTokenUnknownKid
    );
    let (input, _) = good.rsplit_once('.').unwrap();
    assert_eq!(
        u.reason(&format!("{input}.{}", b64(&[1; 64]))),
        Reason::UserTokenBadSignature
    );
    assert_eq!(
        u.reason(&user_token(&with(
            user_claims(),
            "iss",
            json!("https://evil.example")
        ))),
        Reason::UserTokenUntrustedIssuer
    );
    for member in ["iss", "sub", "aud", "exp"] {
        assert_eq!(
            u.reason(&user_token(&without(user_claims(), member))),
            Reason::UserTokenMissingClaim,
            "{member}"
        );
    }
    assert_eq!(
        u.reason(&user_token(&with(user_claims(), "aud", json!("billing")))),
        Reason::UserTokenWrongAudience
    );
    assert_eq!(
        u.reason(&user_token(&with(user_claims(), "exp", json!(NOW - 100)))),
        Reason::UserTokenExpired
    );
    assert_eq!(
        u.reason(&user_token(&with(user_claims(), "nbf", json!(NOW + 100)))),
        Reason::UserTokenNotYetValid
    );
    assert_eq!(
        u.reason(&user_token(&with(user_claims(), "scope", json!(["a"])))),
        Reason::UserTokenMalformed
    );
    assert_eq!(
        u.reason(&user_token(&with(user_claims(), "scp", json!([1])))),
        Reason::UserTokenMalformed
    );
    u.settings.rules.max_lifetime_secs = Some(600);
    assert_eq!(u.reason(&good), Reason::UserTokenLifetimeExceedsBound);
    u.settings.rules.max_lifetime_secs = None;
    // Issuer A's claims signed with issuer B's key (kid of B): not in A's set.
    let forged = other_es().mint(&json!({"alg": "ES256", "kid": "o1"}), &user_claims());
    assert_eq!(u.reason(&forged), Reason::UserTokenUnknownKid);
    let honest = other_es().mint(
        &json!({"alg": "ES256", "kid": "o1"}),
        &with(user_claims(), "iss", json!(OTHER_ISSUER)),
    );
    assert!(u.verify(&format!("Bearer {honest}")).is_ok());
    // Revoked jti, also on a cache hit.
    assert!(u.verify(&format!("Bearer {good}")).is_ok());
    u.revocation = RevocationList::from_json(br#"{"jtis":["user-1"]}"#).unwrap();
    assert_eq!(u.reason(&good), Reason::UserTokenRevoked);
    // Keys of the issuer gone stale.
    u.revocation = RevocationList::new();
    u.keys
        .expect_fetches(&KeyOwner::Issuer(ISSUER.into()), Some(60), NOW - 120);
    assert_eq!(u.reason(&good), Reason::KeysStale);
}

// ---------------------------------------------------------------- never panics

fn arb_token() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "[A-Za-z0-9_-]{0,40}",
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| b64(&b)),
        "\\{\"(alg|kid|typ|crit|sub|aud|exp|iat|nbf|jti|iss)\":(\"[A-Za-z0-9:/.]{0,10}\"|-?[0-9]{1,20}(\\.[0-9]+)?|null|\\[\\]|\\{\\})\\}"
            .prop_map(|j| b64(j.as_bytes())),
    ];
    prop_oneof![
        any::<String>(),
        (seg.clone(), seg.clone(), seg).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn verification_never_panics(token in arb_token(), now in any::<u64>(), bearer in any::<bool>()) {
        let mut v = svids();
        if bearer {
            v.settings.rules.scheme = Some("Bearer".into());
        }
        let first = v.verify_at(&token, now);
        prop_assert!(first.is_err());
        let mut u = Users::new();
        let ctx = UserTokenContext { settings: &u.settings, keys: &u.keys, revocation: &u.revocation };
        prop_assert!(verify_user_token(&ctx, &token, now, &mut u.cache).is_err());
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tokens_never_verify(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut v = svids();
        let token = good_svid();
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            // Base64 has slack bits in the last character: a change there may
            // decode to the same bytes, which verifies as the original.
            if let Ok(svid) = v.verify(&mutated) {
                prop_assert_eq!(svid, v.verify(&token).unwrap());
            }
        }
    }

    #[test]
    fn jwks_parsing_never_panics(doc in prop_oneof![
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "\\{\"keys\":\\[\\{(\"(kty|kid|use|alg|crv|x|y|n|e|d)\":(\"[A-Za-z0-9_=-]{0,50}\"|[0-9]{1,3}|null),?){0,8}\\}\\](,\"spiffe_(sequence|refresh_hint)\":-?[0-9.e]{1,8})?\\}",
        ("(EC|RSA|OKP|oct)", "(P-256|Ed25519|P-384)?", "[A-Za-z0-9_-]{0,90}", "[A-Za-z0-9_-]{0,90}", "(jwt-svid|x509-svid|sig|enc)?", "(ES256|RS256|PS256|EdDSA|HS256|none)?")
            .prop_map(|(kty, crv, x, y, u, alg)| json!({"keys": [{"kty": kty, "kid": "a", "crv": crv, "x": x, "y": y, "n": x, "e": y, "use": u, "alg": alg}]}).to_string()),
    ]) {
        for purpose in [KeyPurpose::JwtSvid, KeyPurpose::UserToken] {
            let _ = KeySet::parse(doc.as_bytes(), purpose);
            let mut store = KeyStore::new();
            let _ = store.apply_fetched(&KeyOwner::TrustDomain(TD.into()), doc.as_bytes(), NOW);
        }
        let _ = RevocationList::from_json(doc.as_bytes());
    }
}
