//! `omopkit demo`: synthetic Synthea-style sources and a small vocabulary, then the ETL.
//!
//! The checks here do not trust the generator: row counts are recounted from the CSV files,
//! the expected unmapped codes are named literally, and, when `../shared` is present, the
//! file headers are compared with real Synthea v3.0 files and the concepts with the OHDSI
//! vocabularies shipped there.

mod common;

use polars::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The eleven files the Synthea pack reads.
const FILES: &[&str] = &[
    "allergies",
    "conditions",
    "devices",
    "encounters",
    "immunizations",
    "medications",
    "observations",
    "organizations",
    "patients",
    "procedures",
    "providers",
];

/// The codes the demo leaves out of its vocabulary on purpose: a SNOMED finding and
/// Synthea's own quality-of-life codes, which are not LOINC.
const UNMAPPED: &[&str] = &["10939881000119104", "QALY", "DALY", "QOLS"];

fn demo(out: &Path, patients: usize, seed: u64, extra: &[&str]) -> std::process::Output {
    let output = Command::new(common::omopkit_bin())
        .current_dir(common::root())
        .args(["demo", "--out"])
        .arg(out)
        .args([
            "--patients",
            &patients.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(extra)
        .output()
        .expect("run omopkit demo");
    assert!(
        output.status.success(),
        "omopkit demo failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A small CSV reader for the generated files (the generator writes no quoted line breaks).
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Csv {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut lines = text.lines();
        let header = split(lines.next().unwrap_or_default());
        let rows: Vec<Vec<String>> = lines.map(split).collect();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(
                r.len(),
                header.len(),
                "{}: line {} has {} fields, the header {}",
                path.display(),
                i + 2,
                r.len(),
                header.len()
            );
        }
        Csv { header, rows }
    }

    fn column(&self, name: &str) -> Vec<&str> {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }
}

/// Splits one CSV line, honouring `"` quoting.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn parquet_rows(dir: &Path, table: &str) -> usize {
    common::read_parquet(&dir.join(format!("{table}.parquet"))).height()
}

#[test]
fn demo_runs_the_etl_end_to_end_and_accounts_for_every_row() {
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    let patients = 300;
    let run = demo(
        &out,
        patients,
        7,
        &[
            "--mapping",
            common::root().join("mappings/synthea").to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("omopkit etl"),
        "the run summary is printed:\n{stderr}"
    );
    // Lineage once built its enum columns with a cast that made polars print a deprecation
    // warning for every batch of rows.
    assert!(
        !stderr.to_lowercase().contains("deprecat"),
        "no library warnings among the run's output:\n{stderr}"
    );
    let (source, cdm) = (out.join("source"), out.join("cdm"));

    // Source rows, recounted from the files.
    let csv: BTreeMap<&str, Csv> = FILES
        .iter()
        .map(|f| (*f, Csv::read(&source.join(format!("{f}.csv")))))
        .collect();
    assert_eq!(csv["patients"].rows.len(), patients);

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(cdm.join("_omopkit/report.json")).expect("report.json"),
    )
    .expect("report is JSON");
    let rules = report["sources"].as_array().expect("sources");
    assert!(!rules.is_empty());
    let mut unmapped: BTreeSet<String> = BTreeSet::new();
    let mut files_seen = BTreeSet::new();
    for r in rules {
        let rule = r["rule"].as_str().unwrap_or_default();
        let n = |k: &str| {
            r[k].as_u64()
                .unwrap_or_else(|| panic!("{rule}: {k} missing"))
        };
        let (read, written, rejected, filtered) = (
            n("rows_read"),
            n("rows_written"),
            n("rows_rejected"),
            n("rows_filtered"),
        );
        assert_eq!(
            read,
            written + rejected + filtered,
            "{rule}: read = written + rejected + filtered"
        );
        assert_eq!(
            rejected, 0,
            "{rule}: no row of the demo data is rejected ({:?})",
            r["rejected_by_reason"]
        );
        let by_reason: u64 = r["filtered_by_reason"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        assert_eq!(by_reason, filtered, "{rule}: filtered rows have reasons");
        let file = Path::new(r["file"].as_str().unwrap_or_default())
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let source_rows = csv
            .get(file.as_str())
            .unwrap_or_else(|| panic!("{rule}: unexpected source file {file}"))
            .rows
            .len() as u64;
        assert_eq!(
            read, source_rows,
            "{rule}: rows read = data lines of {file}.csv"
        );
        files_seen.insert(file);
        if let Some(top) = r["coverage"]["top_unmapped"].as_array() {
            for entry in top {
                if let Some(code) = entry.get(0).and_then(Value::as_str) {
                    unmapped.insert(code.to_string());
                }
            }
        }
    }
    assert_eq!(
        files_seen.len(),
        FILES.len(),
        "every source file is read by some rule: {files_seen:?}"
    );
    let expected: BTreeSet<String> = UNMAPPED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        unmapped, expected,
        "the coverage report lists exactly the codes left out of the vocabulary"
    );

    // The CDM.
    assert_eq!(parquet_rows(&cdm, "person"), patients);
    let with_visits: BTreeSet<&str> = csv["encounters"].column("PATIENT").into_iter().collect();
    assert_eq!(
        parquet_rows(&cdm, "observation_period"),
        with_visits.len(),
        "one observation period per person with visits"
    );
    for table in [
        "visit_occurrence",
        "visit_detail",
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
        "device_exposure",
        "measurement",
        "observation",
        "death",
        "condition_era",
        "drug_era",
        "location",
        "care_site",
        "provider",
        "cdm_source",
    ] {
        let n = parquet_rows(&cdm, table);
        assert!(n > 0, "{table} is empty");
        assert_eq!(
            report["tables"][table].as_u64(),
            Some(n as u64),
            "{table}: report and file agree"
        );
    }
    assert_eq!(
        parquet_rows(&cdm, "visit_occurrence"),
        csv["encounters"].rows.len()
    );
    let dead = csv["patients"]
        .column("DEATHDATE")
        .into_iter()
        .filter(|d| !d.is_empty())
        .count();
    assert_eq!(
        parquet_rows(&cdm, "death"),
        dead,
        "one death row per patient with a death date"
    );

    // drug_era is built on ingredients.
    let vocab = Csv::read(&out.join("vocabulary/concept.csv"));
    let ingredients: BTreeSet<i32> = vocab
        .rows
        .iter()
        .filter(|r| {
            r[vocab
                .header
                .iter()
                .position(|h| h == "concept_class_id")
                .unwrap()]
                == "Ingredient"
        })
        .map(|r| r[0].parse().unwrap())
        .collect();
    let eras = common::read_parquet(&cdm.join("drug_era.parquet"));
    let era_concepts: BTreeSet<i32> = eras
        .column("drug_concept_id")
        .unwrap()
        .cast(&DataType::Int32)
        .unwrap()
        .i32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(
        era_concepts.is_subset(&ingredients),
        "drug_era concepts {era_concepts:?} are ingredients"
    );

    // The vocabulary release reaches cdm_source.
    let cdm_source = common::read_parquet(&cdm.join("cdm_source.parquet"));
    let version = cdm_source
        .column("vocabulary_version")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .map(str::to_string);
    assert_eq!(version.as_deref(), Some("omopkit demo vocabulary 2026-11"));
}

#[test]
fn the_generator_is_deterministic() {
    let tmp = common::tempdir();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    demo(&a, 60, 11, &["--generate-only"]);
    demo(&b, 60, 11, &["--generate-only"]);
    demo(&c, 60, 12, &["--generate-only"]);
    let mut compared = 0;
    for sub in ["source", "vocabulary"] {
        for entry in std::fs::read_dir(a.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let name = path.file_name().unwrap();
            let same =
                std::fs::read(&path).unwrap() == std::fs::read(b.join(sub).join(name)).unwrap();
            assert!(
                same,
                "{sub}/{}: the same seed gives the same bytes",
                name.to_string_lossy()
            );
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        FILES.len() + 5,
        "11 source files and 5 vocabulary files"
    );
    let differs = std::fs::read(a.join("source/patients.csv")).unwrap()
        != std::fs::read(c.join("source/patients.csv")).unwrap();
    assert!(differs, "another seed gives other patients");
    // Patient i's story does not depend on how many patients are generated (400 patients
    // also means more organizations than 60 do).
    let d = tmp.path().join("d");
    demo(&d, 400, 11, &["--generate-only"]);
    let first_60 = |dir: &Path, file: &str| -> Vec<String> {
        let patients = Csv::read(&dir.join("source/patients.csv"));
        let ids: BTreeSet<String> = patients
            .column("Id")
            .into_iter()
            .take(60)
            .map(str::to_string)
            .collect();
        let csv = Csv::read(&dir.join(format!("source/{file}.csv")));
        let col = csv
            .header
            .iter()
            .position(|h| h == "PATIENT" || (file == "patients" && h == "Id"))
            .unwrap();
        csv.rows
            .iter()
            .filter(|r| ids.contains(&r[col]))
            .map(|r| r.join(","))
            .collect()
    };
    for file in ["patients", "conditions", "observations", "medications"] {
        let (small, large) = (first_60(&a, file), first_60(&d, file));
        assert!(!small.is_empty());
        let first_difference = small.iter().zip(&large).find(|(a, b)| a != b);
        assert!(
            small.len() == large.len() && first_difference.is_none(),
            "{file}.csv: the first 60 patients are the same in a run of 400 ({} vs {} rows; first difference {first_difference:?})",
            small.len(),
            large.len()
        );
    }
}

/// `ddd-dd-dddd`, the shape of a US social security number.
fn ssn_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[3] == b'-'
        && b[6] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 6 || c.is_ascii_digit())
}

