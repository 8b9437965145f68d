//! `meshward oci` writes an OCI image layout that Istio's Wasm image fetcher
//! accepts, with digests that verify. Checked here independently of the
//! writer: every descriptor is followed from `index.json`, every blob hashed
//! and measured, media types compared with what Istio's `pkg/wasm`
//! (`extractOCIArtifactImage`, `extractOCIStandardImage`) looks for, and the
//! module taken back out of the layer must be our `.wasm`, byte for byte.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

const MESHWARD: &str = env!("CARGO_BIN_EXE_meshward");

/// A valid WebAssembly module (header + one custom section of noise), big
/// enough for several gzip blocks.
fn module() -> Vec<u8> {
    let mut payload = b"\x08meshward".to_vec();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        payload.push((x & 0xff) as u8);
    }
    let mut wasm = b"\0asm\x01\0\0\0\x00".to_vec();
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend_from_slice(&payload);
    wasm
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshward-oci-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the blob a descriptor names and checks its size and digest.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        bytes.len() as u64,
        descriptor["size"].as_u64().unwrap(),
        "{digest} size"
    );
    assert_eq!(sha256_hex(&bytes), hex, "{digest} content");
    bytes
}

/// index.json → the manifest tagged `tag`; returns (manifest digest, manifest).
fn manifest(layout: &Path, tag: &str) -> (String, Value) {
    let layout_file: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout_file["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let manifest: Value = serde_json::from_slice(&blob(layout, descriptor)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    (descriptor["digest"].as_str().unwrap().to_owned(), manifest)
}

fn run(args: &[&str]) -> String {
    let out = Command::new(MESHWARD).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "meshward {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wasm_artifact_layout_is_what_istio_expects_and_verifies() {
    let dir = scratch("artifact");
    let wasm = module();
    let wasm_path = dir.join("meshward_filter.wasm");
    std::fs::write(&wasm_path, &wasm).unwrap();
    let layout = dir.join("layout");
    let printed = run(&[
        "oci",
        "--wasm",
        wasm_path.to_str().unwrap(),
        "-o",
        layout.to_str().unwrap(),
        "--tag",
        "1.2.3",
    ]);
    let (digest, manifest) = manifest(&layout, "1.2.3");
    // stdout is the manifest digest: what WasmPlugin.sha256 pins for oci://.
    assert_eq!(format!("sha256:{}", printed.trim()), digest);

    // Istio's extractOCIArtifactImage: exactly two layers, one of them the
    // raw module with the Wasm content media type.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.module.wasm.config.v1+json",
            "application/vnd.module.wasm.content.layer.v1+wasm"
        ]
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(config["type"], "envoy_proxy");
    assert_eq!(config["config"]["rootIds"][0], "meshward");
    assert_eq!(
        blob(&layout, &layers[0]),
        blob(&layout, &manifest["config"])
    );
    // The module layer is our .wasm, byte for byte.
    assert!(
        blob(&layout, &layers[1]) == wasm,
        "the layer is not our module"
    );

    // Nothing else in blobs/.
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut expected = vec![
        digest.trim_start_matches("sha256:").to_owned(),
        sha256_hex(&wasm),
        manifest["config"]["digest"].as_str().unwrap()[7..].to_owned(),
    ];
    expected.sort();
    assert_eq!(blobs, expected);

    // `meshward istio --wasm` computes the same digest without the layout,
    // and `--oci-layout` reads (and verifies) it from the layout.
    for pin in [
        vec!["--wasm", wasm_path.to_str().unwrap()],
        vec!["--oci-layout", layout.to_str().unwrap()],
    ] {
        let mut args = vec![
            "istio",
            "--policy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop.policy"),
            "--image",
            "oci://registry.example.com/meshward/filter:1.2.3",
            "--namespace",
            "shop",
            "--selector",
            "app=orders",
        ];
        args.extend(pin);
        let out_file = dir.join("manifests.yaml");
        args.extend(["--mode", "both", "-o", out_file.to_str().unwrap()]);
        assert_eq!(run(&args), "", "with -o nothing goes to stdout");
        let yaml = std::fs::read_to_string(&out_file).unwrap();
        assert_eq!(
            yaml.matches(&format!("sha256: {}", printed.trim())).count(),
            2,
            "{yaml}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compat_layout_holds_plugin_wasm_in_one_tar_gzip_layer() {
    let dir = scratch("compat");
    let wasm = module();
    let wasm_path = dir.join("f.wasm");
    std::fs::write(&wasm_path, &wasm).unwrap();
    let layout = dir.join("layout");
    let tarball = dir.join("layout.tar");
    run(&[
        "oci",
        "--wasm",
        wasm_path.to_str().unwrap(),
        "-o",
        layout.to_str().unwrap(),
        "--tar",
        tarball.to_str().unwrap(),
        "--oci-format",
        "docker",
        "--tag",
        "v1",
    ]);
    let (_, manifest) = manifest(&layout, "v1");
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = blob(&layout, &layers[0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    // The config's diff_id is the uncompressed layer.
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar_bytes))
    );
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.push((name, content));
    }
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "plugin.wasm");
    assert!(entries[0].1 == wasm, "plugin.wasm is not our module");

    // The tarball is the same layout, file for file.
    let mut archive = tar::Archive::new(std::fs::File::open(&tarball).unwrap());
    let mut files = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry.path().unwrap().to_path_buf();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(
            content,
            std::fs::read(layout.join(&name)).unwrap(),
            "{}",
            name.display()
        );
        files += 1;
    }
    assert_eq!(files, 2 + 3, "oci-layout, index.json and three blobs");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rerunning_replaces_the_layout_and_refuses_other_directories() {
    let dir = scratch("rerun");
    let wasm_path = dir.join("f.wasm");
    std::fs::write(&wasm_path, module()).unwrap();
    let layout = dir.join("layout");
    let args = |out: &Path| {
        Command::new(MESHWARD)
            .args(["oci", "--wasm", wasm_path.to_str().unwrap(), "-o"])
            .arg(out)
            .output()
            .unwrap()
    };
    assert!(args(&layout).status.success());
    assert!(
        args(&layout).status.success(),
        "a second run over the layout"
    );
    std::fs::write(dir.join("keep.txt"), "precious").unwrap();
    let out = args(&dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(dir.join("keep.txt").exists());
    // Not wasm at all.
    std::fs::write(&wasm_path, "not wasm").unwrap();
    assert_eq!(args(&dir.join("other")).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
