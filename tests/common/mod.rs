//! Helpers shared by the integration tests.
#![allow(dead_code)]

use polars::prelude::*;
use std::collections::BTreeMap;
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

/// Writes the Synthea pack's source files (header from the pack) with the given rows
/// (`file` → lines after the header), and a tiny vocabulary.
pub fn synthea_sources(dir: &Path, rows: &[(&str, &[&str])]) -> (PathBuf, PathBuf) {
    let pack = omop_core::mapping::load_pack(&root().join("mappings/synthea")).expect("pack");
    let src = dir.join("source");
    std::fs::create_dir_all(&src).unwrap();
    let rows: BTreeMap<&str, &[&str]> = rows.iter().copied().collect();
    for source in pack.sources.values() {
        let mut text = source.columns.join(",") + "\n";
        for line in rows.get(source.file.as_str()).copied().unwrap_or(&[]) {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(src.join(&source.file), text).unwrap();
    }
    let vocab = dir.join("vocab");
    std::fs::create_dir_all(&vocab).unwrap();
    std::fs::write(
        vocab.join("concept.csv"),
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
         201826,Type 2 diabetes mellitus,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31,\n",
    )
    .unwrap();
    std::fs::write(
        vocab.join("concept_relationship.csv"),
        "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n201826,201826,Maps to,1970-01-01,2099-12-31,\n",
    )
    .unwrap();
    (src, vocab)
}
