//! `meshward fmt`: a golden case, and over every `.policy` file in the
//! repository: formatting is idempotent, and formatted source compiles to
//! the same policy hash.
//!
//! Refresh the golden output after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p meshward-policy --test fmt`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};

use meshward_policy::compile_source;
use meshward_policy::fmt::format_source;
use meshward_policy::syntax::{lex_with_comments, TokenKind};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every `.policy` file under `dir`, skipping build output, VCS data and
/// hidden directories.
fn policy_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                policy_files(&path, found);
            }
        } else if name.ends_with(".policy") {
            found.push(path);
        }
    }
}

/// The text of every token but line ends, and every comment (trimmed).
fn words(source: &str) -> Vec<String> {
    let lexed = lex_with_comments(source);
    let text =
        |span: meshward_policy::span::Span| source[span.start..span.end].trim_end().to_owned();
    lexed
        .tokens
        .iter()
        .filter(|t| t.kind != TokenKind::Newline)
        .map(|t| text(t.span))
        .chain(lexed.comments.iter().map(|c| text(*c)))
        .collect()
}

#[test]
fn golden_formatting() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fmt");
    let source = fs::read_to_string(dir.join("messy.policy")).unwrap();
    let formatted = format_source(&source, "messy.policy").unwrap();
    let expected_path = dir.join("messy.formatted.policy");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&expected_path, &formatted).unwrap();
    }
    let expected = fs::read_to_string(&expected_path).unwrap();
    assert_eq!(formatted, expected, "UPDATE_GOLDEN=1 to refresh");
    assert_ne!(formatted, source, "the golden input should need formatting");
}

#[test]
fn every_policy_in_the_repository_formats_idempotently_to_the_same_hash() {
    let mut files = Vec::new();
    policy_files(&workspace(), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} policy files", files.len());
    let mut formatted_count = 0;
    let mut compiled_count = 0;
    for path in &files {
        let name = path.display().to_string();
        let source = fs::read_to_string(path).unwrap();
        // Fixtures of syntax errors are not formatted (and say so).
        let Ok(once) = format_source(&source, &name) else {
            assert!(
                !meshward_policy::syntax::parse(&source).1.is_empty(),
                "{name}: fmt refused a file without syntax errors"
            );
            continue;
        };
        formatted_count += 1;
        let twice = format_source(&once, &name).unwrap();
        assert_eq!(once, twice, "{name}: fmt is not idempotent");
        assert_eq!(
            words(&once),
            words(&source),
            "{name}: formatting changed a token or a comment"
        );
        if let Ok(original) = compile_source(&source, &name) {
            let formatted = compile_source(&once, &name)
                .unwrap_or_else(|d| panic!("{name}: formatted source does not compile:\n{d}"));
            assert_eq!(original.hash_hex(), formatted.hash_hex(), "{name}");
            compiled_count += 1;
        } else {
            assert!(compile_source(&once, &name).is_err(), "{name}");
        }
    }
    assert!(
        formatted_count > 40 && compiled_count > 15,
        "{formatted_count} / {compiled_count}"
    );
}
