//! A bounded soak of meshward in a real Envoy, with an oracle (issue 8).
//!
//! ```text
//! bash scripts/soak.sh                 # 10 minutes
//! bash scripts/soak.sh --minutes 1     # a quick run
//! cargo run -p meshward-e2e --bin soak -- --minutes 2 --threads 4 --report out/soak.json
//! ```
//!
//! Envoy runs the filter configured through ECDS (`envoy/ecds/`), so the
//! plugin configuration can be replaced live. Several client threads send a
//! mix of requests as several workloads (their own X.509-SVIDs: shop
//! workloads, the ops admin, a batch job that also presents JWT-SVIDs, a
//! workload whose certificate serial is revoked, one of a trust domain the
//! policy does not trust). Meanwhile a controller publishes a new
//! configuration every few seconds: a different policy version, and a
//! rotated JWT-SVID key set (keys are added and retired, so tokens signed
//! by a retired key start failing); every fourth update is a broken one
//! (a corrupted policy), which Envoy must reject while the last good
//! configuration keeps deciding.
//!
//! The oracle: every configuration published is also loaded here with the
//! engine's own `FilterConfig::from_json`, and each response is checked
//! against `evaluate` on that configuration, for the credentials the request
//! carried, at the time it was sent. Which configuration decided a request
//! is read from the response itself: the policy hash the app received
//! (`x-meshward-policy`) for an allow, the filter's audit line (found by
//! request id) for a deny; every version has its own hash. Status, reason
//! and intent must all match.
//!
//! The report: requests, wrong decisions (must be 0), responses the oracle
//! did not predict, transport errors, Envoy's RSS at start and end, ECDS
//! update counters. Exit status 1 if anything is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use meshward_e2e::ecds::EcdsMesh;
use meshward_e2e::pki::hex;
use meshward_e2e::topology::tokens::{jwks, now as unix_now, svid_claims, SigningKey};
use meshward_e2e::{Leaf, Request, Response, TlsClient};
use meshward_engine::chain;
use meshward_engine::config::FilterConfig;
use meshward_engine::identity::cert::CertFacts;
use meshward_engine::identity::PeerCertificateSource;
use meshward_engine::identity::{
    verify_jwt_svid, IdentityChecks, JwtSvid, JwtSvidContext, KeyStore, TokenCache,
};
use meshward_engine::model::Effect;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{evaluate, Decision, Reason};
use serde_json::{json, Value};

const JWT_HEADER: &str = "x-jwt-svid";
const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/reports";
const BATCH: &str = "spiffe://shop.example/ns/batch/sa/report";
const REVOKED_SERIAL: [u8; 2] = [0x42, 0x42];

/// Command-line settings.
struct Settings {
    minutes: f64,
    threads: usize,
    max_requests: u64,
    update_every: Option<Duration>,
    max_rss_growth_mb: u64,
    report: Option<PathBuf>,
}

