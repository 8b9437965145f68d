//! Packages the filter's `.wasm` as an OCI image that Istio's Wasm image
//! fetcher accepts, written as an OCI image layout (directory or tarball) by
//! our own code: no Docker engine, no registry, byte-for-byte reproducible.
//!
//! Istio's agent (`pkg/wasm/imagefetcher.go`, `PrepareFetch` and the
//! `extract*Image` functions; the layouts come from solo-io/wasm
//! `spec/spec.md` and `spec/spec-compat.md`) recognises three shapes:
//!
//! * the **Wasm artifact** ("oci" variant): an OCI manifest with *exactly two*
//!   layers, one `application/vnd.module.wasm.config.v1+json` (the runtime
//!   config) and one `application/vnd.module.wasm.content.layer.v1+wasm` (the
//!   raw module, not compressed). [`ImageFormat::WasmArtifact`], the default.
//!   The manifest's `config` descriptor is the same runtime-config blob.
//! * the **compat** variant with OCI media types: the last layer is
//!   `application/vnd.oci.image.layer.v1.tar+gzip`, a gzipped tar holding
//!   `plugin.wasm`; the manifest carries `module.wasm.image/variant: compat`.
//!   [`ImageFormat::Compat`] (what `FROM scratch` + `COPY plugin.wasm` builds).
//! * the same with Docker media types (a Docker schema 2 manifest), which we
//!   do not write: an OCI layout holds OCI manifests.
//!
//! Every JSON document here is serialized from a struct, so its bytes (and
//! therefore every digest) do not depend on `serde_json` map-order features.
//! Tar entries have mtime 0, uid/gid 0 and fixed modes; gzip has no name and
//! mtime 0. The same `.wasm` gives the same manifest digest on any machine,
//! which is what lets `meshward istio --wasm` compute the `sha256` Istio
//! checks (for `oci://` URLs Istio compares `WasmPlugin.sha256` with the
//! *manifest* digest, `pkg/wasm/cache.go`) without the layout at hand.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The raw Wasm module layer of the Wasm artifact variant.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The runtime config (layer and manifest config) of the Wasm artifact variant.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (`index.json`).
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image config (compat variant).
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// A gzipped tar layer (compat variant).
pub const OCI_LAYER_TAR_GZIP_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation that marks a compat-variant image.
pub const COMPAT_ANNOTATION: &str = "module.wasm.image/variant";
/// The file name Istio looks for inside a compat layer.
pub const COMPAT_WASM_FILE: &str = "plugin.wasm";
/// The annotation naming a tag in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation naming a file (layers) or the image (manifest).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// The proxy-wasm ABI the filter exports (proxy-wasm Rust SDK 0.2).
const ABI_VERSION: &str = "proxy_abi_version_0_2_1";

/// Which image shape to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// Two layers with the Wasm artifact media types (Istio's "oci" variant).
    #[default]
    WasmArtifact,
    /// One `tar+gzip` layer holding `plugin.wasm` (Istio's "compat" variant).
    Compat,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::WasmArtifact => "wasm-artifact",
            ImageFormat::Compat => "compat",
        })
    }
}

/// Why no image could be built or read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The input does not start with the Wasm magic and version.
    #[error("`{0}` is not a WebAssembly module (no `\\0asm` header)")]
    NotWasm(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The output directory holds something other than an OCI image layout.
    #[error("`{0}` exists and is not an empty directory or an OCI image layout; remove it or pick another")]
    DirNotEmpty(PathBuf),
    /// An OCI layout is malformed or its digests do not verify.
    #[error("OCI layout `{path}`: {problem}")]
    BadLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A tag is not a valid OCI tag.
    #[error("`{0}` is not a valid image tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}`)")]
    BadTag(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its media type (as a descriptor would name it).
    pub media_type: &'static str,
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            bytes,
        }
    }

    /// The hex part of the digest.
    pub fn digest_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    fn descriptor(&self, title: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_owned(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            annotations: title.map(|t| Annotations {
                title: Some(t.to_owned()),
                ..Annotations::default()
            }),
        }
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// Optional annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
}

/// The annotations meshward writes (a struct, so the JSON key order is fixed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Annotations {
    /// `module.wasm.image/variant` (compat manifests).
    #[serde(
        rename = "module.wasm.image/variant",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub variant: Option<String>,
    /// `org.opencontainers.image.ref.name` (the tag, in `index.json`).
    #[serde(
        rename = "org.opencontainers.image.ref.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ref_name: Option<String>,
    /// `org.opencontainers.image.title`.
    #[serde(
        rename = "org.opencontainers.image.title",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<Annotations>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: String,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: &'static str,
}

