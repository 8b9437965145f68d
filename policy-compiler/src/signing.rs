//! Policy signing keys: generation (`meshward keygen`), the private key
//! file, and signing a compiled policy's plugin configuration
//! (`meshward compile --sign KEY`). Verification lives in the engine
//! (`meshward_engine::signature`), beside the configuration loader.
//!
//! The private key file is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the
//! format `openssl genpkey -algorithm ed25519` writes, so keys made either
//! way work. `keygen` creates it readable by its owner only (`0600`). The
//! private key is never printed; error messages name the file, never its
//! content.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::SigningKey;
use meshward_engine::signature::{self, PublicKey};

use crate::Compiled;

/// A fresh key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, String> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut())
        .map_err(|e| format!("cannot get random bytes from the operating system: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key as `keygen` prints it and `require_signature.keys` lists it.
pub fn public_key_base64(key: &SigningKey) -> String {
    PublicKey::of_signing_key(key).to_base64()
}

/// The key id that signatures by `key` carry.
pub fn key_id(key: &SigningKey) -> String {
    PublicKey::of_signing_key(key).id().to_string()
}

/// Writes `key` as PKCS#8 PEM to a new file only its owner can read.
/// Refuses to replace an existing file unless `force`.
pub fn write_private_key(path: &Path, key: &SigningKey, force: bool) -> Result<(), String> {
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|_| "cannot encode the private key".to_owned())?;
    if force && path.exists() {
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot replace `{}`: {e}", path.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "`{}` already exists: keygen never overwrites a key (use --force to replace it)",
            path.display()
        ),
        _ => format!("cannot create `{}`: {e}", path.display()),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict `{}` to its owner: {e}", path.display()))?;
    }
    use std::io::Write as _;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// A private key file, and a warning when others may read it.
pub fn read_private_key(path: &Path) -> Result<(SigningKey, Option<String>), String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key `{}`: {e}", path.display()))?,
    );
    let key = SigningKey::from_pkcs8_pem(&text).map_err(|_| {
        format!(
            "`{}` is not an Ed25519 private key in PKCS#8 PEM (as `meshward keygen` or `openssl genpkey -algorithm ed25519` write)",
            path.display()
        )
    })?;
    let mut warning = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                warning = Some(format!(
                    "private key `{}` is readable by others (mode {:o}): `chmod 600` it",
                    path.display(),
                    mode & 0o777
                ));
            }
        }
    }
    Ok((key, warning))
}

/// Adds `signature` over `compiled`'s bytes to its plugin configuration.
pub fn sign_config(config: &mut serde_json::Value, compiled: &Compiled, key: &SigningKey) {
    let signature = signature::sign(key, &compiled.bytes);
    if let Some(object) = config.as_object_mut() {
        object.insert("signature".to_owned(), signature.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_engine::signature::{PolicySignature, TrustedKeys};

    #[test]
    fn key_file_round_trip_and_signature() {
        let dir = std::env::temp_dir().join(format!("meshward-signing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let _ = std::fs::remove_file(&path);
        let key = generate_key().unwrap();
        write_private_key(&path, &key, false).unwrap();
        let err = write_private_key(&path, &key, false).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        let (read, warning) = read_private_key(&path).unwrap();
        assert_eq!(read.to_bytes(), key.to_bytes());
        assert_eq!(warning, None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(read_private_key(&path).unwrap().1.is_some());
        }
        let compiled = crate::compile_source(
            "policy \"p\" {\n  trust_domains \"a.example\"\n}\nintent i { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            "p.policy",
        )
        .unwrap();
        let mut config = compiled.plugin_config_value(&[]);
        sign_config(&mut config, &compiled, &read);
        let sig = PolicySignature::from_json(&config["signature"].to_string()).unwrap();
        assert_eq!(sig.key_id.to_string(), key_id(&key));
        let trusted = TrustedKeys::from_requirement_json(
            &serde_json::json!({"keys": [public_key_base64(&key)]}).to_string(),
        )
        .unwrap();
        assert!(signature::verify(&compiled.bytes, Some(&sig), &trusted).is_ok());
        // The file is not a key: the message names the file, not its bytes.
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = read_private_key(&path).unwrap_err();
        assert!(
            err.contains("not an Ed25519 private key") && !err.contains("AAAA"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
