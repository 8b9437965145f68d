//! The request mix: a fixed, seeded set of requests shaped after the policy
//! that [`meshward_policy::generate::generate_policy`] writes (services
//! `svc-{k}` in eight `team-{t}` namespaces, each with read / write / gRPC /
//! admin intents).
//!
//! Every engine in a comparison evaluates exactly these requests. The mix is
//! mostly legitimate traffic (reads by group members, writes by the service's
//! worker with tenant headers, gRPC calls from the same team) with a realistic
//! share of denies: admin calls from a partner domain, writes with a debug
//! header, strangers, foreign trust domains and unclassified paths.

/// The generator's rules per service (see `generate.rs`).
pub const RULES_PER_SERVICE: usize = 4;
/// The generator's namespaces.
pub const TEAMS: usize = 8;
/// The seed of every mix in the reports.
pub const SEED: u64 = 0x6d65_7368_7761_7264; // "meshward"

/// One request, as an HTTP request reaches the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The mTLS-verified peer SPIFFE ID.
    pub peer: String,
    /// `:method`.
    pub method: &'static str,
    /// `:path` (canonical, no query).
    pub path: String,
    /// `:authority`, with port.
    pub authority: String,
    /// Other request headers, lowercase names.
    pub headers: Vec<(String, String)>,
}

impl RequestSpec {
    /// The path's segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The authority without its port, lowercase.
    pub fn host(&self) -> String {
        self.authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h)
            .to_ascii_lowercase()
    }

    /// The peer's trust domain.
    pub fn peer_trust_domain(&self) -> &str {
        let rest = self.peer.strip_prefix("spiffe://").unwrap_or(&self.peer);
        rest.split('/').next().unwrap_or("")
    }

    /// The peer's path segments.
    pub fn peer_segments(&self) -> Vec<&str> {
        let rest = self.peer.strip_prefix("spiffe://").unwrap_or(&self.peer);
        rest.split('/').skip(1).collect()
    }
}

/// SplitMix64: small, seeded, good enough to pick requests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Services in the generated policy with `rules` rules.
pub fn services(rules: usize) -> usize {
    rules.div_ceil(RULES_PER_SERVICE).max(1)
}

/// `count` requests against the policy generated with `rules` rules.
pub fn request_mix(rules: usize, count: usize, seed: u64) -> Vec<RequestSpec> {
    let services = services(rules);
    let mut rng = Rng::new(seed ^ rules as u64);
    (0..count).map(|_| one(&mut rng, services)).collect()
}

#[derive(Clone, Copy)]
enum Who {
    /// `ns/batch/sa/*`: a member of every callers group, by pattern.
    Batch,
    /// The workload of the next service: an exact member of this service's callers.
    Caller,
    /// The service's own worker: exact member, and the write grant's subject.
    Worker,
    /// Another workload of the same team: the gRPC pattern grant.
    Teammate,
    /// A workload of another team.
    Stranger,
    /// A workload of the partner domain (denied admin, granted nothing).
    Partner,
    /// A workload of a trust domain the policy does not trust.
    Foreign,
}

fn peer(rng: &mut Rng, who: Who, k: usize, services: usize) -> String {
    let team = k % TEAMS;
    let n = rng.below(50);
    match who {
        Who::Batch => format!("spiffe://mesh.example/ns/batch/sa/report-{n}"),
        Who::Caller => {
            let next = (k + 1) % services;
            format!(
                "spiffe://mesh.example/ns/team-{}/sa/svc-{next}",
                next % TEAMS
            )
        }
        Who::Worker => format!("spiffe://mesh.example/ns/team-{team}/sa/svc-{k}-worker"),
        Who::Teammate => format!("spiffe://mesh.example/ns/team-{team}/sa/tool-{n}"),
        Who::Stranger => format!(
            "spiffe://mesh.example/ns/team-{}/sa/tool-{n}",
            (team + 1 + rng.below(TEAMS - 1)) % TEAMS
        ),
        Who::Partner => format!("spiffe://partner.example/ns/ext/sa/partner-{n}"),
        Who::Foreign => format!("spiffe://other.example/ns/x/sa/w-{n}"),
    }
}

