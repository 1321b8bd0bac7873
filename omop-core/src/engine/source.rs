//! Reading source tables: header checks and lazy scans with row numbers.

use super::EtlError;
use crate::mapping::Source;
use polars::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Name of the column holding the 1-based data row number of a source row.
pub const ROW: &str = "__row";

/// A source table resolved against the source folder.
#[derive(Debug, Clone)]
pub struct SourceTable {
    /// The file.
    pub path: PathBuf,
    /// The file name as given in the pack (reported in lineage).
    pub file: String,
    /// The field separator.
    pub separator: u8,
    /// The columns read.
    pub columns: Vec<String>,
}

impl SourceTable {
    /// Resolves `source` in `dir` and checks that its header has every declared column.
    pub fn open(source: &Source, dir: &Path) -> Result<Self, EtlError> {
        let path = dir.join(&source.file);
        let separator = source.separator.unwrap_or(',');
        if !separator.is_ascii() {
            return Err(EtlError::Source {
                file: path,
                message: format!("separator `{separator}` must be an ASCII character"),
            });
        }
        let header = read_header(&path, separator as u8)?;
        for column in &source.columns {
            if !header.iter().any(|h| h == column) {
                return Err(EtlError::MissingColumn {
                    file: path,
                    column: column.clone(),
                    found: header.join(", "),
                });
            }
        }
        Ok(Self {
            path,
            file: source.file.clone(),
            separator: separator as u8,
            columns: source.columns.clone(),
        })
    }

    /// A lazy scan of the declared columns, all as text, plus [`ROW`].
    pub fn scan(&self) -> Result<LazyFrame, EtlError> {
        self.scan_with(
            |r| {
                r.with_row_index(Some(RowIndex {
                    name: ROW.into(),
                    offset: 1,
                }))
            },
            true,
        )
    }

    /// Like [`SourceTable::scan`], for the `len` data rows after the first `offset`;
    /// [`ROW`] still counts from the start of the file.
    pub fn scan_slice(&self, offset: u64, len: u64) -> Result<LazyFrame, EtlError> {
        let start = IdxSize::try_from(offset + 1).map_err(|_| EtlError::Source {
            file: self.path.clone(),
            message: "too many rows for one file".into(),
        })?;
        self.scan_with(
            |r| {
                r.with_skip_rows_after_header(offset as usize)
                    .with_n_rows(Some(len as usize))
                    .with_row_index(Some(RowIndex {
                        name: ROW.into(),
                        offset: start,
                    }))
            },
            true,
        )
    }

    /// The number of data rows in the file.
    pub fn count_rows(&self) -> Result<u64, EtlError> {
        let df = self
            .scan_with(|r| r, false)?
            .select([len().cast(DataType::UInt64).alias("n")])
            .collect()
            .map_err(|e| EtlError::Source {
                file: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(df
            .column("n")
            .ok()
            .and_then(|c| c.u64().ok().and_then(|v| v.get(0)))
            .unwrap_or(0))
    }

    fn scan_with(
        &self,
        configure: impl FnOnce(LazyCsvReader) -> LazyCsvReader,
        row_index: bool,
    ) -> Result<LazyFrame, EtlError> {
        let path = self.path.to_str().ok_or_else(|| EtlError::Source {
            file: self.path.clone(),
            message: "the path is not valid UTF-8".into(),
        })?;
        let reader = LazyCsvReader::new(PlRefPath::new(path))
            .with_has_header(true)
            .with_separator(self.separator)
            .with_infer_schema_length(Some(0))
            .with_missing_is_null(true);
        let lf = configure(reader).finish().map_err(|e| EtlError::Source {
            file: self.path.clone(),
            message: e.to_string(),
        })?;
        if !row_index {
            return Ok(lf);
        }
        let mut cols: Vec<Expr> = vec![col(ROW).cast(DataType::UInt64)];
        cols.extend(self.columns.iter().map(|c| col(c.as_str())));
        Ok(lf.select(cols))
    }
}

/// Reads the header line and splits it (quotes around names are removed, a UTF-8 BOM is skipped).
fn read_header(path: &Path, separator: u8) -> Result<Vec<String>, EtlError> {
    let file = std::fs::File::open(path).map_err(|e| EtlError::Source {
        file: path.to_path_buf(),
        message: format!("cannot open: {e}"),
    })?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| EtlError::Source {
            file: path.to_path_buf(),
            message: format!("cannot read the header line: {e}"),
        })?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Err(EtlError::Source {
            file: path.to_path_buf(),
            message: "the file is empty: expected a header line".into(),
        });
    }
    Ok(line
        .split(separator as char)
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect())
}
