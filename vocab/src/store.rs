//! The vocabulary store: loading, caching and look-ups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;

use crate::cache::{self, Manifest, PendingEntry};
use crate::concepts::{ConceptRef, ConceptTable};
use crate::error::{Result, VocabError};
use crate::reader::{ColSpec, ColType, date_to_days, days_to_date, read_table};
use crate::tables::{Table, list_files};

/// First concept id of the local (site-specific) range.
pub const LOCAL_CONCEPT_ID_MIN: i32 = 2_000_000_000;

/// Default `valid_start_date` for mappings that carry none.
pub(crate) fn default_start() -> i32 {
    NaiveDate::from_ymd_opt(1970, 1, 1).map_or(0, date_to_days)
}

/// Default `valid_end_date` for mappings that carry none.
pub(crate) fn default_end() -> i32 {
    NaiveDate::from_ymd_opt(2099, 12, 31).map_or(i32::MAX, date_to_days)
}

/// How [`Vocabulary::load`] uses the Parquet cache.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Read and write the cache (default `true`). When `false` the source
    /// files are parsed every time and nothing is written.
    pub use_cache: bool,
    /// Cache folder used when `<dir>/.omopkit-cache/` cannot be written
    /// (for example a read-only vocabulary folder). It is also searched for an
    /// existing cache entry.
    pub cache_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            use_cache: true,
            cache_dir: None,
        }
    }
}

impl LoadOptions {
    /// Options with a fallback cache folder.
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            use_cache: true,
            cache_dir: Some(dir.into()),
        }
    }

    /// Options that never touch a cache.
    pub fn without_cache() -> Self {
        LoadOptions {
            use_cache: false,
            cache_dir: None,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct LoadInfo {
    /// The source folder.
    pub source_dir: PathBuf,
    /// The source files that were found, one per table.
    pub source_files: Vec<PathBuf>,
    /// True when the tables were read from the Parquet cache.
    pub from_cache: bool,
    /// The cache entry read or written, if any.
    pub cache_entry: Option<PathBuf>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

/// The two mapping relationships the ETL follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapKind {
    /// `Maps to`: source concept → standard concept.
    MapsTo,
    /// `Maps to value`: source concept → standard value concept.
    MapsToValue,
}

impl MapKind {
    /// The `relationship_id` text.
    pub fn relationship_id(self) -> &'static str {
        match self {
            MapKind::MapsTo => "Maps to",
            MapKind::MapsToValue => "Maps to value",
        }
    }

    /// Parses a `relationship_id`.
    pub fn from_relationship_id(text: &str) -> Option<Self> {
        match text {
            "Maps to" => Some(MapKind::MapsTo),
            "Maps to value" => Some(MapKind::MapsToValue),
            _ => None,
        }
    }
}

/// Where a mapping comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingOrigin {
    /// `concept_relationship` of the loaded vocabulary.
    Vocabulary,
    /// A `source_to_concept_map` import.
    SourceToConceptMap,
    /// A Usagi export import.
    Usagi,
    /// Relationships given with local concepts.
    Local,
}

/// A target concept reached through 'Maps to' or 'Maps to value'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedConcept<'a> {
    /// The target `concept_id`.
    pub concept_id: i32,
    /// Which relationship led here.
    pub relationship: MapKind,
    /// The target's `domain_id`. `None` only when the target is not in the
    /// loaded vocabulary and the mapping file did not name a domain.
    pub domain_id: Option<&'a str>,
    /// The target's `vocabulary_id`.
    pub vocabulary_id: Option<&'a str>,
    /// The target's `standard_concept` flag.
    pub standard_concept: Option<&'a str>,
    /// The target's name.
    pub concept_name: Option<&'a str>,
    /// Validity of the mapping (relationship) itself.
    pub valid_start_date: Option<NaiveDate>,
    /// Validity of the mapping (relationship) itself.
    pub valid_end_date: Option<NaiveDate>,
    /// Where the mapping comes from.
    pub origin: MappingOrigin,
}

/// A row of `concept_ancestor` seen from one concept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AncestorLink {
    /// The related concept (a descendant or an ancestor).
    pub concept_id: i32,
    /// `min_levels_of_separation` (0 for the concept itself).
    pub min_levels_of_separation: Option<i32>,
    /// `max_levels_of_separation` (0 for the concept itself).
    pub max_levels_of_separation: Option<i32>,
}

/// What an import added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read from the file.
    pub rows_read: usize,
    /// Concepts or mappings added.
    pub added: usize,
    /// Rows that were read but not used (not approved, target 0, unit
    /// mappings, ...).
    pub skipped: usize,
}