#[test]
fn generated_files_carry_no_national_identifiers() {
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    demo(&out, 200, 3, &["--generate-only"]);
    let patients = Csv::read(&out.join("source/patients.csv"));
    for ssn in patients.column("SSN") {
        // 999 is an area number that is never issued.
        assert!(
            ssn.is_empty() || ssn.starts_with("999-"),
            "SSN `{ssn}` could be real"
        );
    }
    for column in ["DRIVERS", "PASSPORT"] {
        assert!(
            patients.column(column).iter().all(|v| v.is_empty()),
            "{column} is empty"
        );
    }
    for f in FILES {
        let csv = Csv::read(&out.join(format!("source/{f}.csv")));
        for (i, row) in csv.rows.iter().enumerate() {
            for (value, column) in row.iter().zip(&csv.header) {
                assert!(
                    !ssn_shaped(value) || value.starts_with("999-"),
                    "{f}.csv line {} column {column}: looks like an SSN",
                    i + 2
                );
            }
        }
    }
}

#[test]
fn generated_headers_are_synthea_v3() {
    let Some(shared) = common::shared() else {
        return;
    };
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    demo(&out, 5, 1, &["--generate-only"]);
    for f in FILES {
        let first_line = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let ours = first_line(out.join(format!("source/{f}.csv")));
        let synthea = first_line(shared.join(format!("data/synthea-source/csv/{f}.csv")));
        assert_eq!(ours, synthea, "{f}.csv header");
    }
}

