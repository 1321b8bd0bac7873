//! Errors of the cohort engine.

use std::path::PathBuf;

/// Everything that can go wrong while reading a definition, loading a CDM or
/// evaluating a cohort.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    /// The definition is not valid JSON, or a field has a value Circe would
    /// also reject. The message carries serde_json's line and column.
    #[error("{file}: invalid cohort definition: {source}")]
    Json {
        /// The definition file (or `<string>`).
        file: String,
        /// The underlying parse error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// The definition uses an element this engine does not evaluate yet.
    #[error("unsupported cohort element: {0}")]
    Unsupported(String),

    /// The definition is well-formed JSON but incomplete or inconsistent in a
    /// way Circe also rejects (for example a missing `PrimaryCriteria`).
    #[error("invalid cohort definition: {0}")]
    Invalid(String),

    /// A CDM table could not be read.
    #[error("{}: cannot read CDM table: {message}", path.display())]
    Cdm {
        /// The Parquet file or folder.
        path: PathBuf,
        /// What went wrong, naming the column where relevant.
        message: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The on-disk index is missing, from another version, or corrupt.
    #[error("{}: invalid cohort index: {message}", path.display())]
    Index {
        /// The index folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = CohortError> = std::result::Result<T, E>;
