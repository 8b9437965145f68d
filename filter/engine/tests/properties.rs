//! Properties of the engine's untrusted-input paths, checked with proptest
//! on every `cargo test` (the same invariants the fuzz targets in `fuzz/`
//! check for much longer; see docs/hardening.md).
//!
//! - decoding never panics, and never accepts a corrupted policy (a flipped
//!   byte is rejected, or the policy decides a fixed request set exactly as
//!   before);
//! - `evaluate` is deterministic, agrees with an independent reference
//!   evaluator of a fixed policy, and never allows a request that an
//!   enforced deny rule matches;
//! - path normalization is idempotent;
//! - authority canonicalization is idempotent, agrees with an independent
//!   reading of its grammar, refuses separators and hostile bytes, and a
//!   host-scoped intent matches exactly the requests with its canonical host;
//! - the chain header round-trips, and its seal catches every edit; no
//!   chain accepted inbound or outbound lives longer than the policy's
//!   `lifetime`;
//! - the XFCC, certificate and configuration parsers never panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

mod fixture;

use base64::Engine as _;
use fixture::{check_against_reference, fixed_requests, policy, policy_bytes, Req};
use meshward_engine::chain::{self, Chain, ChainError, ChainLimits};
use meshward_engine::config::FilterConfig;
use meshward_engine::identity::cert::{self, CertFacts};
use meshward_engine::identity::xfcc;
use meshward_engine::path::{canonical_segments, is_canonical};
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{codec, Decision, Policy};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

/// The fixture policy, decoded once for all cases.
fn shared() -> &'static Policy {
    static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    POLICY.get_or_init(policy)
}

fn decisions(policy: &Policy) -> Vec<Decision> {
    fixed_requests()
        .iter()
        .map(|r| r.evaluate(policy))
        .collect()
}

/// `policy_bytes()` with its body replaced and the header's length and hash
/// made consistent again: what a compiler bug (or a tamperer who recomputes
/// the hash) would hand the decoder.
fn rehash(mut bytes: Vec<u8>) -> Vec<u8> {
    let body_len = bytes.len() - codec::HEADER_LEN;
    let hash: [u8; 32] = Sha256::digest(&bytes[codec::HEADER_LEN..]).into();
    bytes[8..40].copy_from_slice(&hash);
    bytes[40..44].copy_from_slice(&(body_len as u32).to_le_bytes());
    bytes
}

#[test]
fn the_fixture_agrees_with_the_engine_on_its_fixed_requests() {
    let policy = policy();
    for req in fixed_requests() {
        if let Err(e) = check_against_reference(&policy, &req) {
            panic!("{e}");
        }
    }
}

#[test]
fn truncations_are_all_rejected() {
    let bytes = policy_bytes();
    for len in 0..bytes.len() {
        assert!(
            Policy::decode(&bytes[..len]).is_err(),
            "a policy truncated to {len} bytes was accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Policy::decode(&longer).is_err(), "trailing byte accepted");
}

#[test]
fn every_single_bit_flip_is_rejected() {
    // Exhaustive, not sampled: the fixture policy is about 1 KB.
    let bytes = policy_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            assert!(
                Policy::decode(&flipped).is_err(),
                "flipping bit {bit} of byte {i} was accepted"
            );
        }
    }
}

/// A request described by bytes (the generator the fuzz targets use).
fn any_request() -> impl Strategy<Value = Req> {
    proptest::collection::vec(any::<u8>(), 0..48).prop_map(|b| Req::from_bytes(&b))
}

/// A valid SPIFFE ID.
fn spiffe_id() -> impl Strategy<Value = SpiffeId> {
    (
        "[a-z0-9][a-z0-9._-]{0,12}",
        proptest::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,8}", 0..4),
    )
        .prop_map(|(td, segs)| {
            let mut s = format!("spiffe://{td}");
            for seg in segs {
                s.push('/');
                s.push_str(&seg);
            }
            SpiffeId::parse(&s).expect("generated SPIFFE ID parses")
        })
}

const NOW: u64 = 1_800_000_000;

