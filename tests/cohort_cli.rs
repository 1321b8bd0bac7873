//! The `omopkit cohort` command-line contract.

mod cohort_support;

use std::process::Command;

fn omopkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omopkit"))
}

#[test]
fn run_writes_sorted_csv_per_definition_and_count_prints_totals() {
    let Some(shared) = cohort_support::shared_dir() else {
        return;
    };
    let cdm = shared.join("data/eunomia-gibleed");
    let defs = shared.join("cohorts/cohort-generator");
    let out = tempfile::tempdir().expect("tempdir");
    let status = omopkit()
        .args(["cohort", "run", "--cdm"])
        .arg(&cdm)
        .arg("--out-dir")
        .arg(out.path())
        .arg(defs.join("celecoxib.json"))
        .arg(defs.join("celecoxibAge40Male.json"))
        .status()
        .expect("omopkit runs");
    assert!(status.success());
    // Java Circe: celecoxib 1800 rows, celecoxibAge40Male 266.
    for (stem, rows) in [("celecoxib", 1800usize), ("celecoxibAge40Male", 266)] {
        let text =
            std::fs::read_to_string(out.path().join(format!("{stem}.csv"))).expect("csv written");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("subject_id,cohort_start_date,cohort_end_date")
        );
        let parsed: Vec<(i64, String, String)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 3, "{l}");
                assert_eq!(f[1].len(), 10, "YYYY-MM-DD: {l}");
                (
                    f[0].parse().expect("subject id"),
                    f[1].to_string(),
                    f[2].to_string(),
                )
            })
            .collect();
        assert_eq!(parsed.len(), rows, "{stem}");
        assert!(
            parsed.windows(2).all(|w| w[0] <= w[1]),
            "{stem}: rows sorted"
        );
    }

    let output = omopkit()
        .args(["cohort", "count", "--cdm"])
        .arg(&cdm)
        .arg(defs.join("celecoxibCensored.json"))
        .output()
        .expect("omopkit runs");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("celecoxibCensored,1750,1750"), "{stdout}");
}

#[test]
fn invalid_definition_fails_with_its_position() {
    let Some(shared) = cohort_support::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"PrimaryCriteria\": {,}\n}\n").expect("write");
    let output = omopkit()
        .args(["cohort", "count", "--cdm"])
        .arg(shared.join("data/eunomia-gibleed"))
        .arg(&bad)
        .output()
        .expect("omopkit runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn index_is_built_once_and_reused() {
    let Some(shared) = cohort_support::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = tmp.path().join("idx");
    let def = shared.join("cohorts/cohort-generator/celecoxibAge40.json");
    for round in 0..2 {
        let output = omopkit()
            .args(["cohort", "count", "--cdm"])
            .arg(shared.join("data/eunomia-gibleed"))
            .arg("--index")
            .arg(&index)
            .arg(&def)
            .output()
            .expect("omopkit runs");
        assert!(
            output.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Java Circe: 569 entries, 569 persons.
        assert!(String::from_utf8_lossy(&output.stdout).contains("celecoxibAge40,569,569"));
        assert!(index.join("manifest.json").is_file());
    }
}