/// A valid 'Maps to' / 'Maps to value' row, compact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapRow {
    pub source: i32,
    pub target: i32,
    pub start: i32,
    pub end: i32,
    pub kind: MapKind,
    pub origin: MappingOrigin,
}

/// A mapping from an imported file, keyed by (vocabulary, code).
#[derive(Debug, Clone)]
pub(crate) struct ExtraMapping {
    pub source_vocabulary_id: String,
    pub source_code: String,
    pub source_concept_id: i32,
    pub target_concept_id: i32,
    pub target_vocabulary_id: Option<String>,
    pub target_domain_id: Option<String>,
    pub kind: MapKind,
    pub start: i32,
    pub end: i32,
    pub invalid: bool,
    pub origin: MappingOrigin,
}

#[derive(Debug, Default)]
pub(crate) struct ExtraMappings {
    pub rows: Vec<ExtraMapping>,
    by_code: HashMap<String, HashMap<String, Vec<usize>>>,
    by_concept: HashMap<i32, Vec<usize>>,
}

impl ExtraMappings {
    pub(crate) fn push(&mut self, m: ExtraMapping) {
        let i = self.rows.len();
        self.by_code
            .entry(m.source_vocabulary_id.clone())
            .or_default()
            .entry(m.source_code.clone())
            .or_default()
            .push(i);
        if m.source_concept_id != 0 {
            self.by_concept
                .entry(m.source_concept_id)
                .or_default()
                .push(i);
        }
        self.rows.push(m);
    }

    fn for_code(&self, vocabulary_id: &str, code: &str) -> &[usize] {
        self.by_code
            .get(vocabulary_id)
            .and_then(|m| m.get(code))
            .map_or(&[], Vec::as_slice)
    }

    fn for_concept(&self, concept_id: i32) -> &[usize] {
        self.by_concept.get(&concept_id).map_or(&[], Vec::as_slice)
    }
}

/// A table read from the cache on first use (or held in memory when there is
/// no cache).
pub(crate) struct LazyTable {
    table: Table,
    parquet: Option<PathBuf>,
    frame: OnceLock<DataFrame>,
    appended: Vec<DataFrame>,
}

impl LazyTable {
    fn in_memory(table: Table, df: DataFrame) -> Self {
        let frame = OnceLock::new();
        let _ = frame.set(df);
        LazyTable {
            table,
            parquet: None,
            frame,
            appended: Vec::new(),
        }
    }

    fn on_disk(table: Table, path: PathBuf) -> Self {
        LazyTable {
            table,
            parquet: Some(path),
            frame: OnceLock::new(),
            appended: Vec::new(),
        }
    }

    pub(crate) fn get(&self) -> Result<&DataFrame> {
        if let Some(df) = self.frame.get() {
            return Ok(df);
        }
        let mut df = match &self.parquet {
            Some(path) => cache::read_parquet(path)?,
            None => empty_frame(self.table.columns())?,
        };
        for extra in &self.appended {
            df.vstack_mut(extra).map_err(|e| {
                VocabError::polars(format!("appending to {}", self.table.name()), e)
            })?;
        }
        df.rechunk_mut();
        let _ = self.frame.set(df);
        self.frame.get().ok_or_else(|| VocabError::Cache {
            path: self.parquet.clone().unwrap_or_default(),
            message: format!("{} could not be kept in memory", self.table.name()),
        })
    }

    pub(crate) fn append(&mut self, df: DataFrame) -> Result<()> {
        if let Some(frame) = self.frame.get_mut() {
            frame.vstack_mut(&df).map_err(|e| {
                VocabError::polars(format!("appending to {}", self.table.name()), e)
            })?;
            frame.rechunk_mut();
        } else {
            self.appended.push(df);
        }
        Ok(())
    }
}

/// An empty frame with the columns of a table.
pub(crate) fn empty_frame(specs: &[ColSpec]) -> Result<DataFrame> {
    let mut schema = Schema::with_capacity(specs.len());
    for s in specs {
        let dtype = match s.ty {
            ColType::Int => DataType::Int32,
            ColType::Float => DataType::Float64,
            ColType::Str => DataType::String,
            ColType::Date => DataType::Date,
        };
        schema.insert(s.name.into(), dtype);
    }
    Ok(DataFrame::empty_with_schema(&schema))
}

/// The valid 'Maps to' / 'Maps to value' rows of a concept_relationship frame.
fn maps_frame(rel: LazyFrame) -> PolarsResult<DataFrame> {
    let rid = || col("relationship_id");
    rel.filter(
        (rid().eq(lit("Maps to")).or(rid().eq(lit("Maps to value"))))
            .and(col("invalid_reason").is_null()),
    )
    .select([
        col("concept_id_1"),
        col("concept_id_2"),
        col("relationship_id"),
        col("valid_start_date"),
        col("valid_end_date"),
    ])
    .collect()
}

