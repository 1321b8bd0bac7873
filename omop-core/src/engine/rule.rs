//! Execution of one mapping rule: a source table becomes rows of one or more CDM tables.
//!
//! The whole rule is one lazy polars plan. Rows are never removed inside the plan:
//! they are flagged (`__drop` for rows filtered by an explicit rule, `__reject` for
//! rows that break a check), so that every source row can be accounted for after
//! the plan has run.

use super::source::{ROW, SourceTable};
use super::{EtlError, VocabTables, lookup, polars_err};
use crate::cdm::{self, CdmVersion, TableSpec};
use crate::expr::{self, Ast, Compiler, JoinKind};
use crate::mapping::{
    Rule, Unmapped, Unrouted, lint::VIRTUAL_COLUMNS, lint::engine_filled, lint::field_for,
    lint::rule_tables, slots,
};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) const TABLE: &str = "__table";
pub(crate) const DROP: &str = "__drop";
pub(crate) const REJECT: &str = "__reject";
pub(crate) const KEY: &str = "__key";
pub(crate) const RULE: &str = "__rule";
const CODE: &str = "__code";
/// Prefix of the columns that carry the source key of a field whose `ref()` is looked up
/// after the pass (see [`deferred_refs`]).
pub(crate) const DEFERRED: &str = "__deferred.";

/// A field whose whole value is `ref(table, key[, 'column'])` into a keyed table that is
/// numbered in the same pass over the source as the rule's own table: the rule carries the
/// key, and the value is looked up once that table is numbered.
pub(crate) struct DeferredRef {
    /// The field of the rule's table.
    pub field: &'static cdm::FieldSpec,
    /// The field's expression, for error messages.
    pub text: String,
    /// The keyed table referred to.
    pub table: String,
    /// Its column read (`id` unless named).
    pub column: String,
}

/// The fields of `rule` whose value is a `ref()` into one of `tables`. `None` when `rule`
/// refers to those tables in any other way (inside a larger expression, in its key, person or
/// `where`), or routes by concept or deduplicates: then it cannot share their pass.
pub(crate) fn deferred_refs(rule: &Rule, tables: &BTreeSet<String>) -> Option<Vec<DeferredRef>> {
    let mut out = Vec::new();
    if tables.is_empty() {
        return Some(out);
    }
    let spec = cdm::table(CdmVersion::V54, &rule.table)?;
    let mut whole: BTreeSet<&str> = BTreeSet::new();
    for f in spec.fields {
        let Some((_, text)) = field_for(rule, spec.name, f.name) else {
            continue;
        };
        if let Ok(Ast::Call(name, args)) = expr::parse(text)
            && name == "ref"
            && let Some(Ast::Column(t) | Ast::Lit(expr::Lit::Str(t))) = args.first()
            && tables.contains(t)
        {
            let column = match args.get(2) {
                None if args.len() == 2 => "id".to_string(),
                Some(Ast::Lit(expr::Lit::Str(c))) if args.len() == 3 => c.clone(),
                _ => return None,
            };
            out.push(DeferredRef {
                field: f,
                text: text.to_string(),
                table: t.clone(),
                column,
            });
            whole.insert(text);
        }
    }
    let others = super::rule_texts(rule).filter(|t| !whole.contains(t.as_str()));
    for text in others {
        if super::text_refs(text)
            .iter()
            .any(|(t, _)| tables.contains(t))
        {
            return None;
        }
    }
    if rule.person.is_some() && tables.contains("person") {
        return None;
    }
    if !out.is_empty()
        && (rule.concept.is_some() || rule.deduplicate.is_some() || !rule.table_fields.is_empty())
    {
        return None;
    }
    Some(out)
}

/// What one rule produced.
pub struct RuleResult {
    /// Rows for each CDM table, with the table's columns (primary key still null) plus
    /// `__rule`, `__row` and, for keyed rules, `__key`.
    pub outputs: Vec<(&'static TableSpec, DataFrame)>,
    /// Rejected rows: `__row`, `__table`, `__reject`.
    pub rejected: DataFrame,
    /// Source rows read.
    pub read: u64,
    /// Source rows that produced at least one CDM row.
    pub written: u64,
    /// Source rows rejected (none of their CDM rows was written), by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Source rows filtered out by an explicit rule, by reason.
    pub filtered_by_reason: BTreeMap<String, u64>,
    /// The reason of a `where` that ran before everything else: the rows it dropped are not
    /// in `read` and the caller counts them from the file's row count.
    pub early_filter: Option<String>,
    /// Per code: `code`, `mapped` and `rows`, for mapping coverage.
    pub code_stats: Option<DataFrame>,
}

/// How well a rule's codes map to standard concepts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Coverage {
    /// The expression giving the code.
    pub code: String,
    /// The vocabularies searched.
    pub vocabularies: String,
    /// Source rows with a code.
    pub records: u64,
    /// Of those, rows mapped to a standard concept.
    pub records_mapped: u64,
    /// Distinct codes.
    pub codes: u64,
    /// Of those, codes mapped to a standard concept.
    pub codes_mapped: u64,
    /// The most frequent unmapped codes with their row counts.
    pub top_unmapped: Vec<(String, u64)>,
}