/// The runtime config of the Wasm artifact spec (`type`, `abiVersions`,
/// `config.rootIds`), as solo-io's `wasme` wrote it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    abi_versions: [&'static str; 1],
    config: RuntimeConfigRoots<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfigRoots<'a> {
    root_ids: [&'a str; 1],
}

/// An OCI image config for the compat variant (a WASI module, one layer).
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [String; 1],
}

/// A built image: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// Which shape.
    pub format: ImageFormat,
    /// The manifest (its digest is what `WasmPlugin.sha256` pins).
    pub manifest: Blob,
    /// The blob the manifest's `config` points at.
    pub config: Blob,
    /// The layers, in manifest order.
    pub layers: Vec<Blob>,
}

impl Image {
    /// Builds the image around `wasm`. `root_id` goes into the runtime config
    /// (metadata only: Istio takes the root id from `WasmPlugin.pluginName`).
    pub fn build(wasm: &[u8], format: ImageFormat, root_id: &str) -> Result<Image, OciError> {
        if wasm.get(..4) != Some(b"\0asm".as_slice()) || wasm.len() < 8 {
            return Err(OciError::NotWasm(format!("{} bytes", wasm.len())));
        }
        match format {
            ImageFormat::WasmArtifact => Ok(wasm_artifact(wasm, root_id)),
            ImageFormat::Compat => compat(wasm),
        }
    }

    /// `sha256:<hex>` of the manifest.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Every distinct blob (manifest, config, layers), sorted by digest.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut all: Vec<&Blob> = std::iter::once(&self.manifest)
            .chain(std::iter::once(&self.config))
            .chain(self.layers.iter())
            .collect();
        all.sort_by(|a, b| a.digest.cmp(&b.digest));
        all.dedup_by(|a, b| a.digest == b.digest);
        all
    }

    /// The `index.json` naming this image's manifest with `tag`.
    pub fn index_json(&self, tag: &str) -> Result<Vec<u8>, OciError> {
        check_tag(tag)?;
        let mut descriptor = self.manifest.descriptor(None);
        descriptor.annotations = Some(Annotations {
            ref_name: Some(tag.to_owned()),
            ..Annotations::default()
        });
        Ok(to_json(&Index {
            schema_version: 2,
            media_type: OCI_INDEX_MEDIA_TYPE.to_owned(),
            manifests: vec![descriptor],
        }))
    }

    /// The files of the OCI image layout, relative paths and contents, in the
    /// order a tarball lists them (directories end in `/`, with no content).
    pub fn layout_files(&self, tag: &str) -> Result<Vec<(String, Vec<u8>)>, OciError> {
        let mut files = vec![
            (
                "oci-layout".to_owned(),
                to_json(&OciLayoutFile {
                    image_layout_version: "1.0.0",
                }),
            ),
            ("index.json".to_owned(), self.index_json(tag)?),
            ("blobs/".to_owned(), Vec::new()),
            ("blobs/sha256/".to_owned(), Vec::new()),
        ];
        for blob in self.blobs() {
            files.push((
                format!("blobs/sha256/{}", blob.digest_hex()),
                blob.bytes.clone(),
            ));
        }
        Ok(files)
    }

    /// Writes the OCI image layout into `dir` (created if missing). An
    /// existing directory must be empty or an OCI image layout, which is then
    /// replaced.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> Result<(), OciError> {
        let files = self.layout_files(tag)?;
        prepare_dir(dir)?;
        for (name, bytes) in &files {
            let path = dir.join(name);
            if name.ends_with('/') {
                fs::create_dir_all(&path).map_err(io_err(&path))?;
            } else {
                fs::write(&path, bytes).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// The OCI image layout as a tarball (what `oras cp --from-oci-layout
    /// FILE.tar:TAG` and `docker buildx ... -o type=oci` use).
    pub fn layout_tar(&self, tag: &str) -> Result<Vec<u8>, OciError> {
        let mut tar = TarWriter::default();
        for (name, bytes) in self.layout_files(tag)? {
            if name.ends_with('/') {
                tar.dir(&name);
            } else {
                tar.file(&name, &bytes, 0o644);
            }
        }
        Ok(tar.finish())
    }
}

fn wasm_artifact(wasm: &[u8], root_id: &str) -> Image {
    let runtime_config = Blob::new(
        WASM_CONFIG_MEDIA_TYPE,
        to_json(&RuntimeConfig {
            kind: "envoy_proxy",
            abi_versions: [ABI_VERSION],
            config: RuntimeConfigRoots {
                root_ids: [root_id],
            },
        }),
    );
    let module = Blob::new(WASM_LAYER_MEDIA_TYPE, wasm.to_vec());
    // Istio's extractOCIArtifactImage requires exactly two layers and picks
    // the one with the module media type; the spec lists the runtime config
    // first.
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        config: runtime_config.descriptor(None),
        layers: vec![
            runtime_config.descriptor(Some("runtime-config.json")),
            module.descriptor(Some(COMPAT_WASM_FILE)),
        ],
        annotations: Some(Annotations {
            title: Some("meshward".to_owned()),
            ..Annotations::default()
        }),
    };
    Image {
        format: ImageFormat::WasmArtifact,
        manifest: Blob::new(OCI_MANIFEST_MEDIA_TYPE, to_json(&manifest)),
        config: runtime_config.clone(),
        layers: vec![runtime_config, module],
    }
}

