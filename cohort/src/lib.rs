//! `omop-cohort`: OHDSI Circe cohort definitions evaluated over an OMOP CDM.
//!
//! Researchers define cohorts in ATLAS, which stores them as Circe JSON. Circe
//! itself turns a definition into a long SQL script; this crate evaluates the
//! same definition directly over CDM tables held in memory and gives the same
//! rows as that SQL.
//!
//! The pipeline:
//!
//! 1. [`model`] reads the JSON ([`CohortExpression::from_json`]) the way Circe
//!    does (case-sensitive keys, unknown keys ignored, Jackson's scalar
//!    coercions); invalid JSON fails with line and column.
//! 2. [`cdm`] loads the CDM tables from a folder of Parquet files into flat
//!    columns, each event table sorted by person and date.
//! 3. [`plan`] compiles a definition: concept sets are resolved
//!    ([`concepts`]), dates and operators parsed, and every criteria type is
//!    mapped to the attributes Circe applies to it. Elements that cannot be
//!    evaluated are rejected here by name.
//! 4. [`eval`] runs the plan one person at a time (all of Circe's joins are
//!    within a person), in parallel, and returns the cohort episodes and the
//!    inclusion-rule statistics. Only persons with a row matching a primary
//!    criteria's concept sets are evaluated, found through per-concept roaring
//!    person bitmaps.
//! 5. [`store`] saves and loads all of the above as an on-disk index, so that a
//!    service starts without re-reading the Parquet tables.
//!
//! ```no_run
//! use omop_cohort::{Cdm, CohortExpression, evaluate};
//! # fn main() -> Result<(), omop_cohort::CohortError> {
//! let cdm = Cdm::load(std::path::Path::new("cdm"))?;
//! let def = CohortExpression::from_file(std::path::Path::new("cohort.json"))?;
//! let cohort = evaluate(&cdm, &def)?;
//! println!("{} rows, {} persons", cohort.rows.len(), cohort.subject_count());
//! # Ok(()) }
//! ```

pub mod cdm;
pub mod concepts;
pub mod error;
pub mod eval;
pub mod lenient;
pub mod model;
pub mod plan;
pub mod store;

pub use cdm::{Cdm, Day};
pub use error::{CohortError, Result};
pub use eval::InclusionStats;
pub use model::CohortExpression;
pub use plan::CohortPlan;

/// One cohort episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CohortRow {
    /// person_id.
    pub subject_id: i64,
    /// cohort_start_date.
    pub start: Day,
    /// cohort_end_date.
    pub end: Day,
}

/// The result of evaluating one definition.
#[derive(Debug, Clone, Default)]
pub struct CohortResult {
    /// Episodes sorted by subject, start and end.
    pub rows: Vec<CohortRow>,
    /// Inclusion rule names, in rule order.
    pub rule_names: Vec<String>,
    /// Inclusion statistics over all qualified events (Circe mode 0).
    pub stats_by_event: InclusionStats,
    /// Inclusion statistics over each person's best event (Circe mode 1).
    pub stats_by_person: InclusionStats,
    /// Persons the censor window removed entirely (Circe's `cohort_censor_stats.lost_count`).
    pub censored_lost: u64,
}

impl CohortResult {
    /// Number of distinct subjects.
    pub fn subject_count(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for r in &self.rows {
            if last != Some(r.subject_id) {
                n += 1;
                last = Some(r.subject_id);
            }
        }
        n
    }

    /// The canonical text: `subject_id,YYYY-MM-DD,YYYY-MM-DD\n` per row.
    pub fn canonical_text(&self) -> String {
        let mut s = String::with_capacity(self.rows.len() * 28);
        for r in &self.rows {
            s.push_str(&format!(
                "{},{},{}\n",
                r.subject_id,
                format_day(r.start),
                format_day(r.end)
            ));
        }
        s
    }
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_day(d: Day) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    match epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(d))) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => String::from("invalid-date"),
    }
}

/// Compiles and evaluates a definition.
pub fn evaluate(cdm: &Cdm, expr: &CohortExpression) -> Result<CohortResult> {
    let clock = std::time::Instant::now();
    let plan = CohortPlan::compile(expr, cdm)?;
    tracing::debug!(
        millis = clock.elapsed().as_secs_f64() * 1e3,
        "cohort definition compiled"
    );
    evaluate_plan(cdm, &plan)
}

/// Evaluates a definition compiled against this same `cdm` (the plan's concept
/// matchers refer to the dictionaries of its columns).
pub fn evaluate_plan(cdm: &Cdm, plan: &CohortPlan) -> Result<CohortResult> {
    if plan.rules.len() > 63 {
        return Err(CohortError::Unsupported(format!(
            "{} inclusion rules (at most 63)",
            plan.rules.len()
        )));
    }
    let clock = std::time::Instant::now();
    let evaluator = eval::Evaluator::new(cdm, plan);
    let candidates = evaluator.candidates();
    let n_candidates = candidates.len();
    tracing::debug!(
        max = candidates.max(),
        op_any = cdm.concept_index(cdm::Domain::ObservationPeriod).any.len(),
        persons = cdm.person_count(),
        "candidates"
    );
    let outcomes = evaluator.run_persons(candidates);
    tracing::debug!(
        candidates = n_candidates,
        persons = outcomes.len(),
        millis = clock.elapsed().as_secs_f64() * 1e3,
        "persons evaluated"
    );
    let (stats_by_event, stats_by_person) =
        InclusionStats::from_outcomes(&outcomes, plan.rules.len());
    let mut rows = Vec::new();
    let mut censored_lost = 0;
    for (p, o) in &outcomes {
        let p = *p;
        if o.before_censor_window && o.episodes.is_empty() {
            censored_lost += 1;
        }
        let subject_id = cdm.persons.id[p];
        rows.extend(o.episodes.iter().map(|&(start, end)| CohortRow {
            subject_id,
            start,
            end,
        }));
    }
    rows.sort_unstable();
    Ok(CohortResult {
        rows,
        rule_names: plan.rule_names.clone(),
        stats_by_event,
        stats_by_person,
        censored_lost,
    })
}
