//! Reading delimited vocabulary files into typed data frames.
//!
//! The separator is detected from the header line: a tab means an Athena
//! download (no quoting at all, since concept names contain stray quotes),
//! anything else is read as RFC 4180 comma-separated text with `"` quoting.
//! Dates are accepted as `YYYYMMDD` (Athena) or `YYYY-MM-DD`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::error::{Result, VocabError, snippet};

/// The type a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    /// 32-bit integer (ids, levels).
    Int,
    /// 64-bit float.
    Float,
    /// Text.
    Str,
    /// Calendar date.
    Date,
}

/// One column a table expects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColSpec {
    pub name: &'static str,
    pub ty: ColType,
    /// The header must contain this column.
    pub required: bool,
    /// Empty values are allowed.
    pub nullable: bool,
}

impl ColSpec {
    /// A column that must be present and non-empty.
    pub(crate) const fn key(name: &'static str, ty: ColType) -> Self {
        ColSpec {
            name,
            ty,
            required: true,
            nullable: false,
        }
    }
    /// A column that must be present but may have empty values.
    pub(crate) const fn col(name: &'static str, ty: ColType) -> Self {
        ColSpec {
            name,
            ty,
            required: true,
            nullable: true,
        }
    }
    /// A column that may be absent (it is then all-null).
    pub(crate) const fn opt(name: &'static str, ty: ColType) -> Self {
        ColSpec {
            name,
            ty,
            required: false,
            nullable: true,
        }
    }
}

/// How a file is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dialect {
    pub separator: u8,
    pub quote: Option<u8>,
}

impl Dialect {
    fn describe(&self) -> &'static str {
        if self.separator == b'\t' {
            "tab-separated"
        } else {
            "comma-separated"
        }
    }
}

/// Reads the header line and detects the dialect.
pub(crate) fn sniff(path: &Path) -> Result<(Dialect, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(|e| VocabError::io(path, "cannot open", e))?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| VocabError::io(path, "cannot read the header line", e))?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Err(VocabError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let dialect = if line.contains('\t') {
        Dialect {
            separator: b'\t',
            quote: None,
        }
    } else {
        Dialect {
            separator: b',',
            quote: Some(b'"'),
        }
    };
    let header = line
        .split(dialect.separator as char)
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect();
    Ok((dialect, header))
}

/// Reads `path` and returns a frame with exactly the columns of `specs`, in
/// that order, typed as asked. Other columns of the file are ignored.
pub(crate) fn read_table(path: &Path, specs: &[ColSpec]) -> Result<DataFrame> {
    let (dialect, header) = sniff(path)?;
    let lower: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();

    // Which header position each spec comes from.
    let mut positions: Vec<Option<usize>> = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = lower
            .iter()
            .position(|h| h == &spec.name.to_ascii_lowercase());
        if pos.is_none() && spec.required {
            return Err(VocabError::MissingColumn {
                path: path.to_path_buf(),
                column: spec.name.to_string(),
                expected: specs
                    .iter()
                    .filter(|s| s.required)
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        positions.push(pos);
    }

    let typed = read_raw(path, dialect, &header, specs, &positions, false);
    let mut df = match typed {
        Ok(df) => df,
        Err(err) => {
            // Find the offending line by reading everything as text.
            let text = read_raw(path, dialect, &header, specs, &positions, true).map_err(|e| {
                VocabError::Csv {
                    path: path.to_path_buf(),
                    format: dialect.describe(),
                    message: e.to_string(),
                }
            })?;
            diagnose_numbers(path, &text, specs)?;
            return Err(VocabError::Csv {
                path: path.to_path_buf(),
                format: dialect.describe(),
                message: err.to_string(),
            });
        }
    };
    df.rechunk_mut();
    let height = df.height();

    let mut columns: Vec<Column> = Vec::with_capacity(specs.len());
    for (spec, pos) in specs.iter().zip(&positions) {
        let column = match pos {
            None => Column::full_null(spec.name.into(), height, &dtype_of(spec.ty)),
            Some(_) => {
                let c = df
                    .column(spec.name)
                    .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
                match spec.ty {
                    ColType::Date => parse_date_column(path, spec.name, c)?,
                    ColType::Str => empty_to_null(path, c)?,
                    ColType::Int | ColType::Float => c.clone(),
                }
            }
        };
        if !spec.nullable
            && let Some(row) = first_null(&column)
        {
            return Err(VocabError::EmptyValue {
                path: path.to_path_buf(),
                line: row + 2,
                column: spec.name.to_string(),
                expected: expected_text(spec.ty),
            });
        }
        columns.push(column);
    }
    DataFrame::new(height, columns).map_err(|e| VocabError::polars(path.display().to_string(), e))
}

fn dtype_of(ty: ColType) -> DataType {
    match ty {
        ColType::Int => DataType::Int32,
        ColType::Float => DataType::Float64,
        ColType::Str => DataType::String,
        ColType::Date => DataType::Date,
    }
}

fn expected_text(ty: ColType) -> &'static str {
    match ty {
        ColType::Int => "an integer",
        ColType::Float => "a number",
        ColType::Str => "a value",
        ColType::Date => "a date (YYYYMMDD or YYYY-MM-DD)",
    }
}

fn read_raw(
    path: &Path,
    dialect: Dialect,
    header: &[String],
    specs: &[ColSpec],
    positions: &[Option<usize>],
    all_text: bool,
) -> PolarsResult<DataFrame> {
    let mut schema = Schema::with_capacity(header.len());
    for i in 0..header.len() {
        let spec = positions
            .iter()
            .position(|p| *p == Some(i))
            .map(|k| &specs[k]);
        match spec {
            Some(spec) => {
                let dtype = match spec.ty {
                    ColType::Int if !all_text => DataType::Int32,
                    ColType::Float if !all_text => DataType::Float64,
                    _ => DataType::String,
                };
                schema.insert(spec.name.into(), dtype);
            }
            None => {
                schema.insert(format!("__ignored_{i}").into(), DataType::String);
            }
        }
    }
    let wanted: Arc<[PlSmallStr]> = specs
        .iter()
        .zip(positions)
        .filter(|(_, p)| p.is_some())
        .map(|(s, _)| PlSmallStr::from(s.name))
        .collect();
    let parse = CsvParseOptions::default()
        .with_separator(dialect.separator)
        .with_quote_char(dialect.quote)
        .with_truncate_ragged_lines(true);
    CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(Arc::new(schema)))
        .with_columns(Some(wanted))
        .with_parse_options(parse)
        .with_raise_if_empty(false)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))?
        .finish()
}