fn compat(wasm: &[u8]) -> Result<Image, OciError> {
    let mut tar = TarWriter::default();
    tar.file(COMPAT_WASM_FILE, wasm, 0o644);
    let tar = tar.finish();
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let layer = Blob::new(OCI_LAYER_TAR_GZIP_MEDIA_TYPE, gzip(&tar)?);
    let config = Blob::new(
        OCI_CONFIG_MEDIA_TYPE,
        to_json(&ImageConfig {
            architecture: "wasm",
            os: "wasip1",
            rootfs: RootFs {
                kind: "layers",
                diff_ids: [diff_id],
            },
        }),
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        config: config.descriptor(None),
        layers: vec![layer.descriptor(None)],
        annotations: Some(Annotations {
            variant: Some("compat".to_owned()),
            title: Some("meshward".to_owned()),
            ..Annotations::default()
        }),
    };
    Ok(Image {
        format: ImageFormat::Compat,
        manifest: Blob::new(OCI_MANIFEST_MEDIA_TYPE, to_json(&manifest)),
        config,
        layers: vec![layer],
    })
}

/// What [`read_layout`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSummary {
    /// `sha256:<hex>` of the manifest the tag names.
    pub manifest_digest: String,
    /// The tag (`org.opencontainers.image.ref.name`), if any.
    pub tag: Option<String>,
    /// The layer media types, in order.
    pub layer_media_types: Vec<String>,
}

/// Reads an OCI image layout directory, picks the manifest tagged `tag` (or
/// the only one), and verifies the digests and sizes of the manifest, its
/// config and its layers.
pub fn read_layout(dir: &Path, tag: Option<&str>) -> Result<LayoutSummary, OciError> {
    let bad = |problem: String| OciError::BadLayout {
        path: dir.to_path_buf(),
        problem,
    };
    let index_path = dir.join("index.json");
    let index: Index = serde_json::from_slice(&fs::read(&index_path).map_err(io_err(&index_path))?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let tagged = |d: &&Descriptor| {
        let name = d.annotations.as_ref().and_then(|a| a.ref_name.as_deref());
        tag.is_none_or(|t| name == Some(t))
    };
    let candidates: Vec<&Descriptor> = index.manifests.iter().filter(tagged).collect();
    let [descriptor] = candidates.as_slice() else {
        return Err(bad(match tag {
            Some(t) => format!("{} manifests tagged `{t}`", candidates.len()),
            None => format!("{} manifests; name one with a tag", index.manifests.len()),
        }));
    };
    let manifest_bytes = read_blob(dir, descriptor)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("manifest: {e}")))?;
    read_blob(dir, &manifest.config)?;
    for layer in &manifest.layers {
        read_blob(dir, layer)?;
    }
    Ok(LayoutSummary {
        manifest_digest: descriptor.digest.clone(),
        tag: descriptor
            .annotations
            .as_ref()
            .and_then(|a| a.ref_name.clone()),
        layer_media_types: manifest
            .layers
            .iter()
            .map(|l| l.media_type.clone())
            .collect(),
    })
}

