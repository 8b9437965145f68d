//! A host with no proxy behind it: it answers the pipeline's questions from
//! values set beforehand and records everything the pipeline does. The CLI
//! decides requests written on the command line or recorded in audit lines
//! through it, and the tests drive the whole lifecycle with it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::host::{CallId, Host, HostError, LocalResponse, LogLevel, MetricId};

/// A dispatched HTTP callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// The call's id.
    pub id: CallId,
    /// Cluster name.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Timeout.
    pub timeout: Duration,
    /// Extra request headers (`if-none-match`).
    pub headers: Vec<(String, String)>,
}

/// The offline host: facts in, effects recorded.
#[derive(Debug, Clone, Default)]
pub struct OfflineHost {
    /// Request headers handed to the pipeline.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Properties by dotted path (`connection.sha256_peer_certificate_digest`).
    pub properties: BTreeMap<String, Vec<u8>>,
    /// Properties whose read fails (to test fail-closed paths).
    pub failing_properties: Vec<String>,
    /// Unix time in nanoseconds; `None` makes the clock fail.
    pub now_nanos: Option<u128>,
    /// The plugin configuration.
    pub plugin_configuration: Option<Vec<u8>>,
    /// The VM configuration.
    pub vm_configuration: Option<Vec<u8>>,
    /// The VM's environment variables.
    pub environment: BTreeMap<String, String>,
    /// Process-wide shared data.
    pub shared: BTreeMap<String, Vec<u8>>,
    /// Whether header edits fail (to test fail-closed paths).
    pub fail_header_edits: bool,
    /// Whether callouts can be made.
    pub callouts_supported: bool,
    /// Randomness state (see [`Host::random`] below).
    pub random_state: u64,

    /// Headers removed, in order.
    pub removed: Vec<String>,
    /// Headers added, in order.
    pub added: Vec<(String, String)>,
    /// The local response sent, if any.
    pub response: Option<LocalResponse>,
    /// Filter state published.
    pub filter_state: BTreeMap<String, String>,
    /// Log lines.
    pub logs: Vec<(LogLevel, String)>,
    /// Counters by name.
    pub counters: BTreeMap<String, u64>,
    metric_names: Vec<String>,
    /// Callouts dispatched.
    pub callouts: Vec<Callout>,
    /// The tick period asked for.
    pub tick_period: Option<Duration>,
    /// Headers of the callout response being handled (lowercase names).
    pub call_response_headers: BTreeMap<String, Vec<u8>>,
    /// Gauges by name.
    pub gauges: BTreeMap<String, u64>,
}

impl OfflineHost {
    /// A host whose clock reads `now_secs`.
    pub fn at(now_secs: u64) -> Self {
        OfflineHost {
            now_nanos: Some(u128::from(now_secs) * 1_000_000_000),
            callouts_supported: true,
            random_state: now_secs ^ 0x9e37_79b9_7f4a_7c15,
            ..OfflineHost::default()
        }
    }

    /// The value of a counter by name (0 when never bumped or undefined).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Audit lines logged (the JSON after the `meshward.audit ` marker).
    pub fn audit_lines(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter_map(|(_, line)| line.strip_prefix("meshward.audit "))
            .collect()
    }

    /// Forgets what the last request did (responses, edits, logs), keeping
    /// counters and state.
    pub fn reset_request(&mut self) {
        self.removed.clear();
        self.added.clear();
        self.response = None;
        self.filter_state.clear();
        self.logs.clear();
    }
}

impl Host for OfflineHost {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(self.headers.clone())
    }

    fn environment_variable(&mut self, name: &str) -> Result<Option<String>, HostError> {
        Ok(self.environment.get(name).cloned())
    }

    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let key = path.join(".");
        if self.failing_properties.contains(&key) {
            return Err(HostError::Status(2));
        }
        Ok(self.properties.get(&key).cloned())
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self.fail_header_edits {
            return Err(HostError::Status(2));
        }
        self.removed.push(name.to_owned());
        Ok(())
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.fail_header_edits {
            return Err(HostError::Status(2));
        }
        self.added.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError> {
        self.response = Some(response.clone());
        Ok(())
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.filter_state.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    fn now_nanos(&mut self) -> Result<u128, HostError> {
        self.now_nanos.ok_or(HostError::Status(2))
    }

    /// Not a cryptographic source: an offline host never seals a chain that
    /// an app could hold. (splitmix64, so distinct calls differ.)
    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        for chunk in buf.chunks_mut(8) {
            self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.random_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            for (dst, src) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *dst = src;
            }
        }
        Ok(())
    }

    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.plugin_configuration.clone())
    }

    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.vm_configuration.clone())
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.shared.get(key).cloned())
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.shared.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        let id = match self.metric_names.iter().position(|n| n == name) {
            Some(id) => id,
            None => {
                self.metric_names.push(name.to_owned());
                self.metric_names.len() - 1
            }
        };
        MetricId::try_from(id).ok()
    }

    fn increment(&mut self, id: MetricId, by: u64) {
        if let Some(name) = usize::try_from(id)
            .ok()
            .and_then(|i| self.metric_names.get(i))
        {
            *self.counters.entry(name.clone()).or_insert(0) += by;
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    fn dispatch_get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        if !self.callouts_supported {
            return Err(HostError::Unsupported);
        }
        let id = CallId::try_from(self.callouts.len() + 1).map_err(|_| HostError::BadArgument)?;
        self.callouts.push(Callout {
            id,
            cluster: cluster.to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            timeout,
            headers: Vec::new(),
        });
        Ok(id)
    }

    fn dispatch_get_with_headers(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        let id = self.dispatch_get(cluster, authority, path, timeout)?;
        if let Some(callout) = self.callouts.last_mut() {
            callout.headers = headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
        }
        Ok(id)
    }

    fn http_call_response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.call_response_headers.get(name).cloned())
    }

    fn define_gauge(&mut self, name: &str) -> Option<MetricId> {
        // Gauges share the metric id space with counters.
        let id = self.define_counter(name)?;
        self.gauges.entry(name.to_owned()).or_insert(0);
        Some(id)
    }

    fn set_gauge(&mut self, id: MetricId, value: u64) {
        if let Some(name) = usize::try_from(id)
            .ok()
            .and_then(|i| self.metric_names.get(i))
        {
            self.gauges.insert(name.clone(), value);
        }
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        self.tick_period = Some(period);
        Ok(())
    }
}
