//! The `:authority` check every decision starts with (host-scoped intents
//! rely on it: bypass class F3).
//!
//! Properties: never panics; the engine agrees with the independent reading
//! of the documented grammar (`fixture::reference_host`) on what is refused
//! and on the canonical host; the canonical form parses back to itself
//! (idempotence), lower-case, without a trailing dot; a refused authority
//! is denied `non_canonical_host` whatever else the request says.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshward_engine::authority::CanonicalAuthority;
use meshward_engine::model::Effect;
use meshward_engine::{Policy, Reason};
use meshward_fuzz::fixture::{self, reference_host, Req, FRONTEND};

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(fixture::policy)
}

fuzz_target!(|raw: &str| {
    let parsed = CanonicalAuthority::parse(raw);
    assert_eq!(
        parsed.as_ref().ok().map(|a| a.host().to_owned()),
        reference_host(raw),
        "engine and documented grammar disagree on {raw:?}"
    );
    match parsed {
        Ok(canonical) => {
            let text = canonical.to_string();
            let again = CanonicalAuthority::parse(&text).expect("the canonical form parses");
            assert_eq!(again, canonical, "{raw:?}");
            assert_eq!(again.to_string(), text, "{raw:?}");
            let host = canonical.host();
            assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{raw:?}");
            assert!(!host.ends_with('.'), "{raw:?}");
            assert_eq!(canonical.is_absent(), raw.is_empty(), "{raw:?}");
        }
        Err(_) => {
            let req = Req {
                peer: Some(FRONTEND.to_owned()),
                method: "GET".to_owned(),
                path: "/".to_owned(),
                authority: raw.to_owned(),
                headers: vec![],
            };
            let d = req.evaluate(policy());
            assert_eq!(
                (d.effect, d.reason),
                (Effect::Deny, Reason::NonCanonicalHost),
                "{raw:?}"
            );
        }
    }
});