pub(crate) fn map_rows(df: &DataFrame, origin: MappingOrigin) -> Result<Vec<MapRow>> {
    let err = |e| VocabError::polars("reading 'Maps to' rows", e);
    let c1 = df
        .column("concept_id_1")
        .and_then(|c| c.i32())
        .map_err(err)?;
    let c2 = df
        .column("concept_id_2")
        .and_then(|c| c.i32())
        .map_err(err)?;
    let rid = df
        .column("relationship_id")
        .and_then(|c| c.str())
        .map_err(err)?;
    let start = df
        .column("valid_start_date")
        .and_then(|c| c.date())
        .map_err(err)?;
    let end = df
        .column("valid_end_date")
        .and_then(|c| c.date())
        .map_err(err)?;
    let (d0, d1) = (default_start(), default_end());
    let mut out = Vec::with_capacity(df.height());
    for ((((a, b), r), s), e) in c1
        .iter()
        .zip(c2.iter())
        .zip(rid.iter())
        .zip(start.physical().iter())
        .zip(end.physical().iter())
    {
        let (Some(a), Some(b), Some(kind)) = (a, b, r.and_then(MapKind::from_relationship_id))
        else {
            continue;
        };
        out.push(MapRow {
            source: a,
            target: b,
            start: s.unwrap_or(d0),
            end: e.unwrap_or(d1),
            kind,
            origin,
        });
    }
    Ok(out)
}

fn sort_maps(maps: &mut [MapRow]) {
    maps.par_sort_by_key(|m| (m.source, m.kind, m.target, m.start));
}

fn in_range(start: i32, end: i32, on: Option<i32>) -> bool {
    on.is_none_or(|d| start <= d && d <= end)
}

/// An OMOP vocabulary held in memory with look-up indexes.
///
/// Load it with [`Vocabulary::load`]; add site mappings with
/// [`Vocabulary::import_source_to_concept_map`], [`Vocabulary::import_usagi`]
/// and [`Vocabulary::add_local_concepts`].
pub struct Vocabulary {
    pub(crate) info: LoadInfo,
    pub(crate) concepts: ConceptTable,
    vocabularies: DataFrame,
    domains: DataFrame,
    concept_classes: DataFrame,
    relationship_types: DataFrame,
    pub(crate) relationships: LazyTable,
    ancestors: LazyTable,
    synonyms: LazyTable,
    drug_strength: LazyTable,
    /// Valid 'Maps to' / 'Maps to value' rows sorted by source concept.
    pub(crate) maps: Vec<MapRow>,
    pub(crate) extras: ExtraMappings,
    pub(crate) code_index: OnceLock<Vec<u32>>,
    ancestor_by_descendant: OnceLock<Vec<u32>>,
    pub(crate) source_to_standard: OnceLock<DataFrame>,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("source_dir", &self.info.source_dir)
            .field("concepts", &self.concepts.len())
            .field("maps", &self.maps.len())
            .field("extra_mappings", &self.extras.rows.len())
            .field("from_cache", &self.info.from_cache)
            .finish()
    }
}

