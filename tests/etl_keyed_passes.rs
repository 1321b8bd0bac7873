//! Keyed tables that come from one source are numbered from one pass over it: a table whose
//! rules `ref()` an earlier table of the pass only as a whole field gets those fields looked up
//! once the earlier table is numbered. The results must equal numbering them one pass each.

mod common;

use omop_core::engine::{self, EtlOptions, RunReport};
use polars::prelude::*;
use std::path::Path;

const PATIENTS: &str = "Id,BIRTHDATE,GENDER\np1,1980-01-01,F\np2,1975-05-05,M\n";

/// Rows 2 and 5 are not visits, so visit_occurrence has no row for them; row 6 repeats the
/// key of row 1.
const ENCOUNTERS: &str = "Id,PATIENT,START,KIND\n\
e3,p1,2020-01-03,visit\n\
e1,p2,2020-01-01,note\n\
e2,p1,2020-01-02,visit\n\
e4,p2,2020-01-04,visit\n\
e5,p1,2020-01-05,note\n\
e3,p1,2020-01-06,visit\n";

/// A pack with visit_detail pointing to visit_occurrence through `visit_ref` and
/// `concept_ref` (field texts); visit_occurrence keeps only visits.
fn pack(visit_ref: &str, concept_ref: &str) -> String {
    pack_where("\n    where: KIND == 'visit'", visit_ref, concept_ref)
}

/// [`pack`] with `visit_where` (a `where:` line, or nothing) for visit_occurrence.
fn pack_where(visit_where: &str, visit_ref: &str, concept_ref: &str) -> String {
    format!(
        r#"name: keyed
cdm_version: "5.4"
sources:
  patients:
    file: patients.csv
    key: [Id]
    columns: [Id, BIRTHDATE, GENDER]
  encounters:
    file: encounters.csv
    key: [Id]
    columns: [Id, PATIENT, START, KIND]
rules:
  - id: person
    source: patients
    table: person
    key: Id
    fields:
      gender_concept_id: "map(GENDER, {{'M': 8507, 'F': 8532}}, 0)"
      year_of_birth: year(date(BIRTHDATE))
      race_concept_id: "0"
      ethnicity_concept_id: "0"
      person_source_value: Id
  - id: visit_occurrence
    source: encounters
    table: visit_occurrence{visit_where}
    key: Id
    person: PATIENT
    fields:
      visit_concept_id: "9202"
      start_date: date(START)
      end_date: date(START)
      type_concept_id: "32827"
  - id: visit_detail
    source: encounters
    table: visit_detail
    key: Id
    person: PATIENT
    fields:
      visit_detail_concept_id: "9202"
      visit_detail_source_concept_id: "{concept_ref}"
      start_date: date(START)
      end_date: date(START)
      type_concept_id: "32827"
      visit_occurrence_id: "{visit_ref}"
"#
    )
}

fn run(dir: &Path, pack_text: &str) -> RunReport {
    let src = dir.join("source");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("patients.csv"), PATIENTS).unwrap();
    std::fs::write(src.join("encounters.csv"), ENCOUNTERS).unwrap();
    let vocab = dir.join("vocab");
    std::fs::create_dir_all(&vocab).unwrap();
    std::fs::write(
        vocab.join("concept.csv"),
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
         9202,Outpatient Visit,Visit,Visit,Visit,S,OP,1970-01-01,2099-12-31,\n",
    )
    .unwrap();
    let pack = dir.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    std::fs::write(pack.join("pack.yaml"), pack_text).unwrap();
    engine::run(&EtlOptions {
        pack,
        source: src,
        vocab,
        vocab_cache: Some(dir.join("vc")),
        out: dir.join("cdm"),
        chunk_rows: Some(2),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn table(dir: &Path, name: &str) -> DataFrame {
    common::read_parquet(&dir.join("cdm").join(format!("{name}.parquet")))
}

/// `columns` of `df`, row by row, as text.
fn text(df: &DataFrame, columns: &[&str]) -> Vec<Vec<String>> {
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    omop_core::packtest::rows_as_text(df, &columns).unwrap()
}

fn rule<'r>(report: &'r RunReport, id: &str) -> &'r engine::report::SourceReport {
    report.sources.iter().find(|s| s.rule == id).unwrap()
}