fn a_chain() -> impl Strategy<Value = Chain> {
    (
        proptest::collection::vec(spiffe_id(), 1..=8),
        proptest::option::of("\\PC{0,40}"),
        proptest::collection::vec("[A-Za-z0-9:./_~@-]{1,12}", 0..4),
        proptest::option::of("[a-z][a-z0-9._-]{0,20}"),
        0u64..120,
        0u64..3600,
        any::<bool>(),
    )
        .prop_map(|(hops, user, scopes, purpose, age, ttl, complete)| Chain {
            hops,
            user,
            scopes,
            purpose,
            issued_at: NOW - age,
            expires_at: NOW + ttl,
            complete,
        })
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Policy::decode(&bytes);
        let mut framed = b"MWPC\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = Policy::decode(&framed);
    }

    #[test]
    fn corrupted_policies_are_rejected_or_decide_identically(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)
    ) {
        let original = policy_bytes();
        let mut bytes = original.clone();
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Ok(decoded) = Policy::decode(&bytes) {
            prop_assert_eq!(decisions(&decoded), decisions(shared()));
        }
    }

    #[test]
    fn rehashed_corrupt_bodies_never_panic_and_stay_deterministic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
    ) {
        let mut bytes = policy_bytes();
        let body = bytes.len() - codec::HEADER_LEN;
        for (at, value) in &flips {
            bytes[codec::HEADER_LEN + at.index(body)] = *value;
        }
        if let Ok(decoded) = Policy::decode(&rehash(bytes)) {
            // Whatever it now says, it says it the same way every time, and
            // re-encoding what was decoded gives an equivalent policy.
            prop_assert_eq!(decisions(&decoded), decisions(&decoded));
            let (again, _) = codec::encode(decoded.compiled());
            let reloaded = Policy::decode(&again).expect("a re-encoded policy loads");
            prop_assert_eq!(reloaded.compiled(), decoded.compiled());
            prop_assert_eq!(decisions(&reloaded), decisions(&decoded));
        }
    }

    #[test]
    fn decisions_are_deterministic(req in any_request()) {
        let a = policy();
        let b = Policy::decode(&policy_bytes()).unwrap();
        let first = req.evaluate(&a);
        prop_assert_eq!(first, req.evaluate(&a));
        prop_assert_eq!(first, req.evaluate(&b));
    }

    #[test]
    fn headers_no_rule_reads_do_not_change_the_decision(
        req in any_request(), extra in "[a-z]{1,6}", value in "[ -~]{0,12}"
    ) {
        // Only the headers rule conditions name (`Policy::condition_headers`)
        // can matter. (Which value of a *duplicated* condition header counts
        // is finding F1 in docs/hardening.md: the filter, not the engine,
        // must refuse the ambiguity.)
        let policy = shared();
        prop_assume!(!policy.condition_headers().iter().any(|h| h.starts_with("x-unrelated")));
        let before = req.evaluate(policy);
        let mut more = req.clone();
        more.headers.push((format!("x-unrelated-{extra}"), value.clone()));
        more.headers.insert(0, (format!("x-unrelated-{extra}-first"), value));
        prop_assert_eq!(before, more.evaluate(policy));
    }

    #[test]
    fn canonical_paths_are_idempotent(raw in "(/([a-zA-Z0-9._~%;:@!$&'()*+,=-]|%[0-9a-fA-F]{2}){0,6}){0,6}(\\?.{0,8})?") {
        check_idempotent(&raw)?;
    }

    #[test]
    fn canonical_paths_are_idempotent_on_arbitrary_text(raw in "\\PC{0,40}") {
        check_idempotent(&raw)?;
    }

    #[test]
    fn the_query_never_changes_the_classification(req in any_request(), query in "[ -~]{0,12}") {
        let policy = shared();
        if req.path.contains('?') || req.path.contains('#') {
            return Ok(());
        }
        let mut with_query = req.clone();
        with_query.path = format!("{}?{query}", req.path);
        prop_assert_eq!(req.evaluate(policy), with_query.evaluate(policy));
    }

    #[test]
    fn chains_round_trip(chain in a_chain()) {
        let wire = chain.to_wire();
        prop_assert_eq!(Chain::from_wire(&wire, NOW, 16), Ok(chain.clone()));
        let sealed = chain.seal(KEY);
        prop_assert_eq!(Chain::unseal(&sealed, KEY, NOW, 16), Ok(chain.clone()));
        prop_assert_eq!(Chain::unseal(&sealed, b"another key", NOW, 16), Err(ChainError::BadSeal));
    }

    #[test]
    fn every_edit_of_a_sealed_chain_is_refused(
        chain in a_chain(), at in any::<prop::sample::Index>(), byte in 0x20u8..0x7f
    ) {
        let sealed = chain.seal(KEY);
        let i = at.index(sealed.len());
        prop_assume!(sealed.as_bytes()[i] != byte);
        let mut edited = sealed.into_bytes();
        edited[i] = byte;
        let edited = String::from_utf8(edited).unwrap();
        prop_assert!(
            Chain::unseal(&edited, KEY, NOW, 16).is_err(),
            "edited chain accepted: {}", edited
        );
    }

    #[test]
    fn parsed_chains_render_to_what_parses_back(
        text in "v=1;iat=17999999[0-9]{2};exp=18000000[0-9]{2};complete=[01];(purpose=[a-z._-]{0,5};)?(user=[ -~]{0,8};)?(scope=[ -~]{0,8};)?hops=spiffe://[a-z.]{1,3}(/[a-z.%]{0,3}){0,2}(,spiffe://[a-z]{1,3}){0,9}"
    ) {
        check_chain_text(&text)?;
    }

    #[test]
    fn chain_parsers_never_panic(text in "[ -~]{0,160}") {
        check_chain_text(&text)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A sealed chain the app sends back is forwarded only within the
    /// policy's lifetime, and then exactly as sealed.
    #[test]
    fn outbound_never_forwards_an_overlong_chain(chain in a_chain(), lifetime_secs in 0u64..4000) {
        let limits = ChainLimits { max_depth: 8, lifetime_secs };
        let sealed = chain.seal(KEY);
        match chain::outbound(&[&sealed], KEY, NOW, limits) {
            Ok(Some(wire)) => {
                prop_assert!(chain.expires_at <= chain.issued_at + lifetime_secs);
                prop_assert_eq!(wire, chain.to_wire());
            }
            Ok(None) => prop_assert!(false, "a sent chain vanished"),
            Err(e) => {
                prop_assert_eq!(e, ChainError::LifetimeExceedsBound);
                prop_assert!(chain.expires_at > chain.issued_at + lifetime_secs);
            }
        }
    }
}

