//! Pack tests as data: `tests.yaml` next to `pack.yaml` lists source rows and the CDM rows
//! they must become. `omopkit mapping test` runs each case through the real engine.
//!
//! ```yaml
//! vocabulary:                # optional: a tiny vocabulary for the cases
//!   concept:                 # rows in CONCEPT layout (missing columns are empty)
//!     - {concept_id: 201826, concept_code: '44054006', vocabulary_id: SNOMED, domain_id: Condition, standard_concept: S}
//!   concept_relationship:
//!     - {concept_id_1: 201826, concept_id_2: 201826, relationship_id: Maps to}
//! cases:
//!   - name: a diabetes diagnosis becomes a condition
//!     sources:
//!       conditions: [{START: '2020-01-01', PATIENT: p1, CODE: '44054006'}]
//!     expect:
//!       condition_occurrence: [{condition_concept_id: 201826, condition_start_date: '2020-01-01'}]
//! ```
//! Only the columns named in `expect` are compared; rows are compared as a multiset; a table
//! listed with `[]` must be empty. Values are compared as text (dates as YYYY-MM-DD, nulls as `null`).

use crate::engine::{self, EtlOptions};
use crate::mapping::{self, PackError};
use polars::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name of a pack's tests.
pub const TESTS_FILE: &str = "tests.yaml";

/// A scalar cell in a fixture.
pub type Row = BTreeMap<String, serde_norway::Value>;

/// The whole `tests.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Vocabulary rows shared by all cases.
    #[serde(default)]
    pub vocabulary: BTreeMap<String, Vec<Row>>,
    /// The cases.
    pub cases: Vec<TestCase>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows.
    pub name: String,
    /// Source rows per source table name; tables not given are empty.
    pub sources: BTreeMap<String, Vec<Row>>,
    /// Expected rows per CDM table.
    pub expect: BTreeMap<String, Vec<Row>>,
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Empty when the case passed; otherwise what differed.
    pub failures: Vec<String>,
}

/// Errors that stop the test run (as opposed to failing cases).
#[derive(Debug, thiserror::Error)]
pub enum PackTestError {
    /// The tests file or pack could not be read.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A case refers to something that does not exist.
    #[error("{file}: case `{case}`: {message}")]
    Case {
        /// The tests file.
        file: PathBuf,
        /// The case.
        case: String,
        /// What is wrong.
        message: String,
    },
    /// Writing temporary files failed.
    #[error("{0}")]
    Io(String),
}

