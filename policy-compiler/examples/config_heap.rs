//! Heap of a loaded plugin configuration per generated policy size
//! (`cargo run -p meshward-policy --example config_heap -- 10 10000 100000`;
//! bench/results/scale.md). Byte counts do not depend on the build profile.
#![expect(
    clippy::unwrap_used,
    reason = "a measurement tool: a failed setup should stop it"
)]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);
/// Counts live heap bytes and their high-water mark.
struct C;
fn live(d: i64) {
    let now = LIVE.fetch_add(d, Relaxed) + d;
    PEAK.fetch_max(now, Relaxed);
}
// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for C {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        live(l.size() as i64);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        live(l.size() as i64);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        live(n as i64 - l.size() as i64);
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        live(-(l.size() as i64));
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: C = C;

fn heap<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let out = f();
    let m = |b: i64| b as f64 / 1048576.0;
    (
        out,
        m(LIVE.load(Relaxed) - start),
        m(PEAK.load(Relaxed) - start),
    )
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    for n in sizes {
        let src = meshward_policy::generate::generate_policy(n);
        let c = meshward_policy::compile_source(&src, "g.policy")
            .map_err(|_| ())
            .unwrap();
        drop(src);
        let json = meshward_engine::config::plugin_config_json(&c.bytes, &[]).to_string();
        let (m, mr, mp) = heap(|| meshward_engine::codec::decode(&c.bytes).unwrap());
        drop(m);
        let (cfg, r, p) =
            heap(|| meshward_engine::config::FilterConfig::from_json(json.as_bytes()).unwrap());
        println!("{n} rules: body {:.2} MiB, json {:.2} MiB; model alone retained {mr:.2} peak {mp:.2}; from_json retained {r:.2} MiB peak {p:.2} MiB", c.bytes.len() as f64/1048576.0, json.len() as f64/1048576.0);
        let m2 = meshward_engine::codec::decode(&c.bytes).unwrap().0;
        println!(
            "  strings {} rules {} intents {}",
            m2.strings.len(),
            m2.rules.len(),
            m2.intents.len()
        );
        drop(cfg);
    }
}