/// Concepts of the reference vocabularies in ../shared, by id: (vocabulary, code, name, domain, class, standard).
fn reference_concepts(shared: &Path) -> BTreeMap<i32, [String; 6]> {
    let mut out = BTreeMap::new();
    let seed = Csv::read(&shared.join("data/synthea-source/vocabulary/concept_seed.csv"));
    let col = |c: &Csv, name: &str| c.header.iter().position(|h| h == name).unwrap();
    let ids = [
        "vocabulary_id",
        "concept_code",
        "concept_name",
        "domain_id",
        "concept_class_id",
        "standard_concept",
    ];
    for r in &seed.rows {
        let v = ids.map(|k| r[col(&seed, k)].clone());
        out.insert(r[col(&seed, "concept_id")].parse().unwrap(), v);
    }
    for db in ["eunomia-gibleed", "synthea27nj"] {
        let df = common::read_parquet(&shared.join(format!("data/{db}/concept.parquet")));
        let id = df
            .column("concept_id")
            .unwrap()
            .cast(&DataType::Int32)
            .unwrap();
        let text: Vec<Column> = ids
            .iter()
            .map(|k| df.column(k).unwrap().cast(&DataType::String).unwrap())
            .collect();
        for i in 0..df.height() {
            let Some(id) = id.i32().unwrap().get(i) else {
                continue;
            };
            let v = std::array::from_fn(|k| {
                text[k]
                    .str()
                    .unwrap()
                    .get(i)
                    .unwrap_or_default()
                    .to_string()
            });
            out.entry(id).or_insert(v);
        }
    }
    out
}

