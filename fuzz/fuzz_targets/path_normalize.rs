//! Path normalization and intent classification.
//!
//! Properties: never panics; a canonical path's segments, re-joined, are
//! the path itself (minus the query), canonical again, with identical
//! segments (idempotence); the independent reading of the documented rules
//! (`fixture::reference_segments`) agrees; the query never changes a
//! decision; a path the engine refuses is denied `non_canonical_path`
//! whatever else the request says.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshward_engine::path::{canonical_segments, is_canonical};
use meshward_engine::{Policy, Reason};
use meshward_engine::model::Effect;
use meshward_fuzz::fixture::{self, reference_segments, Req, FRONTEND, OPS_ADMIN};

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(fixture::policy)
}

fuzz_target!(|raw: &str| {
    let engine = canonical_segments(raw).map(|s| s.as_slice().to_vec());
    assert_eq!(
        engine.as_ref().ok(),
        reference_segments(raw).as_ref(),
        "engine and documented rules disagree on {raw:?}"
    );
    if let Ok(segs) = &engine {
        let joined = format!("/{}", segs.join("/"));
        let path = raw.split_once('?').map_or(raw, |(p, _)| p);
        assert_eq!(joined, path);
        assert!(is_canonical(&joined));
        let again = canonical_segments(&joined).expect("canonical");
        assert_eq!(again.as_slice(), segs.as_slice());
        for seg in segs {
            assert!(!seg.is_empty() && *seg != "." && *seg != "..");
            assert!(!seg.contains(['/', '?', '#', ';', '\\']));
        }
    }

    for (peer, method) in [(FRONTEND, "GET"), (OPS_ADMIN, "POST")] {
        let req = Req {
            peer: Some(peer.to_owned()),
            method: method.to_owned(),
            path: raw.to_owned(),
            authority: fixture::FILES_HOST.to_owned(),
            headers: vec![("x-ticket".to_owned(), "1".to_owned())],
        };
        let d = req.evaluate(policy());
        if engine.is_err() {
            assert_eq!(
                (d.effect, d.reason),
                (Effect::Deny, Reason::NonCanonicalPath)
            );
        }
        if !raw.contains(['?', '#']) {
            let mut q = req.clone();
            q.path.push_str("?next=/admin/../x");
            assert_eq!(q.evaluate(policy()), d, "the query changed the decision");
        }
        if let Err(e) = fixture::check_against_reference(policy(), &req) {
            panic!("{e}");
        }
    }
});
