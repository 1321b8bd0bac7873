//! Conformance with OHDSI Circe on Eunomia GiBleed: every reference cohort in
//! `../shared/cohorts/expected-gibleed.csv` must match on rows, subjects and
//! the md5 of its canonical rows; every other PhenotypeLibrary cohort must be
//! empty; and the inclusion statistics of the CohortGenerator cohorts must
//! equal what Java Circe wrote.

mod cohort_support;

use omop_cohort::{Cdm, CohortExpression, CohortResult, evaluate};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn gibleed() -> Option<&'static (PathBuf, Cdm)> {
    static CDM: OnceLock<Option<(PathBuf, Cdm)>> = OnceLock::new();
    CDM.get_or_init(|| {
        let shared = cohort_support::shared_dir()?;
        let cdm = Cdm::load(&shared.join("data/eunomia-gibleed")).expect("GiBleed loads");
        Some((shared, cdm))
    })
    .as_ref()
}

fn definition_path(shared: &Path, id: &str) -> PathBuf {
    let pl = shared.join(format!("cohorts/phenotype-library/{id}.json"));
    if pl.exists() {
        pl
    } else {
        shared.join(format!("cohorts/cohort-generator/{id}.json"))
    }
}

fn run(path: &Path, cdm: &Cdm) -> CohortResult {
    let def = CohortExpression::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    evaluate(cdm, &def).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Expected {
    id: String,
    rows: usize,
    subjects: usize,
    md5: String,
}

fn expected(shared: &Path) -> Vec<Expected> {
    let path = shared.join("cohorts/expected-gibleed.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Expected {
                id: f[0].to_string(),
                rows: f[1].parse().expect("rows"),
                subjects: f[2].parse().expect("subjects"),
                md5: f[3].to_string(),
            }
        })
        .collect()
}

#[test]
fn reference_cohorts_match_circe_on_gibleed() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let expected = expected(shared);
    assert_eq!(expected.len(), 147);
    let mut mismatches = Vec::new();
    for e in &expected {
        let result = run(&definition_path(shared, &e.id), cdm);
        let rows = result.rows.len();
        let subjects = result.subject_count();
        let md5 = cohort_support::md5_hex(result.canonical_text().as_bytes());
        let ok = rows == e.rows && subjects == e.subjects && (e.md5 == "-" || md5 == e.md5);
        if !ok {
            mismatches.push(format!(
                "{}: rows {rows} (expected {}), subjects {subjects} (expected {}), md5 {}",
                e.id,
                e.rows,
                e.subjects,
                if e.md5 == "-" || md5 == e.md5 {
                    "ok"
                } else {
                    "differs"
                }
            ));
        }
    }
    println!(
        "{} of {} reference cohorts match",
        expected.len() - mismatches.len(),
        expected.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn other_phenotypes_are_empty_on_gibleed() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let listed: BTreeSet<String> = expected(shared).into_iter().map(|e| e.id).collect();
    let mut non_empty = Vec::new();
    let mut checked = 0;
    for path in cohort_support::all_definitions(shared) {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if listed.contains(&id) {
            continue;
        }
        checked += 1;
        let result = run(&path, cdm);
        if !result.rows.is_empty() {
            non_empty.push(format!("{id}: {} rows", result.rows.len()));
        }
    }
    assert_eq!(checked, 1105 - 147);
    assert!(
        non_empty.is_empty(),
        "expected empty:\n{}",
        non_empty.join("\n")
    );
}