/// Reads the blob `descriptor` points at and checks its size and digest.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, OciError> {
    let bad = |problem: String| OciError::BadLayout {
        path: dir.to_path_buf(),
        problem,
    };
    let hex = descriptor
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(format!("unsupported digest `{}`", descriptor.digest)))?;
    let path = dir.join("blobs").join("sha256").join(hex);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    if bytes.len() as u64 != descriptor.size {
        return Err(bad(format!(
            "blob {} is {} bytes, its descriptor says {}",
            descriptor.digest,
            bytes.len(),
            descriptor.size
        )));
    }
    if sha256_hex(&bytes) != hex {
        return Err(bad(format!(
            "blob {} does not match its digest",
            descriptor.digest
        )));
    }
    Ok(bytes)
}

fn prepare_dir(dir: &Path) -> Result<(), OciError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fs::create_dir_all(dir).map_err(io_err(dir));
        }
        Err(e) => return Err(io_err(dir)(e)),
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours = ["oci-layout", "index.json", "blobs"];
    if names.is_empty() {
        return Ok(());
    }
    if !names.iter().any(|n| n == "oci-layout") || names.iter().any(|n| !ours.contains(&n.as_str()))
    {
        return Err(OciError::DirNotEmpty(dir.to_path_buf()));
    }
    // An OCI layout (ours, from an earlier run): replace it whole.
    let blobs = dir.join("blobs");
    if blobs.exists() {
        fs::remove_dir_all(&blobs).map_err(io_err(&blobs))?;
    }
    for name in ["oci-layout", "index.json"] {
        let path = dir.join(name);
        if path.exists() {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), OciError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(OciError::BadTag(tag.to_owned()))
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    meshward_engine::codec::hex(&Sha256::digest(bytes))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, OciError> {
    // No file name, mtime 0: the same input always gives the same bytes.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let path = Path::new("<gzip>");
    encoder.write_all(bytes).map_err(io_err(path))?;
    encoder.finish().map_err(io_err(path))
}

/// A minimal ustar writer: regular files and directories, owner root, mtime
/// 0. Names must fit the 100-byte name field (ours are at most 77 bytes).
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn file(&mut self, name: &str, bytes: &[u8], mode: u32) {
        self.header(name, bytes.len() as u64, mode, b'0');
        self.out.extend_from_slice(bytes);
        self.pad();
    }

    fn dir(&mut self, name: &str) {
        self.header(name, 0, 0o755, b'5');
    }

    fn header(&mut self, name: &str, size: u64, mode: u32, kind: u8) {
        let mut h = [0u8; 512];
        put(&mut h, 0, 100, name.as_bytes());
        put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, 8, b"0000000\0");
        put(&mut h, 116, 8, b"0000000\0");
        put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
        put(&mut h, 136, 12, b"00000000000\0");
        put(&mut h, 148, 8, b"        ");
        put(&mut h, 156, 1, &[kind]);
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        put(&mut h, 265, 32, b"root");
        put(&mut h, 297, 32, b"root");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
    }

    fn pad(&mut self) {
        let rem = self.out.len() % 512;
        if rem != 0 {
            self.out.resize(self.out.len() + 512 - rem, 0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }
}

/// Copies `value` into `header[at..at + len]`, truncated to `len`.
fn put(header: &mut [u8; 512], at: usize, len: usize, value: &[u8]) {
    for (dst, src) in header.iter_mut().skip(at).take(len).zip(value) {
        *dst = *src;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0 a tiny module";

    #[test]
    fn refuses_what_is_not_wasm() {
        assert!(matches!(
            Image::build(b"hello world", ImageFormat::WasmArtifact, "meshward"),
            Err(OciError::NotWasm(_))
        ));
    }

    #[test]
    fn same_module_same_digest() {
        for format in [ImageFormat::WasmArtifact, ImageFormat::Compat] {
            let a = Image::build(WASM, format, "meshward").unwrap();
            let b = Image::build(WASM, format, "meshward").unwrap();
            assert_eq!(a.manifest_digest(), b.manifest_digest());
            assert_eq!(a.layout_tar("v1").unwrap(), b.layout_tar("v1").unwrap());
        }
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let mut tar = TarWriter::default();
        tar.file("plugin.wasm", WASM, 0o644);
        let out = tar.finish();
        assert_eq!(out.len(), 512 + 512 + 1024);
        let header = &out[..512];
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let mut copy = header.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&out[512..512 + WASM.len()], WASM);
    }

    #[test]
    fn tags_are_checked() {
        assert!(check_tag("0.1.0").is_ok());
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("-bad").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag("").is_err());
    }
}
