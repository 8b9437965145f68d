//! Per request: lend the pipeline to the request and the host to the
//! pipeline. Nothing here decides.

use std::cell::RefCell;
use std::rc::Rc;

use meshward_engine::pipeline::{deny_without_pipeline, Action as PipelineAction, Pipeline};
use meshward_engine::Reason;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::ProxyWasm;

/// One request's context.
pub struct RequestFilter {
    pipeline: Rc<RefCell<Pipeline>>,
}

impl RequestFilter {
    pub fn new(pipeline: Rc<RefCell<Pipeline>>) -> Self {
        RequestFilter { pipeline }
    }
}

impl Context for RequestFilter {}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-trigger")]
        trap_if_asked();
        let action = match self.pipeline.try_borrow_mut() {
            Ok(mut pipeline) => pipeline.on_request_headers(&mut ProxyWasm),
            Err(_) => deny_without_pipeline(&mut ProxyWasm, Reason::NoPolicy),
        };
        match action {
            PipelineAction::Continue => Action::Continue,
            PipelineAction::Stop => Action::Pause,
        }
    }
}

/// Test builds only (`--features trap-trigger`, never the release artifact):
/// a request with `x-meshward-test-trap` panics inside the filter, so tests
/// can show a trap never turns into an allow.
#[cfg(feature = "trap-trigger")]
#[expect(clippy::panic, reason = "deliberate trap for the fail-closed test")]
fn trap_if_asked() {
    let asked = proxy_wasm::hostcalls::get_map_value_bytes(
        proxy_wasm::types::MapType::HttpRequestHeaders,
        "x-meshward-test-trap",
    );
    if matches!(asked, Ok(Some(_))) {
        panic!("meshward: test trap requested");
    }
}