impl Vocabulary {
    /// Loads the vocabulary tables found in `dir`.
    ///
    /// `dir` may be an Athena download (tab-separated `CONCEPT.csv`, ...,
    /// dates as `YYYYMMDD`, no quoting) or a folder of comma-separated files
    /// with a header (`concept.csv` or `concept_seed.csv`, dates as
    /// `YYYY-MM-DD`, `"` quoting). The format is detected per file from its
    /// header line. Only the concept table is required.
    ///
    /// The first load writes a Parquet cache to `<dir>/.omopkit-cache/` (or to
    /// [`LoadOptions::cache_dir`] when `dir` is not writable); later loads of
    /// unchanged files read it instead of parsing the text files.
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<Vocabulary> {
        let t0 = Instant::now();
        let entries = list_files(dir)?;
        let mut sources: Vec<(Table, PathBuf)> = Vec::new();
        for table in Table::ALL {
            if let Some(path) = table.find_file(dir, &entries) {
                sources.push((table, path));
            }
        }
        if !sources.iter().any(|(t, _)| *t == Table::Concept) {
            return Err(VocabError::MissingConceptFile {
                dir: dir.to_path_buf(),
            });
        }
        let files: Vec<PathBuf> = sources.iter().map(|(_, p)| p.clone()).collect();
        let fingerprint = cache::fingerprint(&files)?;
        // Cache folders, in order of preference. The default one inside the
        // vocabulary folder is skipped when that folder is marked read-only
        // (checked on the permission bits, which also holds for root, who
        // could otherwise write there).
        let mut roots = Vec::new();
        let default_root = dir.join(cache::DEFAULT_CACHE_DIR_NAME);
        if default_root.is_dir() || !cache::is_read_only(dir) {
            roots.push(default_root);
        }
        if let Some(extra) = &opts.cache_dir {
            roots.push(extra.clone());
        }
        let info = LoadInfo {
            source_dir: dir.to_path_buf(),
            source_files: files,
            from_cache: false,
            cache_entry: None,
            elapsed: Duration::ZERO,
        };

        if opts.use_cache {
            for root in &roots {
                let entry = root.join(cache::entry_name(&fingerprint));
                let Some(manifest) = cache::read_manifest(&entry, &fingerprint) else {
                    continue;
                };
                match Self::from_cache(&entry, &manifest, info.clone()) {
                    Ok(mut v) => {
                        v.info.elapsed = t0.elapsed();
                        tracing::debug!(entry = %entry.display(), elapsed = ?v.info.elapsed, "vocabulary read from cache");
                        return Ok(v);
                    }
                    Err(e) => {
                        tracing::warn!(entry = %entry.display(), error = %e, "ignoring unreadable vocabulary cache");
                    }
                }
            }
        }

        let mut v = Self::parse_sources(&sources, &fingerprint, &roots, &opts, info)?;
        v.info.elapsed = t0.elapsed();
        tracing::debug!(elapsed = ?v.info.elapsed, cache = ?v.info.cache_entry, "vocabulary parsed from source files");
        Ok(v)
    }

    fn parse_sources(
        sources: &[(Table, PathBuf)],
        fingerprint: &str,
        roots: &[PathBuf],
        opts: &LoadOptions,
        mut info: LoadInfo,
    ) -> Result<Vocabulary> {
        let mut pending: Option<PendingEntry> = None;
        if opts.use_cache {
            for root in roots {
                match PendingEntry::create(root, fingerprint) {
                    Ok(p) => {
                        pending = Some(p);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(root = %root.display(), error = %e, "cache folder not writable");
                    }
                }
            }
            if pending.is_none() {
                tracing::warn!(
                    "no writable cache folder for the vocabulary; pass a cache folder to avoid parsing it on every run"
                );
            }
        }

        let mut frames: HashMap<Table, DataFrame> = HashMap::new();
        let mut maps_df: Option<DataFrame> = None;
        for (table, path) in sources {
            let mut df = match read_table(path, table.columns()) {
                Ok(df) => df,
                Err(e) => {
                    if let Some(p) = pending.take() {
                        p.abandon();
                    }
                    return Err(e);
                }
            };
            match table {
                Table::ConceptAncestor => {
                    df.sort_in_place(
                        ["ancestor_concept_id", "descendant_concept_id"],
                        SortMultipleOptions::default().with_multithreaded(true),
                    )
                    .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
                }
                Table::Concept => {
                    df.sort_in_place(["concept_id"], SortMultipleOptions::default())
                        .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
                }
                Table::ConceptRelationship => {
                    maps_df = Some(
                        maps_frame(df.clone().lazy())
                            .map_err(|e| VocabError::polars(path.display().to_string(), e))?,
                    );
                }
                _ => {}
            }
            df.rechunk_mut();
            if let Some(p) = &pending {
                let out = cache::parquet_path(&p.tmp, table.name());
                if let Err(e) = cache::write_parquet(&out, &mut df) {
                    tracing::warn!(error = %e, "cannot write the vocabulary cache");
                    if let Some(p) = pending.take() {
                        p.abandon();
                    }
                }
            }
            frames.insert(*table, df);
        }

        let mut maps_df = match maps_df {
            Some(df) => df,
            None => maps_frame(empty_frame(Table::ConceptRelationship.columns())?.lazy())
                .map_err(|e| VocabError::polars("empty concept_relationship", e))?,
        };
        let mut entry: Option<PathBuf> = None;
        if let Some(p) = pending.take() {
            let written = cache::write_parquet(&cache::parquet_path(&p.tmp, "maps"), &mut maps_df)
                .and_then(|()| {
                    p.commit(&Manifest {
                        format_version: cache::FORMAT_VERSION,
                        fingerprint: fingerprint.to_string(),
                        source_dir: info.source_dir.display().to_string(),
                        tables: sources.iter().map(|(t, _)| t.name().to_string()).collect(),
                    })
                });
            match written {
                Ok(path) => entry = Some(path),
                Err(e) => tracing::warn!(error = %e, "cannot write the vocabulary cache"),
            }
        }
        info.cache_entry = entry.clone();

        let mut take = |t: Table| -> Result<DataFrame> {
            match frames.remove(&t) {
                Some(df) => Ok(df),
                None => empty_frame(t.columns()),
            }
        };
        let concept_df = take(Table::Concept)?;
        let vocabularies = take(Table::Vocabulary)?;
        let domains = take(Table::Domain)?;
        let concept_classes = take(Table::ConceptClass)?;
        let relationship_types = take(Table::Relationship)?;
        let mut lazy = |t: Table| -> Result<LazyTable> {
            let present = sources.iter().any(|(s, _)| *s == t);
            match (&entry, present) {
                // Large tables are dropped from memory once cached and read
                // back on first use.
                (Some(e), true) => Ok(LazyTable::on_disk(t, cache::parquet_path(e, t.name()))),
                _ => Ok(LazyTable::in_memory(t, take(t)?)),
            }
        };
        let relationships = lazy(Table::ConceptRelationship)?;
        let ancestors = lazy(Table::ConceptAncestor)?;
        let synonyms = lazy(Table::ConceptSynonym)?;
        let drug_strength = lazy(Table::DrugStrength)?;

        let mut maps = map_rows(&maps_df, MappingOrigin::Vocabulary)?;
        sort_maps(&mut maps);
        Ok(Vocabulary {
            info,
            concepts: ConceptTable::new(concept_df)?,
            vocabularies,
            domains,
            concept_classes,
            relationship_types,
            relationships,
            ancestors,
            synonyms,
            drug_strength,
            maps,
            extras: ExtraMappings::default(),
            code_index: OnceLock::new(),
            ancestor_by_descendant: OnceLock::new(),
            source_to_standard: OnceLock::new(),
        })
    }