fn check_chain_text(text: &str) -> Result<(), TestCaseError> {
    {
        if let Ok(chain) = Chain::from_wire(text, NOW, 8) {
            prop_assert!(chain.depth() >= 1 && chain.depth() <= 8);
            prop_assert!(chain.issued_at <= chain.expires_at && NOW <= chain.expires_at);
            prop_assert_eq!(Chain::from_wire(&chain.to_wire(), NOW, 8), Ok(chain));
        }
        let _ = Chain::unseal(text, KEY, NOW, 8);
        let limits = ChainLimits {
            max_depth: 8,
            lifetime_secs: 60,
        };
        let _ = chain::outbound(&[text], KEY, NOW, limits);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn inbound_chains_always_end_at_the_direct_peer(
        peer in spiffe_id(), forward in any::<bool>(), sent in proptest::collection::vec(a_chain(), 0..3)
    ) {
        let limits = ChainLimits { max_depth: 8, lifetime_secs: 60 };
        // Make some of them end at the peer, as a real sender's would.
        let wires: Vec<String> = sent
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                if i % 2 == 0 {
                    c.hops.push(peer.clone());
                }
                c.to_wire()
            })
            .collect();
        let values: Vec<&str> = wires.iter().map(String::as_str).collect();
        match chain::inbound(&peer, forward, &values, NOW, limits) {
            Ok(c) => {
                prop_assert_eq!(c.hops.last(), Some(&peer));
                prop_assert!(c.depth() <= 8);
                // Whatever the forwarder asserted, never longer-lived than
                // this policy's lifetime.
                prop_assert!(c.expires_at <= c.issued_at + limits.lifetime_secs, "{:?}", c);
                if !forward {
                    prop_assert_eq!(c.depth(), 1);
                    prop_assert_eq!(c.complete, values.is_empty());
                }
            }
            Err(ChainError::Duplicate) => prop_assert!(values.len() > 1),
            Err(_) => prop_assert!(forward && values.len() == 1),
        }
    }

    #[test]
    fn xfcc_parser_never_panics_and_returns_slices(header in "[ -~]{0,200}") {
        check_xfcc(&header)?;
    }

    #[test]
    fn xfcc_parser_on_near_valid_headers(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("By=spiffe://a/b".to_owned()),
                Just("Hash=ab12".to_owned()),
                Just("Cert=\"-----BEGIN%20CERTIFICATE-----\"".to_owned()),
                Just("Subject=\"CN=a\\\",b\"".to_owned()),
                Just("URI=".to_owned()),
                Just("URI=spiffe://shop.example/x".to_owned()),
                Just("DNS=a.example".to_owned()),
                Just(";".to_owned()),
                Just(",".to_owned()),
                Just("\"".to_owned()),
                "[ -~]{0,6}",
            ],
            0..10,
        )
    ) {
        check_xfcc(&parts.concat())?;
    }

    #[test]
    fn certificate_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = CertFacts::from_der(&bytes);
        let _ = cert::pem_certificate_to_der(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = cert::percent_decode(&text);
        let _ = cert::spiffe_id_from_uri_san(&text);
        let _ = cert::parse_hex_digest(&text);
    }

    #[test]
    fn config_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = FilterConfig::from_json(&bytes);
    }

    #[test]
    fn config_parser_on_mutated_valid_configs(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0x20u8..0x7f), 0..4)
    ) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(policy_bytes());
        let json = format!(
            r#"{{"policy":"{encoded}","revoked_serials":["0a1b"],"peer_certificate":"forwarded","audit_log":"denies","revoked":{{"spiffe_ids":["spiffe://shop.example/x"],"serials":[],"jtis":["j1"]}}}}"#
        );
        let mut bytes = json.into_bytes();
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if let Ok(config) = FilterConfig::from_json(&bytes) {
            // Whatever was accepted loads the very same policy or none.
            if config.policy.hash() == Policy::decode(&policy_bytes()).unwrap().hash() {
                prop_assert_eq!(decisions(&config.policy), decisions(shared()));
            }
            let _ = config.key_store(NOW);
        }
    }
}

