//! The `omopkit mapping` commands, run as a user would.

mod common;

use std::process::Command;

#[test]
fn lint_accepts_the_synthea_pack_and_names_errors_in_a_broken_one() {
    let ok = Command::new(common::omopkit_bin())
        .args(["mapping", "lint"])
        .arg(common::root().join("mappings/synthea"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let tmp = common::tempdir();
    let text = std::fs::read_to_string(common::root().join("mappings/synthea/pack.yaml"))
        .unwrap()
        .replace("table: death\n", "table: deaths\n");
    std::fs::write(tmp.path().join("pack.yaml"), text).unwrap();
    let bad = Command::new(common::omopkit_bin())
        .args(["mapping", "lint"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("rule death") && err.contains("unknown CDM table `deaths`"),
        "{err}"
    );
}

#[test]
fn explain_shows_how_one_source_row_becomes_cdm_rows() {
    let Some(shared) = common::shared() else {
        return;
    };
    let src = shared.join("data/synthea-source");
    let tmp = common::tempdir();
    // Row 1 of conditions.csv: SNOMED 195662009 (acute viral pharyngitis) on 2023-01-27.
    let out = Command::new(common::omopkit_bin())
        .args([
            "mapping",
            "explain",
            "--rule",
            "conditions",
            "--row",
            "1",
            "--mapping",
        ])
        .arg(common::root().join("mappings/synthea"))
        .arg("--source")
        .arg(src.join("csv"))
        .arg("--vocab")
        .arg(src.join("vocabulary"))
        .arg("--vocab-cache")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("→ condition_occurrence row"), "{text}");
    assert!(
        text.contains("condition_source_value") && text.contains("195662009"),
        "{text}"
    );
    assert!(
        text.contains("condition_start_date")
            && text.contains("2023-01-27")
            && text.contains("← start_date: date(START)"),
        "{text}"
    );
}

/// `--row N` is data row N as the ETL numbers it (in its report and quarantine): a quoted
/// field may hold line ends and blank lines are not rows. It used to pick the N-th line.
#[test]
fn explain_picks_the_data_row_the_etl_numbers() {
    let tmp = common::tempdir();
    let (src, vocab) = common::synthea_sources(
        tmp.path(),
        &[
            (
                "patients.csv",
                &[
                    "p1,1980-01-01,,white,nonhispanic,F,1 Main St,Boston,Massachusetts,Suffolk,02110",
                ],
            ),
            (
                "conditions.csv",
                &[
                    "2020-01-01,,p1,\"two\nlines\",44054006",
                    "",
                    "2021-03-04,,p1,,44054006",
                ],
            ),
        ],
    );
    let explain = |row: &str| {
        Command::new(common::omopkit_bin())
            .args(["mapping", "explain", "--rule", "conditions", "--row", row])
            .arg("--mapping")
            .arg(common::root().join("mappings/synthea"))
            .arg("--source")
            .arg(&src)
            .arg("--vocab")
            .arg(&vocab)
            .arg("--vocab-cache")
            .arg(tmp.path().join("vc"))
            .output()
            .unwrap()
    };
    let out = explain("2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2021-03-04") && !text.contains("2020-01-01"),
        "{text}"
    );
    let out = explain("3");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no data row 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `omopkit mapping schema | head -1`: a reader that stops early is not an error (it used to
/// make the program panic on the broken pipe).
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let mut child = Command::new(common::omopkit_bin())
        .args(["mapping", "schema"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