/// `database_id,cohort_definition_id,...` rows of a java-circe-results CSV.
fn java_rows(shared: &Path, file: &str) -> Vec<Vec<String>> {
    let path = shared
        .join("cohorts/cohort-generator/java-circe-results")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn inclusion_statistics_match_java_circe() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let inc_result = java_rows(shared, "cg_cohort_inc_result.csv");
    let inc_stats = java_rows(shared, "cg_cohort_inc_stats.csv");
    for (cohort_id, name) in [("2", "celecoxibAge40"), ("3", "celecoxibAge40Male")] {
        let result = run(
            &shared.join(format!("cohorts/cohort-generator/{name}.json")),
            cdm,
        );
        for (mode, stats) in [
            ("0", &result.stats_by_event),
            ("1", &result.stats_by_person),
        ] {
            let expected: BTreeMap<u64, u64> = inc_result
                .iter()
                .filter(|r| r[1] == cohort_id && r[4] == mode)
                .map(|r| (r[2].parse().expect("mask"), r[3].parse().expect("count")))
                .collect();
            assert!(!expected.is_empty());
            assert_eq!(
                stats.mask_counts, expected,
                "{name} mode {mode}: persons per mask"
            );
            for r in inc_stats
                .iter()
                .filter(|r| r[1] == cohort_id && r[6] == mode)
            {
                let rule: usize = r[2].parse().expect("rule");
                let (count, gain) = stats.rules[rule];
                assert_eq!(
                    count.to_string(),
                    r[3],
                    "{name} mode {mode} rule {rule}: person_count"
                );
                assert_eq!(
                    gain.to_string(),
                    r[4],
                    "{name} mode {mode} rule {rule}: gain_count"
                );
                assert_eq!(
                    stats.total.to_string(),
                    r[5],
                    "{name} mode {mode}: person_total"
                );
            }
        }
    }
    // Counts and censoring of all four cohorts.
    let counts = java_rows(shared, "cg_cohort_count.csv");
    for (cohort_id, name) in [
        ("1", "celecoxib"),
        ("2", "celecoxibAge40"),
        ("3", "celecoxibAge40Male"),
        ("4", "celecoxibCensored"),
    ] {
        let result = run(
            &shared.join(format!("cohorts/cohort-generator/{name}.json")),
            cdm,
        );
        let row = counts
            .iter()
            .find(|r| r[1] == cohort_id)
            .expect("count row");
        assert_eq!(result.rows.len().to_string(), row[2], "{name}: entries");
        assert_eq!(
            result.subject_count().to_string(),
            row[3],
            "{name}: subjects"
        );
    }
    let censor = java_rows(shared, "cg_cohort_censor_stats.csv");
    let result = run(
        &shared.join("cohorts/cohort-generator/celecoxibCensored.json"),
        cdm,
    );
    let row = censor.iter().find(|r| r[1] == "4").expect("censor row");
    assert_eq!(
        result.censored_lost.to_string(),
        row[2],
        "celecoxibCensored: lost_count"
    );
}

#[test]
fn on_disk_index_gives_the_reference_results() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("index");
    omop_cohort::store::save(cdm, &dir).expect("index written");
    assert!(omop_cohort::store::exists(&dir));
    let reloaded = omop_cohort::store::load(&dir).expect("index read");
    assert_eq!(reloaded.person_count(), cdm.person_count());
    for e in expected(shared).iter().step_by(7) {
        let result = run(&definition_path(shared, &e.id), &reloaded);
        let md5 = cohort_support::md5_hex(result.canonical_text().as_bytes());
        assert_eq!(
            (result.rows.len(), result.subject_count()),
            (e.rows, e.subjects),
            "{}",
            e.id
        );
        assert!(e.md5 == "-" || md5 == e.md5, "{}: md5 differs", e.id);
    }
    // Building the index table by table straight from the Parquet files gives
    // the same files as saving a loaded CDM.
    let built = tmp.path().join("built");
    omop_cohort::store::build(&shared.join("data/eunomia-gibleed"), &built).expect("index built");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("index folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        let a = std::fs::read(dir.join(&name)).expect("saved file");
        let b = std::fs::read(built.join(&name)).expect("built file");
        if name == "manifest.json" {
            continue;
        }
        assert!(a == b, "{name:?} differs between save and build");
    }
    // A damaged index is an error, not a panic.
    let bin = dir.join("condition_occurrence.bin");
    let bytes = std::fs::read(&bin).expect("read");
    std::fs::write(&bin, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = omop_cohort::store::load(&dir).expect_err("truncated index");
    assert!(
        err.to_string().contains("condition_occurrence.bin"),
        "{err}"
    );
}
