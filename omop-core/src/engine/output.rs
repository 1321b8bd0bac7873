//! Output: a staging folder that replaces the output folder only when the run succeeded,
//! Parquet writing, lineage, quarantine and the cdm_source row.

use super::rule::{KEY, REJECT, RULE, TABLE};
use super::source::{ROW, SourceTable};
use super::{EtlError, polars_err};
use crate::cdm::TableSpec;
use crate::mapping::{CdmSourceInfo, Pack, Rule};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A temporary folder next to the output (`<out>.tmp-<pid>`), renamed over the output by
/// [`Staging::commit`]. Dropping it without a commit removes it, so a failed run leaves the
/// previous output untouched.
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
    committed: std::sync::atomic::AtomicBool,
}

impl Staging {
    /// Creates the staging folder, removing leftovers of interrupted runs.
    pub fn create(out: &Path) -> Result<Self, EtlError> {
        let io = |path: &Path, source| EtlError::Io {
            path: path.to_path_buf(),
            source,
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        if let Ok(entries) = std::fs::read_dir(&parent) {
            let prefix = format!("{name}.tmp-");
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(format!("{name}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("_omopkit")).map_err(|e| io(&dir, e))?;
        Ok(Self {
            dir,
            out: out.to_path_buf(),
            committed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Writes a frame as Parquet at `rel` inside the staging folder.
    pub fn write_parquet(&self, rel: &str, df: &mut DataFrame) -> Result<(), EtlError> {
        let (path, writer) = self.parquet_writer(rel)?;
        write_in_slices(&path, writer, df)
    }

    /// Writes a frame as Parquet at `rel` on a thread of its own; the handle gives the result.
    /// The file is created before this returns, so a failure to create it is reported here.
    pub fn write_parquet_in_background(
        &self,
        rel: &str,
        df: DataFrame,
    ) -> Result<std::thread::JoinHandle<Result<(), EtlError>>, EtlError> {
        let (path, writer) = self.parquet_writer(rel)?;
        Ok(std::thread::spawn(move || {
            write_in_slices(&path, writer, &df)
        }))
    }

    /// Opens a Parquet file at `rel` for writing in batches.
    pub fn batched(
        &self,
        rel: &str,
        schema: &Schema,
    ) -> Result<polars::io::parquet::write::BatchedWriter<std::fs::File>, EtlError> {
        let (path, writer) = self.parquet_writer(rel)?;
        writer
            .batched(schema)
            .map_err(|e| polars_err(&format!("writing {}", path.display()), e))
    }

    /// A Snappy-compressed Parquet writer for a new file at `rel`, creating its folder.
    /// (Snappy: about twice the size of zstd, but it encodes much faster and every Parquet
    /// reader supports it.)
    fn parquet_writer(
        &self,
        rel: &str,
    ) -> Result<(PathBuf, ParquetWriter<std::fs::File>), EtlError> {
        let path = self.dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| EtlError::Io {
                path: p.to_path_buf(),
                source: e,
            })?;
        }
        let file = std::fs::File::create(&path).map_err(|e| EtlError::Io {
            path: path.clone(),
            source: e,
        })?;
        Ok((
            path,
            ParquetWriter::new(file).with_compression(ParquetCompression::Snappy),
        ))
    }

    /// Writes a JSON document at `rel` inside the staging folder.
    pub fn write_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<(), EtlError> {
        let path = self.dir.join(rel);
        let text = serde_json::to_string_pretty(value).map_err(|e| EtlError::Data {
            stage: "report".into(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text + "\n").map_err(|e| EtlError::Io { path, source: e })
    }

    /// Replaces the output folder with the staging folder.
    pub fn commit(&self) -> Result<(), EtlError> {
        let io = |path: &Path, source| EtlError::Io {
            path: path.to_path_buf(),
            source,
        };
        let old = self.out.with_file_name(format!(
            "{}.old-{}",
            self.out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.out.exists();
        if had_old {
            std::fs::rename(&self.out, &old).map_err(|e| io(&self.out, e))?;
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.out) {
            if had_old {
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(io(&self.out, e));
        }
        self.committed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Appends rows and their lineage to `<table>.parquet` and `_omopkit/lineage/<table>.parquet`
/// in the staging folder, one row group per call.
pub struct TableWriter {
    table: polars::io::parquet::write::BatchedWriter<std::fs::File>,
    lineage: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    /// Rows written so far.
    pub rows: u64,
    name: &'static str,
}

impl TableWriter {
    /// Opens the table's files in the staging folder.
    pub fn create(staging: &Staging, spec: &'static TableSpec) -> Result<Self, EtlError> {
        let table = staging.batched(&format!("{}.parquet", spec.name), &spec.polars_schema())?;
        Ok(Self {
            table,
            lineage: None,
            rows: 0,
            name: spec.name,
        })
    }

    /// Appends one batch of rows and their lineage.
    pub fn append(
        &mut self,
        staging: &Staging,
        rows: &DataFrame,
        lineage: &DataFrame,
    ) -> Result<(), EtlError> {
        let err = |e| polars_err(&format!("writing table {}", self.name), e);
        // The Parquet writer needs the columns cut into the same chunks.
        let (mut rows, mut lineage) = (rows.clone(), lineage.clone());
        rows.align_chunks_par();
        lineage.align_chunks_par();
        self.table.write_batch(&rows).map_err(err)?;
        if self.lineage.is_none() {
            self.lineage = Some(staging.batched(
                &format!("_omopkit/lineage/{}.parquet", self.name),
                lineage.schema(),
            )?);
        }
        if let Some(l) = &mut self.lineage {
            l.write_batch(&lineage).map_err(err)?;
        }
        self.rows += rows.height() as u64;
        Ok(())
    }

    /// Writes the Parquet footers.
    pub fn finish(self) -> Result<(), EtlError> {
        let err = |e| polars_err(&format!("writing table {}", self.name), e);
        self.table.finish().map_err(err)?;
        if let Some(l) = self.lineage {
            l.finish().map_err(err)?;
        }
        Ok(())
    }
}

/// Writes `df` with `writer` in slices, so that the encoded pages of only one slice are in
/// memory at a time.
fn write_in_slices(
    path: &Path,
    writer: ParquetWriter<std::fs::File>,
    df: &DataFrame,
) -> Result<(), EtlError> {
    const SLICE: usize = 262_144;
    let err = |e| polars_err(&format!("writing {}", path.display()), e);
    let mut df = df.clone();
    df.align_chunks_par();
    let mut batched = writer.batched(df.schema()).map_err(err)?;
    let mut offset = 0;
    loop {
        batched
            .write_batch(&df.slice(offset as i64, SLICE))
            .map_err(err)?;
        offset += SLICE;
        if offset >= df.height() {
            break;
        }
    }
    batched.finish().map_err(err)?;
    Ok(())
}

/// Lineage of a written table: the row's id (or position), rule id, source file and row.
pub fn lineage(
    pack: &Pack,
    sources: &BTreeMap<String, SourceTable>,
    spec: &TableSpec,
    df: &DataFrame,
) -> Result<DataFrame, EtlError> {
    let err = |e| polars_err("lineage", e);
    // Rule ids and source files are enums (Parquet dictionaries of a few texts each): as
    // text, the Parquet writer hashed both of them on every row, twice (once to estimate how
    // many distinct values there are, once to build the dictionary).
    let files_of_rules: Vec<&str> = pack
        .rules
        .iter()
        .map(|r| sources.get(&r.source).map_or("", |s| s.file.as_str()))
        .collect();
    let mut files: Vec<&str> = Vec::new();
    for f in &files_of_rules {
        if !files.contains(f) {
            files.push(f);
        }
    }
    let file_of_rule: Vec<IdxSize> = files_of_rules
        .iter()
        .map(|f| files.iter().position(|g| g == f).unwrap_or_default() as IdxSize)
        .collect();
    let rule = df
        .column(RULE)
        .and_then(|c| c.cast(&IDX_DTYPE))
        .map_err(err)?;
    let rule = rule.idx().map_err(err)?;
    let rule_id = enum_column("rule_id", pack.rules.iter().map(|r| r.id.as_str()), rule)?;
    let file_codes = IdxCa::from_vec("source_file".into(), file_of_rule)
        .take(rule)
        .map_err(err)?;
    let file = enum_column("source_file", files.iter().copied(), &file_codes)?;
    let id = match spec.primary_key() {
        Some(pk) => df.column(pk.name).map_err(err)?.clone(),
        None => Column::new("row".into(), (0..df.height() as i64).collect::<Vec<i64>>()),
    };
    let mut columns = vec![
        id,
        rule_id,
        file,
        df.column(ROW)
            .map_err(err)?
            .clone()
            .with_name("source_row".into()),
    ];
    if let Ok(key) = df.column(KEY) {
        columns.push(key.clone().with_name("source_key".into()));
    }
    DataFrame::new(df.height(), columns).map_err(err)
}

/// A column named `name` of the enum whose categories are `categories`, the nth being
/// category n: `codes` says which category each row has. (Casting the codes to the enum type
/// would do the same, but polars prints a deprecation warning for every such cast.)
fn enum_column<'a>(
    name: &str,
    categories: impl IntoIterator<Item = &'a str>,
    codes: &IdxCa,
) -> Result<Column, EtlError> {
    let err = |e| polars_err("lineage", e);
    let categories = FrozenCategories::new(categories).map_err(err)?;
    let physical = categories.physical();
    let dtype = DataType::from_frozen_categories(categories);
    let codes = codes
        .clone()
        .with_name(name.into())
        .into_series()
        .cast(&physical.dtype())
        .map_err(err)?;
    let series = match physical {
        CategoricalPhysical::U8 => {
            Categorical8Chunked::from_cats_and_dtype(codes.u8().map_err(err)?.clone(), dtype)
                .into_series()
        }
        CategoricalPhysical::U16 => {
            Categorical16Chunked::from_cats_and_dtype(codes.u16().map_err(err)?.clone(), dtype)
                .into_series()
        }
        CategoricalPhysical::U32 => {
            Categorical32Chunked::from_cats_and_dtype(codes.u32().map_err(err)?.clone(), dtype)
                .into_series()
        }
    };
    Ok(series.into_column())
}

/// Writes the rejected source rows of a rule, with their declared columns, to
/// `_omopkit/quarantine/<rule>.parquet`.
pub fn write_quarantine(
    staging: &Staging,
    rule: &Rule,
    source: &SourceTable,
    rejected: &DataFrame,
) -> Result<(), EtlError> {
    let reasons = rejected.clone().lazy().group_by_stable([col(ROW)]).agg([
        col(TABLE).first().alias("_table"),
        col(REJECT).first().alias("_reason"),
    ]);
    let mut sel: Vec<Expr> = vec![
        lit(source.file.as_str()).alias("_source_file"),
        col(ROW).alias("_source_row"),
        col("_table"),
        col("_reason"),
    ];
    sel.extend(source.columns.iter().map(|c| col(c.as_str())));
    // The rows are read again with the reader that numbered them, one chunk at a time.
    let err = |e| polars_err(&format!("quarantine of rule {}", rule.id), e);
    let reasons = reasons.collect().map_err(err)?;
    let mut parts = Vec::new();
    let mut reader = source.chunks()?;
    while let Some(chunk) = reader.next_chunk()? {
        parts.push(
            chunk
                .lazy()
                .join(
                    reasons.clone().lazy(),
                    [col(ROW)],
                    [col(ROW)],
                    JoinArgs::new(JoinType::Inner),
                )
                .select(sel.clone())
                .collect()
                .map_err(err)?
                .lazy(),
        );
    }
    let mut df = concat(parts, UnionArgs::default())
        .and_then(|all| {
            all.sort(["_source_row"], SortMultipleOptions::default())
                .collect()
        })
        .map_err(err)?;
    staging.write_parquet(&format!("_omopkit/quarantine/{}.parquet", rule.id), &mut df)
}

/// The single cdm_source row.
pub fn cdm_source(
    info: &CdmSourceInfo,
    vocabulary_version: Option<&str>,
    today: chrono::NaiveDate,
) -> PolarsResult<DataFrame> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let day = (today - epoch).num_days() as i32;
    let date = |name: &str| {
        Int32Chunked::from_vec(name.into(), vec![day])
            .into_date()
            .into_column()
    };
    DataFrame::new(
        1,
        vec![
            Column::new("cdm_source_name".into(), [info.cdm_source_name.as_str()]),
            Column::new(
                "cdm_source_abbreviation".into(),
                [info.cdm_source_abbreviation.as_str()],
            ),
            Column::new("cdm_holder".into(), [info.cdm_holder.as_str()]),
            Column::new(
                "source_description".into(),
                [info.source_description.as_str()],
            ),
            Column::new(
                "source_documentation_reference".into(),
                [info.source_documentation_reference.as_str()],
            ),
            Column::new(
                "cdm_etl_reference".into(),
                [info.cdm_etl_reference.as_str()],
            ),
            date("source_release_date"),
            date("cdm_release_date"),
            Column::new("cdm_version".into(), ["5.4"]),
            Column::new("cdm_version_concept_id".into(), [798878i32]),
            Column::new(
                "vocabulary_version".into(),
                [vocabulary_version.unwrap_or("unknown")],
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdm::{self, CdmVersion};

    /// Columns cut into chunks at different rows (as rows straight from a rule's plan can be)
    /// are written; the Parquet writer used to panic on them.
    #[test]
    fn frames_with_misaligned_chunks_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::create(&tmp.path().join("out")).unwrap();
        let spec = cdm::table(CdmVersion::V54, "death").unwrap();
        let mut person = Series::new("person_id".into(), [1i64, 2]);
        person
            .append(&Series::new("person_id".into(), [3i64]))
            .unwrap();
        let mut cols: Vec<Column> = vec![person.into()];
        for f in spec.fields.iter().skip(1) {
            cols.push(Column::full_null(f.name.into(), 3, &f.polars_dtype()));
        }
        let rows = DataFrame::new(3, cols).unwrap();
        assert_ne!(
            rows.column("person_id").unwrap().n_chunks(),
            rows.column("death_date").unwrap().n_chunks()
        );
        let mut lineage = rows.select(["person_id"]).unwrap();
        lineage.rename("person_id", "id".into()).unwrap();
        let mut writer = TableWriter::create(&staging, spec).unwrap();
        writer.append(&staging, &rows, &lineage).unwrap();
        writer.finish().unwrap();
        let mut whole = rows.clone();
        staging.write_parquet("whole.parquet", &mut whole).unwrap();
        for rel in ["death.parquet", "whole.parquet"] {
            let file = std::fs::File::open(staging.dir.join(rel)).unwrap();
            let back = ParquetReader::new(file).finish().unwrap();
            assert_eq!(back.height(), 3, "{rel}");
        }
    }

    /// Lineage names each row's rule and source file (enums whose categories are the rules in
    /// pack order and the files in order of first use), and survives a Parquet round trip.
    #[test]
    fn lineage_names_rules_and_files() {
        let pack = crate::mapping::parse_pack(
            r#"name: t
cdm_version: "5.4"
sources:
  one: {file: one.csv, columns: [P, D]}
  two: {file: two.csv, columns: [P, D]}
rules:
  - {id: first, source: two, table: death, person: P, fields: {death_date: date(D)}}
  - {id: second, source: one, table: death, person: P, fields: {death_date: date(D)}}
  - {id: third, source: two, table: death, person: P, fields: {death_date: date(D)}}
"#,
            Path::new("pack.yaml"),
        )
        .unwrap();
        let sources: BTreeMap<String, SourceTable> = [("one", "one.csv"), ("two", "two.csv")]
            .into_iter()
            .map(|(name, file)| {
                let table = SourceTable {
                    path: PathBuf::from(file),
                    file: file.to_string(),
                    separator: b',',
                    columns: vec!["P".into(), "D".into()],
                };
                (name.to_string(), table)
            })
            .collect();
        let spec = crate::cdm::table(crate::cdm::CdmVersion::V54, "death").unwrap();
        let rows = df!(
            "person_id" => [1i64, 2, 3, 4],
            RULE => [2u32, 0, 1, 2],
            ROW => [5u64, 6, 7, 8],
        )
        .unwrap();
        let mut lin = lineage(&pack, &sources, spec, &rows).unwrap();
        assert!(matches!(
            lin.column("rule_id").unwrap().dtype(),
            DataType::Enum(..)
        ));
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::create(&tmp.path().join("out")).unwrap();
        staging.write_parquet("lineage.parquet", &mut lin).unwrap();
        let file = std::fs::File::open(staging.dir.join("lineage.parquet")).unwrap();
        let back = ParquetReader::new(file).finish().unwrap();
        for df in [&lin, &back] {
            let text = crate::packtest::rows_as_text(
                df,
                &[
                    "row".into(),
                    "rule_id".into(),
                    "source_file".into(),
                    "source_row".into(),
                ],
            )
            .unwrap();
            assert_eq!(
                text,
                [
                    ["0", "third", "two.csv", "5"],
                    ["1", "first", "two.csv", "6"],
                    ["2", "second", "one.csv", "7"],
                    ["3", "third", "two.csv", "8"],
                ]
            );
        }
    }
}
