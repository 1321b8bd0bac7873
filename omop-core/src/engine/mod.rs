//! The ETL engine: runs a mapping pack over source tables and writes CDM tables.
//!
//! A run has these stages:
//! 1. load and lint the pack, check that every source file has the declared columns;
//! 2. load the vocabulary (cached as Parquet by `omop-vocab`);
//! 3. run the rules of *keyed* tables (tables other rules point to with `ref()`, such as
//!    person, visit_occurrence or provider) in dependency order, assigning their ids from the
//!    sorted source keys, so that the same input always gives the same ids;
//! 4. run every other rule, one pass per source (a reader thread parses ahead, a writer
//!    thread writes behind), numbering each table's rows in rule, then source row, order;
//! 5. derive observation_period, the eras and cdm_source;
//! 6. write everything (tables, lineage, quarantine, `report.json`) into a temporary folder
//!    next to the output and swap it into place only when all of it succeeded.

mod derive;
mod keymap;
mod lookup;
mod output;
pub mod report;
mod rule;
mod source;
mod vocab;

pub use report::RunReport;
pub use source::{DataRow, data_row, read_source};
pub use vocab::VocabTables;

use crate::cdm::{self, CdmVersion, TableSpec};
use crate::expr::{self, Ast};
use crate::mapping::{self, Pack, PackError, Rule, slots};
use polars::prelude::*;
use rayon::prelude::*;
use report::{SourceReport, StageTime};
use rule::{KEY, RULE, TABLE};
use source::{ROW, SourceTable};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An error that stops an ETL run. The previous output is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    /// The pack could not be read or has lint errors.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A source file is missing a declared column.
    #[error("{file}: missing column `{column}` (the file has: {found})")]
    MissingColumn {
        /// The source file.
        file: PathBuf,
        /// The missing column.
        column: String,
        /// The header found.
        found: String,
    },
    /// A source file cannot be read.
    #[error("{file}: {message}")]
    Source {
        /// The source file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The vocabulary could not be loaded.
    #[error("vocabulary: {0}")]
    Vocab(String),
    /// A rule failed.
    #[error("rule {rule}: {message}")]
    Rule {
        /// The rule id.
        rule: String,
        /// What went wrong.
        message: String,
    },
    /// A data operation failed.
    #[error("{stage}: {message}")]
    Data {
        /// Where.
        stage: String,
        /// The polars error.
        message: String,
    },
    /// Writing the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

pub(crate) fn polars_err(stage: &str, e: PolarsError) -> EtlError {
    EtlError::Data {
        stage: stage.to_string(),
        message: e.to_string(),
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EtlOptions {
    /// The pack folder (or its `pack.yaml`).
    pub pack: PathBuf,
    /// The folder with the source files.
    pub source: PathBuf,
    /// The vocabulary folder.
    pub vocab: PathBuf,
    /// Where the vocabulary's Parquet cache goes (default: inside the vocabulary folder, or
    /// a folder next to the output when that is read-only).
    pub vocab_cache: Option<PathBuf>,
    /// The output folder; replaced as a whole when the run succeeds.
    pub out: PathBuf,
    /// Source rows processed at once (default [`DEFAULT_CHUNK_ROWS`]); bounds memory.
    pub chunk_rows: Option<usize>,
}

/// Source rows a rule processes at once unless told otherwise.
pub const DEFAULT_CHUNK_ROWS: usize = 500_000;

/// Runs a pack. On success the output folder holds the CDM tables and `_omopkit/`.
pub fn run(opts: &EtlOptions) -> Result<RunReport, EtlError> {
    let started = Instant::now();
    let mut stages = Vec::new();
    let mut stage = |name: &str, t: Instant| {
        stages.push(StageTime {
            stage: name.to_string(),
            seconds: t.elapsed().as_secs_f64(),
        })
    };

    let t = Instant::now();
    let (pack, warnings) = mapping::load_and_lint(&opts.pack)?;
    let mut sources = BTreeMap::new();
    for rule in &pack.rules {
        if !sources.contains_key(&rule.source) {
            let src = &pack.sources[&rule.source];
            sources.insert(rule.source.clone(), SourceTable::open(src, &opts.source)?);
        }
    }
    stage("pack and sources", t);

    let t = Instant::now();
    let pack_dir = if opts.pack.is_dir() {
        opts.pack.clone()
    } else {
        opts.pack
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let vocab = VocabTables::load(
        &opts.vocab,
        opts.vocab_cache.as_deref(),
        &opts.out,
        &pack.vocabulary,
        &pack_dir,
    )?;
    stage("vocabulary", t);

    let staging = output::Staging::create(&opts.out)?;
    let mut run = Run {
        pack: &pack,
        vocab: &vocab,
        sources: &sources,
        staging: &staging,
        keymaps: HashMap::new(),
        report: Vec::new(),
        written: Written::default(),
        chunk_rows: opts.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS) as u64,
        prefetched: HashMap::new(),
        finished: HashSet::new(),
        pending: Vec::new(),
    };

    // Keyed tables first, in dependency order; then everything else.
    let (keyed_order, other_rules) = plan(&pack)?;
    for pass in keyed_passes(&pack, &keyed_order) {
        let t = Instant::now();
        let rules_of = |table: &str| -> Vec<u32> {
            (0..pack.rules.len() as u32)
                .filter(|&i| pack.rules[i as usize].table == table)
                .collect()
        };
        // Each rule may look up tables numbered before it in the same pass only afterwards.
        let mut deferred: HashMap<u32, BTreeSet<String>> = HashMap::new();
        for (n, table) in pass.iter().enumerate() {
            for idx in rules_of(table) {
                deferred.insert(idx, pass[..n].iter().cloned().collect());
            }
        }
        let mut states: HashMap<u32, RuleState> = HashMap::new();
        if pass.len() == 1 {
            // A table's rules may read different sources: one pass each.
            for idx in rules_of(&pass[0]) {
                let mut st = run.rules(&[idx], true, &deferred)?;
                states.insert(idx, st.remove(0));
            }
        } else {
            let group: Vec<u32> = pass.iter().flat_map(|t| rules_of(t)).collect();
            let st = run.rules(&group, true, &deferred)?;
            states.extend(group.into_iter().zip(st));
        }
        for table in &pass {
            let mut frames = Vec::new();
            for idx in rules_of(table) {
                let Some(mut st) = states.remove(&idx) else {
                    continue;
                };
                run.resolve_deferred(idx, &mut st, &deferred[&idx])?;
                frames.extend(run.finish_rule(idx, st)?);
            }
            run.finish_table(table_spec(table)?, frames)?;
        }
        stage(&format!("table {}", pass.join(" + ")), t);
    }
    // Event rules stream their rows into the table files as they finish, so memory holds
    // one rule's output at a time, not the whole CDM.
    // Rules reading the same source share one pass over it (in the order of their first rule).
    let t = Instant::now();
    for group in source_groups(&pack, &other_rules) {
        run.rules(&group, false, &HashMap::new())?;
    }
    run.written.close_writers()?;
    stage("event rules", t);

    // Look-ups into keyed tables are done; their memory goes to the derived tables.
    run.keymaps.clear();
    let t = Instant::now();
    run.derive()?;
    run.finish_writes()?;
    stage("derived tables", t);

    // Tables the pack does not fill are written empty, so every run has the same layout.
    let t = Instant::now();
    let written = run.written.tables;
    for spec in cdm::tables(CdmVersion::V54) {
        if spec.schema == cdm::TableSchema::Cdm && !written.contains_key(spec.name) {
            let mut empty = DataFrame::empty_with_schema(&spec.polars_schema());
            staging.write_parquet(&format!("{}.parquet", spec.name), &mut empty)?;
        }
    }
    stage("empty tables", t);
    let report = RunReport::new(
        &pack,
        vocab.version.clone(),
        run.report,
        written,
        warnings.iter().map(|w| w.to_string()).collect(),
        stages,
        started,
    );
    staging.write_json("_omopkit/report.json", &report)?;
    staging.commit()?;
    Ok(report)
}

fn table_spec(name: &str) -> Result<&'static TableSpec, EtlError> {
    cdm::table(CdmVersion::V54, name).ok_or_else(|| EtlError::Rule {
        rule: "-".into(),
        message: format!("unknown CDM table `{name}`"),
    })
}

/// CDM tables referred to by a rule: `ref(table, ...)` calls and `person`.
fn rule_refs(rule: &Rule) -> BTreeSet<String> {
    rule_ref_columns(rule).into_iter().map(|(t, _)| t).collect()
}

/// `(table, column)` for every `ref(table, key[, 'column'])` in one expression (`id` when no
/// column is named). Text that does not parse refers to nothing (lint reports it).
pub(crate) fn text_refs(text: &str) -> BTreeSet<(String, String)> {
    fn walk(ast: &Ast, out: &mut BTreeSet<(String, String)>) {
        match ast {
            Ast::Call(name, args) => {
                if name == "ref"
                    && let Some(Ast::Column(t) | Ast::Lit(expr::Lit::Str(t))) = args.first()
                {
                    let column = match args.get(2) {
                        Some(Ast::Lit(expr::Lit::Str(c))) => c.clone(),
                        _ => "id".to_string(),
                    };
                    out.insert((t.clone(), column));
                }
                args.iter().for_each(|a| walk(a, out));
            }
            Ast::Neg(a) | Ast::Not(a) | Ast::IsNull { expr: a, .. } | Ast::In { expr: a, .. } => {
                walk(a, out)
            }
            Ast::Binary(_, a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Ast::Column(_) | Ast::Lit(_) | Ast::Map(_) => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(ast) = expr::parse(text) {
        walk(&ast, &mut out);
    }
    out
}

/// Every expression text of a rule: its `where`, key, person and fields.
pub(crate) fn rule_texts(rule: &Rule) -> impl Iterator<Item = &String> {
    rule.filter
        .iter()
        .chain(&rule.key)
        .chain(&rule.person)
        .chain(rule.fields.values())
        .chain(rule.table_fields.values().flat_map(|m| m.values()))
}

/// `(table, column)` for every `ref(table, key[, 'column'])` of a rule, plus `(person, id)`
/// for its `person`.
fn rule_ref_columns(rule: &Rule) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for text in rule_texts(rule) {
        out.extend(text_refs(text));
    }
    if rule.person.is_some() {
        out.insert(("person".into(), "id".into()));
    }
    out
}

/// The keyed tables in passes: `order` split into runs of tables that can be numbered from
/// one pass over one source. A table joins the previous one's pass when all their rules read
/// the same source, none deduplicates, and its rules refer to the tables before it in the pass
/// only with whole-field `ref()`s, which are looked up once those tables are numbered (the
/// Synthea visit_detail rows point to visit_occurrence, and both come from encounters).
fn keyed_passes(pack: &Pack, order: &[String]) -> Vec<Vec<String>> {
    let rules_of =
        |table: &str| -> Vec<&Rule> { pack.rules.iter().filter(|r| r.table == table).collect() };
    let mut passes: Vec<Vec<String>> = Vec::new();
    for table in order {
        let rules = rules_of(table);
        if let Some(pass) = passes.last_mut() {
            let earlier: BTreeSet<String> = pass.iter().cloned().collect();
            let pass_rules: Vec<&Rule> = pass.iter().flat_map(|t| rules_of(t)).collect();
            let source = pass_rules.first().map(|r| r.source.as_str());
            let joins = !rules.is_empty()
                && pass_rules
                    .iter()
                    .chain(&rules)
                    .all(|r| Some(r.source.as_str()) == source && r.deduplicate.is_none())
                && rules
                    .iter()
                    .all(|r| rule::deferred_refs(r, &earlier).is_some());
            if joins {
                pass.push(table.clone());
                continue;
            }
        }
        passes.push(vec![table.clone()]);
    }
    passes
}

/// Whether the rows of `df` are already sorted by the integer columns `columns`, with nulls
/// last or first.
fn in_order(df: &DataFrame, columns: &[&str], nulls_last: bool) -> PolarsResult<bool> {
    let cols: Vec<Int64Chunked> = columns
        .iter()
        .map(|c| {
            Ok(df
                .column(c)?
                .cast(&DataType::Int64)?
                .i64()?
                .rechunk()
                .into_owned())
        })
        .collect::<PolarsResult<_>>()?;
    // (is null, value) sorts nulls last; (is not null, value) first.
    let at = |c: &Int64Chunked, i: usize| c.get(i).map_or((nulls_last, 0), |v| (!nulls_last, v));
    Ok((1..df.height()).all(|i| {
        for c in &cols {
            match at(c, i - 1).cmp(&at(c, i)) {
                std::cmp::Ordering::Less => return true,
                std::cmp::Ordering::Greater => return false,
                std::cmp::Ordering::Equal => {}
            }
        }
        true
    }))
}

/// `rules` grouped by source, in the order of each source's first rule; a rule that
/// deduplicates reads its source on its own.
fn source_groups(pack: &Pack, rules: &[u32]) -> Vec<Vec<u32>> {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut by_source: HashMap<&str, usize> = HashMap::new();
    for &idx in rules {
        let rule = &pack.rules[idx as usize];
        if rule.deduplicate.is_some() {
            groups.push(vec![idx]);
            continue;
        }
        match by_source.get(rule.source.as_str()) {
            Some(&g) => groups[g].push(idx),
            None => {
                by_source.insert(rule.source.as_str(), groups.len());
                groups.push(vec![idx]);
            }
        }
    }
    groups
}

/// The keyed tables in dependency order, and the indexes of the other rules.
fn plan(pack: &Pack) -> Result<(Vec<String>, Vec<u32>), EtlError> {
    let keyed: BTreeSet<String> = pack
        .rules
        .iter()
        .filter(|r| r.key.is_some())
        .map(|r| r.table.clone())
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> =
        keyed.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for rule in pack.rules.iter().filter(|r| keyed.contains(&r.table)) {
        let refs = rule_refs(rule);
        if let Some(d) = deps.get_mut(&rule.table) {
            d.extend(refs.into_iter().filter(|t| t != &rule.table));
        }
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < keyed.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(t, d)| {
                !order.contains(t) && d.iter().all(|x| order.contains(x) || !keyed.contains(x))
            })
            .map(|(t, _)| t.clone())
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&String> = keyed.iter().filter(|t| !order.contains(t)).collect();
            return Err(EtlError::Rule {
                rule: "-".into(),
                message: format!(
                    "the tables {stuck:?} refer to each other with ref(); break the cycle"
                ),
            });
        }
        order.extend(ready);
    }
    let others = pack
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !keyed.contains(&r.table))
        .map(|(i, _)| i as u32)
        .collect();
    Ok((order, others))
}

/// The rows of a source a rule with `deduplicate` keeps while the source is read: those its
/// leading `where` passes, or all of them.
struct Kept {
    filter: Option<Expr>,
    rows: Option<DataFrame>,
    /// Rows read.
    height: usize,
}

impl Kept {
    fn new(rule: &Rule, source: &SourceTable) -> Self {
        Self {
            filter: rule::leading_filter(rule, source).map(|(f, _)| f),
            rows: None,
            height: 0,
        }
    }

    fn add(&mut self, df: &DataFrame, rule: &str) -> Result<(), EtlError> {
        self.height += df.height();
        let df = match &self.filter {
            Some(f) => df
                .clone()
                .lazy()
                .filter(f.clone())
                .collect()
                .map_err(|e| polars_err(rule, e))?,
            None => df.clone(),
        };
        match &mut self.rows {
            Some(all) => {
                all.vstack_mut_owned(df).map_err(|e| polars_err(rule, e))?;
            }
            None => self.rows = Some(df),
        }
        Ok(())
    }
}

/// What one rule has done so far in a pass over its source.
#[derive(Default)]
struct RuleState {
    read: u64,
    written: u64,
    rejected_by_reason: BTreeMap<String, u64>,
    filtered_by_reason: BTreeMap<String, u64>,
    rejected: Vec<DataFrame>,
    stats: Vec<DataFrame>,
    keyed_rows: Vec<DataFrame>,
    /// Event rows kept until the pass ends (another rule of the pass streams their table).
    held: Vec<(&'static TableSpec, DataFrame)>,
    seconds: f64,
}

/// The state of one run.
struct Run<'a> {
    pack: &'a Pack,
    vocab: &'a VocabTables,
    sources: &'a BTreeMap<String, SourceTable>,
    staging: &'a output::Staging,
    keymaps: HashMap<String, std::sync::Arc<keymap::KeyMap>>,
    report: Vec<SourceReport>,
    /// Tables written so far and what they leave for later stages.
    written: Written,
    /// Source rows per chunk.
    chunk_rows: u64,
    /// Rows kept for rules with `deduplicate` by an earlier pass over their source.
    prefetched: HashMap<u32, Kept>,
    /// Rules whose pass is over (an earlier pass keeps rows only for rules still to run).
    finished: HashSet<u32>,
    /// Whole tables being written in the background.
    pending: Vec<std::thread::JoinHandle<Result<(), EtlError>>>,
}

/// What writing rows reads.
#[derive(Clone, Copy)]
struct WriteCtx<'a> {
    pack: &'a Pack,
    sources: &'a BTreeMap<String, SourceTable>,
    staging: &'a output::Staging,
}

