//! Helpers shared by the integration tests.
#![allow(dead_code)]

use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` next to the checkout, or `None` (with a note) when it is missing.
pub fn shared() -> Option<PathBuf> {
    let p = root().join("../shared");
    if p.join("README.md").exists() {
        Some(p)
    } else {
        eprintln!("skipped: ../shared not found (it holds the reference data; CI has it)");
        None
    }
}

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file)
        .finish()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh temporary folder removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Path of the built `omopkit` binary.
pub fn omopkit_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_omopkit"))
}
