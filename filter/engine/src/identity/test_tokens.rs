//! Test fixtures: signing keys generated at test time and tokens minted with
//! them (no checked-in token can expire under the tests).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Value};

/// 2030-01-01T00:00:00Z: the tests' "now" is always passed explicitly.
pub(crate) const NOW: u64 = 1_893_456_000;
pub(crate) const TD: &str = "shop.example";
pub(crate) const OTHER_TD: &str = "partner.example";
pub(crate) const ORDERS: &str = "spiffe://shop.example/ns/shop/sa/orders";
pub(crate) const CHECKOUT: &str = "spiffe://shop.example/ns/shop/sa/checkout";
pub(crate) const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/payments";
pub(crate) const ISSUER: &str = "https://idp.example";
pub(crate) const OTHER_ISSUER: &str = "https://other-idp.example";

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key of one of the supported types.
pub(crate) enum TestKey {
    Es256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(ed25519_dalek::SigningKey),
}

impl TestKey {
    pub(crate) fn es256() -> TestKey {
        TestKey::Es256(p256::ecdsa::SigningKey::random(&mut OsRng))
    }

    pub(crate) fn ed25519() -> TestKey {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        TestKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A fresh 2048-bit RSA key (slow in debug builds: use sparingly).
    pub(crate) fn rsa() -> TestKey {
        TestKey::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap()))
    }

    /// The public JWK with `kid` and any extra members (`use`, `alg`...).
    pub(crate) fn jwk(&self, kid: &str, extra: Value) -> Value {
        let mut jwk = match self {
            TestKey::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256",
                       "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            TestKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                json!({"kty": "RSA", "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())})
            }
            TestKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
        };
        if !kid.is_empty() {
            jwk["kid"] = json!(kid);
        }
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                jwk[k] = v;
            }
        }
        jwk
    }

    /// The raw public key bytes (SEC1 point, DER-less RSA modulus, Ed25519 point),
    /// what an attacker would use as an HMAC secret.
    pub(crate) fn public_bytes(&self) -> Vec<u8> {
        match self {
            TestKey::Es256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            TestKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                k.n().to_bytes_be()
            }
            TestKey::Ed25519(k) => k.verifying_key().as_bytes().to_vec(),
        }
    }

    /// The algorithm this key signs with by default.
    pub(crate) fn alg(&self) -> &'static str {
        match self {
            TestKey::Es256(_) => "ES256",
            TestKey::Rsa(_) => "RS256",
            TestKey::Ed25519(_) => "EdDSA",
        }
    }

    /// Signs `input` under `alg` (which must fit the key).
    pub(crate) fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
        match (self, alg) {
            (TestKey::Es256(k), "ES256") => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (TestKey::Rsa(k), "RS256") => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone())
                    .sign(input)
                    .to_vec()
            }
            (TestKey::Rsa(k), "PS256") => rsa::pss::SigningKey::<sha2::Sha256>::new((**k).clone())
                .sign_with_rng(&mut OsRng, input)
                .to_vec(),
            (TestKey::Ed25519(k), "EdDSA") => {
                use ed25519_dalek::Signer as _;
                k.sign(input).to_bytes().to_vec()
            }
            (_, alg) => panic!("test key cannot sign {alg}"),
        }
    }

    /// A compact JWS of `header` and `claims`, signed under the header's `alg`.
    pub(crate) fn mint(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let alg = header["alg"].as_str().unwrap();
        format!("{input}.{}", b64(&self.sign(alg, input.as_bytes())))
    }
}

pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWKS document of `(key, kid, extra members)`.
pub(crate) fn jwks(keys: &[(&TestKey, &str, Value)]) -> Vec<u8> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(k, kid, extra)| k.jwk(kid, extra.clone()))
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

/// Claims of a good JWT-SVID for `sub`, issued at `NOW - 10`, valid 5 minutes.
pub(crate) fn svid_claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": [AUDIENCE], "iat": NOW - 10, "exp": NOW + 290, "jti": "svid-1"})
}

/// Claims of a good user token of `ISSUER`.
pub(crate) fn user_claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "shop", "iat": NOW - 10, "exp": NOW + 3590,
           "jti": "user-1", "scope": "orders.read orders.write", "groups": ["admins", "ops"],
           "tenant": "acme", "level": 3})
}

pub(crate) fn header(key: &TestKey, kid: &str) -> Value {
    json!({"alg": key.alg(), "kid": kid, "typ": "JWT"})
}