    fn from_cache(entry: &Path, manifest: &Manifest, mut info: LoadInfo) -> Result<Vocabulary> {
        let has = |t: Table| manifest.tables.iter().any(|n| n == t.name());
        let eager = |t: Table| -> Result<DataFrame> {
            if has(t) {
                cache::read_parquet(&cache::parquet_path(entry, t.name()))
            } else {
                empty_frame(t.columns())
            }
        };
        let lazy = |t: Table| -> Result<LazyTable> {
            if has(t) {
                Ok(LazyTable::on_disk(t, cache::parquet_path(entry, t.name())))
            } else {
                Ok(LazyTable::in_memory(t, empty_frame(t.columns())?))
            }
        };
        let concept_df = eager(Table::Concept)?;
        let maps_df = cache::read_parquet(&cache::parquet_path(entry, "maps"))?;
        let mut maps = map_rows(&maps_df, MappingOrigin::Vocabulary)?;
        sort_maps(&mut maps);
        info.from_cache = true;
        info.cache_entry = Some(entry.to_path_buf());
        Ok(Vocabulary {
            info,
            concepts: ConceptTable::new(concept_df)?,
            vocabularies: eager(Table::Vocabulary)?,
            domains: eager(Table::Domain)?,
            concept_classes: eager(Table::ConceptClass)?,
            relationship_types: eager(Table::Relationship)?,
            relationships: lazy(Table::ConceptRelationship)?,
            ancestors: lazy(Table::ConceptAncestor)?,
            synonyms: lazy(Table::ConceptSynonym)?,
            drug_strength: lazy(Table::DrugStrength)?,
            maps,
            extras: ExtraMappings::default(),
            code_index: OnceLock::new(),
            ancestor_by_descendant: OnceLock::new(),
            source_to_standard: OnceLock::new(),
        })
    }

    /// What the load did (cache hit, cache entry, time taken).
    pub fn load_info(&self) -> &LoadInfo {
        &self.info
    }

    /// Number of concepts (including local concepts).
    pub fn concept_count(&self) -> usize {
        self.concepts.len()
    }

    /// The vocabulary release, from the `vocabulary` row whose
    /// `vocabulary_id` is `None` (its `vocabulary_version`), as written to
    /// `cdm_source.vocabulary_version`.
    pub fn version(&self) -> Option<String> {
        let ids = self.vocabularies.column("vocabulary_id").ok()?.str().ok()?;
        let versions = self
            .vocabularies
            .column("vocabulary_version")
            .ok()?
            .str()
            .ok()?;
        ids.iter()
            .zip(versions.iter())
            .find(|(id, _)| *id == Some("None"))
            .and_then(|(_, v)| v.map(str::to_string))
    }