fn check_idempotent(raw: &str) -> Result<(), TestCaseError> {
    let Ok(segments) = canonical_segments(raw) else {
        return Ok(());
    };
    let segs = segments.as_slice().to_vec();
    let joined = format!("/{}", segs.join("/"));
    let path_part = raw.split_once('?').map_or(raw, |(p, _)| p);
    prop_assert_eq!(&joined, path_part, "canonical path changed when re-joined");
    prop_assert!(is_canonical(&joined), "{} is not canonical", joined);
    let again = canonical_segments(&joined).unwrap();
    prop_assert_eq!(again.as_slice(), segs.as_slice());
    for seg in &segs {
        prop_assert!(!seg.is_empty() && !seg.contains(['/', '?', '#', ';', '\\']));
        prop_assert!(*seg != "." && *seg != "..");
    }
    // The independent reading of the documented rules agrees.
    prop_assert_eq!(fixture::reference_segments(raw), Some(segs));
    Ok(())
}

fn check_xfcc(header: &str) -> Result<(), TestCaseError> {
    let start = header.as_ptr() as usize;
    let end = start + header.len();
    let inside = |v: &str| {
        let p = v.as_ptr() as usize;
        p >= start && p + v.len() <= end
    };
    match xfcc::parse(header) {
        Ok(elements) => {
            prop_assert!(!elements.is_empty());
            for e in &elements {
                let values =
                    e.by.iter()
                        .chain(&e.uri)
                        .chain(&e.dns)
                        .chain(e.hash.iter())
                        .chain(e.cert.iter())
                        .chain(e.chain.iter())
                        .chain(e.subject.iter());
                for v in values {
                    prop_assert!(inside(v), "value is not a slice of the header");
                    prop_assert!(!v.bytes().any(|b| b < 0x20 || b == 0x7f));
                }
            }
            match xfcc::parse_single(header) {
                Ok(single) => {
                    prop_assert_eq!(elements.len(), 1);
                    prop_assert_eq!(&single, &elements[0]);
                }
                Err(_) => prop_assert!(elements.len() > 1),
            }
        }
        Err(_) => prop_assert!(xfcc::parse_single(header).is_err()),
    }
    Ok(())
}

