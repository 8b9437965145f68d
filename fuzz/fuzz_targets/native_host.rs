//! The native module's FFI boundary: everything Envoy hands the dynamic
//! module (header names and values, connection attributes, filter-state
//! bytes, the filter configuration) is arbitrary bytes here, fed through the
//! module's real `Host` adapter (`meshward::host`, via
//! `meshward::module::Module`) into the real pipeline.
//!
//! Two kinds of input, chosen by the first byte:
//!
//! - `0xFE` then bytes: a filter configuration. The module accepts it
//!   exactly when the pipeline accepts it on a host with proxy-wasm's
//!   semantics (the engine's `OfflineHost`, what the wasm build sees).
//! - anything else: a request against the fixture configuration (the
//!   fixture policy and its keys), split into fields at `0xFF` bytes: four
//!   optional attributes (digest, peer URI SAN, local URI SAN, filter
//!   state; empty = absent), then name/value pairs, bytes `0x00..=0xFE`
//!   (non-UTF-8 and control bytes included).
//!
//! Properties for a request: never a panic; the module decides it as the
//! same pipeline on the reference host does (goes on with the same header
//! edits, or is denied with the same status and reason); a request that
//! goes on got no answer, a stopped one exactly one, a deny (401, 403; for
//! a request Envoy answers as gRPC, a `grpc-status` other than 0, since
//! Envoy says 0, success, when the module gives none); the filter's own
//! `x-meshward-*` headers are only ever added to a request that goes on.
#![no_main]

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use meshward::abi::{AbiError, AbiLogLevel, Attribute, ConfigOps, LogOps, StreamOps};
use meshward::module::Module;
use meshward_engine::pipeline::{Action, OfflineHost, Pipeline};
use meshward_fuzz::tokens;

/// The first byte of a configuration input.
const CONFIG_INPUT: u8 = 0xFE;

/// The request as the fuzzer made it, and what the module did with it.
#[derive(Default, Clone)]
struct FuzzStream {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    digest: Option<Vec<u8>>,
    peer_san: Option<Vec<u8>>,
    local_san: Option<Vec<u8>>,
    filter_state: Option<Vec<u8>>,
    /// Local replies: status and headers.
    responses: Vec<(u32, Vec<(Vec<u8>, Vec<u8>)>)>,
    added: Vec<(Vec<u8>, Vec<u8>)>,
    removed: Vec<Vec<u8>>,
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
        // Envoy 1.40 answers a missing certificate's attributes with an
        // empty string; the adapter must read that as absent.
        let value = match attribute {
            Attribute::Sha256PeerCertificateDigest => self.digest.clone(),
            Attribute::UriSanPeerCertificate => self.peer_san.clone(),
            Attribute::UriSanLocalCertificate => self.local_san.clone(),
            Attribute::ConnectionMtls => None,
        };
        Ok(Some(value.unwrap_or_default()))
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
        self.removed.push(name.to_vec());
        self.headers.retain(|(n, _)| n != name);
        Ok(())
    }

    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), AbiError> {
        self.added.push((name.to_vec(), value.to_vec()));
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

    fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
        Ok(())
    }

    fn set_gauge(&mut self, _id: usize, _value: u64) -> Result<(), AbiError> {
        Ok(())
    }
}

impl FuzzStream {
    /// Whether Envoy answers this request's local reply as gRPC
    /// (`Grpc::Common::hasGrpcContentType` on the first content-type).
    fn envoy_sees_grpc(&self) -> bool {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
            .and_then(|(_, v)| v.strip_prefix(b"application/grpc"))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
    }
}

