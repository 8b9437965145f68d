//! The key that seals caller chains handed to the app.
//!
//! Generated inside the proxy at start-up from the host's CSPRNG (WASI
//! `random_get`), shared by every worker's VM and by the inbound and outbound
//! filter instances through proxy-wasm shared data (scoped by `vm_id`, so both
//! listeners must use the same `vm_id`). Never configured, logged or stored
//! anywhere else; a restarted Envoy gets a new key, so chains it sealed before
//! stop verifying (their lifetime is short anyway).

use crate::host::{self, HostError};

/// Shared-data key under which the seal key lives.
const SHARED_KEY: &str = "meshward.chain.seal_key.v1";
const KEY_LEN: usize = 32;

/// Returns the process's seal key, creating it if this is the first VM.
///
/// Envoy starts the main thread's VM before the workers' VMs, so the first
/// creation happens before any worker can race it; [`current`] re-reads the
/// stored key for the rare case where a worker holds a stale copy.
pub fn get_or_create() -> Result<Vec<u8>, HostError> {
    if let Some(existing) = current()? {
        return Ok(existing);
    }
    let mut fresh = [0u8; KEY_LEN];
    getrandom::getrandom(&mut fresh).map_err(|_| HostError)?;
    host::set_shared_data(SHARED_KEY, &fresh)?;
    current()?.ok_or(HostError)
}

/// The key as currently stored, if any (and well-formed).
pub fn current() -> Result<Option<Vec<u8>>, HostError> {
    Ok(host::shared_data(SHARED_KEY)?.filter(|k| k.len() == KEY_LEN))
}
