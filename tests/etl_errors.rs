//! Bad input gets a clear error and loses nothing.

mod common;

use omop_core::engine::report::SourceReport;
use omop_core::engine::{self, EtlError, EtlOptions, RunReport};
use omop_core::mapping::{self, PackError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PATIENT: &str =
    "p1,1980-01-01,,white,nonhispanic,F,1 Main St,Boston,Massachusetts,Suffolk,02110";

/// The Synthea pack over `src` and `vocab`, writing into `dir`.
fn opts(dir: &Path, src: PathBuf, vocab: PathBuf) -> EtlOptions {
    EtlOptions {
        pack: common::root().join("mappings/synthea"),
        source: src,
        vocab,
        vocab_cache: Some(dir.join("vc")),
        out: dir.join("cdm"),
        chunk_rows: None,
    }
}

#[test]
fn malformed_yaml_is_reported_with_file_line_and_column() {
    let tmp = common::tempdir();
    let pack = tmp.path().join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    std::fs::write(
        pack.join("pack.yaml"),
        "name: broken\nsources:\n  patients: {file: patients.csv, columns: [Id\nrules: []\n",
    )
    .unwrap();
    let err = mapping::load_pack(&pack).unwrap_err();
    let PackError::Yaml { line, column, .. } = &err else {
        panic!("expected a YAML error, got {err}")
    };
    assert!(*line >= 3, "{err}");
    assert!(*column > 0, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pack.yaml:{line}:{column}:")),
        "{msg}"
    );
}

#[test]
fn unknown_cdm_table_or_field_is_a_lint_error_naming_it() {
    let base = std::fs::read_to_string(common::root().join("mappings/synthea/pack.yaml")).unwrap();
    let cases = [
        (
            base.replace("table: care_site\n", "table: care_sites\n"),
            "unknown CDM table `care_sites`",
        ),
        (
            base.replace("care_site_name: NAME", "care_site_title: NAME"),
            "unknown CDM field `care_site_title`",
        ),
        (
            base.replace("start_date: date(START)", "start_date: date(STRAT)"),
            "unknown column `STRAT`",
        ),
        (
            base.replace("start_date: date(START)", "start_date: dat(START)"),
            "unknown function `dat`",
        ),
    ];
    for (text, expected) in cases {
        assert_ne!(text, base, "the case must change the pack");
        let pack = mapping::parse_pack(&text, Path::new("pack.yaml")).expect("still valid YAML");
        let diags = mapping::lint(&pack);
        assert!(
            diags
                .iter()
                .any(|d| d.severity == mapping::Severity::Error && d.message.contains(expected)),
            "expected a lint error containing {expected:?}, got {diags:#?}"
        );
    }
    assert!(
        mapping::lint(&mapping::parse_pack(&base, Path::new("pack.yaml")).unwrap())
            .iter()
            .all(|d| d.severity != mapping::Severity::Error)
    );
}

#[test]
fn a_source_missing_a_column_names_the_file_and_the_column() {
    let tmp = common::tempdir();
    let (src, vocab) = common::synthea_sources(tmp.path(), &[("patients.csv", &[PATIENT])]);
    let conditions = src.join("conditions.csv");
    std::fs::write(&conditions, "START,STOP,PATIENT,ENCOUNTER,DESCRIPTION\n").unwrap();
    let err = engine::run(&opts(tmp.path(), src, vocab)).unwrap_err();
    let EtlError::MissingColumn { file, column, .. } = &err else {
        panic!("expected a missing column, got {err}")
    };
    assert_eq!(file, &conditions);
    assert_eq!(column, "CODE");
    assert!(
        err.to_string()
            .contains("conditions.csv: missing column `CODE`"),
        "{err}"
    );
}

#[test]
fn unparseable_dates_and_numbers_go_to_quarantine_with_their_row_and_reason() {
    let tmp = common::tempdir();
    let (src, vocab) = common::synthea_sources(
        tmp.path(),
        &[
            ("patients.csv", &[PATIENT]),
            (
                "conditions.csv",
                &[
                    "2020-01-01,,p1,,44054006",
                    "2020-02-30,,p1,,44054006",
                    "yesterday,,p1,,44054006",
                ],
            ),
            (
                "encounters.csv",
                &[
                    "e1,2020-01-01T10:00:00Z,2020-01-01T11:00:00Z,p1,,,wellness,1,",
                    "e2,2020-01-01T10:00:00Z,later,p1,,,wellness,1,",
                ],
            ),
        ],
    );
    let o = opts(tmp.path(), src, vocab);
    let report = engine::run(&o).expect("the run succeeds; bad rows are quarantined");
    let rule = |id: &str| rule_report(&report, id).clone();
    let conditions = rule("conditions");
    assert_eq!(
        (
            conditions.rows_read,
            conditions.rows_written,
            conditions.rows_rejected
        ),
        (3, 1, 2)
    );
    assert_eq!(
        conditions
            .rejected_by_reason
            .get("`date(START)`: expected a date (YYYY-MM-DD)"),
        Some(&2),
        "{:?}",
        conditions.rejected_by_reason
    );
    let visits = rule("visit_occurrence");
    assert_eq!(
        (visits.rows_read, visits.rows_written, visits.rows_rejected),
        (2, 1, 1)
    );

    let q = common::read_parquet(&o.out.join("_omopkit/quarantine/conditions.parquet"));
    let rows = omop_core::packtest::rows_as_text(
        &q,
        &[
            "_source_file".into(),
            "_source_row".into(),
            "START".into(),
            "_reason".into(),
        ],
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![
                "conditions.csv".to_string(),
                "2".into(),
                "2020-02-30".into(),
                "`date(START)`: expected a date (YYYY-MM-DD)".into()
            ],
            vec![
                "conditions.csv".to_string(),
                "3".into(),
                "yesterday".into(),
                "`date(START)`: expected a date (YYYY-MM-DD)".into()
            ],
        ]
    );
    assert_eq!(
        common::read_parquet(&o.out.join("condition_occurrence.parquet")).height(),
        1
    );
}

