//! The native module's FFI boundary: everything Envoy hands the dynamic
//! module for a request (header names and values, connection attributes,
//! filter-state bytes) is arbitrary bytes here, fed through the module's
//! real `Host` adapter (`meshward::host::RequestHost`, via
//! `meshward::module::Module`) into the real pipeline, configured with the
//! fixture policy and its keys.
//!
//! Properties: never panics (in Envoy a panic is caught and denied, but it
//! must not be reachable from request data); every request either goes on
//! with no response sent, or is answered exactly once; an answered request
//! is a deny (401, 403, or a gRPC error with HTTP 200); the filter's own
//! `x-meshward-*` headers are only ever added to a request that goes on.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use meshward::abi::{AbiError, AbiLogLevel, Attribute, ConfigOps, LogOps, StreamOps};
use meshward::module::Module;
use meshward_fuzz::tokens;

/// The request as the fuzzer made it, and what the module did with it.
#[derive(Default)]
struct FuzzStream {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    digest: Option<Vec<u8>>,
    peer_san: Option<Vec<u8>>,
    local_san: Option<Vec<u8>>,
    filter_state: Option<Vec<u8>>,
    responses: Vec<(u32, Vec<(Vec<u8>, Vec<u8>)>)>,
    added: Vec<Vec<u8>>,
}

impl StreamOps for FuzzStream {
    fn for_each_request_header(
        &mut self,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), AbiError> {
        for (name, value) in &self.headers {
            visit(name, value);
        }
        Ok(())
    }

    fn attribute_string(&mut self, attribute: Attribute) -> Result<Option<Vec<u8>>, AbiError> {
        Ok(match attribute {
            Attribute::Sha256PeerCertificateDigest => self.digest.clone(),
            Attribute::UriSanPeerCertificate => self.peer_san.clone(),
            Attribute::UriSanLocalCertificate => self.local_san.clone(),
            Attribute::ConnectionMtls => None,
        })
    }

    fn attribute_bool(&mut self, _attribute: Attribute) -> Result<Option<bool>, AbiError> {
        Ok(Some(self.digest.is_some()))
    }

    fn filter_state(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, AbiError> {
        Ok(self.filter_state.clone())
    }

    fn set_filter_state(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), AbiError> {
        Ok(())
    }

    fn remove_request_header(&mut self, name: &[u8]) -> Result<(), AbiError> {
        self.headers.retain(|(n, _)| n != name);
        Ok(())
    }

    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), AbiError> {
        self.added.push(name.to_vec());
        self.headers.push((name.to_vec(), value.to_vec()));
        Ok(())
    }

    fn send_local_reply(
        &mut self,
        status: u32,
        headers: &[(&[u8], &[u8])],
        _body: &[u8],
        _details: &[u8],
    ) -> Result<(), AbiError> {
        let headers = headers.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        self.responses.push((status, headers));
        Ok(())
    }

    fn send_response_headers_only(
        &mut self,
        headers: &[(&[u8], &[u8])],
    ) -> Result<(), AbiError> {
        let status = headers
            .iter()
            .find(|(k, _)| *k == b":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let headers = headers.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        self.responses.push((status, headers));
        Ok(())
    }

    fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
        Ok(())
    }
}

/// Counters get ids as Envoy gives them: one per definition.
#[derive(Default)]
struct FuzzConfig {
    defined: usize,
}

impl ConfigOps for FuzzConfig {
    fn define_counter(&mut self, _name: &[u8]) -> Result<usize, AbiError> {
        self.defined += 1;
        Ok(self.defined)
    }

    fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
        Ok(())
    }

    fn http_callout(
        &mut self,
        _cluster: &[u8],
        _headers: &[(&[u8], &[u8])],
        _timeout_ms: u64,
    ) -> Result<u64, AbiError> {
        Err(AbiError(2))
    }
}

struct Quiet;

impl LogOps for Quiet {
    fn log(&self, _level: AbiLogLevel, _message: &[u8]) {}
}

thread_local! {
    static MODULE: RefCell<Option<Module>> = RefCell::new(
        Module::create(tokens::config_json().into_bytes(), &mut FuzzConfig::default(), &Quiet)
    );
}

/// Splits the input into fields at 0xFF bytes: four optional attributes
/// (digest, peer URI SAN, local URI SAN, filter state; empty = absent), then
/// name/value pairs. Bytes 0x00-0xFE, so names and values may be anything
/// Envoy could pass, including non-UTF-8 and control bytes.
fn stream_from(data: &[u8]) -> FuzzStream {
    let mut fields = data.split(|b| *b == 0xFF);
    let mut optional = || {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .map(<[u8]>::to_vec)
    };
    let digest = optional();
    let peer_san = optional();
    let local_san = optional();
    let filter_state = optional();
    let rest: Vec<&[u8]> = data
        .split(|b| *b == 0xFF)
        .skip(4)
        .collect();
    let headers = rest
        .chunks(2)
        .map(|pair| {
            (
                pair.first().copied().unwrap_or_default().to_vec(),
                pair.get(1).copied().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    FuzzStream {
        headers,
        digest,
        peer_san,
        local_san,
        filter_state,
        ..FuzzStream::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = stream_from(data);
    MODULE.with(|module| {
        let module = module.borrow();
        let module = module.as_ref().expect("the fuzz configuration loads");
        let verdict = module.on_request_headers(&mut stream, &Quiet);
        if verdict.proceed {
            assert!(stream.responses.is_empty(), "answered and let through");
        } else {
            assert_eq!(stream.responses.len(), 1, "stopped without exactly one answer");
            assert!(
                stream.added.iter().all(|n| !n.starts_with(b"x-meshward-")),
                "identity headers added to a denied request"
            );
            let (status, headers) = &stream.responses[0];
            let grpc = headers.iter().any(|(k, _)| k == b"grpc-status");
            assert!(
                matches!(status, 401 | 403) || (grpc && *status == 200),
                "a deny answered {status}"
            );
        }
    });
});