fn parse_args() -> Result<Settings, String> {
    let mut s = Settings {
        minutes: 10.0,
        threads: 4,
        max_requests: 2_000_000,
        update_every: None,
        max_rss_growth_mb: 64,
        report: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--minutes" => {
                s.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--threads" => {
                s.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--max-requests" => {
                s.max_requests = value("--max-requests")?
                    .parse()
                    .map_err(|e| format!("--max-requests: {e}"))?
            }
            "--update-every" => {
                let secs: f64 = value("--update-every")?
                    .parse()
                    .map_err(|e| format!("--update-every: {e}"))?;
                s.update_every = Some(Duration::from_secs_f64(secs));
            }
            "--max-rss-growth-mb" => {
                s.max_rss_growth_mb = value("--max-rss-growth-mb")?
                    .parse()
                    .map_err(|e| format!("--max-rss-growth-mb: {e}"))?
            }
            "--report" => s.report = Some(PathBuf::from(value("--report")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--minutes N] [--threads N] [--max-requests N] \
                            [--update-every SECS] [--max-rss-growth-mb N] [--report FILE]"
                        .to_owned(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(s.minutes > 0.0 && s.minutes <= 240.0) || s.threads == 0 || s.threads > 64 {
        return Err("--minutes must be in (0, 240] and --threads in 1..=64".to_owned());
    }
    Ok(s)
}

/// Policy version `v`: every version has its own name (so its own hash)
/// and grants differ between versions, so a request decided by the wrong
/// version shows.
fn policy_source(v: usize) -> String {
    let creates = if v.is_multiple_of(2) {
        "allow frontend-creates {\n  subject \"spiffe://shop.example/ns/shop/sa/frontend\"\n  intent orders.create\n}\n"
    } else {
        ""
    };
    let refund_mode = if v.is_multiple_of(3) {
        "dry-run"
    } else {
        "enforce"
    };
    let admin_env = if v % 4 == 1 {
        "  when header \"x-env\" != \"prod\"\n"
    } else {
        ""
    };
    format!(
        r#"
policy "soak-v{v}" {{
  trust_domains "shop.example"
  max_cert_lifetime 24h
}}

# The soak rotates the JWT-SVID bundle itself: it writes the token settings.
identity {{
  external
}}

group shop {{
  member "spiffe://shop.example/ns/shop/sa/*"
}}

intent orders.read {{
  method GET HEAD
  path "/orders" "/orders/{{id}}"
}}

intent orders.create {{
  method POST
  path "/orders"
}}

intent payments.refund {{
  method POST
  path "/payments/{{id}}/refund"
}}

intent admin.all {{
  path "/admin/**"
}}

intent reports.read {{
  method GET
  path "/reports/{{id}}"
}}

allow shop-reads {{
  subject group shop
  intent orders.read
}}

{creates}
allow shop-refunds {{
  subject group shop
  intent payments.refund
}}

deny no-refunds-from-frontend {{
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent payments.refund
  mode {refund_mode}
}}

allow ops-admin {{
  subject "spiffe://shop.example/ns/ops/sa/admin"
  intent admin.all
{admin_env}}}

allow batch-reports {{
  principal jwt_svid
  subject "{BATCH}"
  intent reports.read
}}
"#
    )
}

/// One published configuration, as the filter and the oracle load it.
struct Version {
    index: usize,
    json: String,
    config: FilterConfig,
    keys: KeyStore,
    /// Key ids in its JWT-SVID bundle.
    kids: Vec<String>,
}

/// The signing keys the bundle rotates through.
struct Keys {
    keys: Vec<(SigningKey, String)>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            keys: (0..4)
                .map(|i| {
                    let key = if i % 2 == 0 {
                        SigningKey::es256()
                    } else {
                        SigningKey::ed25519()
                    };
                    (key, format!("k{i}"))
                })
                .collect(),
        }
    }

    /// Which keys version `v` trusts: k(v/2), plus the next one on odd
    /// versions (a rotation adds the new key, then retires the old one).
    fn trusted(&self, v: usize) -> Vec<usize> {
        let n = self.keys.len();
        let first = (v / 2) % n;
        if v % 2 == 1 {
            vec![first, (first + 1) % n]
        } else {
            vec![first]
        }
    }
}

fn build_version(v: usize, keys: &Keys, now: u64) -> Version {
    let compiled = meshward_policy::compile_source(&policy_source(v), "soak.policy")
        .unwrap_or_else(|e| panic!("soak policy v{v} does not compile:\n{e}"));
    let trusted = keys.trusted(v);
    let set: Vec<(&SigningKey, &str)> = trusted
        .iter()
        .map(|i| (&keys.keys[*i].0, keys.keys[*i].1.as_str()))
        .collect();
    let mut bundle = jwks(&set, &json!({"use": "jwt-svid"}));
    bundle["spiffe_sequence"] = json!(v + 1);
    let mut config = compiled.plugin_config_value(&[hex(&REVOKED_SERIAL)]);
    config["audit_log"] = json!("denies");
    config["jwt_svid"] = json!({
        "header": JWT_HEADER,
        "audiences": [AUDIENCE],
        "max_lifetime_secs": 600,
    });
    config["trust_bundles"] = json!({ "shop.example": bundle });
    let json = config.to_string();
    let loaded = FilterConfig::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("soak configuration v{v} does not load: {e}"));
    let store = loaded.key_store(now);
    Version {
        index: v,
        json,
        config: loaded,
        keys: store,
        kids: trusted.iter().map(|i| keys.keys[*i].1.clone()).collect(),
    }
}

/// A configuration the filter must refuse: the policy bytes corrupted.
fn broken(version: &Version) -> String {
    let mut value: Value = serde_json::from_str(&version.json).expect("own JSON");
    let policy = value["policy"].as_str().unwrap_or("").to_owned();
    // Flip one base64 digit in the middle of the body: the hash no longer matches.
    let mut bytes = policy.into_bytes();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    value["policy"] = json!(String::from_utf8(bytes).expect("ASCII"));
    value.to_string()
}