/// Blank lines are not rows (they used to be read as rows of nulls, each rejected for a
/// missing person). Row numbers count records, and the quarantine, which reads the file
/// again, numbers them the same way, so it holds the rejected record itself.
#[test]
fn quarantined_rows_are_the_rejected_records_when_the_file_has_blank_lines() {
    let tmp = common::tempdir();
    let (src, vocab) = common::synthea_sources(
        tmp.path(),
        &[
            ("patients.csv", &[PATIENT]),
            (
                "conditions.csv",
                &[
                    "2020-01-01,,p1,,44054006",
                    "",
                    "\"2020-01-01\",,p1,\"a\nquoted line end\",44054006",
                    "",
                    "yesterday,,p1,,44054006",
                ],
            ),
        ],
    );
    let o = opts(tmp.path(), src, vocab);
    let report = engine::run(&o).expect("the run succeeds; the bad row is quarantined");
    let conditions = rule_report(&report, "conditions");
    assert_eq!(
        (
            conditions.rows_read,
            conditions.rows_written,
            conditions.rows_rejected
        ),
        (3, 2, 1)
    );
    let q = common::read_parquet(&o.out.join("_omopkit/quarantine/conditions.parquet"));
    let rows = omop_core::packtest::rows_as_text(
        &q,
        &["_source_row".into(), "START".into(), "PATIENT".into()],
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![vec!["3".to_string(), "yesterday".into(), "p1".into()]]
    );
}

#[test]
fn a_failed_run_leaves_the_previous_output_untouched() {
    let tmp = common::tempdir();
    let (src, vocab) = common::synthea_sources(
        tmp.path(),
        &[
            ("patients.csv", &[PATIENT]),
            ("conditions.csv", &["2020-01-01,,p1,,44054006"]),
        ],
    );
    let o = opts(tmp.path(), src.clone(), vocab);
    engine::run(&o).expect("first run");
    let before = snapshot(&o.out);
    assert!(before.len() > 10, "the first run wrote its tables");

    // A later source breaks in the middle of the run (after earlier tables were staged).
    std::fs::write(
        src.join("devices.csv"),
        b"START,STOP,PATIENT,ENCOUNTER,CODE,UDI\n2020-01-01,,p1,,\xff\xfe,x\n",
    )
    .unwrap();
    let err = engine::run(&o);
    assert!(err.is_err(), "a malformed CSV must fail the run");
    assert_eq!(snapshot(&o.out), before, "the previous output is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the staging folder is removed: {leftovers:?}"
    );
}

/// What the report says of rule `id`.
fn rule_report<'r>(report: &'r RunReport, id: &str) -> &'r SourceReport {
    report
        .sources
        .iter()
        .find(|r| r.rule == id)
        .unwrap_or_else(|| panic!("rule {id} in the report"))
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}