proptest! {
    // Cheap (microseconds per case) and the property that matters most: many cases.
    #![proptest_config(ProptestConfig { cases: 8192, ..ProptestConfig::default() })]

    #[test]
    fn a_request_an_enforced_deny_matches_is_never_allowed(req in any_request()) {
        // Also checks the whole decision against the reference evaluator.
        if let Err(e) = check_against_reference(shared(), &req) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Authorities near the interesting edges: real hosts in any case, with
/// trailing dots, ports, separators and hostile bytes around them, plus
/// arbitrary text.
fn an_authority() -> impl Strategy<Value = String> {
    let hosts = prop::sample::select(vec![
        "files.shop.example",
        "localhost",
        "vault.example",
        "a_b.example",
        "10.0.0.1",
        "[::1]",
        "[2001:db8::1]",
    ]);
    let prefixes = prop::sample::select(vec!["", "", "", "x@", " ", ".", "-", "[", "\t"]);
    let suffixes = prop::sample::select(vec![
        "",
        "",
        "",
        ".",
        "..",
        ":443",
        ".:443",
        ":",
        ":0",
        ":080",
        ":65535",
        ":65536",
        ":1:2",
        ",other",
        ", files.shop.example",
        " ",
        "@x",
        "%2e",
        ".-",
        "]",
        "\r\n",
    ]);
    let near = (hosts, prefixes, suffixes, any::<u64>()).prop_map(|(host, pre, suf, case)| {
        let flipped: String = host
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        format!("{pre}{flipped}{suf}")
    });
    prop_oneof![4 => near, 1 => "[ -~]{0,24}", 1 => "\\PC{0,16}"]
}

/// `authority` with `insert` placed before byte `at` (clamped, on a char
/// boundary).
fn inserted(authority: &str, insert: &str, at: usize) -> String {
    let mut at = at % (authority.len() + 1);
    while !authority.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}{insert}{}", &authority[..at], &authority[at..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn authority_canonicalization_is_idempotent(authority in an_authority()) {
        use meshward_engine::authority::CanonicalAuthority;
        // The engine agrees with the independent reading of the grammar.
        let parsed = CanonicalAuthority::parse(&authority);
        prop_assert_eq!(
            parsed.as_ref().ok().map(|a| a.host().to_owned()),
            fixture::reference_host(&authority),
            "{:?}", authority
        );
        if let Ok(canonical) = parsed {
            let text = canonical.to_string();
            let again = CanonicalAuthority::parse(&text);
            prop_assert_eq!(again, Ok(canonical));
            prop_assert_eq!(again.map(|a| a.to_string()), Ok(text));
            let host = canonical.host();
            prop_assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert!(!host.ends_with('.'));
        }
    }

    #[test]
    fn separators_and_hostile_bytes_are_refused(
        authority in an_authority(),
        hostile in prop::sample::select(vec![",", " ", "\t", "\r", "\n", "\0", "\x7f", "@", "%", "/", "\\", "?", "#", "\u{e9}", "\u{3002}"]),
        at in any::<usize>(),
    ) {
        use meshward_engine::authority::CanonicalAuthority;
        let attacked = inserted(&authority, hostile, at);
        prop_assert!(CanonicalAuthority::parse(&attacked).is_err(), "{:?}", attacked);
    }

    #[test]
    fn a_second_unbracketed_colon_is_refused(
        authority in an_authority(),
        port in 1u16..,
        at in any::<usize>(),
    ) {
        use meshward_engine::authority::CanonicalAuthority;
        // Give it a port outside brackets if it has none, then a second `:`.
        let mut authority = authority;
        if !authority.rsplit(']').next().unwrap_or("").contains(':') {
            authority = format!("{authority}:{port}");
        }
        let outside = authority.rsplit(']').next().unwrap_or("");
        let start = authority.len() - outside.len();
        let attacked = inserted(&authority, ":", start + at % (outside.len() + 1));
        prop_assert!(CanonicalAuthority::parse(&attacked).is_err(), "{:?}", attacked);
    }

    /// The bypass this closes: a host-scoped intent matches exactly the
    /// requests whose canonical host is its host; any authority that is not
    /// canonical is `non_canonical_host`, so it can never fall to a broader
    /// intent instead.
    #[test]
    fn an_accepted_host_matches_exactly_the_intent_for_it(authority in an_authority()) {
        use meshward_engine::authority::CanonicalAuthority;
        use meshward_engine::{evaluate, Reason, Request};
        let policy = shared();
        let peer = SpiffeId::parse(fixture::FRONTEND).unwrap();
        let headers: &[(&str, &str)] = &[];
        let decision = evaluate(
            policy,
            &Request::from_peer(Ok(&peer), "GET", "/files/report.pdf", &authority, &headers),
        );
        let intent = decision.intent.map(|i| policy.intent_name(i));
        match CanonicalAuthority::parse(&authority) {
            Ok(canonical) => {
                prop_assert_ne!(decision.reason, Reason::NonCanonicalHost);
                prop_assert_eq!(
                    intent == Some("files.read"),
                    canonical.host() == fixture::FILES_HOST,
                    "{:?} decided {:?}", authority, decision
                );
            }
            Err(_) => {
                prop_assert_eq!(decision.reason, Reason::NonCanonicalHost, "{:?}", authority);
                prop_assert_eq!(intent, None);
            }
        }
    }
}