/// A workload the load is sent as.
struct Identity {
    name: &'static str,
    leaf: Leaf,
    client: TlsClient,
}

/// One kind of request in the mix.
#[derive(Clone, Copy)]
struct Shape {
    who: usize,
    method: &'static str,
    /// The request target as sent.
    path: &'static str,
    /// The path the filter sees: Envoy normalizes first (`normalize_path`,
    /// `merge_slashes`), and the oracle decides on what the filter decides on.
    normalized: &'static str,
    /// 0: no token; 1..: a JWT-SVID signed by key (n - 1); `usize::MAX`: a
    /// token that is not even a JWT.
    token: usize,
    env_prod: bool,
}

/// What happened to one request.
struct Record {
    shape: Shape,
    id: String,
    sent_at: u64,
    token: Option<String>,
    result: Result<Response, String>,
}

/// Finds Envoy's process by its (unique) config path and reads its RSS.
fn envoy_rss_kb(config: &Path) -> Option<u64> {
    let needle = config.to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(&needle) && cmdline.contains("envoy") {
            let status = fs::read_to_string(entry.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        }
    }
    None
}

/// JWT-SVID outcomes already computed, by (version, token): a token's
/// outcome does not change while it is in use (minted every 30 s, valid
/// 300 s), and signature checks are slow in a debug build.
type JwtMemo = HashMap<(usize, String), Result<SpiffeId, Reason>>;

/// The oracle's answer for one request under one configuration.
fn expected(version: &Version, who: &Identity, rec: &Record, memo: &mut JwtMemo) -> Decision {
    let config = &version.config;
    let policy = &config.policy;
    let now = rec.sent_at;
    let peer = CertFacts::from_der(&who.leaf.cert_der).and_then(|facts| {
        let checks = IdentityChecks {
            source: PeerCertificateSource::Forwarded,
            max_cert_lifetime_secs: policy.max_cert_lifetime_secs(),
            revoked_serials: &config.revoked_serials,
        };
        facts.check(&checks, now).map(|()| facts.spiffe_id)
    });
    let jwt: Option<Result<SpiffeId, Reason>> = match (&rec.token, config.jwt_svid.as_ref()) {
        (Some(token), Some(settings)) => {
            let ctx = JwtSvidContext {
                settings,
                keys: &version.keys,
                revocation: &config.revocation,
                trusts_domain: &|td| policy.trusts_domain(td),
                policy_max_lifetime_secs: None,
            };
            let key = (version.index, token.clone());
            let outcome = memo.entry(key).or_insert_with(|| {
                let mut cache: TokenCache<JwtSvid> = TokenCache::new(1);
                verify_jwt_svid(&ctx, token, now, &mut cache).map(|j| j.subject.clone())
            });
            Some(outcome.clone())
        }
        _ => None,
    };
    let chain = peer.as_ref().ok().map(|p| {
        chain::inbound(
            p,
            policy.may_forward_chain(p),
            &[],
            now,
            policy.chain_limits(),
        )
        .map_err(chain::ChainError::reason)
    });
    let headers: Vec<(&str, &str)> = if rec.shape.env_prod {
        vec![("x-env", "prod")]
    } else {
        Vec::new()
    };
    let headers = headers.as_slice();
    evaluate(
        policy,
        &meshward_engine::Request {
            peer: peer.as_ref().map_err(|r| *r),
            jwt_svid: jwt.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
            user: None,
            chain: chain.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
            method: rec.shape.method,
            path: rec.shape.normalized,
            authority: "localhost",
            headers: &headers,
        },
    )
}