/// Runs the cases of the pack at `pack_dir`. `vocab` is used when `tests.yaml` has no vocabulary.
pub fn run_pack_tests(
    pack_dir: &Path,
    vocab: Option<&Path>,
) -> Result<Vec<CaseResult>, PackTestError> {
    let (pack, _) = mapping::load_and_lint(pack_dir)?;
    let file = pack_dir.join(TESTS_FILE);
    let text = std::fs::read_to_string(&file).map_err(|source| PackError::Io {
        path: file.clone(),
        source,
    })?;
    let tests: TestFile = mapping::parse_yaml(&text, &file)?;
    let work = tempdir()?;
    let vocab_dir = if tests.vocabulary.is_empty() {
        vocab
            .map(Path::to_path_buf)
            .ok_or_else(|| PackTestError::Case {
                file: file.clone(),
                case: "-".into(),
                message: "tests.yaml has no `vocabulary` and no --vocab was given".into(),
            })?
    } else {
        let dir = work.join("vocab");
        write_vocabulary(&dir, &tests.vocabulary)?;
        dir
    };
    let mut results = Vec::new();
    for (i, case) in tests.cases.iter().enumerate() {
        let case_err = |message: String| PackTestError::Case {
            file: file.clone(),
            case: case.name.clone(),
            message,
        };
        let src = work.join(format!("case{i}/source"));
        std::fs::create_dir_all(&src).map_err(|e| PackTestError::Io(e.to_string()))?;
        for name in case.sources.keys() {
            if !pack.sources.contains_key(name) {
                return Err(case_err(format!("unknown source `{name}`")));
            }
        }
        for (name, source) in &pack.sources {
            let rows = case.sources.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let sep = source.separator.unwrap_or(',');
            write_csv(&src.join(&source.file), &source.columns, rows, sep).map_err(&case_err)?;
        }
        let out = work.join(format!("case{i}/out"));
        let opts = EtlOptions {
            pack: pack_dir.to_path_buf(),
            source: src,
            vocab: vocab_dir.clone(),
            vocab_cache: Some(work.join("vocab-cache")),
            out: out.clone(),
            chunk_rows: None,
        };
        let mut failures = Vec::new();
        match engine::run(&opts) {
            Ok(_) => {
                for (table, expected) in &case.expect {
                    match compare_table(&out, table, expected) {
                        Ok(mut f) => failures.append(&mut f),
                        Err(e) => failures.push(e),
                    }
                }
            }
            Err(e) => failures.push(format!("the run failed: {e}")),
        }
        results.push(CaseResult {
            name: case.name.clone(),
            failures,
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(results)
}

fn tempdir() -> Result<PathBuf, PackTestError> {
    let dir = std::env::temp_dir().join(format!(
        "omopkit-packtest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| PackTestError::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

fn cell_text(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::Null => None,
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::String(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn csv_field(s: &str, sep: char) -> String {
    if s.contains(sep) || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(path: &Path, columns: &[String], rows: &[Row], sep: char) -> Result<(), String> {
    for row in rows {
        if let Some(bad) = row.keys().find(|k| !columns.contains(k)) {
            return Err(format!(
                "column `{bad}` is not declared for {}",
                path.display()
            ));
        }
    }
    let mut text = columns
        .iter()
        .map(|c| csv_field(c, sep))
        .collect::<Vec<_>>()
        .join(&sep.to_string());
    text.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                row.get(c)
                    .and_then(cell_text)
                    .map(|s| csv_field(&s, sep))
                    .unwrap_or_default()
            })
            .collect();
        text.push_str(&cells.join(&sep.to_string()));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

const VOCAB_COLUMNS: &[(&str, &[&str])] = &[
    (
        "concept",
        &[
            "concept_id",
            "concept_name",
            "domain_id",
            "vocabulary_id",
            "concept_class_id",
            "standard_concept",
            "concept_code",
            "valid_start_date",
            "valid_end_date",
            "invalid_reason",
        ],
    ),
    (
        "concept_relationship",
        &[
            "concept_id_1",
            "concept_id_2",
            "relationship_id",
            "valid_start_date",
            "valid_end_date",
            "invalid_reason",
        ],
    ),
    (
        "concept_ancestor",
        &[
            "ancestor_concept_id",
            "descendant_concept_id",
            "min_levels_of_separation",
            "max_levels_of_separation",
        ],
    ),
    (
        "vocabulary",
        &[
            "vocabulary_id",
            "vocabulary_name",
            "vocabulary_reference",
            "vocabulary_version",
            "vocabulary_concept_id",
        ],
    ),
];

fn write_vocabulary(dir: &Path, tables: &BTreeMap<String, Vec<Row>>) -> Result<(), PackTestError> {
    std::fs::create_dir_all(dir).map_err(|e| PackTestError::Io(e.to_string()))?;
    for (name, rows) in tables {
        let Some((_, cols)) = VOCAB_COLUMNS.iter().find(|(n, _)| n == name) else {
            return Err(PackTestError::Io(format!(
                "tests.yaml: vocabulary table `{name}` is not supported (use concept, concept_relationship, concept_ancestor, vocabulary)"
            )));
        };
        let defaults: Vec<(&str, &str)> = vec![
            ("valid_start_date", "1970-01-01"),
            ("valid_end_date", "2099-12-31"),
            ("concept_name", "-"),
            ("concept_class_id", "-"),
            ("min_levels_of_separation", "0"),
            ("max_levels_of_separation", "0"),
        ];
        let filled: Vec<Row> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                for (k, v) in &defaults {
                    if cols.contains(k) {
                        r.entry(k.to_string())
                            .or_insert_with(|| serde_norway::Value::String(v.to_string()));
                    }
                }
                r
            })
            .collect();
        let columns: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        write_csv(&dir.join(format!("{name}.csv")), &columns, &filled, ',')
            .map_err(PackTestError::Io)?;
    }
    Ok(())
}

fn compare_table(out: &Path, table: &str, expected: &[Row]) -> Result<Vec<String>, String> {
    let path = out.join(format!("{table}.parquet"));
    let df = ParquetReader::new(std::fs::File::open(&path).map_err(|e| format!("{table}: {e}"))?)
        .finish()
        .map_err(|e| format!("{table}: {e}"))?;
    let mut columns: Vec<String> = expected.iter().flat_map(|r| r.keys().cloned()).collect();
    columns.sort();
    columns.dedup();
    for c in &columns {
        if df.column(c).is_err() {
            return Err(format!("{table}: no column `{c}`"));
        }
    }
    let actual: Vec<Vec<String>> =
        rows_as_text(&df, &columns).map_err(|e| format!("{table}: {e}"))?;
    let mut want: Vec<Vec<String>> = expected
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    r.get(c)
                        .and_then(cell_text)
                        .unwrap_or_else(|| "null".into())
                })
                .collect()
        })
        .collect();
    let mut got = actual;
    want.sort();
    got.sort();
    if want == got {
        return Ok(Vec::new());
    }
    let missing: Vec<String> = want
        .iter()
        .filter(|w| !got.contains(w))
        .map(|r| format!("    missing: {}", fmt_row(&columns, r)))
        .collect();
    let extra: Vec<String> = got
        .iter()
        .filter(|g| !want.contains(g))
        .map(|r| format!("    unexpected: {}", fmt_row(&columns, r)))
        .collect();
    let mut msg = vec![format!(
        "{table}: expected {} row(s), got {}",
        want.len(),
        got.len()
    )];
    msg.extend(missing);
    msg.extend(extra);
    Ok(vec![msg.join("\n")])
}

fn fmt_row(columns: &[String], row: &[String]) -> String {
    columns
        .iter()
        .zip(row)
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the named columns of every row as text, as the comparison sees them.
pub fn rows_as_text(df: &DataFrame, columns: &[String]) -> PolarsResult<Vec<Vec<String>>> {
    let cols: Vec<Column> = columns
        .iter()
        .map(|c| df.column(c)?.cast(&DataType::String))
        .collect::<PolarsResult<_>>()?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut row = Vec::with_capacity(cols.len());
        for c in &cols {
            let v = c
                .str()?
                .get(i)
                .map(str::to_string)
                .unwrap_or_else(|| "null".into());
            row.push(v);
        }
        out.push(row);
    }
    Ok(out)
}
