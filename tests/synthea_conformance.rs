//! Conformance of the Synthea pack with OHDSI's own ETL (dbt-synthea), whose output on the
//! same source files and vocabulary is in `../shared/data/synthea-source/expected-omop`.
//!
//! Differences that are on purpose are documented in `mappings/synthea/README.md`; the
//! comparison here is like with like: OHDSI's ETL drops rows whose code has no standard
//! concept, while the pack keeps them with concept 0, so those rows are set aside (and
//! counted) before the multisets are compared.

mod common;

use omop_core::engine::{self, EtlOptions};
use polars::prelude::*;
use std::collections::BTreeMap;

struct Event {
    table: &'static str,
    concept: &'static str,
    source_concept: &'static str,
    start: &'static str,
}

const EVENTS: &[Event] = &[
    Event {
        table: "visit_occurrence",
        concept: "visit_concept_id",
        source_concept: "visit_source_concept_id",
        start: "visit_start_date",
    },
    Event {
        table: "condition_occurrence",
        concept: "condition_concept_id",
        source_concept: "condition_source_concept_id",
        start: "condition_start_date",
    },
    Event {
        table: "drug_exposure",
        concept: "drug_concept_id",
        source_concept: "drug_source_concept_id",
        start: "drug_exposure_start_date",
    },
    Event {
        table: "procedure_occurrence",
        concept: "procedure_concept_id",
        source_concept: "procedure_source_concept_id",
        start: "procedure_date",
    },
    Event {
        table: "device_exposure",
        concept: "device_concept_id",
        source_concept: "device_source_concept_id",
        start: "device_exposure_start_date",
    },
    Event {
        table: "measurement",
        concept: "measurement_concept_id",
        source_concept: "measurement_source_concept_id",
        start: "measurement_date",
    },
    Event {
        table: "observation",
        concept: "observation_concept_id",
        source_concept: "observation_source_concept_id",
        start: "observation_date",
    },
];

/// (person_source_value, concept, source concept, start date) → count, plus the rows with concept 0.
fn multiset(dir: &std::path::Path, e: &Event) -> (BTreeMap<String, usize>, usize) {
    let person = common::read_parquet(&dir.join("person.parquet"));
    let table = common::read_parquet(&dir.join(format!("{}.parquet", e.table)));
    let df = table
        .lazy()
        .join(
            person
                .lazy()
                .select([col("person_id"), col("person_source_value")]),
            [col("person_id")],
            [col("person_id")],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col("person_source_value"),
            col(e.concept).cast(DataType::Int64).alias("c"),
            col(e.source_concept).cast(DataType::Int64).alias("s"),
            col(e.start)
                .cast(DataType::Date)
                .cast(DataType::String)
                .alias("d"),
        ])
        .collect()
        .expect("multiset");
    let rows = omop_core::packtest::rows_as_text(
        &df,
        &[
            "person_source_value".into(),
            "c".into(),
            "s".into(),
            "d".into(),
        ],
    )
    .expect("text");
    let mut out = BTreeMap::new();
    let mut zero = 0;
    for r in rows {
        if r[1] == "0" && e.table != "visit_occurrence" {
            zero += 1;
            continue;
        }
        *out.entry(r.join("|")).or_insert(0) += 1;
    }
    (out, zero)
}

/// Runs the Synthea pack over the reference sources into `<tmp>/<name>`.
fn run_synthea(
    src: &std::path::Path,
    tmp: &std::path::Path,
    name: &str,
    chunk_rows: Option<usize>,
) -> (std::path::PathBuf, engine::RunReport) {
    let out = tmp.join(name);
    let report = engine::run(&EtlOptions {
        pack: common::root().join("mappings/synthea"),
        source: src.join("csv"),
        vocab: src.join("vocabulary"),
        vocab_cache: Some(tmp.join("vocab-cache")),
        out: out.clone(),
        chunk_rows,
    })
    .expect("the Synthea pack runs");
    (out, report)
}