/// Drop and reject reasons of one rule, as codes.
#[derive(Default)]
struct Reasons(Vec<String>);

impl Reasons {
    /// No reason (the row is kept).
    fn none() -> Expr {
        lit(NULL).cast(DataType::UInt32)
    }

    /// The code of `reason`, as a literal.
    fn code(&mut self, reason: impl Into<String>) -> Expr {
        let reason = reason.into();
        let code = match self.0.iter().position(|r| *r == reason) {
            Some(i) => i,
            None => {
                self.0.push(reason);
                self.0.len() - 1
            }
        };
        lit(code as u32).cast(DataType::UInt32)
    }

    /// The text of a code.
    fn text(&self, code: u32) -> String {
        self.0.get(code as usize).cloned().unwrap_or_default()
    }

    /// `df` with the codes of `column` replaced by their text.
    fn to_text(&self, df: DataFrame, column: &str) -> PolarsResult<DataFrame> {
        let codes = df.column(column)?.cast(&DataType::UInt32)?;
        let text: StringChunked = codes
            .u32()?
            .iter()
            .map(|c| c.map(|c| self.text(c)))
            .collect();
        let mut df = df;
        df.with_column(text.with_name(column.into()).into_column())?;
        Ok(df)
    }
}

/// Every known code by vocabulary and code, with its `concept_id`.
fn code_lookup(vocab: &VocabTables) -> PolarsResult<std::sync::Arc<lookup::Lookup>> {
    vocab.lookups.get("codes", || {
        let df = vocab
            .codes
            .clone()
            .lazy()
            .select([
                lookup::key_column(&["vocabulary_id", "concept_code"], "__key"),
                col("concept_id"),
            ])
            .collect()?;
        Ok((df, "__key"))
    })
}

/// The rule's `where` as a filter over plain source columns, with its reason, when it needs no
/// look-up or conversion check (it then runs before everything else).
pub fn leading_filter(rule: &Rule, source: &SourceTable) -> Option<(Expr, String)> {
    let w = rule.filter.as_ref()?;
    let columns: BTreeSet<String> = source.columns.iter().cloned().collect();
    let mut comp = Compiler::new(&columns, "__w");
    let f = compile_text(&mut comp, w).ok()?;
    (comp.joins.is_empty() && comp.checks.is_empty())
        .then(|| (f.fill_null(lit(false)), format!("where: {w}")))
}

