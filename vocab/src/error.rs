//! Error type of the vocabulary store.

use std::path::PathBuf;

/// Everything that can go wrong while loading or querying a vocabulary.
///
/// Messages name the file, the line (1-based, the header being line 1) and the
/// column concerned, and say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    /// A file or folder could not be read or written.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The vocabulary folder has no concept table.
    #[error(
        "{dir}: no concept table found (expected CONCEPT.csv from an Athena download, \
         concept.csv or concept_seed.csv)"
    )]
    MissingConceptFile {
        /// The folder that was searched.
        dir: PathBuf,
    },

    /// A file is empty where a header line was expected.
    #[error("{path}: line 1: the file is empty, expected a header line")]
    EmptyFile {
        /// The file concerned.
        path: PathBuf,
    },

    /// A required column is missing from a file's header.
    #[error("{path}: line 1: missing column `{column}` (expected columns: {expected})")]
    MissingColumn {
        /// The file concerned.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// All the columns the file must have, comma-separated.
        expected: String,
    },

    /// A value could not be parsed as the type its column requires.
    #[error("{path}: line {line}: column `{column}`: cannot read `{value}` as {expected}")]
    BadValue {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// The column concerned.
        column: String,
        /// The offending text (truncated to 40 characters).
        value: String,
        /// What was expected, e.g. "a date (YYYYMMDD or YYYY-MM-DD)".
        expected: &'static str,
    },

    /// A required value is empty.
    #[error("{path}: line {line}: column `{column}` is empty, expected {expected}")]
    EmptyValue {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// The column concerned.
        column: String,
        /// What was expected.
        expected: &'static str,
    },

    /// A local concept has an id below the local range.
    #[error(
        "{path}: line {line}: concept_id {concept_id} is below 2000000000; \
         local concepts must use ids of 2000000000 and above"
    )]
    LocalConceptId {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending id.
        concept_id: i32,
    },

    /// A row breaks a rule of the file format (duplicate id, unknown status, ...).
    #[error("{path}: line {line}: {message}")]
    InvalidRow {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },

    /// The CSV parser rejected a file (ragged lines, bad encoding, ...).
    #[error("{path}: cannot parse as {format}: {message}")]
    Csv {
        /// The file concerned.
        path: PathBuf,
        /// "tab-separated" or "comma-separated".
        format: &'static str,
        /// The parser's message.
        message: String,
    },

    /// The Parquet cache could not be read or written.
    #[error("{path}: vocabulary cache: {message}")]
    Cache {
        /// The cache file or folder concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An internal data-frame operation failed.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: polars::error::PolarsError,
    },
}

impl VocabError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        VocabError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        VocabError::Polars {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = VocabError> = std::result::Result<T, E>;

/// Truncates a value for an error message.
pub(crate) fn snippet(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}