#[test]
fn synthea_pack_matches_ohdsi_etl() {
    let Some(shared) = common::shared() else {
        return;
    };
    let src = shared.join("data/synthea-source");
    let tmp = common::tempdir();
    let (out, report) = run_synthea(&src, tmp.path(), "cdm", None);
    let expected = src.join("expected-omop");

    // Tables that are compared by row count alone.
    for table in [
        "person",
        "observation_period",
        "visit_occurrence",
        "visit_detail",
        "death",
        "condition_era",
        "drug_era",
        "care_site",
        "provider",
        "location",
    ] {
        let ours = common::read_parquet(&out.join(format!("{table}.parquet"))).height();
        let theirs = common::read_parquet(&expected.join(format!("{table}.parquet"))).height();
        assert_eq!(ours, theirs, "{table}: row count");
    }

    let mut set_aside = BTreeMap::new();
    for e in EVENTS {
        let (ours, zero) = multiset(&out, e);
        let (theirs, their_zero) = multiset(&expected, e);
        assert_eq!(
            their_zero, 0,
            "{}: OHDSI's ETL keeps no concept-0 rows",
            e.table
        );
        let missing: Vec<_> = theirs
            .iter()
            .filter(|(k, n)| ours.get(*k) != Some(n))
            .take(5)
            .collect();
        let extra: Vec<_> = ours
            .iter()
            .filter(|(k, n)| theirs.get(*k) != Some(n))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: multisets differ\n  missing: {missing:?}\n  extra: {extra:?}",
            e.table
        );
        set_aside.insert(e.table, zero);
    }
    // The rows kept with concept 0 are exactly the source rows whose codes have no standard
    // concept in this vocabulary (OHDSI's ETL drops them; README.md lists the codes).
    assert_eq!(
        set_aside,
        BTreeMap::from([
            ("condition_occurrence", 9),
            ("device_exposure", 0),
            ("drug_exposure", 29),
            ("measurement", 0),
            ("observation", 78),
            ("procedure_occurrence", 6),
            ("visit_occurrence", 0),
        ])
    );

    // Units map as in OHDSI's ETL, through UCUM and the 'Synthea units' source_to_concept_map
    // that ships with the vocabulary (unmatched units stay null).
    let units = |dir: &std::path::Path| {
        let df = common::read_parquet(&dir.join("measurement.parquet"))
            .lazy()
            .filter(col("measurement_concept_id").neq(lit(0)))
            .select([
                col("unit_source_value"),
                col("unit_concept_id").cast(DataType::Int64),
            ])
            .collect()
            .expect("units");
        let mut rows = omop_core::packtest::rows_as_text(
            &df,
            &["unit_source_value".into(), "unit_concept_id".into()],
        )
        .expect("text");
        rows.sort();
        rows
    };
    assert_eq!(units(&out), units(&expected), "measurement units");

    // Every source row is accounted for, rule by rule, and every rule saw every row of its
    // file (also the death rule, whose rows an earlier pass over encounters.csv keeps).
    for r in &report.sources {
        let text = std::fs::read_to_string(src.join("csv").join(&r.file)).expect("source file");
        let data_rows = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count() as u64;
        assert_eq!(r.rows_read, data_rows, "rows read by rule {}", r.rule);
        assert_eq!(
            r.rows_read,
            r.rows_written + r.rows_rejected + r.rows_filtered,
            "accounting of rule {}",
            r.rule
        );
        assert_eq!(
            r.rows_rejected, 0,
            "rule {} rejected rows: {:?}",
            r.rule, r.rejected_by_reason
        );
    }
    // Lineage covers every row of every table the rules wrote.
    for (table, n) in &report.tables {
        let lineage = out.join(format!("_omopkit/lineage/{table}.parquet"));
        if lineage.exists() {
            assert_eq!(
                common::read_parquet(&lineage).height() as u64,
                *n,
                "lineage of {table}"
            );
        }
    }
}

/// Processing a source in small chunks gives exactly the same CDM, lineage and report
/// counts as processing it at once.
#[test]
fn chunked_runs_equal_whole_runs() {
    let Some(shared) = common::shared() else {
        return;
    };
    let src = shared.join("data/synthea-source");
    let tmp = common::tempdir();
    let (whole, a) = run_synthea(&src, tmp.path(), "whole", None);
    let (chunked, b) = run_synthea(&src, tmp.path(), "chunked", Some(37));
    assert_eq!(a.tables, b.tables);
    for (x, y) in a.sources.iter().zip(&b.sources) {
        assert_eq!(
            (
                x.rows_read,
                x.rows_written,
                x.rows_rejected,
                x.rows_filtered,
                &x.filtered_by_reason
            ),
            (
                y.rows_read,
                y.rows_written,
                y.rows_rejected,
                y.rows_filtered,
                &y.filtered_by_reason
            ),
            "rule {}",
            x.rule
        );
        let cov = |r: &omop_core::engine::report::SourceReport| {
            r.coverage.as_ref().map(|c| {
                (
                    c.records,
                    c.records_mapped,
                    c.codes,
                    c.codes_mapped,
                    c.top_unmapped.clone(),
                )
            })
        };
        assert_eq!(cov(x), cov(y), "coverage of rule {}", x.rule);
    }
    for table in a.tables.keys().filter(|t| *t != "cdm_source") {
        for file in [
            format!("{table}.parquet"),
            format!("_omopkit/lineage/{table}.parquet"),
        ] {
            let (p, q) = (whole.join(&file), chunked.join(&file));
            if p.exists() {
                let (l, r) = (common::read_parquet(&p), common::read_parquet(&q));
                assert!(
                    l.equals_missing(&r),
                    "{file} differs between whole and chunked runs"
                );
            }
        }
    }
}