/// Metrics get ids as Envoy gives them: one per definition.
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

    fn define_gauge(&mut self, _name: &[u8]) -> Result<usize, AbiError> {
        self.defined += 1;
        Ok(self.defined)
    }

    fn set_gauge(&mut self, _id: usize, _value: u64) -> Result<(), AbiError> {
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The reference: the same pipeline on a host with proxy-wasm's semantics.
fn reference_host(plugin_config: &[u8]) -> OfflineHost {
    let mut host = OfflineHost::at(now_secs());
    host.plugin_configuration = Some(plugin_config.to_vec());
    host.callouts_supported = false;
    host
}

fn reference_accepts(host: &mut OfflineHost) -> Option<Pipeline> {
    let mut pipeline = Pipeline::new();
    (pipeline.on_vm_start(host) && pipeline.on_configure(host)).then_some(pipeline)
}

thread_local! {
    static MODULE: Module = Module::create(
        tokens::config_json().into_bytes(),
        &mut FuzzConfig::default(),
        &Quiet,
    )
    .expect("the fixture configuration loads in the module");
    static REFERENCE: RefCell<(Pipeline, OfflineHost)> = {
        let mut host = reference_host(tokens::config_json().as_bytes());
        let pipeline = reference_accepts(&mut host)
            .expect("the fixture configuration loads on the reference host");
        RefCell::new((pipeline, host))
    };
}

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
    let rest: Vec<&[u8]> = data.split(|b| *b == 0xFF).skip(4).collect();
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

/// What the reference decided: `None` when the request goes on, else the
/// status and reason of its deny; and the headers it added.
struct Reference {
    deny: Option<(u16, String)>,
    added: Vec<(String, String)>,
    removed: Vec<String>,
}

fn decide_on_reference(stream: &FuzzStream) -> Reference {
    REFERENCE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (pipeline, host) = &mut *cell;
        host.reset_request();
        host.now_nanos = Some(u128::from(now_secs()) * 1_000_000_000);
        host.headers = stream
            .headers
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect();
        host.properties.clear();
        let attributes = [
            ("connection.sha256_peer_certificate_digest", &stream.digest),
            ("connection.uri_san_peer_certificate", &stream.peer_san),
            ("connection.uri_san_local_certificate", &stream.local_san),
        ];
        for (path, value) in attributes {
            if let Some(value) = value {
                host.properties.insert(path.to_owned(), value.clone());
            }
        }
        host.properties.insert(
            "connection.mtls".to_owned(),
            vec![u8::from(stream.digest.is_some())],
        );
        if let Some(value) = &stream.filter_state {
            host.properties
                .insert("filter_state.io.istio.peer_principal".to_owned(), value.clone());
        }
        let action = pipeline.on_request_headers(host);
        let deny = match action {
            Action::Continue => None,
            Action::Stop => {
                let response = host.response.as_ref().expect("a stop answers the request");
                let reason = response
                    .headers
                    .iter()
                    .find(|(k, _)| *k == "x-meshward-reason")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                Some((response.status, reason))
            }
        };
        Reference {
            deny,
            added: host.added.clone(),
            removed: host.removed.clone(),
        }
    })
}

fn header<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn check_request(data: &[u8]) {
    let mut stream = stream_from(data);
    let reference = decide_on_reference(&stream);
    let verdict = MODULE.with(|module| module.on_request_headers(&mut stream, &Quiet));
    if verdict.proceed {
        assert!(stream.responses.is_empty(), "answered and let through");
        assert_eq!(reference.deny, None, "the module let through a request the reference denies");
        // Values may differ (a chain seal's randomness); names and order not.
        let names: Vec<&[u8]> = stream.added.iter().map(|(k, _)| k.as_slice()).collect();
        let expected: Vec<&[u8]> = reference.added.iter().map(|(k, _)| k.as_bytes()).collect();
        assert_eq!(names, expected, "other headers added than on the reference");
        let removed: Vec<&[u8]> = stream.removed.iter().map(Vec::as_slice).collect();
        let expected: Vec<&[u8]> = reference.removed.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(removed, expected, "other headers removed than on the reference");
        return;
    }
    assert_eq!(stream.responses.len(), 1, "stopped without exactly one answer");
    assert!(
        stream.added.iter().all(|(n, _)| !n.starts_with(b"x-meshward-")),
        "identity headers added to a denied request"
    );
    let (status, headers) = &stream.responses[0];
    let reason = header(headers, "x-meshward-reason")
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default();
    let Some((expected_status, expected_reason)) = &reference.deny else {
        panic!("the module denied ({status} {reason}) a request the reference lets through");
    };
    assert_eq!(
        (*status, &reason),
        (u32::from(*expected_status), expected_reason),
        "the module's deny differs from the reference's"
    );
    assert!(matches!(status, 401 | 403), "a deny answered {status}");
    if stream.envoy_sees_grpc() {
        let grpc_status = header(headers, "grpc-status");
        assert!(
            grpc_status.is_some_and(|s| s != b"0"),
            "Envoy would answer this gRPC deny with grpc-status {:?} (0 when none: success)",
            grpc_status.map(String::from_utf8_lossy)
        );
    }
}

fn check_config(config: &[u8]) {
    let native = Module::create(config.to_vec(), &mut FuzzConfig::default(), &Quiet).is_some();
    let reference = reference_accepts(&mut reference_host(config)).is_some();
    assert_eq!(
        native, reference,
        "the module {} a configuration the reference {}",
        if native { "accepts" } else { "rejects" },
        if reference { "accepts" } else { "rejects" }
    );
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&CONFIG_INPUT, config)) => check_config(config),
        _ => check_request(data),
    }
});
