//! JWT-SVIDs and end-user tokens, verified against a fixed key set.
//!
//! The first byte picks the mode: below 0x80, start from one of the tokens
//! minted with the trusted keys and apply the edits `(offset, byte)` in the
//! rest of the input (so the fuzzer starts next to valid signatures); from
//! 0x80 on, the rest of the input is the header value as is.
//!
//! Properties: never panics; anything either verifier accepts was minted by
//! us (its signed part is one we signed — no algorithm confusion, `none`,
//! embedded key, or parsing trick gets a token through), it names a trusted
//! audience, has not expired, and (JWT-SVID) has a subject in a trusted
//! domain; a cache hit answers exactly what the full verification did.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshward_engine::config::FilterConfig;
use meshward_engine::identity::{
    verify_jwt_svid, verify_user_token, JwtSvid, JwtSvidContext, KeyStore, TokenCache, UserClaims,
    UserTokenContext,
};
use meshward_fuzz::tokens::{self, AUDIENCE, ISSUER, USER_AUDIENCE};
use meshward_fuzz::NOW;

struct Fixed {
    config: FilterConfig,
    keys: KeyStore,
    minted: Vec<String>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let config = tokens::config();
        let keys = config.key_store(NOW);
        let fixed = Fixed {
            config,
            keys,
            minted: tokens::minted(),
        };
        // The property is only worth something if good tokens do verify.
        for (i, svid, user) in [
            (0, true, false),
            (1, true, false),
            (6, false, true),
            (7, false, true),
        ] {
            let (s, u) = verify(&fixed, &fixed.minted[i]);
            assert_eq!(
                (s.is_ok(), u.is_ok()),
                (svid, user),
                "minted token {i}: {s:?} {u:?}"
            );
        }
        fixed
    })
}

type Outcome<T> = Result<T, meshward_engine::Reason>;

/// Verifies `token` as a JWT-SVID and (after `Bearer `) as a user token.
fn verify(fixed: &Fixed, token: &str) -> (Outcome<JwtSvid>, Outcome<UserClaims>) {
    let policy = &fixed.config.policy;
    let trusts = |td: &str| policy.trusts_domain(td);
    let svid = match fixed.config.jwt_svid.as_ref() {
        Some(settings) => {
            let ctx = JwtSvidContext {
                settings,
                keys: &fixed.keys,
                revocation: &fixed.config.revocation,
                trusts_domain: &trusts,
                policy_max_lifetime_secs: None,
            };
            let mut cache: TokenCache<JwtSvid> = TokenCache::new(4);
            let first = verify_jwt_svid(&ctx, token, NOW, &mut cache).cloned();
            let second = verify_jwt_svid(&ctx, token, NOW, &mut cache).cloned();
            assert_eq!(first, second, "JWT-SVID: the cache answered differently");
            first
        }
        None => Err(meshward_engine::Reason::JwtMissing),
    };
    let user = match fixed.config.user_tokens.as_ref() {
        Some(settings) => {
            let ctx = UserTokenContext {
                settings,
                keys: &fixed.keys,
                revocation: &fixed.config.revocation,
            };
            // Default scheme `Bearer`: the header value carries it.
            let header = format!("Bearer {token}");
            let mut cache: TokenCache<UserClaims> = TokenCache::new(4);
            let first = verify_user_token(&ctx, &header, NOW, &mut cache).cloned();
            let second = verify_user_token(&ctx, &header, NOW, &mut cache).cloned();
            assert_eq!(first, second, "user token: the cache answered differently");
            // The bare token, without the scheme, is never a user token.
            if !token.to_ascii_lowercase().starts_with("bearer ") {
                let mut cache: TokenCache<UserClaims> = TokenCache::new(4);
                assert!(verify_user_token(&ctx, token, NOW, &mut cache).is_err());
            }
            first
        }
        None => Err(meshward_engine::Reason::UserTokenMissing),
    };
    (svid, user)
}

fn was_minted(fixed: &Fixed, token: &str) -> bool {
    let Some(input) = tokens::signing_input(token) else {
        return false;
    };
    fixed
        .minted
        .iter()
        .any(|m| tokens::signing_input(m) == Some(input))
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = if *mode < 0x80 {
        let mut bytes = fixed.minted[usize::from(*mode) % fixed.minted.len()]
            .clone()
            .into_bytes();
        for edit in rest.chunks_exact(2) {
            let at = usize::from(edit[0]) * bytes.len() / 256;
            match edit[1] {
                // Truncate, or drop one byte: reach the segment-count paths.
                0 => bytes.truncate(at),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                b => {
                    let last = bytes.len().saturating_sub(1);
                    bytes[at.min(last)] = b;
                }
            }
            if bytes.is_empty() {
                return;
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    let policy = &fixed.config.policy;
    let (svid, user) = verify(fixed, &token);
    if let Ok(svid) = svid {
        assert!(
            was_minted(fixed, &token),
            "JWT-SVID accepted that we never signed: {token}"
        );
        assert!(policy.trusts_domain(svid.subject.trust_domain()));
        assert!(svid.audiences.iter().any(|a| a == AUDIENCE));
        assert!(svid.expires_at.saturating_add(30) >= NOW);
    }
    if let Ok(user) = user {
        assert!(
            was_minted(fixed, &token),
            "user token accepted that we never signed: {token}"
        );
        assert_eq!(user.issuer, ISSUER);
        assert!(user.audiences.iter().any(|a| a == USER_AUDIENCE));
        assert_ne!(user.jti.as_deref(), Some("revoked-jti"));
        assert!(user.expires_at.saturating_add(30) >= NOW);
    }
});