/// Tables written so far and what they leave for later stages. During a pass over a source
/// it belongs to the thread that writes the pass's rows.
#[derive(Default)]
struct Written {
    /// Rows written per table.
    tables: BTreeMap<String, u64>,
    /// Narrow projections of written tables that the eras need.
    derived_inputs: HashMap<&'static str, Vec<DataFrame>>,
    /// Per batch of rows of the tables observation periods come from: each person's earliest
    /// start and latest end.
    period_spans: Vec<DataFrame>,
    /// Open Parquet writers of event tables.
    writers: BTreeMap<&'static str, output::TableWriter>,
}

impl Written {
    /// Event rows of one rule: ids continue the table's sequence in rule order, then source
    /// row order; rows and lineage are appended to the table's files.
    fn append_events(
        &mut self,
        ctx: WriteCtx<'_>,
        spec: &'static TableSpec,
        frame: DataFrame,
    ) -> Result<(), EtlError> {
        let stage = format!("table {}", spec.name);
        let mut order = vec![ROW];
        if let Some(c) = slots::slot_column(spec.name, "concept_id") {
            order.push(c);
        }
        // Rows usually arrive in source row order already (a code mapped to several
        // concepts is the exception); sorting them would gather every column again.
        let sorted = in_order(&frame, &order, false).map_err(|e| polars_err(&stage, e))?;
        let writer = match self.writers.entry(spec.name) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(output::TableWriter::create(ctx.staging, spec)?)
            }
        };
        let mut lf = frame.lazy();
        if !sorted {
            lf = lf.sort_by_exprs(
                order.into_iter().map(col).collect::<Vec<_>>(),
                SortMultipleOptions::default().with_maintain_order(true),
            );
        }
        if let Some(pk) = spec.primary_key() {
            let offset = writer.rows;
            lf = lf
                .with_row_index("__id", Some(1))
                .with_column(
                    (col("__id").cast(DataType::Int64) + lit(offset as i64))
                        .cast(pk.polars_dtype())
                        .alias(pk.name),
                )
                .drop(cols(["__id"]));
        }
        let started = Instant::now();
        let df = lf.collect().map_err(|e| polars_err(&stage, e))?;
        let names: Vec<&str> = spec.fields.iter().map(|f| f.name).collect();
        let table = df.select(names).map_err(|e| polars_err(&stage, e))?;
        let lineage = output::lineage(ctx.pack, ctx.sources, spec, &df)?;
        writer.append(ctx.staging, &table, &lineage)?;
        tracing::debug!(
            table = spec.name,
            rows = table.height(),
            seconds = started.elapsed().as_secs_f64(),
            "rows appended"
        );
        self.keep_for_derived(ctx, spec, &table)?;
        *self.tables.entry(spec.name.to_string()).or_insert(0) += table.height() as u64;
        Ok(())
    }

    fn close_writers(&mut self) -> Result<(), EtlError> {
        for (_, w) in std::mem::take(&mut self.writers) {
            w.finish()?;
        }
        Ok(())
    }

    fn keep_for_derived(
        &mut self,
        ctx: WriteCtx<'_>,
        spec: &'static TableSpec,
        table: &DataFrame,
    ) -> Result<(), EtlError> {
        let wanted_for_period = ctx
            .pack
            .observation_period
            .as_ref()
            .is_some_and(|p| p.from.iter().any(|t| t == spec.name));
        let eras = ctx.pack.eras.as_ref();
        let wanted_for_era = (spec.name == "condition_occurrence"
            && eras.is_some_and(|e| e.condition_era.is_some()))
            || (spec.name == "drug_exposure" && eras.is_some_and(|e| e.drug_era.is_some()));
        if !wanted_for_period && !wanted_for_era {
            return Ok(());
        }
        let slot = |s: &str| slots::slot_column(spec.name, s);
        let mut sel = vec![col("person_id")];
        sel.push(
            slot("start_date")
                .map_or(lit(NULL).cast(DataType::Date), col)
                .alias("start"),
        );
        sel.push(
            slot("end_date")
                .map_or(lit(NULL).cast(DataType::Date), col)
                .alias("end"),
        );
        sel.push(slot("concept_id").map_or(lit(0), col).alias("concept_id"));
        if spec.name == "drug_exposure" {
            sel.push(col("days_supply"));
        }
        let narrow = table.clone().lazy().select(sel);
        if wanted_for_period {
            // Observation periods only need each person's earliest start and latest end, so
            // each batch is reduced to one row per person right away.
            let spans = narrow
                .clone()
                .filter(col("start").is_not_null())
                .group_by([col("person_id")])
                .agg([
                    col("start").min(),
                    coalesce(&[col("end"), col("start")]).max().alias("end"),
                ])
                .collect()
                .map_err(|e| polars_err("derived inputs", e))?;
            self.period_spans.push(spans);
        }
        if wanted_for_era {
            let narrow = narrow
                .collect()
                .map_err(|e| polars_err("derived inputs", e))?;
            self.derived_inputs
                .entry(spec.name)
                .or_default()
                .push(narrow);
        }
        Ok(())
    }
}

