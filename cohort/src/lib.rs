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
//!    columns, each event table sorted by concept, person and date.
//! 3. [`plan`] compiles a definition: concept sets are resolved
//!    ([`concepts`]), dates and operators parsed, and every criteria type is
//!    mapped to the attributes Circe applies to it. Elements that cannot be
//!    evaluated are rejected here by name.
//! 4. [`eval`] runs the plan over chunks of persons in parallel: it reads
//!    only the rows of the concepts the definition names (event tables are
//!    clustered by concept), groups them by person, and evaluates each person
//!    with an entry event (all of Circe's joins are within a person). It
//!    returns the cohort episodes and the inclusion-rule statistics.
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
    let mut buf = [0u8; 10];
    match day_text(d, &mut buf) {
        Some(text) => text.to_string(),
        None => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            match epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(d))) {
                Some(date) => date.format("%Y-%m-%d").to_string(),
                None => String::from("invalid-date"),
            }
        }
    }
}

/// Writes `YYYY-MM-DD` for a day of the years 0–9999 into `buf` (`None` for other years).
pub fn day_text(d: Day, buf: &mut [u8; 10]) -> Option<&str> {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(d) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let digits = |v: i64, out: &mut [u8]| {
        let mut v = v;
        for b in out.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(year, &mut buf[0..4]);
    buf[4] = b'-';
    digits(month, &mut buf[5..7]);
    buf[7] = b'-';
    digits(day, &mut buf[8..10]);
    std::str::from_utf8(buf).ok()
}

/// What a chunk of persons contributes to a cohort.
#[derive(Default)]
pub(crate) struct Partial {
    pub(crate) rows: Vec<CohortRow>,
    pub(crate) event_masks: Vec<u64>,
    pub(crate) best_masks: Vec<u64>,
    pub(crate) censored_lost: u64,
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
    let Partial {
        mut rows,
        event_masks,
        best_masks,
        censored_lost,
    } = eval::run(cdm, plan);
    tracing::debug!(
        rows = rows.len(),
        millis = clock.elapsed().as_secs_f64() * 1e3,
        "persons evaluated"
    );
    let (stats_by_event, stats_by_person) =
        InclusionStats::from_masks_of(&event_masks, &best_masks, plan.rules.len());
    if !rows.is_sorted() {
        rows.sort_unstable();
    }
    Ok(CohortResult {
        rows,
        rule_names: plan.rule_names.clone(),
        stats_by_event,
        stats_by_person,
        censored_lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written date formatting agrees with chrono on every day of years 0–9999.
    #[test]
    fn day_text_matches_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut buf = [0u8; 10];
        let first = (chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap() - epoch).num_days() as i32;
        let last =
            (chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap() - epoch).num_days() as i32;
        for d in first..=last {
            let date = epoch + chrono::TimeDelta::days(i64::from(d));
            assert_eq!(
                day_text(d, &mut buf),
                Some(date.format("%Y-%m-%d").to_string().as_str())
            );
        }
        assert_eq!(day_text(first - 1, &mut buf), None);
        assert_eq!(day_text(last + 1, &mut buf), None);
        assert!(format_day(last + 1).ends_with("10000-01-01"));
    }
}