/// Runs `rule` (index `rule_idx` in the pack) over `input`: rows of `source` with its declared
/// columns and [`ROW`] (a chunk, or the whole file).
pub fn run_rule(
    rule_idx: u32,
    rule: &Rule,
    source: &SourceTable,
    vocab: &VocabTables,
    keymaps: &HashMap<String, std::sync::Arc<super::keymap::KeyMap>>,
    deferred: &BTreeSet<String>,
    input: LazyFrame,
) -> Result<RuleResult, EtlError> {
    let ctx = |m: String| EtlError::Rule {
        rule: rule.id.clone(),
        message: m,
    };
    // Fields that `ref()` a table numbered in this same pass carry their key instead.
    let deferred_fields: BTreeMap<&str, String> = deferred_refs(rule, deferred)
        .ok_or_else(|| {
            ctx(format!(
                "internal: the rule cannot share a pass with {deferred:?}"
            ))
        })?
        .into_iter()
        .map(|d| (d.field.name, d.text))
        .collect();
    let mut lf = input;
    let mut columns: BTreeSet<String> = source.columns.iter().cloned().collect();
    let mut drop_reasons: Vec<(Expr, String)> = Vec::new();
    // Reasons travel through the plan as small integer codes (cheap to carry per row) and
    // become text only for the rows and counts that are reported.
    let mut reasons = Reasons::default();

    // A `where` over plain source columns runs first, so rows it drops cost nothing later;
    // they are counted from the file's row count.
    let mut early_filter: Option<String> = None;
    if let Some((f, reason)) = leading_filter(rule, source) {
        lf = lf.filter(f);
        early_filter = Some(reason);
    }

    // 1. Code look-up, routing and the unmapped policy.
    if let Some(c) = &rule.concept {
        columns.extend(VIRTUAL_COLUMNS.iter().map(|c| c.to_string()));
        let mut comp = Compiler::new(&columns, "__c");
        let code = compile_text(&mut comp, &c.code).map_err(&ctx)?;
        lf = lf.with_column(code.cast(DataType::String).alias(CODE));
        let perr = |e| polars_err(&rule.id, e);
        if let Some(vf) = &c.vocabulary_from {
            let v = compile_text(&mut comp, vf).map_err(&ctx)?;
            lf = lf.with_column(v.cast(DataType::String).alias("__mv"));
            let codes = code_lookup(vocab).map_err(perr)?;
            lf = codes
                .apply(
                    lf,
                    lookup::key_expr(vec![col("__mv"), col(CODE)]),
                    &[("concept_id", "_source_concept_id")],
                    "__lc",
                )
                .map_err(perr)?;
        } else {
            // The first listed vocabulary that has the code wins.
            let name = format!("codes ranked by {:?}", c.vocabularies);
            let ranked = vocab
                .lookups
                .get(&name, || {
                    let rank = expr::case_when(
                        c.vocabularies
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (col("vocabulary_id").eq(lit(v.as_str())), lit(i as u32)))
                            .collect(),
                        lit(NULL).cast(DataType::UInt32),
                    );
                    let df = vocab
                        .codes
                        .clone()
                        .lazy()
                        .with_column(rank.alias("__rank"))
                        .filter(col("__rank").is_not_null())
                        .sort(
                            ["__rank"],
                            SortMultipleOptions::default().with_maintain_order(true),
                        )
                        .select([col("concept_code"), col("vocabulary_id"), col("concept_id")])
                        .collect()?;
                    Ok((df, "concept_code"))
                })
                .map_err(perr)?;
            lf = ranked
                .apply(
                    lf,
                    col(CODE),
                    &[
                        ("vocabulary_id", "__mv"),
                        ("concept_id", "_source_concept_id"),
                    ],
                    "__lc",
                )
                .map_err(perr)?;
        }
        // A code's standard concepts: one value per code, or lists (exploded into one row per
        // concept) when the vocabulary maps some code to several.
        let multi = vocab.multi_target;
        // With one vocabulary listed, every code found is of that vocabulary: its 'Maps to'
        // rows are looked up by the code alone (no per-row concatenation of vocabulary and
        // code). Codes the vocabulary lacks find nothing either way.
        let single = match (&c.vocabulary_from, c.vocabularies.as_slice()) {
            (None, [v]) => Some(v.as_str()),
            _ => None,
        };
        let name = match (single, multi) {
            (Some(v), true) => format!("maps (lists) in {v}"),
            (Some(v), false) => format!("maps in {v}"),
            (None, true) => "maps (lists)".to_string(),
            (None, false) => "maps".to_string(),
        };
        let maps = vocab
            .lookups
            .get(&name, || {
                let mut lf = vocab.maps.clone().lazy();
                let key = match single {
                    Some(v) => {
                        lf = lf.filter(col("vocabulary_id").eq(lit(v)));
                        "concept_code"
                    }
                    None => {
                        lf = lf.with_column(lookup::key_column(
                            &["vocabulary_id", "concept_code"],
                            "__key",
                        ));
                        "__key"
                    }
                };
                let values = [
                    col("target_concept_id"),
                    col("target_domain_id"),
                    col("valid_start_date"),
                    col("valid_end_date"),
                ];
                let df = if multi {
                    lf.group_by_stable([col(key)]).agg(values).collect()?
                } else {
                    lf.collect()?
                };
                Ok((df, key))
            })
            .map_err(perr)?;
        let key = match single {
            Some(_) => when(col("__mv").is_not_null())
                .then(col(CODE))
                .otherwise(lit(NULL).cast(DataType::String)),
            None => lookup::key_expr(vec![col("__mv"), col(CODE)]),
        };
        lf = maps
            .apply(
                lf,
                key,
                &[
                    ("target_concept_id", "_concept_id"),
                    ("target_domain_id", "_domain_id"),
                    ("valid_start_date", "__mvs"),
                    ("valid_end_date", "__mve"),
                ],
                "__lm",
            )
            .map_err(perr)?
            .drop(cols(["__mv"]));
        if multi {
            lf = lf.explode(
                cols(["_concept_id", "_domain_id", "__mvs", "__mve"]),
                ExplodeOptions {
                    empty_as_null: true,
                    keep_nulls: true,
                },
            );
        }
        if let Some(at) = &c.valid_at {
            let at = compile_text(&mut comp, at).map_err(&ctx)?;
            let valid = col("__mvs")
                .lt_eq(at.clone())
                .and(col("__mve").gt_eq(at))
                .fill_null(lit(true));
            lf = lf
                .with_columns([
                    when(valid.clone())
                        .then(col("_concept_id"))
                        .otherwise(lit(NULL).cast(DataType::Int32))
                        .alias("_concept_id"),
                    when(valid)
                        .then(col("_domain_id"))
                        .otherwise(lit(NULL).cast(DataType::String))
                        .alias("_domain_id"),
                ])
                .filter(
                    col("_concept_id").is_not_null().or(col("_concept_id")
                        .is_not_null()
                        .any(true)
                        .over([col(ROW)])
                        .map_err(|e| polars_err(&rule.id, e))?
                        .not()),
                )
                .unique_stable_generic(
                    Some(vec![col(ROW), col("_concept_id")]),
                    UniqueKeepStrategy::First,
                );
        }
        lf = lf.drop(cols(["__mvs", "__mve"]));
        let route = expr::case_when(
            c.domains
                .iter()
                .map(|(d, t)| (col("_domain_id").eq(lit(d.as_str())), lit(t.as_str())))
                .collect(),
            lit(rule.table.as_str()),
        );
        lf = lf.with_column(route.alias(TABLE));
        if c.unrouted == Unrouted::Drop && !c.domains.is_empty() {
            let mut routed = lit(false);
            for d in c.domains.keys() {
                routed = routed.or(col("_domain_id").eq(lit(d.as_str())));
            }
            drop_reasons.push((
                col("_concept_id")
                    .is_not_null()
                    .and(routed.fill_null(lit(false)).not()),
                "the standard concept's domain has no route (unrouted: drop)".into(),
            ));
        }
        match c.unmapped {
            Unmapped::Keep => {}
            Unmapped::Drop => drop_reasons.push((
                col("_concept_id").is_null(),
                "no standard concept (unmapped: drop)".into(),
            )),
            Unmapped::DropUnknown => drop_reasons.push((
                col("_source_concept_id").is_null(),
                "code not in the vocabulary (unmapped: drop_unknown)".into(),
            )),
        }
        if !comp.joins.is_empty() {
            return Err(ctx(
                "concept.code and concept.vocabulary_from cannot use look-up functions".into(),
            ));
        }
    } else {
        lf = lf.with_column(lit(rule.table.as_str()).alias(TABLE));
    }

    // 2. Compile every expression of the rule with one compiler, so look-ups are shared.
    let mut comp = Compiler::new(&columns, "__j").hoisting();
    let filter = rule
        .filter
        .as_ref()
        .filter(|_| early_filter.is_none())
        .map(|w| compile_text(&mut comp, w).map(|e| (e, w.clone())))
        .transpose()
        .map_err(&ctx)?;
    let key = rule
        .key
        .as_ref()
        .map(|k| compile_text(&mut comp, k))
        .transpose()
        .map_err(&ctx)?;
    let person = match &rule.person {
        Some(p) => {
            let ast = expr::parse(p).map_err(|e| ctx(format!("person `{p}`: {e}")))?;
            let call = Ast::Call(
                "ref".into(),
                vec![Ast::Lit(expr::Lit::Str("person".into())), ast],
            );
            Some(
                comp.compile(&call, p)
                    .map_err(|e| ctx(format!("person `{p}`: {e}")))?,
            )
        }
        None => None,
    };
    let tables: Vec<&'static TableSpec> = rule_tables(rule)
        .into_iter()
        .map(|t| {
            cdm::table(CdmVersion::V54, t).ok_or_else(|| ctx(format!("unknown CDM table `{t}`")))
        })
        .collect::<Result<_, _>>()?;
    // Field text → output column; one compiled column per distinct expression.
    let mut field_cols: BTreeMap<String, String> = BTreeMap::new();
    let mut field_exprs: Vec<Expr> = Vec::new();
    for spec in &tables {
        for f in spec.fields {
            if let Some((_, text)) = field_for(rule, spec.name, f.name)
                && !field_cols.contains_key(text)
            {
                let e = compile_text(&mut comp, text)
                    .map_err(|m| ctx(format!("{}.{}: {m}", spec.name, f.name)))?;
                let name = format!("__f{}", field_cols.len());
                field_exprs.push(e.alias(name.as_str()));
                field_cols.insert(text.to_string(), name);
            }
        }
    }

    // Dates and timestamps parsed once each (they read no look-up, so they can come first).
    for (name, parsed) in &comp.hoisted {
        lf = lf.with_column(parsed.clone().alias(name.as_str()));
    }

    // 3. Look-up joins, in the order they were requested (later keys may use earlier results).
    let mut done = vec![false; comp.joins.len()];
    for (n, j) in comp.joins.iter().enumerate() {
        if done[n] {
            continue;
        }
        let k = format!("__jk{n}");
        let v = format!("__jv{n}");
        lf = lf.with_column(j.key.clone().alias(k.as_str()));
        let right = match &j.kind {
            JoinKind::Ref { table, .. } if deferred.contains(table) => {
                // Looked up after the pass: every output of this key is the key itself.
                for (m, other) in comp.joins.iter().enumerate().skip(n) {
                    if matches!(other.kind, JoinKind::Ref { .. }) && other.key_id == j.key_id {
                        lf = lf.with_column(
                            col(k.as_str())
                                .cast(DataType::String)
                                .alias(other.output.as_str()),
                        );
                        done[m] = true;
                    }
                }
                lf = lf.drop(cols([k.as_str()]));
                continue;
            }
            JoinKind::Ref { table, .. } => {
                let map = keymaps.get(table).ok_or_else(|| ctx(format!("ref({table}, ...): {table} has no keyed rows yet (is a rule of {table} missing a `key`?)")))?;
                // Every column read through the same key comes from one look-up of the key,
                // and so do the columns of other keyed tables that share the index (the same
                // keys in the same order) when the key expression is the same.
                let mut groups: Vec<(String, lookup::Outputs<'_>)> = Vec::new();
                for (m, other) in comp.joins.iter().enumerate().skip(n) {
                    let JoinKind::Ref {
                        table: other_table,
                        column,
                    } = &other.kind
                    else {
                        continue;
                    };
                    if done[m] || deferred.contains(other_table) {
                        continue;
                    }
                    let other_map = if other.key_id == j.key_id {
                        map
                    } else {
                        match keymaps.get(other_table) {
                            Some(o) if other.key == j.key && o.shares_index(map) => o,
                            _ => continue,
                        }
                    };
                    let c = column.as_deref().unwrap_or("id");
                    if other_map.frame.column(c).is_err() {
                        return Err(ctx(format!(
                            "ref({other_table}, ..., '{c}'): {other_table} has no column `{c}`"
                        )));
                    }
                    match groups.iter_mut().find(|(t, _)| t == other_table) {
                        Some((_, (_, outputs))) => outputs.push((c, other.output.as_str())),
                        None => groups.push((
                            other_table.clone(),
                            (other_map.clone(), vec![(c, other.output.as_str())]),
                        )),
                    }
                    done[m] = true;
                }
                let shared: Vec<_> = groups.into_iter().map(|(_, g)| g).collect();
                lf = lookup::apply_shared(&shared, lf, col(k.as_str()), &format!("__ri{n}"))
                    .map_err(|e| polars_err(&rule.id, e))?
                    .drop(cols([k.as_str()]));
                continue;
            }
            // A literal vocabulary: a look-up of that vocabulary's codes alone, so the key is
            // the code as it is (no per-row concatenation, shorter keys to hash).
            JoinKind::SourceConcept | JoinKind::StandardConcept if j.vocabulary_id.is_some() => {
                let v = j.vocabulary_id.as_deref().unwrap_or_default();
                let right = match j.kind {
                    JoinKind::SourceConcept => vocab.lookups.get(&format!("codes in {v}"), || {
                        let df = vocab
                            .codes
                            .clone()
                            .lazy()
                            .filter(col("vocabulary_id").eq(lit(v)))
                            .select([col("concept_code"), col("concept_id")])
                            .collect()?;
                        Ok((df, "concept_code"))
                    }),
                    _ => vocab.lookups.get(&format!("maps (first) in {v}"), || {
                        let df = vocab
                            .maps
                            .clone()
                            .lazy()
                            .filter(col("vocabulary_id").eq(lit(v)))
                            .group_by([col("concept_code")])
                            .agg([col("target_concept_id").min().alias("concept_id")])
                            .collect()?;
                        Ok((df, "concept_code"))
                    }),
                }
                .map_err(|e| polars_err(&rule.id, e))?;
                lf = right
                    .apply(
                        lf,
                        col(k.as_str()).cast(DataType::String),
                        &[("concept_id", j.output.as_str())],
                        &format!("__jr{n}"),
                    )
                    .map_err(|e| polars_err(&rule.id, e))?
                    .drop(cols([k.as_str()]));
                continue;
            }
            JoinKind::SourceConcept => code_lookup(vocab),
            JoinKind::StandardConcept => vocab.lookups.get("maps (first)", || {
                let df = vocab
                    .maps
                    .clone()
                    .lazy()
                    .group_by([col("vocabulary_id"), col("concept_code")])
                    .agg([col("target_concept_id").min().alias("concept_id")])
                    .with_column(lookup::key_column(
                        &["vocabulary_id", "concept_code"],
                        "__key",
                    ))
                    .collect()?;
                Ok((df, "__key"))
            }),
        }
        .map_err(|e| polars_err(&rule.id, e))?;
        let Some(vocab_expr) = &j.vocabulary else {
            return Err(ctx("internal: concept look-up without a vocabulary".into()));
        };
        lf = lf.with_column(vocab_expr.clone().alias(v.as_str()));
        lf = right
            .apply(
                lf,
                lookup::key_expr(vec![col(v.as_str()), col(k.as_str())]),
                &[("concept_id", j.output.as_str())],
                &format!("__jr{n}"),
            )
            .map_err(|e| polars_err(&rule.id, e))?
            .drop(cols([k.as_str(), v.as_str()]));
    }

    // 4. Filters, keys, person and fields.
    if let Some((f, text)) = filter {
        drop_reasons.push((f.fill_null(lit(false)).not(), format!("where: {text}")));
    }
    let mut drop = Reasons::none();
    for (cond, reason) in drop_reasons.into_iter().rev() {
        drop = when(cond).then(reasons.code(reason)).otherwise(drop);
    }
    let mut with = vec![drop.alias(DROP)];
    if let Some(k) = key {
        with.push(k.cast(DataType::String).alias(KEY));
    }
    if let Some(p) = person {
        with.push(p.alias("__person"));
    }
    with.extend(field_exprs);
    let mut reject = Reasons::none();
    for chk in comp.checks.iter().rev() {
        reject = when(chk.bad.clone())
            .then(reasons.code(chk.reason.clone()))
            .otherwise(reject);
    }
    if rule.person.is_some() {
        reject = when(col("__person").is_null())
            .then(reasons.code("no person with this source key"))
            .otherwise(reject);
    }
    if rule.key.is_some() {
        reject = when(col(KEY).is_null())
            .then(reasons.code("the row's key is empty"))
            .otherwise(reject);
    }
    lf = lf.with_columns(with).with_column(reject.alias(REJECT));

    let mut keep: Vec<Expr> = vec![col(ROW), col(TABLE), col(DROP), col(REJECT)];
    if rule.key.is_some() {
        keep.push(col(KEY));
    }
    if rule.person.is_some() {
        keep.push(col("__person"));
    }
    if rule.concept.is_some() {
        keep.extend([col(CODE), col("_concept_id"), col("_source_concept_id")]);
    }
    keep.extend(field_cols.values().map(|c| col(c.as_str())));
    let started = std::time::Instant::now();
    let df = lf
        .select(keep)
        .collect()
        .map_err(|e| polars_err(&format!("rule {}", rule.id), e))?;

    tracing::debug!(rule = %rule.id, rows = df.height(), seconds = started.elapsed().as_secs_f64(), "plan collected");
    let started = std::time::Instant::now();
    // 5. Per table: CDM columns, conversion and required-field checks.
    let live = df.clone().lazy().filter(col(DROP).is_null());
    let mut outputs = Vec::new();
    let mut rejected_parts = vec![
        df.clone()
            .lazy()
            .filter(col(DROP).is_null().and(col(REJECT).is_not_null()))
            .select([col(ROW), col(TABLE), col(REJECT)]),
    ];
    // Rows of keyed tables wait in memory until the whole table is numbered; columns that are
    // null in every row are left out of them until then.
    let slim = rule.key.is_some() && rule.deduplicate.is_none();
    for spec in &tables {
        let mut out_cols: Vec<Expr> = Vec::new();
        let mut checks: Vec<(Expr, Expr)> = Vec::new();
        let mut carried: Vec<Expr> = Vec::new();
        let mut omitted: BTreeSet<&str> = BTreeSet::new();
        for f in spec.fields {
            let dtype = f.polars_dtype();
            if let Some(text) = deferred_fields.get(f.name)
                && spec.name == rule.table
            {
                // Filled (and checked) once the referred table is numbered.
                carried.push(
                    col(field_cols[text.as_str()].as_str())
                        .cast(DataType::String)
                        .alias(format!("{DEFERRED}{}", f.name)),
                );
                if slim {
                    omitted.insert(f.name);
                } else {
                    out_cols.push(lit(NULL).cast(dtype.clone()).alias(f.name));
                }
                continue;
            }
            let value = if let Some((_, text)) = field_for(rule, spec.name, f.name) {
                let c = col(field_cols[text].as_str());
                checks.push((
                    c.clone()
                        .is_not_null()
                        .and(c.clone().cast(dtype.clone()).is_null()),
                    reasons.code(format!(
                        "{}.{}: `{text}` does not convert to {dtype}",
                        spec.name, f.name
                    )),
                ));
                Some(c.cast(dtype.clone()))
            } else if f.name == "person_id" && rule.person.is_some() {
                Some(col("__person").cast(dtype.clone()))
            } else if engine_filled(rule, spec, f.name) && !f.primary_key {
                let slot = slots::SLOT_NAMES
                    .iter()
                    .find(|s| slots::slot_column(spec.name, s) == Some(f.name))
                    .copied();
                match slot {
                    Some("concept_id") => {
                        Some(col("_concept_id").fill_null(lit(0)).cast(dtype.clone()))
                    }
                    Some("source_concept_id") => Some(
                        col("_source_concept_id")
                            .fill_null(lit(0))
                            .cast(dtype.clone()),
                    ),
                    Some("source_value") => Some(col(CODE).cast(dtype.clone())),
                    _ => None,
                }
            } else {
                None
            };
            let checked = f.required && !f.primary_key;
            if value.is_none() && slim && !checked {
                omitted.insert(f.name);
                continue;
            }
            out_cols.push(
                value
                    .unwrap_or_else(|| lit(NULL).cast(dtype.clone()))
                    .alias(f.name),
            );
            if checked {
                checks.push((
                    col(f.name).is_null(),
                    reasons.code(format!("required field {}.{} is empty", spec.name, f.name)),
                ));
            }
        }
        let mut extra = vec![col(ROW), col(REJECT)];
        if rule.key.is_some() {
            extra.push(col(KEY));
        }
        extra.extend(carried);
        let table_lf = live
            .clone()
            .filter(col(TABLE).eq(lit(spec.name)))
            .filter(col(REJECT).is_null());
        let names: Vec<Expr> = spec
            .fields
            .iter()
            .filter(|f| !omitted.contains(f.name))
            .map(|f| col(f.name))
            .chain(extra)
            .collect();
        let reason = expr::case_when(checks, Reasons::none());
        let projected = table_lf
            .with_columns(out_cols)
            .with_column(reason.alias(REJECT))
            .select(names);
        let frame = projected
            .collect()
            .map_err(|e| polars_err(&format!("rule {} → {}", rule.id, spec.name), e))?;
        rejected_parts.push(
            frame
                .clone()
                .lazy()
                .filter(col(REJECT).is_not_null())
                .select([col(ROW), lit(spec.name).alias(TABLE), col(REJECT)]),
        );
        let mut ok = frame
            .lazy()
            .filter(col(REJECT).is_null())
            .drop(cols([REJECT]))
            .with_column(lit(rule_idx).alias(RULE));
        if let Some(d) = &rule.deduplicate {
            let order: Vec<Expr> = d
                .order
                .iter()
                .map(|c| col(c.as_str()))
                .chain([col(ROW)])
                .collect();
            ok = ok
                .sort_by_exprs(
                    order,
                    SortMultipleOptions::default()
                        .with_nulls_last(true)
                        .with_maintain_order(true),
                )
                .unique_stable_generic(
                    Some(d.by.iter().map(|c| col(c.as_str())).collect()),
                    UniqueKeepStrategy::First,
                );
        }
        let ok = ok
            .collect()
            .map_err(|e| polars_err(&format!("rule {} → {}", rule.id, spec.name), e))?;
        outputs.push((*spec, ok));
    }
    let rejected = concat(rejected_parts, UnionArgs::default())
        .and_then(|l| l.collect())
        .map_err(|e| polars_err(&format!("rule {}", rule.id), e))?;

    tracing::debug!(rule = %rule.id, seconds = started.elapsed().as_secs_f64(), "tables projected");
    let started = std::time::Instant::now();
    // 6. Accounting: every source row is written, rejected or filtered, in that priority.
    let mut status_parts: Vec<LazyFrame> = outputs
        .iter()
        .map(|(_, o)| {
            o.clone().lazy().select([
                col(ROW),
                lit(0u8).alias("__s"),
                Reasons::none().alias("__why"),
            ])
        })
        .collect();
    status_parts.push(rejected.clone().lazy().select([
        col(ROW),
        lit(1u8).alias("__s"),
        col(REJECT).alias("__why"),
    ]));
    status_parts.push(df.clone().lazy().filter(col(DROP).is_not_null()).select([
        col(ROW),
        lit(2u8).alias("__s"),
        col(DROP).alias("__why"),
    ]));
    let merged_away = rule
        .deduplicate
        .as_ref()
        .map(|_| "merged into another row (deduplicate)".to_string());
    if let Some(m) = &merged_away {
        status_parts.push(
            df.clone()
                .lazy()
                .filter(col(DROP).is_null().and(col(REJECT).is_null()))
                .select([
                    col(ROW),
                    lit(3u8).alias("__s"),
                    reasons.code(m.as_str()).alias("__why"),
                ]),
        );
    }
    // Without 'Maps to' fan-out or deduplication every source row is exactly one row of
    // `df` and lands in exactly one part, so the parts can be counted as they are.
    let fan_out = (rule.concept.is_some() && vocab.multi_target) || rule.deduplicate.is_some();
    let mut status =
        concat(status_parts, UnionArgs::default()).map_err(|e| polars_err("accounting", e))?;
    if fan_out {
        status = status
            .sort(
                ["__s"],
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .unique_stable_generic(Some(vec![col(ROW)]), UniqueKeepStrategy::First);
    }
    let status = status
        .group_by([col("__s"), col("__why")])
        .agg([len().alias("n")])
        .collect()
        .map_err(|e| polars_err("accounting", e))?;
    let read = if fan_out {
        df.column(ROW)
            .and_then(|c| c.n_unique())
            .map_err(|e| polars_err("accounting", e))? as u64
    } else {
        df.height() as u64
    };
    let mut written = 0u64;
    let mut rejected_by_reason = BTreeMap::new();
    let mut filtered_by_reason = BTreeMap::new();
    let s = status
        .column("__s")
        .and_then(|c| c.cast(&DataType::UInt8))
        .map_err(|e| polars_err("accounting", e))?;
    let s = s.u8().map_err(|e| polars_err("accounting", e))?;
    let why = status
        .column("__why")
        .and_then(|c| c.cast(&DataType::UInt32))
        .map_err(|e| polars_err("accounting", e))?;
    let why = why.u32().map_err(|e| polars_err("accounting", e))?;
    let n = status
        .column("n")
        .and_then(|c| c.cast(&DataType::UInt64))
        .map_err(|e| polars_err("accounting", e))?;
    let n = n.u64().map_err(|e| polars_err("accounting", e))?;
    for i in 0..status.height() {
        let count = n.get(i).unwrap_or(0);
        let reason = why.get(i).map(|c| reasons.text(c)).unwrap_or_default();
        match s.get(i) {
            Some(0) => written += count,
            Some(1) => *rejected_by_reason.entry(reason).or_insert(0) += count,
            _ => *filtered_by_reason.entry(reason).or_insert(0) += count,
        }
    }
    tracing::debug!(rule = %rule.id, seconds = started.elapsed().as_secs_f64(), "accounting");
    let code_stats = match rule.concept {
        Some(_) => Some(code_stats(&df, fan_out)?),
        None => None,
    };
    let rejected = reasons
        .to_text(rejected, REJECT)
        .map_err(|e| polars_err(&format!("rule {}", rule.id), e))?;
    Ok(RuleResult {
        outputs,
        rejected,
        read,
        written,
        rejected_by_reason,
        filtered_by_reason,
        early_filter,
        code_stats,
    })
}

fn compile_text(comp: &mut Compiler<'_>, text: &str) -> Result<Expr, String> {
    let ast = expr::parse(text).map_err(|e| format!("`{text}`: {e}"))?;
    comp.compile(&ast, text)
        .map_err(|e| format!("`{text}`: {e}"))
}

/// Rows per (code, mapped) of one run of a rule; merged across chunks by [`coverage`].
fn code_stats(df: &DataFrame, fan_out: bool) -> Result<DataFrame, EtlError> {
    let rows = df.clone().lazy().filter(col(CODE).is_not_null());
    let per_row = if fan_out {
        rows.group_by([col(ROW)]).agg([
            col(CODE).first().alias("code"),
            col("_concept_id").is_not_null().any(true).alias("mapped"),
        ])
    } else {
        rows.select([
            col(CODE).alias("code"),
            col("_concept_id").is_not_null().alias("mapped"),
        ])
    };
    per_row
        .group_by([col("code"), col("mapped")])
        .agg([len().cast(DataType::UInt64).alias("rows")])
        .collect()
        .map_err(|e| polars_err("coverage", e))
}

/// Mapping coverage from the code statistics of every chunk of a rule.
pub fn coverage(
    stats: Vec<DataFrame>,
    c: &crate::mapping::ConceptLookup,
) -> Result<Coverage, EtlError> {
    let per_code = concat(
        stats.into_iter().map(|d| d.lazy()).collect::<Vec<_>>(),
        UnionArgs::default(),
    )
    .map_err(|e| polars_err("coverage", e))?
    .group_by([col("code"), col("mapped")])
    .agg([col("rows").sum()]);
    let totals = per_code
        .clone()
        .select([
            col("rows").sum().cast(DataType::UInt64).alias("records"),
            col("rows")
                .filter(col("mapped"))
                .sum()
                .cast(DataType::UInt64)
                .alias("records_mapped"),
            col("code").n_unique().cast(DataType::UInt64).alias("codes"),
            col("code")
                .filter(col("mapped"))
                .n_unique()
                .cast(DataType::UInt64)
                .alias("codes_mapped"),
        ])
        .collect()
        .map_err(|e| polars_err("coverage", e))?;
    let get = |name: &str| {
        totals
            .column(name)
            .ok()
            .and_then(|c| c.u64().ok().and_then(|v| v.get(0)))
            .unwrap_or(0)
    };
    let top = per_code
        .filter(col("mapped").not())
        .select([col("code"), col("rows").cast(DataType::UInt64).alias("n")])
        .sort_by_exprs(
            [col("n"), col("code")],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .limit(20)
        .collect()
        .map_err(|e| polars_err("coverage", e))?;
    let codes = top
        .column("code")
        .and_then(|c| c.str().cloned())
        .map_err(|e| polars_err("coverage", e))?;
    let counts = top
        .column("n")
        .and_then(|c| c.u64().cloned())
        .map_err(|e| polars_err("coverage", e))?;
    let top_unmapped = codes
        .iter()
        .zip(counts.iter())
        .map(|(c, n)| (c.unwrap_or("").to_string(), n.unwrap_or(0)))
        .collect();
    Ok(Coverage {
        code: c.code.clone(),
        vocabularies: c
            .vocabulary_from
            .clone()
            .unwrap_or_else(|| c.vocabularies.join(", ")),
        records: get("records"),
        records_mapped: get("records_mapped"),
        codes: get("codes"),
        codes_mapped: get("codes_mapped"),
        top_unmapped,
    })
}
