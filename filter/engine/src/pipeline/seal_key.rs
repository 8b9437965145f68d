//! The key that seals caller chains handed to the app.
//!
//! Generated inside the proxy at start-up from the host's CSPRNG, shared by
//! every worker and by the inbound and outbound filter instances through the
//! host's shared data (scoped by `vm_id` in proxy-wasm, so both listeners must
//! use the same `vm_id`). Never configured, logged or stored anywhere else; a
//! restarted proxy gets a new key, so chains it sealed before stop verifying
//! (their lifetime is short anyway).

use super::host::{Host, HostError};

/// Shared-data key under which the seal key lives.
const SHARED_KEY: &str = "meshward.chain.seal_key.v1";
/// Seal key length (HMAC-SHA256).
pub const KEY_LEN: usize = 32;

/// Returns the process's seal key, creating it if this is the first instance.
///
/// Envoy starts the main thread's VM before the workers' VMs, so the first
/// creation happens before any worker can race it; [`current`] re-reads the
/// stored key for the rare case where a worker holds a stale copy.
pub fn get_or_create(host: &mut dyn Host) -> Result<Vec<u8>, HostError> {
    if let Some(existing) = current(host)? {
        return Ok(existing);
    }
    let mut fresh = [0u8; KEY_LEN];
    host.random(&mut fresh)?;
    host.set_shared_data(SHARED_KEY, &fresh)?;
    current(host)?.ok_or(HostError::NotFound)
}

/// The key as currently stored, if any (and well-formed).
pub fn current(host: &mut dyn Host) -> Result<Option<Vec<u8>>, HostError> {
    match host.shared_data(SHARED_KEY) {
        Ok(value) => Ok(value.filter(|k| k.len() == KEY_LEN)),
        Err(HostError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
