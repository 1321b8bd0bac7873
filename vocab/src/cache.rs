//! The Parquet cache of a loaded vocabulary.
//!
//! A cache entry is a folder `vocab-<fingerprint>` holding one Parquet file per
//! table plus `maps.parquet` (the valid 'Maps to' / 'Maps to value' rows) and
//! `manifest.json`. The fingerprint covers the cache format version and the
//! name, size and modification time of every source file, so any change to
//! the source folder invalidates the entry. Entries are written to a temporary
//! folder and renamed into place, so a reader never sees a half-written entry.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, VocabError};

/// Bump when the layout or the meaning of cached files changes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Name of the default cache folder inside a vocabulary folder.
pub const DEFAULT_CACHE_DIR_NAME: &str = ".omopkit-cache";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format_version: u32,
    pub fingerprint: String,
    pub source_dir: String,
    /// Tables present in the source, by CDM name.
    pub tables: Vec<String>,
}

/// Fingerprint of the source files: format version plus each file's name,
/// size and modification time.
pub(crate) fn fingerprint(files: &[PathBuf]) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("omopkit-vocab-cache/{FORMAT_VERSION}\n").as_bytes());
    for path in files {
        let meta = std::fs::metadata(path).map_err(|e| VocabError::io(path, "cannot stat", e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update(format!("{name}\t{}\t{mtime}\n", meta.len()).as_bytes());
    }
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

pub(crate) fn entry_name(fingerprint: &str) -> String {
    format!("vocab-{fingerprint}")
}

/// Reads and checks the manifest of a cache entry; `None` when absent or stale.
pub(crate) fn read_manifest(entry: &Path, fingerprint: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(entry.join("manifest.json")).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    (manifest.format_version == FORMAT_VERSION && manifest.fingerprint == fingerprint)
        .then_some(manifest)
}

pub(crate) fn parquet_path(entry: &Path, name: &str) -> PathBuf {
    entry.join(format!("{name}.parquet"))
}

pub(crate) fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let file = File::create(path).map_err(|e| VocabError::io(path, "cannot create", e))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Lz4Raw)
        .finish(df)
        .map_err(|e| VocabError::Cache {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(())
}

pub(crate) fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).map_err(|e| VocabError::io(path, "cannot open", e))?;
    let mut df = ParquetReader::new(file)
        .finish()
        .map_err(|e| VocabError::Cache {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    df.rechunk_mut();
    Ok(df)
}

/// True when the folder's permission bits forbid writing (or it cannot be
/// inspected).
pub(crate) fn is_read_only(dir: &Path) -> bool {
    std::fs::metadata(dir).map_or(true, |m| m.permissions().readonly())
}

/// A cache entry being written: a temporary folder renamed on commit.
pub(crate) struct PendingEntry {
    pub tmp: PathBuf,
    pub final_path: PathBuf,
    root: PathBuf,
}

impl PendingEntry {
    /// Creates the temporary folder under `root`; fails if `root` is not writable.
    pub(crate) fn create(root: &Path, fingerprint: &str) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| VocabError::io(root, "cannot create", e))?;
        if is_read_only(root) {
            return Err(VocabError::io(
                root,
                "cannot write to",
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            ));
        }
        let name = entry_name(fingerprint);
        let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        std::fs::create_dir(&tmp).map_err(|e| VocabError::io(&tmp, "cannot create", e))?;
        Ok(PendingEntry {
            final_path: root.join(name),
            tmp,
            root: root.to_path_buf(),
        })
    }

    /// Writes the manifest and renames the folder into place. Stale entries
    /// made from the same source folder are removed afterwards.
    pub(crate) fn commit(self, manifest: &Manifest) -> Result<PathBuf> {
        let text = serde_json::to_string_pretty(manifest).map_err(|e| VocabError::Cache {
            path: self.tmp.clone(),
            message: e.to_string(),
        })?;
        let mpath = self.tmp.join("manifest.json");
        std::fs::write(&mpath, text).map_err(|e| VocabError::io(&mpath, "cannot write", e))?;
        if let Err(e) = std::fs::rename(&self.tmp, &self.final_path) {
            // Another process may have committed the same entry first.
            let _ = std::fs::remove_dir_all(&self.tmp);
            if read_manifest(&self.final_path, &manifest.fingerprint).is_none() {
                return Err(VocabError::io(
                    &self.final_path,
                    "cannot rename cache into",
                    e,
                ));
            }
        }
        prune_stale(&self.root, &self.final_path, &manifest.source_dir);
        Ok(self.final_path)
    }

    /// Removes the temporary folder.
    pub(crate) fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Removes older entries that were built from the same source folder.
fn prune_stale(root: &Path, keep: &Path, source_dir: &str) {
    let Ok(read) = std::fs::read_dir(root) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let is_entry = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vocab-"));
        if !is_entry || path == keep {
            continue;
        }
        let same_source = std::fs::read_to_string(path.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
            .is_some_and(|m| m.source_dir == source_dir);
        if same_source {
            tracing::debug!(entry = %path.display(), "removing stale vocabulary cache entry");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
