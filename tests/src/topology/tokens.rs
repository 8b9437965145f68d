//! Signed tokens for the end-to-end tests: keys generated at test time,
//! tokens minted on the spot with the current time (nothing checked in,
//! nothing that can expire under the suite).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Value};

/// Unix time now, seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private signing key.
pub enum SigningKey {
    /// ECDSA P-256 (`ES256`).
    Es256(p256::ecdsa::SigningKey),
    /// Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::SigningKey),
    /// RSA 2048 (`RS256` / `PS256`).
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn es256() -> SigningKey {
        SigningKey::Es256(p256::ecdsa::SigningKey::random(&mut OsRng))
    }

    /// A fresh Ed25519 key.
    pub fn ed25519() -> SigningKey {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A fresh 2048-bit RSA key (a few seconds in a debug build).
    pub fn rsa() -> SigningKey {
        SigningKey::Rsa(Box::new(
            rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key"),
        ))
    }

    /// The default algorithm of this key.
    pub fn alg(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::Ed25519(_) => "EdDSA",
            SigningKey::Rsa(_) => "RS256",
        }
    }

    /// The public JWK, with `kid` and any `extra` members (`use`...).
    pub fn jwk(&self, kid: &str, extra: Value) -> Value {
        let mut jwk = match self {
            SigningKey::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256",
                       "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))})
            }
            SigningKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
            SigningKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                json!({"kty": "RSA", "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())})
            }
        };
        jwk["kid"] = json!(kid);
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                jwk[k] = v;
            }
        }
        jwk
    }

    /// Signs `input` under `alg`.
    fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
        match (self, alg) {
            (SigningKey::Es256(k), "ES256") => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (SigningKey::Ed25519(k), "EdDSA") => {
                use ed25519_dalek::Signer as _;
                k.sign(input).to_bytes().to_vec()
            }
            (SigningKey::Rsa(k), "RS256") => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone())
                    .sign(input)
                    .to_vec()
            }
            (SigningKey::Rsa(k), "PS256") => {
                rsa::pss::SigningKey::<sha2::Sha256>::new((**k).clone())
                    .sign_with_rng(&mut OsRng, input)
                    .to_vec()
            }
            (_, alg) => panic!("this key cannot sign {alg}"),
        }
    }

    /// A compact JWS of `claims`, header `{alg, kid, typ: JWT}`.
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        self.mint_with(
            &json!({"alg": self.alg(), "kid": kid, "typ": "JWT"}),
            claims,
        )
    }

    /// A compact JWS with an explicit header (its `alg` picks the algorithm).
    pub fn mint_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let alg = header["alg"].as_str().expect("header alg");
        format!("{input}.{}", b64(&self.sign(alg, input.as_bytes())))
    }
}

/// A JWKS document `{"keys": [...]}` of `(key, kid)` pairs; `extra` members
/// go into every key (e.g. `{"use": "jwt-svid"}`).
pub fn jwks(keys: &[(&SigningKey, &str)], extra: &Value) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(k, kid)| k.jwk(kid, extra.clone()))
        .collect();
    json!({ "keys": keys })
}

/// Claims of a JWT-SVID for `sub` with audience `aud`, issued now, valid
/// `lifetime` seconds, with token id `jti`.
pub fn svid_claims(sub: &str, aud: &str, lifetime: u64, jti: &str) -> Value {
    let now = now();
    json!({"sub": sub, "aud": [aud], "iat": now, "exp": now + lifetime, "jti": jti})
}

/// Claims of an end-user token of `iss` for `sub` with `scope` (space
/// separated), audience `aud`, valid ten minutes.
pub fn user_claims(iss: &str, sub: &str, aud: &str, scope: &str, jti: &str) -> Value {
    let now = now();
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 600,
           "scope": scope, "jti": jti})
}
