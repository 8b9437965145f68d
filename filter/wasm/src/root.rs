//! The root context: one per VM and plugin configuration. It owns the
//! engine's [`Pipeline`] and forwards the lifecycle events to it.

use std::cell::RefCell;
use std::rc::Rc;

use meshward_engine::pipeline::Pipeline;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::{self, ProxyWasm};
use crate::http::RequestFilter;

/// The root context.
#[derive(Default)]
pub struct MeshwardRoot {
    pipeline: Rc<RefCell<Pipeline>>,
}

impl Context for MeshwardRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let status = host::http_call_status();
        let body = host::http_call_body(body_size);
        if let Ok(mut pipeline) = self.pipeline.try_borrow_mut() {
            pipeline.on_http_call_response(&mut ProxyWasm, token_id, status, body);
        }
    }
}

impl RootContext for MeshwardRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.pipeline
            .try_borrow_mut()
            .is_ok_and(|mut pipeline| pipeline.on_vm_start(&mut ProxyWasm))
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.pipeline
            .try_borrow_mut()
            .is_ok_and(|mut pipeline| pipeline.on_configure(&mut ProxyWasm))
    }

    fn on_tick(&mut self) {
        if let Ok(mut pipeline) = self.pipeline.try_borrow_mut() {
            pipeline.on_tick(&mut ProxyWasm);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration the pipeline denies with `no_policy`.
        Some(Box::new(RequestFilter::new(self.pipeline.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
