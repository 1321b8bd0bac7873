//! A pack can bring its own mappings: local concepts (ids from 2,000,000,000) for code systems
//! OMOP lacks, source_to_concept_map files and Usagi exports.

mod common;

use omop_core::engine::{self, EtlOptions};
use std::path::Path;

const PACK: &str = r#"
name: local-codes
sources:
  persons: {file: persons.csv, columns: [id, sex, born]}
  diagnoses: {file: diagnoses.csv, columns: [id, date, code, system]}
vocabulary:
  local_concepts:
    - {concepts: local/concept.csv, relationships: local/concept_relationship.csv}
  source_to_concept_map: [local/stcm.csv]
  usagi: [{file: local/usagi.csv, vocabulary_id: HOSPITAL}]
rules:
  - id: person
    source: persons
    table: person
    key: id
    fields:
      gender_concept_id: "map(sex, {'K': 8532, 'M': 8507}, 0)"
      year_of_birth: int(born)
      race_concept_id: "0"
      ethnicity_concept_id: "0"
      person_source_value: id
  - id: diagnoses
    source: diagnoses
    table: condition_occurrence
    person: id
    concept: {code: code, vocabulary_from: system}
    fields:
      start_date: date(date)
      type_concept_id: "32817"
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn setup(dir: &Path, local_id: i64) -> EtlOptions {
    let pack = dir.join("pack");
    write(&pack, "pack.yaml", PACK);
    write(
        &pack,
        "local/concept.csv",
        &format!(
            "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n{local_id},Local diagnosis,Condition,NPR-local,Diagnosis,,L1,2000-01-01,2099-12-31,\n"
        ),
    );
    write(
        &pack,
        "local/concept_relationship.csv",
        &format!(
            "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n{local_id},201826,Maps to,2000-01-01,2099-12-31,\n"
        ),
    );
    write(
        &pack,
        "local/stcm.csv",
        "source_code,source_concept_id,source_vocabulary_id,source_code_description,target_concept_id,target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason\nS1,0,LAB-local,Local code,201826,SNOMED,1970-01-01,2099-12-31,\n",
    );
    write(
        &pack,
        "local/usagi.csv",
        "sourceCode,sourceName,sourceFrequency,sourceAutoAssignedConceptIds,matchScore,mappingStatus,equivalence,statusSetBy,statusSetOn,conceptId,conceptName,domainId,mappingType,comment,createdBy,createdOn\n\
         U1,Approved code,10,,1.0,APPROVED,EQUAL,a,0,201826,Type 2 diabetes mellitus,Condition,MAPS_TO,,a,0\n\
         U2,Unapproved code,5,,0.5,UNCHECKED,UNREVIEWED,a,0,201826,Type 2 diabetes mellitus,Condition,MAPS_TO,,a,0\n",
    );
    let src = dir.join("src");
    write(&src, "persons.csv", "id,sex,born\np1,K,1970\n");
    write(
        &src,
        "diagnoses.csv",
        "id,date,code,system\np1,2020-01-01,L1,NPR-local\np1,2020-01-02,S1,LAB-local\np1,2020-01-03,U1,HOSPITAL\np1,2020-01-04,U2,HOSPITAL\n",
    );
    let vocab = dir.join("vocab");
    write(
        &vocab,
        "concept.csv",
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n201826,Type 2 diabetes mellitus,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31,\n",
    );
    EtlOptions {
        pack,
        source: src,
        vocab: vocab.clone(),
        vocab_cache: Some(dir.join("vc")),
        out: dir.join("cdm"),
        chunk_rows: None,
    }
}

/// Runs the ETL and gives `columns` of condition_occurrence as text, row by row.
fn run_conditions(opts: &EtlOptions, columns: &[&str]) -> Vec<Vec<String>> {
    engine::run(opts).expect("run");
    let df = common::read_parquet(&opts.out.join("condition_occurrence.parquet"));
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    omop_core::packtest::rows_as_text(&df, &columns).unwrap()
}

#[test]
fn local_concepts_stcm_and_usagi_map_codes() {
    let tmp = common::tempdir();
    let opts = setup(tmp.path(), 2_000_000_001);
    let rows = run_conditions(
        &opts,
        &[
            "condition_source_value",
            "condition_concept_id",
            "condition_source_concept_id",
        ],
    );
    assert_eq!(
        rows,
        vec![
            vec!["L1".to_string(), "201826".into(), "2000000001".into()],
            vec!["S1".to_string(), "201826".into(), "0".into()],
            vec!["U1".to_string(), "201826".into(), "0".into()],
            vec!["U2".to_string(), "0".into(), "0".into()],
        ]
    );
}

#[test]
fn local_concept_ids_below_two_billion_are_refused() {
    let tmp = common::tempdir();
    let opts = setup(tmp.path(), 1_999_999_999);
    let err = engine::run(&opts).unwrap_err().to_string();
    assert!(
        err.contains("concept.csv") && err.contains("2000000000") || err.contains("2,000,000,000"),
        "{err}"
    );
    assert!(!opts.out.exists(), "nothing is written");
}

/// A rule with one listed vocabulary, and look-ups with a literal vocabulary, key their
/// look-ups by the code alone: codes of other vocabularies must still find nothing.
#[test]
fn one_vocabulary_and_literal_vocabulary_lookups_see_only_that_vocabulary() {
    let tmp = common::tempdir();
    let opts = setup(tmp.path(), 2_000_000_001);
    let pack = PACK.replace(
        "    concept: {code: code, vocabulary_from: system}\n    fields:\n",
        "    concept: {code: code, vocabularies: [HOSPITAL]}\n    fields:\n      condition_status_concept_id: \"standard_concept_id('LAB-local', code)\"\n      provider_id: \"source_concept_id('NPR-local', code)\"\n",
    );
    assert_ne!(pack, PACK);
    write(&opts.pack, "pack.yaml", &pack);
    let rows = run_conditions(
        &opts,
        &[
            "condition_source_value",
            "condition_concept_id",
            "condition_status_concept_id",
            "provider_id",
        ],
    );
    let row =
        |a: &str, b: &str, c: &str, d: &str| vec![a.to_string(), b.into(), c.into(), d.into()];
    assert_eq!(
        rows,
        vec![
            row("L1", "0", "null", "2000000001"),
            row("S1", "0", "201826", "null"),
            row("U1", "201826", "null", "null"),
            row("U2", "0", "null", "null"),
        ]
    );
}