/// Whether the response is exactly `decision` (status, reason, intent,
/// allow vs would-deny).
fn agrees(version: &Version, decision: &Decision, response: &Response) -> Result<(), String> {
    let policy = &version.config.policy;
    let status = decision.http_status();
    if response.status != status {
        return Err(format!(
            "status {} (expected {status}, {})",
            response.status,
            decision.reason.code()
        ));
    }
    match decision.effect {
        Effect::Deny => {
            let got = response.header("x-meshward-reason");
            if got != Some(decision.reason.code()) {
                return Err(format!(
                    "reason {got:?} (expected {})",
                    decision.reason.code()
                ));
            }
        }
        Effect::Allow => {
            let echo = response.json();
            let header = |name: &str| echo["headers"][name][0].as_str().unwrap_or("").to_owned();
            let intent = decision
                .intent
                .map_or("unclassified", |i| policy.intent_name(i));
            if header("x-meshward-intent") != intent {
                return Err(format!(
                    "intent {} (expected {intent})",
                    header("x-meshward-intent")
                ));
            }
            let verdict = if decision.would_deny() {
                "would-deny"
            } else {
                "allow"
            };
            if header("x-meshward-decision") != verdict {
                return Err(format!(
                    "decision header {} (expected {verdict})",
                    header("x-meshward-decision")
                ));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let settings = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let duration = Duration::from_secs_f64(settings.minutes * 60.0);
    let update_every = settings.update_every.unwrap_or_else(|| {
        Duration::from_secs_f64((duration.as_secs_f64() / 8.0).clamp(5.0, 20.0))
    });

    let keys = Keys::new();
    let start_now = unix_now();
    let versions: Arc<RwLock<Vec<Arc<Version>>>> = Arc::new(RwLock::new(vec![Arc::new(
        build_version(0, &keys, start_now),
    )]));
    let first_json = versions.read().expect("versions")[0].json.clone();
    let mesh = match EcdsMesh::start("soak", &first_json) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("envoy did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mesh = Arc::new(mesh);
    let pki = &mesh.pki;
    let make = |name: &'static str, leaf: Leaf| Identity {
        name,
        client: mesh.client(Some(&leaf)),
        leaf,
    };
    let identities = Arc::new(vec![
        make("frontend", pki.workload("shop", "frontend")),
        make("orders", pki.workload("shop", "orders")),
        make("ops-admin", pki.workload("ops", "admin")),
        make("batch", pki.workload("batch", "report")),
        make(
            "revoked",
            pki.shop
                .svid("/ns/shop/sa/payments")
                .serial(&REVOKED_SERIAL)
                .issue(),
        ),
        make("partner", pki.partner.svid("/ns/shop/sa/frontend").issue()),
    ]);
    let shape = |who, method, path: &'static str, token, env_prod| Shape {
        who,
        method,
        path,
        normalized: match path {
            "/orders/../admin/users" => "/admin/users",
            other => other,
        },
        token,
        env_prod,
    };
    let shapes: Vec<Shape> = vec![
        shape(0, "GET", "/orders/1", 0, false),
        shape(0, "POST", "/orders", 0, false),
        shape(0, "POST", "/payments/7/refund", 0, false),
        shape(0, "GET", "/admin/users", 0, false),
        shape(0, "GET", "/orders/../admin/users", 0, false),
        shape(1, "GET", "/orders", 0, false),
        shape(1, "POST", "/payments/7/refund", 0, false),
        shape(1, "DELETE", "/orders/1", 0, false),
        shape(2, "GET", "/admin/users", 0, false),
        shape(2, "PUT", "/admin/config", 0, true),
        shape(2, "GET", "/orders/1", 0, false),
        shape(3, "GET", "/reports/9", 1, false),
        shape(3, "GET", "/reports/9", 2, false),
        shape(3, "GET", "/reports/9", 3, false),
        shape(3, "GET", "/reports/9", 4, false),
        shape(3, "GET", "/reports/9", 0, false),
        shape(3, "GET", "/reports/9", usize::MAX, false),
        shape(0, "GET", "/reports/9", 1, false),
        shape(4, "GET", "/orders/1", 0, false),
        shape(5, "GET", "/orders/1", 0, false),
    ];

    // Tokens for the batch job (and one for the frontend, who is not its
    // subject), signed by each key, re-minted well before they expire.
    let tokens: Arc<Mutex<HashMap<(usize, usize), String>>> = Arc::new(Mutex::new(HashMap::new()));
    let mint_all = |tokens: &Mutex<HashMap<(usize, usize), String>>| {
        let mut map = tokens.lock().expect("tokens");
        for (who, sub) in [(3usize, BATCH), (0, BATCH)] {
            for (k, (key, kid)) in keys.keys.iter().enumerate() {
                let jti = format!("soak-{who}-{k}-{}", unix_now());
                map.insert(
                    (who, k + 1),
                    key.mint(kid, &svid_claims(sub, AUDIENCE, 300, &jti)),
                );
            }
        }
    };
    mint_all(&tokens);

    let config_path = mesh.envoy.config_path().to_path_buf();
    let rss_start = envoy_rss_kb(&config_path);
    eprintln!(
        "soak: {:.1} min, {} threads, {} request shapes, an update every {:?}; Envoy RSS at start {:?} kB",
        settings.minutes,
        settings.threads,
        shapes.len(),
        update_every,
        rss_start
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..settings.threads)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let sent = Arc::clone(&sent);
            let records = Arc::clone(&records);
            let identities = Arc::clone(&identities);
            let tokens = Arc::clone(&tokens);
            let shapes = shapes.clone();
            let max = settings.max_requests;
            thread::spawn(move || {
                let mut rng: u64 =
                    0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < duration {
                    if sent.fetch_add(1, Ordering::Relaxed) >= max {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let shape = shapes[(rng % shapes.len() as u64) as usize];
                    let id = format!("soak-{t}-{n}");
                    n += 1;
                    let token = match shape.token {
                        0 => None,
                        usize::MAX => Some("not.a.jwt".to_owned()),
                        k => tokens.lock().expect("tokens").get(&(shape.who, k)).cloned(),
                    };
                    let mut request =
                        Request::new(shape.method, shape.path).header("x-request-id", &id);
                    if let Some(token) = &token {
                        request = request.header(JWT_HEADER, token);
                    }
                    if shape.env_prod {
                        request = request.header("x-env", "prod");
                    }
                    let sent_at = unix_now();
                    let result = identities[shape.who]
                        .client
                        .send(&request)
                        .map_err(|e| e.to_string());
                    records.lock().expect("records").push(Record {
                        shape,
                        id,
                        sent_at,
                        token,
                        result,
                    });
                }
            })
        })
        .collect();

    // The controller: publish the next version (with the next key set), and
    // every fourth time a broken configuration instead.
    let mut timeline: Vec<String> = Vec::new();
    let mut next_update = Instant::now() + update_every;
    let mut next_mint = Instant::now() + Duration::from_secs(30);
    let mut updates = 0usize;
    let mut broken_published = 0u64;
    while started.elapsed() < duration && sent.load(Ordering::Relaxed) < settings.max_requests {
        thread::sleep(Duration::from_millis(200));
        if Instant::now() >= next_mint {
            mint_all(&tokens);
            next_mint = Instant::now() + Duration::from_secs(30);
        }
        if Instant::now() < next_update {
            continue;
        }
        next_update = Instant::now() + update_every;
        updates += 1;
        let at = started.elapsed().as_secs();
        if updates.is_multiple_of(4) {
            let last = Arc::clone(
                versions
                    .read()
                    .expect("versions")
                    .last()
                    .expect("a version"),
            );
            let before = mesh.ecds_counter("update_rejected");
            mesh.publish(&broken(&last));
            broken_published += 1;
            timeline.push(format!(
                "{at:>4} s  broken configuration published (update_rejected was {before})"
            ));
        } else {
            let v = versions.read().expect("versions").len();
            let version = Arc::new(build_version(v, &keys, unix_now()));
            timeline.push(format!(
                "{at:>4} s  v{v} published: policy {}, JWT-SVID keys {:?}",
                &version.config.policy.hash_hex()[..12],
                version.kids
            ));
            // Known to the oracle before Envoy can use it.
            versions
                .write()
                .expect("versions")
                .push(Arc::clone(&version));
            mesh.publish(&version.json);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed();
    // Let Envoy flush the last audit lines.
    thread::sleep(Duration::from_millis(500));
    let rss_end = envoy_rss_kb(&config_path);
    let update_success = mesh.ecds_counter("update_success");
    let update_rejected = mesh.ecds_counter("update_rejected");

    // The oracle.
    let versions = versions.read().expect("versions").clone();
    let by_hash: HashMap<String, Arc<Version>> = versions
        .iter()
        .map(|v| (v.config.policy.hash_hex().to_owned(), Arc::clone(v)))
        .collect();
    let audit_policy: HashMap<String, String> = mesh
        .envoy
        .audit_lines()
        .into_iter()
        .filter_map(|l| Some((l.str("request_id")?.to_owned(), l.str("policy")?.to_owned())))
        .collect();
    let records = std::mem::take(&mut *records.lock().expect("records"));
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut decided_by: BTreeMap<usize, u64> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut wrong_count = 0u64;
    let mut unattributed = 0u64;
    let mut transport_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexpected_status = 0u64;
    let mut memo = JwtMemo::new();
    for rec in &records {
        let response = match &rec.result {
            Ok(r) => r,
            Err(e) => {
                *transport_errors.entry(e.clone()).or_default() += 1;
                continue;
            }
        };
        *statuses.entry(response.status).or_default() += 1;
        if let Some(reason) = response.header("x-meshward-reason") {
            *reasons.entry(reason.to_owned()).or_default() += 1;
        }
        if ![200, 401, 403].contains(&response.status) {
            unexpected_status += 1;
        }
        let hash = if response.status == 200 {
            serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|e| {
                    e["headers"]["x-meshward-policy"][0]
                        .as_str()
                        .map(str::to_owned)
                })
        } else {
            audit_policy.get(&rec.id).cloned()
        };
        let Some(version) = hash.as_deref().and_then(|h| by_hash.get(h)) else {
            unattributed += 1;
            continue;
        };
        *decided_by.entry(version.index).or_default() += 1;
        let who = &identities[rec.shape.who];
        let decision = expected(version, who, rec, &mut memo);
        if let Err(why) = agrees(version, &decision, response) {
            wrong_count += 1;
            if wrong.len() < 20 {
                wrong.push(format!(
                    "{} {} {} as {} (token {}) under v{}: {why}",
                    rec.id,
                    rec.shape.method,
                    rec.shape.path,
                    who.name,
                    rec.shape.token,
                    version.index
                ));
            }
        }
    }

    let total = records.len() as u64;
    let errors: u64 = transport_errors.values().sum();
    let rss_growth_kb = match (rss_start, rss_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let rss_ok = rss_growth_kb.is_none_or(|g| g <= settings.max_rss_growth_mb * 1024);
    let ok = wrong_count == 0
        && unattributed == 0
        && errors == 0
        && unexpected_status == 0
        && rss_ok
        && update_rejected >= broken_published
        && total > 0;

    println!("## soak report\n");
    println!(
        "- duration: {:.1} s, {} client threads, {:.0} requests/s",
        elapsed.as_secs_f64(),
        settings.threads,
        total as f64 / elapsed.as_secs_f64()
    );
    println!("- requests: {total}");
    println!("- wrong decisions: {wrong_count}");
    println!("- responses not attributable to a published configuration: {unattributed}");
    println!("- responses other than 200/401/403: {unexpected_status}");
    println!("- transport errors: {errors} {transport_errors:?}");
    println!("- statuses: {statuses:?}");
    println!("- deny reasons: {reasons:?}");
    println!("- requests decided per configuration version: {decided_by:?}");
    println!(
        "- configuration updates: {} good published, {broken_published} broken published; ECDS update_success {update_success}, update_rejected {update_rejected}",
        versions.len() - 1
    );
    println!(
        "- Envoy RSS: start {} kB, end {} kB (growth {} kB, bound {} MB)",
        rss_start.map_or("?".to_owned(), |v| v.to_string()),
        rss_end.map_or("?".to_owned(), |v| v.to_string()),
        rss_growth_kb.map_or("?".to_owned(), |v| v.to_string()),
        settings.max_rss_growth_mb
    );
    println!("- timeline:");
    for line in &timeline {
        println!("  - {line}");
    }
    if !wrong.is_empty() {
        println!("- first wrong decisions:");
        for w in &wrong {
            println!("  - {w}");
        }
    }
    println!("\nresult: {}", if ok { "PASS" } else { "FAIL" });

    if let Some(path) = &settings.report {
        let report = json!({
            "seconds": elapsed.as_secs_f64(),
            "threads": settings.threads,
            "requests": total,
            "wrong_decisions": wrong_count,
            "unattributed": unattributed,
            "unexpected_status": unexpected_status,
            "transport_errors": errors,
            "statuses": statuses,
            "reasons": reasons,
            "decided_by_version": decided_by.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "good_updates": versions.len() - 1,
            "broken_updates": broken_published,
            "ecds_update_success": update_success,
            "ecds_update_rejected": update_rejected,
            "envoy_rss_kb_start": rss_start,
            "envoy_rss_kb_end": rss_end,
            "timeline": timeline,
            "first_wrong": wrong,
            "pass": ok,
        });
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Err(e) = fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        ) {
            eprintln!("write {}: {e}", path.display());
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