fn one(rng: &mut Rng, services: usize) -> RequestSpec {
    let k = rng.below(services);
    let team = k % TEAMS;
    let host = format!("svc-{k}.team-{team}.svc");
    let id = rng.below(100_000);
    let mut headers = vec![
        ("user-agent".to_owned(), "bench/1.0".to_owned()),
        ("accept".to_owned(), "application/json".to_owned()),
        (
            "x-request-id".to_owned(),
            format!("{:016x}", rng.next_u64()),
        ),
    ];
    let roll = rng.below(100);
    let (who, method, path, authority) = if roll < 30 {
        // Reads.
        let who = rng.pick(&[
            Who::Batch,
            Who::Batch,
            Who::Batch,
            Who::Batch,
            Who::Caller,
            Who::Caller,
            Who::Caller,
            Who::Worker,
            Who::Partner,
            Who::Stranger,
        ]);
        let method = if rng.chance(85) { "GET" } else { "HEAD" };
        let path = if rng.chance(30) {
            format!("/svc-{k}/items")
        } else {
            format!("/svc-{k}/items/{id}")
        };
        (who, method, path, format!("{host}:8080"))
    } else if roll < 50 {
        // Writes: the worker, with tenant headers; a few with x-debug or
        // another tenant, a few to the wrong host.
        let who = if rng.chance(85) {
            Who::Worker
        } else {
            Who::Caller
        };
        let method = rng.pick(&["POST", "PUT", "DELETE"]);
        let tenant = rng.pick(&["acme", "acme", "globex", "initech"]);
        headers.push(("x-tenant".to_owned(), tenant.to_owned()));
        if rng.chance(10) {
            headers.push(("x-debug".to_owned(), "1".to_owned()));
        }
        let authority = if rng.chance(90) {
            host.clone()
        } else {
            "other.svc".to_owned()
        };
        (who, method, format!("/svc-{k}/items/{id}"), authority)
    } else if roll < 70 {
        // gRPC.
        let who = rng.pick(&[
            Who::Teammate,
            Who::Teammate,
            Who::Teammate,
            Who::Worker,
            Who::Stranger,
        ]);
        let method = rng.pick(&["Get", "List"]);
        headers.push(("content-type".to_owned(), "application/grpc".to_owned()));
        (
            who,
            "POST",
            format!("/mesh.v1.Svc{k}/{method}"),
            format!("{host}:8080"),
        )
    } else if roll < 80 {
        // Admin: denied to the partner domain, granted to nobody.
        let who = rng.pick(&[Who::Partner, Who::Partner, Who::Batch, Who::Worker]);
        let depth = rng.below(3);
        let mut path = format!("/svc-{k}/admin");
        for d in 0..depth {
            path.push_str(&format!("/p{d}"));
        }
        let method = rng.pick(&["GET", "POST"]);
        (who, method, path, format!("{host}:8080"))
    } else if roll < 95 {
        // Unclassified: wrong method, unknown paths.
        let who = rng.pick(&[Who::Batch, Who::Caller, Who::Partner, Who::Teammate]);
        let (method, path) = match rng.below(4) {
            0 => ("PATCH", format!("/svc-{k}/items/{id}")),
            1 => ("GET", format!("/svc-{k}/items/{id}/history")),
            2 => ("GET", format!("/svc-{k}/unknown")),
            _ => ("GET", "/healthz".to_owned()),
        };
        (who, method, path, format!("{host}:8080"))
    } else {
        // A trust domain the policy does not trust.
        (
            Who::Foreign,
            "GET",
            format!("/svc-{k}/items/{id}"),
            format!("{host}:8080"),
        )
    };
    RequestSpec {
        peer: peer(rng, who, k, services),
        method,
        path,
        authority,
        headers,
    }
}

/// The identities the load generator's front proxy presents in the Envoy
/// benchmark, one client certificate each (a load generator cannot switch
/// certificates per request, so the Envoy mix draws its peers from these).
pub const ENVOY_PEERS: [&str; 5] = [
    // Every callers group, by the `ns/batch/sa/*` pattern.
    "spiffe://mesh.example/ns/batch/sa/report",
    // svc-0's worker: exact member of svc-0-callers, subject of svc-0-write.
    "spiffe://mesh.example/ns/team-0/sa/svc-0-worker",
    // A team-0 workload: the gRPC pattern grants of team-0 services.
    "spiffe://mesh.example/ns/team-0/sa/tool",
    // The partner domain: denied admin, granted nothing.
    "spiffe://partner.example/ns/ext/sa/partner",
    // svc-1's workload: exact member of svc-0-callers.
    "spiffe://mesh.example/ns/team-1/sa/svc-1",
];

/// The Envoy benchmark's mix: the same kinds of requests as
/// [`request_mix`], with the peer drawn from [`ENVOY_PEERS`] (its index is
/// returned too). Writes go to svc-0 (the one worker we have a certificate
/// for); everything else spreads over all services.
pub fn envoy_mix(rules: usize, count: usize, seed: u64) -> Vec<(usize, RequestSpec)> {
    let services = services(rules);
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let mut spec = one(&mut rng, services);
            // wrk never completes a HEAD response (it waits for a body), so
            // the Envoy mix reads with GET (the same intents allow both).
            if spec.method == "HEAD" {
                spec.method = "GET";
            }
            let write = matches!(spec.method, "PUT" | "DELETE")
                || (spec.method == "POST" && spec.path.contains("/items/"));
            if write {
                spec.path = format!("/svc-0/items/{}", rng.below(1000));
                if spec.authority != "other.svc" {
                    spec.authority = "svc-0.team-0.svc".to_owned();
                }
            }
            let peer = if write {
                rng.pick(&[1, 1, 1, 4])
            } else {
                rng.pick(&[0, 0, 0, 1, 2, 2, 3, 4])
            };
            spec.peer = ENVOY_PEERS[peer].to_owned();
            (peer, spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_deterministic_and_spans_the_services() {
        let a = request_mix(1000, 256, SEED);
        assert_eq!(a, request_mix(1000, 256, SEED));
        let services: std::collections::HashSet<_> =
            a.iter().map(|r| r.segments()[0].to_owned()).collect();
        assert!(services.len() > 100, "{}", services.len());
    }
}