impl<'a> Run<'a> {
    fn ctx(&self) -> WriteCtx<'a> {
        WriteCtx {
            pack: self.pack,
            sources: self.sources,
            staging: self.staging,
        }
    }

    /// Runs rules that read the same source over one pass of it, in chunks of at most
    /// `chunk_rows` rows, so memory holds one chunk's rows at a time. Event rows go straight to
    /// the table files: each table's rows come from the first rule of `group` writing it, and
    /// any later rule of `group` writing the same table keeps its rows until the pass ends, so
    /// ids still follow rule, then source row, order. Rows of keyed tables are returned per rule
    /// (their ids need every row), with the rules' states: the caller finishes them with
    /// [`Run::finish_rule`] once any `ref()` left for after the pass (`deferred`, the tables
    /// each rule looks up afterwards) is resolved. A rule that deduplicates needs all its rows
    /// at once and runs alone over the whole file.
    fn rules(
        &mut self,
        group: &[u32],
        keyed: bool,
        deferred: &HashMap<u32, BTreeSet<String>>,
    ) -> Result<Vec<RuleState>, EtlError> {
        let pack = self.pack;
        let rules: Vec<&Rule> = group.iter().map(|&i| &pack.rules[i as usize]).collect();
        let none = BTreeSet::new();
        let Some(first) = rules.first() else {
            return Ok(Vec::new());
        };
        let source = &self.sources[&first.source];
        let mut states: Vec<RuleState> = rules.iter().map(|_| RuleState::default()).collect();
        // The first rule of the group that writes a table streams it.
        let mut streams: BTreeMap<String, usize> = BTreeMap::new();
        for (k, rule) in rules.iter().enumerate() {
            for t in mapping::lint::rule_tables(rule) {
                streams.entry(t.to_string()).or_insert(k);
            }
        }
        let whole = rules.iter().any(|r| r.deduplicate.is_some());
        let chunk = self.chunk_rows.max(1) as usize;
        // The rules' plans over one slice of rows (no shared state is touched, so two slices
        // can be computed at once), then their results committed in slice order.
        let vocab = self.vocab;
        let compute = |keymaps: &HashMap<String, std::sync::Arc<keymap::KeyMap>>,
                       input: &DataFrame|
         -> Result<Vec<(rule::RuleResult, f64)>, EtlError> {
            rules
                .iter()
                .enumerate()
                .map(|(k, rule)| {
                    let t = Instant::now();
                    let result = rule::run_rule(
                        group[k],
                        rule,
                        source,
                        vocab,
                        keymaps,
                        deferred.get(&group[k]).unwrap_or(&none),
                        input.clone().lazy(),
                    )?;
                    Ok((result, t.elapsed().as_secs_f64()))
                })
                .collect()
        };
        // `out` takes the event rows of tables this group streams.
        type Out<'o> = dyn FnMut(&'static TableSpec, DataFrame) -> Result<(), EtlError> + 'o;
        let commit = |out: &mut Out<'_>,
                      states: &mut [RuleState],
                      results: Vec<(rule::RuleResult, f64)>,
                      height: u64|
         -> Result<(), EtlError> {
            for (k, (result, seconds)) in results.into_iter().enumerate() {
                let rule = rules[k];
                let st = &mut states[k];
                let r: u64 = result.rejected_by_reason.values().sum();
                let f: u64 = result.filtered_by_reason.values().sum();
                if result.read != result.written + r + f || result.read > height {
                    return Err(EtlError::Rule {
                        rule: rule.id.clone(),
                        message: format!(
                            "internal accounting error: {height} rows in, read {} != written {} + rejected {r} + filtered {f}",
                            result.read, result.written
                        ),
                    });
                }
                // Rows a leading `where` dropped before the rule counted them.
                if let Some(reason) = result.early_filter
                    && height > result.read
                {
                    *st.filtered_by_reason.entry(reason).or_insert(0) += height - result.read;
                }
                st.read += height;
                st.written += result.written;
                for (reason, n) in result.rejected_by_reason {
                    *st.rejected_by_reason.entry(reason).or_insert(0) += n;
                }
                for (reason, n) in result.filtered_by_reason {
                    *st.filtered_by_reason.entry(reason).or_insert(0) += n;
                }
                st.stats.extend(result.code_stats);
                if result.rejected.height() > 0 {
                    st.rejected.push(result.rejected);
                }
                let t = Instant::now();
                for (spec, frame) in result.outputs {
                    if keyed {
                        st.keyed_rows.push(frame);
                    } else if streams.get(spec.name) == Some(&k) {
                        out(spec, frame)?;
                    } else {
                        st.held.push((spec, frame));
                    }
                }
                st.seconds += seconds + t.elapsed().as_secs_f64();
            }
            Ok(())
        };
        // Computes a batch of slices at once (one per core) and commits them in order.
        let run_batch = |keymaps: &HashMap<String, std::sync::Arc<keymap::KeyMap>>,
                         out: &mut Out<'_>,
                         states: &mut [RuleState],
                         batch: &mut Vec<DataFrame>|
         -> Result<(), EtlError> {
            let parts = std::mem::take(batch);
            let results: Vec<Result<Vec<(rule::RuleResult, f64)>, EtlError>> = if parts.len() == 1 {
                vec![compute(keymaps, &parts[0])]
            } else {
                parts.par_iter().map(|p| compute(keymaps, p)).collect()
            };
            for (part, result) in parts.iter().zip(results) {
                commit(out, states, result?, part.height() as u64)?;
            }
            Ok(())
        };
        if whole {
            // All rows at once; a leading `where` is applied while reading, so only the rows
            // it keeps are held (the rule applies it again and counts the others as filtered).
            // An earlier pass over the same source may have kept the rows already.
            let t = Instant::now();
            let kept = match self.prefetched.remove(&group[0]) {
                Some(kept) if rules.len() == 1 => kept,
                _ => {
                    let mut kept = Kept::new(first, source);
                    // The reader gives at least one (possibly empty) chunk.
                    let mut reader = source.chunks()?;
                    while let Some(df) = reader.next_chunk()? {
                        kept.add(&df, &first.id)?;
                    }
                    kept
                }
            };
            let height = kept.height;
            let kept = kept.rows.unwrap_or_default();
            let read_seconds = t.elapsed().as_secs_f64();
            let result = compute(&self.keymaps, &kept)?;
            let ctx = self.ctx();
            let written = &mut self.written;
            commit(
                &mut |spec, frame| written.append_events(ctx, spec, frame),
                &mut states,
                result,
                height as u64,
            )?;
            states[0].seconds += read_seconds;
        } else {
            // A reader thread parses the next chunk while the rules work on this one, and a
            // writer thread sorts, numbers and writes the rules' rows of the previous one.
            let mut reader = source.chunks()?;
            // Rules with `deduplicate` that read this source later keep their rows now, so
            // the file is not read again for them (the Synthea death rule and encounters).
            let mut fills: Vec<(u32, Kept)> = (0..pack.rules.len() as u32)
                .filter(|r| {
                    let rule = &pack.rules[*r as usize];
                    rule.deduplicate.is_some()
                        && rule.source == first.source
                        && !group.contains(r)
                        && !self.prefetched.contains_key(r)
                        && !self.finished.contains(r)
                })
                .map(|r| (r, Kept::new(&pack.rules[r as usize], source)))
                // Only rows a `where` picks out: keeping a whole file through other passes
                // would cost more memory than reading it again costs time.
                .filter(|(_, kept)| kept.filter.is_some())
                .collect();
            let ctx = self.ctx();
            let keymaps = &self.keymaps;
            let written = &mut self.written;
            std::thread::scope(|scope| -> Result<(), EtlError> {
                let (tx, rx) =
                    std::sync::mpsc::sync_channel::<Result<(DataFrame, f64), EtlError>>(1);
                scope.spawn(move || {
                    loop {
                        let t = Instant::now();
                        let next = reader
                            .next_chunk()
                            .map(|c| c.map(|df| (df, t.elapsed().as_secs_f64())))
                            .transpose();
                        let Some(next) = next else {
                            break;
                        };
                        let failed = next.is_err();
                        // The receiver is gone when a rule failed: stop reading.
                        if tx.send(next).is_err() || failed {
                            break;
                        }
                    }
                });
                let (wtx, wrx) =
                    std::sync::mpsc::sync_channel::<(&'static TableSpec, DataFrame)>(2);
                let writer = scope.spawn(move || -> Result<(), EtlError> {
                    for (spec, frame) in wrx {
                        written.append_events(ctx, spec, frame)?;
                    }
                    Ok(())
                });
                let mut out = move |spec: &'static TableSpec, frame| {
                    // Sending fails only once the writer stopped on an error; joining it
                    // below reports that error.
                    wtx.send((spec, frame)).map_err(|_| EtlError::Rule {
                        rule: first.id.clone(),
                        message: "the table writer stopped".into(),
                    })
                };
                let computed = (|| -> Result<(), EtlError> {
                    // Slices computed at once: one per core of this machine's two.
                    const BATCH: usize = 2;
                    let mut batch = Vec::with_capacity(BATCH);
                    for next in rx {
                        let (df, seconds) = next?;
                        for (r, kept) in fills.iter_mut() {
                            kept.add(&df, &pack.rules[*r as usize].id)?;
                        }
                        // Parsing is shared by the group; its time is split evenly.
                        let share = seconds / states.len() as f64;
                        states.iter_mut().for_each(|s| s.seconds += share);
                        // (An empty file gives one empty chunk, which is processed too.)
                        let mut offset = 0;
                        loop {
                            batch.push(df.slice(offset as i64, chunk));
                            if batch.len() == BATCH {
                                run_batch(keymaps, &mut out, &mut states, &mut batch)?;
                            }
                            offset += chunk;
                            if offset >= df.height() {
                                break;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        run_batch(keymaps, &mut out, &mut states, &mut batch)?;
                    }
                    Ok(())
                })();
                // Closing the channel ends the writer.
                drop(out);
                let wrote = writer.join().unwrap_or_else(|_| {
                    Err(EtlError::Rule {
                        rule: first.id.clone(),
                        message: "the table writer panicked".into(),
                    })
                });
                // The writer's error is the cause when both failed.
                wrote.and(computed)
            })?;
            self.prefetched.extend(fills);
        }

        self.finished.extend(group.iter().copied());
        if keyed {
            return Ok(states);
        }
        for (&idx, mut st) in group.iter().zip(states) {
            for (spec, frame) in std::mem::take(&mut st.held) {
                let ctx = self.ctx();
                self.written.append_events(ctx, spec, frame)?;
            }
            self.finish_rule(idx, st)?;
        }
        Ok(Vec::new())
    }

    /// Checks a rule's accounting, writes its quarantine and adds it to the report; gives back
    /// its rows of keyed tables.
    fn finish_rule(&mut self, idx: u32, st: RuleState) -> Result<Vec<DataFrame>, EtlError> {
        let rule = &self.pack.rules[idx as usize];
        let source = &self.sources[&rule.source];
        let rejected_rows: u64 = st.rejected_by_reason.values().sum();
        let filtered_rows: u64 = st.filtered_by_reason.values().sum();
        if st.read != st.written + rejected_rows + filtered_rows {
            return Err(EtlError::Rule {
                rule: rule.id.clone(),
                message: format!(
                    "internal accounting error: read {} != written {} + rejected {rejected_rows} + filtered {filtered_rows}",
                    st.read, st.written
                ),
            });
        }
        if !st.rejected.is_empty() {
            let all = concat(
                st.rejected
                    .into_iter()
                    .map(|d| d.lazy())
                    .collect::<Vec<_>>(),
                UnionArgs::default(),
            )
            .and_then(|l| l.collect())
            .map_err(|e| polars_err("quarantine", e))?;
            output::write_quarantine(self.staging, rule, source, &all)?;
        }
        let coverage = match &rule.concept {
            Some(c) if !st.stats.is_empty() => Some(rule::coverage(st.stats, c)?),
            _ => None,
        };
        tracing::debug!(rule = %rule.id, seconds = st.seconds, "rule done");
        self.report.push(SourceReport {
            rule: rule.id.clone(),
            source: rule.source.clone(),
            file: source.file.clone(),
            rows_read: st.read,
            rows_written: st.written,
            rows_rejected: rejected_rows,
            rows_filtered: filtered_rows,
            rejected_by_reason: st.rejected_by_reason,
            filtered_by_reason: st.filtered_by_reason,
            coverage,
            seconds: st.seconds,
        });
        Ok(st.keyed_rows)
    }

    /// Fills the fields of a rule's keyed rows that `ref()` tables numbered in the same pass
    /// (now that they are), with the checks those fields skipped during the pass: a value
    /// that does not convert to the field's type, or an empty required field, rejects the row.
    fn resolve_deferred(
        &self,
        idx: u32,
        st: &mut RuleState,
        tables: &BTreeSet<String>,
    ) -> Result<(), EtlError> {
        let rule = &self.pack.rules[idx as usize];
        let err = |message: String| EtlError::Rule {
            rule: rule.id.clone(),
            message,
        };
        let refs = rule::deferred_refs(rule, tables)
            .ok_or_else(|| err(format!("internal: cannot share a pass with {tables:?}")))?;
        if refs.is_empty() {
            return Ok(());
        }
        let spec = table_spec(&rule.table)?;
        let perr = |e| polars_err(&rule.id, e);
        // One frame: its rows with the fields filled, and its rejected rows with their reasons.
        let resolve = |mut df: DataFrame| -> Result<(DataFrame, Vec<String>, DataFrame), EtlError> {
            let mut reason: Vec<Option<String>> = vec![None; df.height()];
            for r in &refs {
                let map = self.keymaps.get(&r.table).ok_or_else(|| {
                    err(format!(
                        "ref({}, ...): {} is not numbered",
                        r.table, r.table
                    ))
                })?;
                let carried = format!("{}{}", rule::DEFERRED, r.field.name);
                let dtype = r.field.polars_dtype();
                let keys = df.column(&carried).map_err(perr)?;
                let rows = map.rows(keys.str().map_err(perr)?);
                let found = map
                    .frame
                    .column(&r.column)
                    .and_then(|c| c.take(&rows))
                    .map_err(perr)?;
                let value = found.cast(&dtype).map_err(perr)?;
                let unconverted = format!(
                    "{}.{}: `{}` does not convert to {dtype}",
                    spec.name, r.field.name, r.text
                );
                let empty = format!("required field {}.{} is empty", spec.name, r.field.name);
                let missing = value.is_null();
                let looked_up = found.is_not_null();
                for ((why, missing), looked_up) in
                    reason.iter_mut().zip(missing.iter()).zip(looked_up.iter())
                {
                    if why.is_some() || missing != Some(true) {
                        continue;
                    }
                    if looked_up == Some(true) {
                        *why = Some(unconverted.clone());
                    } else if r.field.required {
                        *why = Some(empty.clone());
                    }
                }
                df.with_column(value.with_name(r.field.name.into()))
                    .map_err(perr)?;
                df.drop_in_place(&carried).map_err(perr)?;
            }
            if reason.iter().all(Option::is_none) {
                return Ok((df, Vec::new(), DataFrame::empty()));
            }
            let bad =
                BooleanChunked::from_iter_values("bad".into(), reason.iter().map(Option::is_some));
            let why: Vec<String> = reason.into_iter().flatten().collect();
            let mut rejected = df
                .filter(&bad)
                .and_then(|r| r.select([ROW]))
                .map_err(perr)?;
            let n = rejected.height();
            let texts = StringChunked::from_iter_values(
                rule::REJECT.into(),
                why.iter().map(String::as_str),
            );
            rejected
                .with_column(Column::new(TABLE.into(), vec![spec.name; n]))
                .and_then(|r| r.with_column(texts.into_column()))
                .map_err(perr)?;
            let df = df.filter(&!&bad).map_err(perr)?;
            Ok((df, why, rejected))
        };
        let frames = std::mem::take(&mut st.keyed_rows);
        let resolved: Vec<_> = {
            use rayon::prelude::*;
            frames.into_par_iter().map(resolve).collect()
        };
        for r in resolved {
            let (df, why, rejected) = r?;
            st.keyed_rows.push(df);
            if why.is_empty() {
                continue;
            }
            st.written -= why.len() as u64;
            for w in why {
                *st.rejected_by_reason.entry(w).or_insert(0) += 1;
            }
            st.rejected.push(rejected);
        }
        Ok(())
    }

    /// Rows of a keyed table: ids in source-key order; rows with the same key are one CDM row
    /// (the first in rule, source row and concept order).
    fn finish_table(
        &mut self,
        spec: &'static TableSpec,
        frames: Vec<DataFrame>,
    ) -> Result<(), EtlError> {
        let started = Instant::now();
        let stage = format!("table {}", spec.name);
        let err = |e| polars_err(&stage, e);
        let frames: Vec<LazyFrame> = frames.into_iter().map(|f| f.lazy()).collect();
        let df = concat(
            frames,
            UnionArgs {
                diagonal: true,
                ..Default::default()
            },
        )
        .and_then(|lf| lf.collect())
        .map_err(err)?;
        // Rows in rule, source row and concept order (usually already so), as positions.
        let mut tie = vec![RULE, ROW];
        if let Some(c) = slots::slot_column(spec.name, "concept_id") {
            tie.push(c);
        }
        let tied = if in_order(&df, &tie, true).map_err(err)? {
            IdxCa::from_vec("__pos".into(), (0..df.height() as IdxSize).collect())
        } else {
            let tie: Vec<Expr> = tie.into_iter().map(col).collect();
            let tied = df
                .clone()
                .lazy()
                .select(tie.clone())
                .with_row_index("__pos", None)
                .sort_by_exprs(
                    tie,
                    SortMultipleOptions::default()
                        .with_nulls_last(true)
                        .with_maintain_order(true),
                )
                .select([col("__pos")])
                .collect()
                .map_err(err)?;
            tied.column("__pos")
                .and_then(|c| c.idx())
                .map_err(err)?
                .clone()
        };
        let keys = df.column(KEY).and_then(|c| c.str()).map_err(err)?;
        let positions = keymap::first_by_key(keys, &tied);
        // Ids are 1.. in key order.
        let ids = |name: &str, dtype: DataType| {
            Column::new(
                name.into(),
                (1..=positions.len() as i64).collect::<Vec<i64>>(),
            )
            .cast(&dtype)
        };
        // The key map keeps the id and the columns other rules read with
        // `ref(table, key, 'column')`.
        let wanted: BTreeSet<String> = self
            .pack
            .rules
            .iter()
            .flat_map(rule_ref_columns)
            .filter(|(t, c)| t == spec.name && c != "id")
            .map(|(_, c)| c)
            .collect();
        let others: Vec<std::sync::Arc<keymap::KeyMap>> = self.keymaps.values().cloned().collect();
        // The wide rows are gathered while the key map is hashed.
        let (df, map) = rayon::join(
            || -> PolarsResult<DataFrame> {
                let mut df = df.take(&positions)?;
                if let Some(pk) = spec.primary_key() {
                    df.with_column(ids(pk.name, pk.polars_dtype())?)?;
                }
                // Columns no rule fills were left out of the rows until now.
                for f in spec.fields {
                    if df.column(f.name).is_err() {
                        let empty =
                            Column::full_null(f.name.into(), df.height(), &f.polars_dtype());
                        df.with_column(empty)?;
                    }
                }
                Ok(df)
            },
            || -> PolarsResult<Option<keymap::KeyMap>> {
                let Some(pk) = spec.primary_key() else {
                    return Ok(None);
                };
                let mut keep = vec![KEY.to_string()];
                keep.extend(wanted.iter().filter(|c| df.column(c).is_ok()).cloned());
                // The key map keeps the rows in source order, not id order: rules that look
                // keys up read their sources in much the same order (a patient's encounters,
                // then that patient's conditions), so consecutive look-ups touch nearby
                // memory. In id order every look-up was a cache miss.
                let mut by_row: Vec<(IdxSize, i64)> =
                    positions.iter().flatten().zip(1i64..).collect();
                by_row.sort_unstable();
                let rows = IdxCa::from_vec("rows".into(), by_row.iter().map(|p| p.0).collect());
                let mut map = df.select(keep)?.take(&rows)?;
                map.rename(KEY, "key".into())?;
                let id = Column::new(
                    "id".into(),
                    by_row.iter().map(|p| p.1).collect::<Vec<i64>>(),
                );
                map.with_column(id.cast(&pk.polars_dtype())?)?;
                keymap::key_map(map, &others).map(Some)
            },
        );
        let df = df.map_err(err)?;
        if let Some(map) = map.map_err(err)? {
            self.keymaps
                .insert(spec.name.to_string(), std::sync::Arc::new(map));
        }
        tracing::debug!(
            table = spec.name,
            rows = df.height(),
            seconds = started.elapsed().as_secs_f64(),
            "keyed rows numbered"
        );
        self.write_table(spec, df)
    }

    /// Writes a whole table and its lineage. The Parquet files are written on threads of
    /// their own while the run goes on (the visit tables' files took about a second each);
    /// [`Run::finish_writes`] waits for them.
    fn write_table(&mut self, spec: &'static TableSpec, df: DataFrame) -> Result<(), EtlError> {
        let stage = format!("table {}", spec.name);
        let names: Vec<&str> = spec.fields.iter().map(|f| f.name).collect();
        let table = df.select(names).map_err(|e| polars_err(&stage, e))?;
        if df.column(RULE).is_ok() {
            let lineage = output::lineage(self.pack, self.sources, spec, &df)?;
            self.pending.push(self.staging.write_parquet_in_background(
                &format!("_omopkit/lineage/{}.parquet", spec.name),
                lineage,
            )?);
        }
        let ctx = self.ctx();
        self.written.keep_for_derived(ctx, spec, &table)?;
        self.written
            .tables
            .insert(spec.name.to_string(), table.height() as u64);
        self.pending.push(
            self.staging
                .write_parquet_in_background(&format!("{}.parquet", spec.name), table)?,
        );
        Ok(())
    }

    /// Waits for the tables being written in the background; the first error is returned.
    fn finish_writes(&mut self) -> Result<(), EtlError> {
        let mut result = Ok(());
        for handle in self.pending.drain(..) {
            let done = handle.join().unwrap_or_else(|_| {
                Err(EtlError::Data {
                    stage: "writing tables".into(),
                    message: "a table writer panicked".into(),
                })
            });
            if result.is_ok() {
                result = done;
            }
        }
        result
    }

    /// The kept projection of a written table, as one lazy frame.
    fn derived_input(&self, table: &str) -> Option<LazyFrame> {
        let parts = self.written.derived_inputs.get(table)?;
        concat(
            parts.iter().map(|df| df.clone().lazy()).collect::<Vec<_>>(),
            UnionArgs::default(),
        )
        .ok()
    }

    fn derive(&mut self) -> Result<(), EtlError> {
        if let Some(p) = &self.pack.observation_period {
            let spans: Vec<LazyFrame> = std::mem::take(&mut self.written.period_spans)
                .into_iter()
                .map(|df| df.lazy())
                .collect();
            if !spans.is_empty() {
                let t = Instant::now();
                let df = derive::observation_period(spans, p.period_type_concept_id)?;
                tracing::debug!(
                    seconds = t.elapsed().as_secs_f64(),
                    "observation_period derived"
                );
                self.write_table(table_spec("observation_period")?, df)?;
            }
        }
        if let Some(eras) = &self.pack.eras {
            // The two eras are independent; each is computed on a thread of its own.
            let occ = eras
                .condition_era
                .as_ref()
                .zip(self.derived_input("condition_occurrence"));
            let exp = eras
                .drug_era
                .as_ref()
                .zip(self.derived_input("drug_exposure"));
            let ingredients = self.vocab.ingredients.clone().lazy();
            let (conditions, drugs) = std::thread::scope(|scope| {
                let conditions = scope.spawn(move || {
                    let t = Instant::now();
                    let era = occ.map(|(e, occ)| derive::condition_era(occ, e.gap_days));
                    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "condition_era derived");
                    era
                });
                let t = Instant::now();
                let drugs = exp.map(|(e, exp)| derive::drug_era(exp, ingredients, e.gap_days));
                tracing::debug!(seconds = t.elapsed().as_secs_f64(), "drug_era derived");
                (conditions.join(), drugs)
            });
            let conditions = conditions.unwrap_or_else(|_| {
                Some(Err(EtlError::Data {
                    stage: "condition_era".into(),
                    message: "the era builder panicked".into(),
                }))
            });
            if let Some(df) = conditions {
                self.write_table(table_spec("condition_era")?, df?)?;
            }
            if let Some(df) = drugs {
                self.write_table(table_spec("drug_era")?, df?)?;
            }
        }
        if let Some(info) = &self.pack.cdm_source {
            let today = chrono::Utc::now().date_naive();
            let df = output::cdm_source(info, self.vocab.version.as_deref(), today)
                .map_err(|e| polars_err("cdm_source", e))?;
            self.write_table(table_spec("cdm_source")?, df)?;
        }
        Ok(())
    }
}

/// Path helper for tests and callers: the report file inside an output folder.
pub fn report_path(out: &Path) -> PathBuf {
    out.join("_omopkit").join("report.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_compares_columns_left_to_right_with_nulls_last() {
        let df = df!(
            "a" => [1u32, 1, 1, 2],
            "b" => [Some(5i64), Some(7), None, Some(0)],
        )
        .unwrap();
        assert!(in_order(&df, &["a", "b"], true).unwrap());
        assert!(!in_order(&df, &["a", "b"], false).unwrap());
        assert!(!in_order(&df, &["b"], true).unwrap());
        let swapped = df!(
            "a" => [1u32, 1],
            "b" => [None, Some(3i64)],
        )
        .unwrap();
        assert!(!in_order(&swapped, &["a", "b"], true).unwrap());
        assert!(in_order(&swapped, &["a", "b"], false).unwrap());
        assert!(in_order(&df.head(Some(0)), &["a", "b"], true).unwrap());
    }
}
