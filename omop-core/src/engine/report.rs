//! The run report: `<out>/_omopkit/report.json` and a short summary for people.

use super::rule::Coverage;
use crate::mapping::Pack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Row accounting of one rule over its source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The rule id.
    pub rule: String,
    /// The source table name.
    pub source: String,
    /// The source file.
    pub file: String,
    /// Source rows read.
    pub rows_read: u64,
    /// Source rows that became at least one CDM row.
    pub rows_written: u64,
    /// Source rows sent to quarantine.
    pub rows_rejected: u64,
    /// Source rows left out by an explicit rule (`where`, `unmapped: drop`, ...).
    pub rows_filtered: u64,
    /// Rejections by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Filtered rows by reason.
    pub filtered_by_reason: BTreeMap<String, u64>,
    /// Mapping coverage of the rule's code look-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    /// Time spent in the rule.
    pub seconds: f64,
}

/// Time spent in one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    /// The stage.
    pub stage: String,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// omopkit's version.
    pub omopkit_version: String,
    /// The pack name.
    pub pack: String,
    /// The CDM version written.
    pub cdm_version: String,
    /// The vocabulary release.
    pub vocabulary_version: Option<String>,
    /// Per rule and source: rows read, written, rejected and filtered.
    pub sources: Vec<SourceReport>,
    /// Rows written per CDM table.
    pub tables: BTreeMap<String, u64>,
    /// Lint warnings.
    pub warnings: Vec<String>,
    /// Time per stage.
    pub stages: Vec<StageTime>,
    /// Total wall time.
    pub seconds: f64,
    /// Source rows read over all rules, per second of wall time.
    pub source_rows_per_second: f64,
}

impl RunReport {
    pub(crate) fn new(
        pack: &Pack,
        vocabulary_version: Option<String>,
        sources: Vec<SourceReport>,
        tables: BTreeMap<String, u64>,
        warnings: Vec<String>,
        stages: Vec<StageTime>,
        started: Instant,
    ) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        let rows: u64 = distinct_source_rows(&sources);
        Self {
            omopkit_version: env!("CARGO_PKG_VERSION").to_string(),
            pack: pack.name.clone(),
            cdm_version: pack.cdm_version.clone(),
            vocabulary_version,
            sources,
            tables,
            warnings,
            stages,
            seconds,
            source_rows_per_second: if seconds > 0.0 {
                rows as f64 / seconds
            } else {
                0.0
            },
        }
    }

    /// Source rows read, counting each source file once (several rules may read one file).
    pub fn source_rows(&self) -> u64 {
        distinct_source_rows(&self.sources)
    }

    /// A short human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "omopkit etl: pack {} → CDM {} in {:.2} s ({} source rows, {:.0} rows/s)",
            self.pack,
            self.cdm_version,
            self.seconds,
            self.source_rows(),
            self.source_rows_per_second
        );
        let _ = writeln!(
            s,
            "  {:<28} {:>10} {:>10} {:>9} {:>9}  coverage",
            "rule", "read", "written", "rejected", "filtered"
        );
        for r in &self.sources {
            let cov = r.coverage.as_ref().map_or(String::new(), |c| {
                format!(
                    "{:.1}% rows, {:.1}% codes",
                    pct(c.records_mapped, c.records),
                    pct(c.codes_mapped, c.codes)
                )
            });
            let _ = writeln!(
                s,
                "  {:<28} {:>10} {:>10} {:>9} {:>9}  {cov}",
                r.rule, r.rows_read, r.rows_written, r.rows_rejected, r.rows_filtered
            );
        }
        let tables: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(s, "  tables: {}", tables.join(", "));
        for w in &self.warnings {
            let _ = writeln!(s, "  {w}");
        }
        s
    }
}

fn distinct_source_rows(sources: &[SourceReport]) -> u64 {
    let mut per_file: BTreeMap<&str, u64> = BTreeMap::new();
    for r in sources {
        let e = per_file.entry(r.file.as_str()).or_insert(0);
        *e = (*e).max(r.rows_read);
    }
    per_file.values().sum()
}

/// A percentage, 100 when there is nothing to count.
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