#[test]
fn one_pass_numbers_both_tables_like_two_passes_do() {
    let one = common::tempdir();
    let shared = run(
        one.path(),
        &pack(
            "ref(visit_occurrence, Id)",
            "ref(visit_occurrence, Id, 'visit_concept_id')",
        ),
    );
    let two = common::tempdir();
    // Inside a larger expression the look-up cannot wait, so each table gets its own pass.
    let separate = run(
        two.path(),
        &pack(
            "coalesce(ref(visit_occurrence, Id), ref(visit_occurrence, Id))",
            "coalesce(ref(visit_occurrence, Id, 'visit_concept_id'), ref(visit_occurrence, Id, 'visit_concept_id'))",
        ),
    );
    let stages =
        |r: &RunReport| -> Vec<String> { r.stages.iter().map(|s| s.stage.clone()).collect() };
    assert!(
        stages(&shared).contains(&"table visit_occurrence + visit_detail".to_string()),
        "{:?}",
        stages(&shared)
    );
    assert!(
        stages(&separate).contains(&"table visit_detail".to_string()),
        "{:?}",
        stages(&separate)
    );

    // e1 and e5 are not visits: their visit detail has no visit and is rejected.
    for report in [&shared, &separate] {
        let vd = rule(report, "visit_detail");
        assert_eq!((vd.rows_read, vd.rows_written, vd.rows_rejected), (6, 4, 2));
        assert_eq!(
            vd.rejected_by_reason
                .get("required field visit_detail.visit_occurrence_id is empty"),
            Some(&2),
            "{:?}",
            vd.rejected_by_reason
        );
    }
    for name in ["visit_occurrence", "visit_detail"] {
        let a = table(one.path(), name);
        let b = table(two.path(), name);
        assert!(a.equals_missing(&b), "{name}:\n{a}\n{b}");
    }
    let vd = table(one.path(), "visit_detail");
    // Keys e2, e3, e4 in key order: visit ids 1, 2, 3 and detail ids 1, 2, 3 (e1 and e5
    // rejected); the repeated e3 is one row, the first.
    assert_eq!(
        text(
            &vd,
            &[
                "visit_detail_id",
                "visit_occurrence_id",
                "visit_detail_source_concept_id",
                "visit_detail_start_date",
            ],
        ),
        [
            ["1", "1", "9202", "2020-01-02"],
            ["2", "2", "9202", "2020-01-03"],
            ["3", "3", "9202", "2020-01-04"],
        ]
    );

    // The rejected rows are quarantined with their source rows, in both runs alike.
    let q = |dir: &Path| {
        common::read_parquet(&dir.join("cdm/_omopkit/quarantine/visit_detail.parquet"))
    };
    let (qa, qb) = (q(one.path()), q(two.path()));
    assert!(qa.equals_missing(&qb), "{qa}\n{qb}");
    assert_eq!(text(&qa, &["_source_row"]), [["2"], ["5"]]);
}

/// When both tables of a pass keep the same rows, both are numbered in key order, and the
/// second points to the first row for row.
#[test]
fn tables_with_the_same_rows_are_numbered_alike() {
    let one = common::tempdir();
    run(
        one.path(),
        &pack_where(
            "",
            "ref(visit_occurrence, Id)",
            "ref(visit_occurrence, Id, 'visit_concept_id')",
        ),
    );
    let text = |name: &str, columns: &[&str]| text(&table(one.path(), name), columns);
    let expected = [
        ["1", "2020-01-01"],
        ["2", "2020-01-02"],
        ["3", "2020-01-03"],
        ["4", "2020-01-04"],
        ["5", "2020-01-05"],
    ];
    assert_eq!(
        text(
            "visit_occurrence",
            &["visit_occurrence_id", "visit_start_date"]
        ),
        expected
    );
    assert_eq!(
        text(
            "visit_detail",
            &["visit_detail_id", "visit_detail_start_date"]
        ),
        expected
    );
    assert_eq!(
        text("visit_detail", &["visit_occurrence_id"]),
        [["1"], ["2"], ["3"], ["4"], ["5"]]
    );
}