    /// The concept with this id.
    pub fn concept(&self, concept_id: i32) -> Option<ConceptRef<'_>> {
        self.concepts
            .row_of(concept_id)
            .and_then(|r| self.concepts.get(r))
    }

    /// The concept with this (vocabulary_id, concept_code), e.g.
    /// `("SNOMED", "44054006")`. When a pair occurs more than once, the valid
    /// concept with the lowest id wins.
    pub fn source_concept(
        &self,
        vocabulary_id: &str,
        concept_code: &str,
    ) -> Option<ConceptRef<'_>> {
        let index = self
            .code_index
            .get_or_init(|| self.concepts.build_code_index());
        self.concepts
            .find_code(index, vocabulary_id, concept_code)
            .and_then(|r| self.concepts.get(r))
    }

    /// The targets of 'Maps to' from `concept_id`. Only relationships whose
    /// `invalid_reason` is empty count; with `on`, only those valid on that
    /// date (`valid_start_date <= on <= valid_end_date`). Imported mappings
    /// whose `source_concept_id` is `concept_id` are included (first).
    pub fn maps_to(&self, concept_id: i32, on: Option<NaiveDate>) -> Vec<MappedConcept<'_>> {
        self.mapped(concept_id, MapKind::MapsTo, on)
    }

    /// The targets of 'Maps to value' from `concept_id`, under the same rules
    /// as [`Vocabulary::maps_to`].
    pub fn maps_to_value(&self, concept_id: i32, on: Option<NaiveDate>) -> Vec<MappedConcept<'_>> {
        self.mapped(concept_id, MapKind::MapsToValue, on)
    }

    /// The targets of a source code: the imported mappings for
    /// (`vocabulary_id`, `code`) first, then the vocabulary's own mappings of
    /// the concept with that code. Duplicated targets are listed once.
    pub fn map_code(
        &self,
        vocabulary_id: &str,
        code: &str,
        kind: MapKind,
        on: Option<NaiveDate>,
    ) -> Vec<MappedConcept<'_>> {
        let day = on.map(date_to_days);
        let mut out: Vec<MappedConcept<'_>> = self
            .extras
            .for_code(vocabulary_id, code)
            .iter()
            .filter_map(|&i| self.extra_target(&self.extras.rows[i], kind, day))
            .collect();
        if let Some(c) = self.source_concept(vocabulary_id, code) {
            out.extend(self.mapped(c.concept_id, kind, on));
        }
        dedup_targets(&mut out);
        out
    }

    fn mapped(
        &self,
        concept_id: i32,
        kind: MapKind,
        on: Option<NaiveDate>,
    ) -> Vec<MappedConcept<'_>> {
        let day = on.map(date_to_days);
        let mut out: Vec<MappedConcept<'_>> = self
            .extras
            .for_concept(concept_id)
            .iter()
            .filter_map(|&i| self.extra_target(&self.extras.rows[i], kind, day))
            .collect();
        let lo = self.maps.partition_point(|m| m.source < concept_id);
        for m in self.maps[lo..]
            .iter()
            .take_while(|m| m.source == concept_id)
        {
            if m.kind == kind && in_range(m.start, m.end, day) {
                out.push(self.target(m.target, kind, m.start, m.end, m.origin, None, None));
            }
        }
        dedup_targets(&mut out);
        out
    }

    fn extra_target<'a>(
        &'a self,
        m: &'a ExtraMapping,
        kind: MapKind,
        day: Option<i32>,
    ) -> Option<MappedConcept<'a>> {
        (m.kind == kind && !m.invalid && in_range(m.start, m.end, day)).then(|| {
            self.target(
                m.target_concept_id,
                kind,
                m.start,
                m.end,
                m.origin,
                m.target_domain_id.as_deref(),
                m.target_vocabulary_id.as_deref(),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn target<'a>(
        &'a self,
        concept_id: i32,
        kind: MapKind,
        start: i32,
        end: i32,
        origin: MappingOrigin,
        domain: Option<&'a str>,
        vocabulary: Option<&'a str>,
    ) -> MappedConcept<'a> {
        let c = self.concept(concept_id);
        MappedConcept {
            concept_id,
            relationship: kind,
            domain_id: c.map(|c| c.domain_id).or(domain),
            vocabulary_id: c.map(|c| c.vocabulary_id).or(vocabulary),
            standard_concept: c.and_then(|c| c.standard_concept),
            concept_name: c.map(|c| c.concept_name),
            valid_start_date: days_to_date(start),
            valid_end_date: days_to_date(end),
            origin,
        }
    }

    /// The descendants of a concept from `concept_ancestor`, the concept
    /// itself included at level 0 (as OHDSI's table does for standard
    /// concepts; it is added when the table lacks that row and the concept is
    /// known). The result is ordered by descendant id.
    pub fn descendants(&self, concept_id: i32) -> Result<Vec<AncestorLink>> {
        let df = self.ancestors.get()?;
        let mut out = Vec::new();
        if df.height() > 0 {
            let (anc, desc, min, max) = ancestor_columns(df)?;
            let lo = anc.partition_point(|&a| a < concept_id);
            let hi = lo + anc[lo..].partition_point(|&a| a == concept_id);
            for (offset, &descendant) in desc[lo..hi].iter().enumerate() {
                let row = lo + offset;
                out.push(AncestorLink {
                    concept_id: descendant,
                    min_levels_of_separation: min.get(row),
                    max_levels_of_separation: max.get(row),
                });
            }
        }
        self.ensure_self(concept_id, &mut out);
        Ok(out)
    }

    /// The ancestors of a concept from `concept_ancestor`, the concept itself
    /// included at level 0. The result is ordered by ancestor id.
    pub fn ancestors(&self, concept_id: i32) -> Result<Vec<AncestorLink>> {
        let df = self.ancestors.get()?;
        let mut out = Vec::new();
        if df.height() > 0 {
            let (anc, desc, min, max) = ancestor_columns(df)?;
            let perm = self.ancestor_by_descendant.get_or_init(|| {
                let mut rows: Vec<u32> = (0..desc.len() as u32).collect();
                rows.par_sort_by_key(|&r| (desc[r as usize], anc[r as usize]));
                rows
            });
            let lo = perm.partition_point(|&r| desc[r as usize] < concept_id);
            for &r in perm[lo..]
                .iter()
                .take_while(|&&r| desc[r as usize] == concept_id)
            {
                let r = r as usize;
                out.push(AncestorLink {
                    concept_id: anc[r],
                    min_levels_of_separation: min.get(r),
                    max_levels_of_separation: max.get(r),
                });
            }
        }
        self.ensure_self(concept_id, &mut out);
        Ok(out)
    }

    fn ensure_self(&self, concept_id: i32, out: &mut Vec<AncestorLink>) {
        let known = !out.is_empty() || self.concepts.row_of(concept_id).is_some();
        if known && !out.iter().any(|l| l.concept_id == concept_id) {
            let pos = out.partition_point(|l| l.concept_id < concept_id);
            out.insert(
                pos,
                AncestorLink {
                    concept_id,
                    min_levels_of_separation: Some(0),
                    max_levels_of_separation: Some(0),
                },
            );
        }
    }

    /// The `concept` table, sorted by `concept_id` (local concepts included).
    pub fn concepts(&self) -> &DataFrame {
        &self.concepts.df
    }

    /// The `concept_relationship` table (read from the cache on first use),
    /// with the relationships of local concepts appended.
    pub fn relationships(&self) -> Result<&DataFrame> {
        self.relationships.get()
    }

    /// The `concept_ancestor` table sorted by (ancestor, descendant), read
    /// from the cache on first use.
    pub fn ancestors_df(&self) -> Result<&DataFrame> {
        self.ancestors.get()
    }

    /// The `concept_synonym` table (read on first use).
    pub fn synonyms(&self) -> Result<&DataFrame> {
        self.synonyms.get()
    }

    /// The `drug_strength` table (read on first use).
    pub fn drug_strength(&self) -> Result<&DataFrame> {
        self.drug_strength.get()
    }

    /// The `vocabulary` table.
    pub fn vocabularies(&self) -> &DataFrame {
        &self.vocabularies
    }

    /// The `domain` table.
    pub fn domains(&self) -> &DataFrame {
        &self.domains
    }

    /// The `concept_class` table.
    pub fn concept_classes(&self) -> &DataFrame {
        &self.concept_classes
    }

    /// The `relationship` table (relationship types).
    pub fn relationship_types(&self) -> &DataFrame {
        &self.relationship_types
    }

    /// Every usable source code → standard concept mapping, for joins in the
    /// ETL engine. Columns: `source_vocabulary_id`, `source_code`,
    /// `source_concept_id` (i32), `target_concept_id` (i32),
    /// `target_domain_id`, `target_vocabulary_id`, `target_standard_concept`,
    /// `relationship_id` (`Maps to` or `Maps to value`), `valid_start_date`,
    /// `valid_end_date` (dates, of the mapping).
    ///
    /// Rows come from the vocabulary's valid 'Maps to' / 'Maps to value'
    /// relationships (`invalid_reason` empty; the source concept must be in
    /// `concept`), the relationships of local concepts, and the imported
    /// `source_to_concept_map` and Usagi mappings. A target that is missing
    /// from `concept` keeps the row, with the domain the mapping file gave or
    /// null. Filter on the dates to apply validity at an event date.
    pub fn source_to_standard(&self) -> Result<DataFrame> {
        if let Some(df) = self.source_to_standard.get() {
            return Ok(df.clone());
        }
        let df = self.build_source_to_standard()?;
        let _ = self.source_to_standard.set(df.clone());
        Ok(df)
    }

    fn build_source_to_standard(&self) -> Result<DataFrame> {
        let n = self.maps.len() + self.extras.rows.len();
        let mut s_vocab: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut s_code: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut s_id: Vec<i32> = Vec::with_capacity(n);
        let mut t_id: Vec<i32> = Vec::with_capacity(n);
        let mut t_domain: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut t_vocab: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut t_std: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut rel: Vec<&str> = Vec::with_capacity(n);
        let mut start: Vec<i32> = Vec::with_capacity(n);
        let mut end: Vec<i32> = Vec::with_capacity(n);

        for e in self.extras.rows.iter().filter(|e| !e.invalid) {
            let t = self.concepts.row_of(e.target_concept_id);
            s_vocab.push(Some(&e.source_vocabulary_id));
            s_code.push(Some(&e.source_code));
            s_id.push(e.source_concept_id);
            t_id.push(e.target_concept_id);
            t_domain.push(
                t.map(|r| self.concepts.domain_at(r))
                    .or(e.target_domain_id.as_deref()),
            );
            t_vocab.push(
                t.map(|r| self.concepts.vocabulary_at(r))
                    .or(e.target_vocabulary_id.as_deref()),
            );
            t_std.push(t.and_then(|r| self.concepts.standard_at(r)));
            rel.push(e.kind.relationship_id());
            start.push(e.start);
            end.push(e.end);
        }
        for m in &self.maps {
            let Some(s) = self.concepts.row_of(m.source) else {
                continue;
            };
            let t = self.concepts.row_of(m.target);
            s_vocab.push(Some(self.concepts.vocabulary_at(s)));
            s_code.push(Some(self.concepts.code_at(s)));
            s_id.push(m.source);
            t_id.push(m.target);
            t_domain.push(t.map(|r| self.concepts.domain_at(r)));
            t_vocab.push(t.map(|r| self.concepts.vocabulary_at(r)));
            t_std.push(t.and_then(|r| self.concepts.standard_at(r)));
            rel.push(m.kind.relationship_id());
            start.push(m.start);
            end.push(m.end);
        }
        let height = s_id.len();
        let date_col = |name: &str, v: Vec<i32>| {
            Int32Chunked::from_vec(name.into(), v)
                .into_date()
                .into_column()
        };
        DataFrame::new(
            height,
            vec![
                Column::new("source_vocabulary_id".into(), s_vocab),
                Column::new("source_code".into(), s_code),
                Column::new("source_concept_id".into(), s_id),
                Column::new("target_concept_id".into(), t_id),
                Column::new("target_domain_id".into(), t_domain),
                Column::new("target_vocabulary_id".into(), t_vocab),
                Column::new("target_standard_concept".into(), t_std),
                Column::new("relationship_id".into(), rel),
                date_col("valid_start_date", start),
                date_col("valid_end_date", end),
            ],
        )
        .map_err(|e| VocabError::polars("building source_to_standard", e))
    }

    /// Drops derived indexes after the concept or mapping set changed.
    pub(crate) fn invalidate(&mut self) {
        self.code_index = OnceLock::new();
        self.source_to_standard = OnceLock::new();
    }

    pub(crate) fn replace_concepts(&mut self, df: DataFrame) -> Result<()> {
        self.concepts = ConceptTable::new(df)?;
        self.invalidate();
        Ok(())
    }

    pub(crate) fn add_map_rows(&mut self, rows: Vec<MapRow>) {
        self.maps.extend(rows);
        sort_maps(&mut self.maps);
        self.invalidate();
    }
}

type AncestorColumns<'a> = (&'a [i32], &'a [i32], &'a Int32Chunked, &'a Int32Chunked);

fn ancestor_columns(df: &DataFrame) -> Result<AncestorColumns<'_>> {
    let err = |e| VocabError::polars("reading concept_ancestor", e);
    let anc = df
        .column("ancestor_concept_id")
        .and_then(|c| c.i32())
        .and_then(|c| c.cont_slice())
        .map_err(err)?;
    let desc = df
        .column("descendant_concept_id")
        .and_then(|c| c.i32())
        .and_then(|c| c.cont_slice())
        .map_err(err)?;
    let min = df
        .column("min_levels_of_separation")
        .and_then(|c| c.i32())
        .map_err(err)?;
    let max = df
        .column("max_levels_of_separation")
        .and_then(|c| c.i32())
        .map_err(err)?;
    Ok((anc, desc, min, max))
}

fn dedup_targets(out: &mut Vec<MappedConcept<'_>>) {
    let mut seen = std::collections::HashSet::new();
    out.retain(|m| seen.insert(m.concept_id));
}