#[test]
fn demo_vocabulary_agrees_with_the_ohdsi_vocabularies() {
    let Some(shared) = common::shared() else {
        return;
    };
    let tmp = common::tempdir();
    let out = tmp.path().join("demo");
    demo(&out, 1, 1, &["--generate-only"]);
    let ours = Csv::read(&out.join("vocabulary/concept.csv"));
    let reference = reference_concepts(&shared);
    let col = |name: &str| ours.header.iter().position(|h| h == name).unwrap();
    let mut checked = 0;
    for r in &ours.rows {
        let id: i32 = r[col("concept_id")].parse().unwrap();
        let mine = [
            "vocabulary_id",
            "concept_code",
            "concept_name",
            "domain_id",
            "concept_class_id",
            "standard_concept",
        ]
        .map(|k| r[col(k)].clone());
        let Some(theirs) = reference.get(&id) else {
            // A few concepts (two ingredients, gender and race) are absent from these subsets.
            assert!(
                !["SNOMED", "LOINC", "CVX", "UCUM"].contains(&mine[0].as_str()),
                "concept {id} ({}) is not in ../shared",
                mine[2]
            );
            continue;
        };
        for k in [0, 1, 3, 4, 5] {
            assert_eq!(mine[k], theirs[k], "concept {id}: field {k}");
        }
        assert_eq!(
            mine[2].to_lowercase(),
            theirs[2].to_lowercase(),
            "concept {id}: name"
        );
        checked += 1;
    }
    assert!(
        checked >= 80,
        "most concepts are checked against the references ({checked})"
    );

    // Drug → ingredient ancestry, where the reference knows it.
    let ingredient_ids: BTreeSet<i32> = reference
        .iter()
        .filter(|(_, v)| v[4] == "Ingredient")
        .map(|(id, _)| *id)
        .collect();
    let mut known: BTreeMap<i32, i32> = BTreeMap::new();
    let anc = common::read_parquet(&shared.join("data/eunomia-gibleed/concept_ancestor.parquet"));
    let a = anc
        .column("ancestor_concept_id")
        .unwrap()
        .cast(&DataType::Int32)
        .unwrap();
    let d = anc
        .column("descendant_concept_id")
        .unwrap()
        .cast(&DataType::Int32)
        .unwrap();
    let (a, d) = (a.i32().unwrap(), d.i32().unwrap());
    for i in 0..anc.height() {
        if let (Some(a), Some(d)) = (a.get(i), d.get(i))
            && a != d
            && ingredient_ids.contains(&a)
        {
            known.insert(d, a);
        }
    }
    let seed_anc =
        Csv::read(&shared.join("data/synthea-source/vocabulary/concept_ancestor_seed.csv"));
    for r in &seed_anc.rows {
        let (a, d): (i32, i32) = (r[0].parse().unwrap(), r[1].parse().unwrap());
        if a != d && ingredient_ids.contains(&a) {
            known.insert(d, a);
        }
    }
    let demo_anc = Csv::read(&out.join("vocabulary/concept_ancestor.csv"));
    let mut matched = 0;
    for r in &demo_anc.rows {
        let (a, d): (i32, i32) = (r[0].parse().unwrap(), r[1].parse().unwrap());
        if let (true, Some(expected)) = (a != d, known.get(&d)) {
            assert_eq!(a, *expected, "ingredient of drug {d}");
            matched += 1;
        }
    }
    assert!(
        matched >= 8,
        "drug ingredients checked against the references ({matched})"
    );
}
