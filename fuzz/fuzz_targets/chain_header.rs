//! The caller-chain header: `Chain::from_wire`, `Chain::unseal`,
//! `chain::inbound` and `chain::outbound`.
//!
//! The first byte picks the mode: below 0x80, seal one of a few real chains
//! with the proxy key and apply the edits `(offset, byte)` in the rest of
//! the input; from 0x80 on, the rest is the header text (lines are separate
//! header values for `inbound` / `outbound`).
//!
//! Properties: never panics; a parsed chain respects the depth limit and
//! the clock, and renders to text that parses back to the same chain; an
//! app can never get an edited sealed chain past `unseal` / `outbound`
//! (only the untouched seal is accepted, and a forged MAC never is); an
//! inbound chain always ends at the direct peer, and one from a peer that
//! may not forward is just that peer, marked incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::chain::{self, Chain, ChainError, ChainLimits};
use meshward_engine::spiffe::SpiffeId;
use meshward_fuzz::fixture::{BATCH, FRONTEND, ORDERS};
use meshward_fuzz::NOW;

const KEY: &[u8] = b"fuzz-proxy-key-0123456789abcdef!";
const LIMITS: ChainLimits = ChainLimits {
    max_depth: 8,
    lifetime_secs: 60,
};

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("fixture SPIFFE ID")
}

fn samples() -> Vec<Chain> {
    let mut a = Chain::start(id(BATCH), NOW - 5, 60);
    a.hops.push(id(FRONTEND));
    a.purpose = Some("orders.read".into());
    a.user = Some("alice@example.com".into());
    a.scopes = vec!["orders.read".into(), "orders:write".into()];
    let mut b = Chain::start(id(ORDERS), NOW, 30);
    b.complete = false;
    vec![a, b]
}

fn check_parsed(text: &str) {
    if let Ok(c) = Chain::from_wire(text, NOW, LIMITS.max_depth) {
        assert!(c.depth() >= 1 && c.depth() <= LIMITS.max_depth, "{text}");
        assert!(c.issued_at <= c.expires_at && NOW <= c.expires_at, "{text}");
        let wire = c.to_wire();
        assert_eq!(
            Chain::from_wire(&wire, NOW, LIMITS.max_depth),
            Ok(c),
            "rendered chain does not parse back: {wire}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let peer = id(FRONTEND);
    if *mode < 0x80 {
        let chains = samples();
        let chain = &chains[usize::from(*mode) % chains.len()];
        let sealed = chain.seal(KEY);
        let mut bytes = sealed.clone().into_bytes();
        for edit in rest.chunks_exact(2) {
            let at = usize::from(edit[0]) * bytes.len() / 256;
            match edit[1] {
                0 => bytes.truncate(at),
                b => {
                    if let Some(slot) = bytes.get_mut(at) {
                        *slot = b;
                    }
                }
            }
        }
        let edited = String::from_utf8_lossy(&bytes).into_owned();
        let unsealed = Chain::unseal(&edited, KEY, NOW, LIMITS.max_depth);
        if edited == sealed {
            assert_eq!(unsealed.as_ref(), Ok(chain));
        } else {
            assert!(
                unsealed.is_err(),
                "an edited sealed chain was accepted: {edited}"
            );
            assert!(chain::outbound(&[&edited], KEY, NOW, LIMITS).is_err());
        }
        check_parsed(&edited);
        return;
    }

    let text = String::from_utf8_lossy(rest);
    check_parsed(&text);
    // Nobody but the proxy holds KEY: a fuzzed MAC never verifies.
    assert!(
        Chain::unseal(&text, KEY, NOW, LIMITS.max_depth).is_err(),
        "a chain with a forged seal was accepted: {text}"
    );
    let values: Vec<&str> = text.split('\n').filter(|v| !v.is_empty()).collect();
    for forward in [true, false] {
        match chain::inbound(&peer, forward, &values, NOW, LIMITS) {
            Ok(c) => {
                assert_eq!(c.hops.last(), Some(&peer));
                assert!(c.depth() <= LIMITS.max_depth);
                // Never longer-lived than the policy allows.
                assert!(c.expires_at <= c.issued_at + LIMITS.lifetime_secs, "{text}");
                if !forward {
                    assert_eq!(c.depth(), 1);
                    assert_eq!(c.complete, values.is_empty());
                }
                if let Ok(app) = chain::for_app(c, &id(ORDERS), Some("orders.read")) {
                    let sealed = app.seal(KEY);
                    let wire = chain::outbound(&[&sealed], KEY, NOW, LIMITS)
                        .expect("our own seal is accepted")
                        .expect("a chain");
                    assert_eq!(wire, app.to_wire());
                }
            }
            Err(ChainError::Duplicate) => assert!(forward && values.len() > 1),
            Err(_) => assert!(forward && values.len() == 1),
        }
    }
    match chain::outbound(&values, KEY, NOW, LIMITS) {
        Ok(None) => assert!(values.is_empty()),
        Ok(Some(_)) => panic!("outbound accepted a chain it never sealed: {text}"),
        Err(_) => assert!(!values.is_empty()),
    }
});