/// Locates the first integer or float value that does not parse.
fn diagnose_numbers(path: &Path, text: &DataFrame, specs: &[ColSpec]) -> Result<()> {
    for spec in specs {
        if !matches!(spec.ty, ColType::Int | ColType::Float) {
            continue;
        }
        let Ok(col) = text.column(spec.name) else {
            continue;
        };
        let Ok(ca) = col.str() else { continue };
        for (row, value) in ca.iter().enumerate() {
            let Some(v) = value else { continue };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let ok = match spec.ty {
                ColType::Int => v.parse::<i32>().is_ok(),
                _ => v.parse::<f64>().is_ok(),
            };
            if !ok {
                return Err(VocabError::BadValue {
                    path: path.to_path_buf(),
                    line: row + 2,
                    column: spec.name.to_string(),
                    value: snippet(v),
                    expected: match spec.ty {
                        ColType::Int => "a 32-bit integer",
                        _ => "a number",
                    },
                });
            }
        }
    }
    Ok(())
}

fn first_null(column: &Column) -> Option<usize> {
    if column.null_count() == 0 {
        return None;
    }
    let mask = column.is_null();
    mask.iter().position(|v| v == Some(true))
}

/// Empty strings become nulls; surrounding whitespace and stray carriage
/// returns are kept as they are except for a trailing `\r`.
fn empty_to_null(path: &Path, column: &Column) -> Result<Column> {
    let ca = column
        .str()
        .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
    let needs_fix = ca
        .iter()
        .any(|v| matches!(v, Some(s) if s.is_empty() || s.ends_with('\r')));
    if !needs_fix {
        return Ok(column.clone());
    }
    let out: StringChunked = ca
        .iter()
        .map(|v| {
            v.map(|s| s.strip_suffix('\r').unwrap_or(s))
                .filter(|s| !s.is_empty())
        })
        .collect();
    Ok(out.with_name(column.name().clone()).into_column())
}

/// Days from 1970-01-01 to 0001-01-01 in chrono's day count.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Converts a date to polars' physical representation (days since 1970-01-01).
pub(crate) fn date_to_days(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// Converts polars' physical date back to a calendar date.
pub(crate) fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
}

/// Parses `YYYYMMDD`, `YYYY-MM-DD` (optionally followed by a time) into days
/// since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let b = text.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let (y, m, d) = if b.len() == 8 {
        (digits(0..4)?, digits(4..6)?, digits(6..8)?)
    } else if b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && (b.len() == 10 || b[10] == b' ' || b[10] == b'T')
    {
        (digits(0..4)?, digits(5..7)?, digits(8..10)?)
    } else {
        return None;
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    Some(date_to_days(date))
}

fn parse_date_column(path: &Path, name: &str, column: &Column) -> Result<Column> {
    let ca = column
        .str()
        .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
    let mut out: Vec<Option<i32>> = Vec::with_capacity(ca.len());
    for (row, value) in ca.iter().enumerate() {
        match value.map(|v| v.trim_end_matches('\r')) {
            None | Some("") => out.push(None),
            Some(v) => match parse_date(v) {
                Some(days) => out.push(Some(days)),
                None => {
                    return Err(VocabError::BadValue {
                        path: path.to_path_buf(),
                        line: row + 2,
                        column: name.to_string(),
                        value: snippet(v),
                        expected: "a date (YYYYMMDD or YYYY-MM-DD)",
                    });
                }
            },
        }
    }
    let days = Int32Chunked::from_iter_options(name.into(), out.into_iter());
    Ok(days.into_date().into_column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_date_layouts() {
        let a = parse_date("20240131");
        let b = parse_date("2024-01-31");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("19700102"), Some(1));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("31/01/2024"), None);
        assert_eq!(parse_date("2024-01-31 00:00:00"), b);
        let d = NaiveDate::from_ymd_opt(2099, 12, 31);
        assert_eq!(parse_date("20991231").and_then(days_to_date), d);
    }
}
