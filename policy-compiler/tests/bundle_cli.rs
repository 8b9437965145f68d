//! `meshward bundle` and `meshward bundle verify` through the binary: pack,
//! chain revisions with `--after`, verify with the right key, refuse a
//! foreign key and a damaged file.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .output()
        .expect("run meshward")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshward-bundle-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn bundle_pack_chain_and_verify() {
    let dir = scratch();
    let shop = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop.policy");
    let (config, key, other) = (dir.join("c.json"), dir.join("k.pem"), dir.join("o.pem"));
    let (one, two) = (dir.join("1.bundle"), dir.join("2.bundle"));
    assert!(meshward(&["compile", s(&shop), "-o", s(&config)])
        .status
        .success());
    let public = text(&meshward(&["keygen", "-o", s(&key)]).stdout);
    let foreign = text(&meshward(&["keygen", "-o", s(&other)]).stdout);

    let out = meshward(&[
        "bundle",
        "--config",
        s(&config),
        "--key",
        s(&key),
        "--revision",
        "1",
        "-o",
        s(&one),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = meshward(&[
        "bundle",
        "--config",
        s(&config),
        "--key",
        s(&key),
        "--after",
        s(&one),
        "-o",
        s(&two),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["revision"], 2);
    assert_eq!(&std::fs::read(&two).unwrap()[..4], b"MWBN");

    let out = meshward(&[
        "bundle",
        "verify",
        s(&two),
        "--public-key",
        public.trim(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["revision"], 2);
    assert_eq!(facts["policy_hash"], summary["policy_hash"]);

    let out = meshward(&["bundle", "verify", s(&two), "--public-key", foreign.trim()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not one of the pinned bundle keys"),
        "{}",
        text(&out.stderr)
    );

    let mut damaged = std::fs::read(&two).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    std::fs::write(&two, damaged).unwrap();
    let out = meshward(&["bundle", "verify", s(&two), "--public-key", public.trim()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not verify"),
        "{}",
        text(&out.stderr)
    );

    // Revision 0 and a configuration the filter would refuse are not packed.
    let out = meshward(&[
        "bundle",
        "--config",
        s(&config),
        "--key",
        s(&key),
        "--revision",
        "0",
        "-o",
        s(&one),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = meshward(&[
        "bundle",
        "--config",
        s(&key),
        "--key",
        s(&key),
        "--revision",
        "3",
        "-o",
        s(&one),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a plugin configuration"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
