//! The `x-forwarded-client-cert` parser.
//!
//! Properties: never panics; every value it returns is a slice of the header
//! without control characters; `parse_single` accepts exactly the headers
//! `parse` reads as one element, and returns that element.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshward_engine::identity::xfcc;

fuzz_target!(|header: &str| {
    let start = header.as_ptr() as usize;
    let end = start + header.len();
    let inside = |v: &str| {
        let p = v.as_ptr() as usize;
        p >= start && p + v.len() <= end
    };
    match xfcc::parse(header) {
        Ok(elements) => {
            assert!(!elements.is_empty());
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
                    assert!(inside(v), "value is not a slice of the header");
                    assert!(
                        !v.bytes().any(|b| b < 0x20 || b == 0x7f),
                        "control byte in {v:?}"
                    );
                }
            }
            match xfcc::parse_single(header) {
                Ok(single) => {
                    assert_eq!(elements.len(), 1);
                    assert_eq!(single, elements[0]);
                }
                Err(_) => assert!(elements.len() > 1),
            }
        }
        Err(_) => assert!(xfcc::parse_single(header).is_err()),
    }
});
