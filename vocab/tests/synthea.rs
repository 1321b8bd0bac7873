//! Loads the Synthea vocabulary shipped in `../shared` and checks it against
//! the CSV files themselves.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use omop_vocab::{LoadOptions, MapKind, MappingOrigin, Vocabulary};
use polars::prelude::*;

fn vocab_dir() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/synthea-source/vocabulary");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared not found ({})", dir.display());
        None
    }
}

/// Data rows of a CSV file as a plain line count minus the header (these
/// files have no line breaks inside quoted fields).
fn data_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("readable reference file");
    text.lines().count().saturating_sub(1)
}

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn load(dir: &Path, cache: &Path) -> Vocabulary {
    Vocabulary::load(dir, LoadOptions::with_cache_dir(cache)).expect("synthea vocabulary loads")
}

#[test]
fn table_sizes_match_the_files() {
    let Some(dir) = vocab_dir() else { return };
    let cache = tempfile::tempdir().expect("temp dir");
    let v = load(&dir, cache.path());

    assert_eq!(
        v.concepts().height(),
        data_lines(&dir.join("concept_seed.csv"))
    );
    assert_eq!(
        v.relationships().expect("relationships").height(),
        data_lines(&dir.join("concept_relationship_seed.csv"))
    );
    assert_eq!(
        v.ancestors_df().expect("ancestors").height(),
        data_lines(&dir.join("concept_ancestor_seed.csv"))
    );
    assert_eq!(
        v.vocabularies().height(),
        data_lines(&dir.join("vocabulary_seed.csv"))
    );
    assert_eq!(
        v.domains().height(),
        data_lines(&dir.join("domain_seed.csv"))
    );
    assert_eq!(
        v.concept_classes().height(),
        data_lines(&dir.join("concept_class_seed.csv"))
    );
    assert_eq!(
        v.relationship_types().height(),
        data_lines(&dir.join("relationship_seed.csv"))
    );
    assert_eq!(v.synonyms().expect("synonyms").height(), 0);
    assert_eq!(v.drug_strength().expect("drug_strength").height(), 0);

    let schema = v.concepts().schema();
    assert_eq!(schema.get("concept_id"), Some(&DataType::Int32));
    assert_eq!(schema.get("concept_name"), Some(&DataType::String));
    assert_eq!(schema.get("valid_start_date"), Some(&DataType::Date));
    assert_eq!(schema.get("valid_end_date"), Some(&DataType::Date));
}

#[test]
fn lookups_agree_with_the_files() {
    let Some(dir) = vocab_dir() else { return };
    let cache = tempfile::tempdir().expect("temp dir");
    let v = load(&dir, cache.path());

    // concept_seed.csv line 486:
    // 201826,Type 2 diabetes mellitus,Condition,SNOMED,Clinical Finding,S,44054006,2002-01-31,2099-12-31,
    let c = v
        .source_concept("SNOMED", "44054006")
        .expect("SNOMED 44054006");
    assert_eq!(c.concept_id, 201826);
    assert_eq!(c.concept_name, "Type 2 diabetes mellitus");
    assert_eq!(c.domain_id, "Condition");
    assert_eq!(c.concept_class_id, "Clinical Finding");
    assert!(c.is_standard());
    assert_eq!(c.valid_start_date, date(2002, 1, 31));
    assert_eq!(c.valid_end_date, date(2099, 12, 31));
    assert_eq!(c.invalid_reason, None);
    assert!(v.source_concept("SNOMED", "no-such-code").is_none());
    assert!(v.source_concept("ICD10CM", "44054006").is_none());

    // A quoted name with commas, concept_seed.csv:
    // 4015052,"Hemogram, automated, with RBC, WBC, Hgb, Hct, Indices, Platelet count, and manual WBC differential",...
    let c = v.concept(4015052).expect("concept 4015052");
    assert_eq!(
        c.concept_name,
        "Hemogram, automated, with RBC, WBC, Hgb, Hct, Indices, Platelet count, and manual WBC differential"
    );

    // A non-standard concept with `""` as standard_concept and `U` as
    // invalid_reason, concept_seed.csv line 2:
    // 40316773,Prediabetes,Condition,SNOMED,Clinical Finding,"",15777000,1970-01-01,2002-01-31,U
    let c = v.concept(40316773).expect("concept 40316773");
    assert_eq!(c.standard_concept, None);
    assert_eq!(c.invalid_reason, Some("U"));
    // concept_relationship_seed.csv line 21929: 40316773,4311629,Maps to,1970-01-01,2099-12-31,
    let targets: Vec<i32> = v
        .maps_to(40316773, None)
        .iter()
        .map(|m| m.concept_id)
        .collect();
    assert_eq!(targets, vec![4311629]);
    let by_code = v.map_code("SNOMED", "15777000", MapKind::MapsTo, None);
    assert_eq!(by_code.len(), 1);
    assert_eq!(by_code[0].concept_id, 4311629);

    // concept_relationship_seed.csv line 24325: 44821579,4301351,Maps to value,2018-02-07,2099-12-31,
    let values: Vec<i32> = v
        .maps_to_value(44821579, None)
        .iter()
        .map(|m| m.concept_id)
        .collect();
    assert!(values.contains(&4301351), "{values:?}");
    assert!(v.maps_to_value(44821579, date(2018, 2, 6)).is_empty());

    // The only 'Maps to' row of 45835016 (awk on concept_relationship_seed.csv):
    // 45835016,40174052,Maps to,2015-01-29,2099-12-31,
    assert!(v.maps_to(45835016, date(2015, 1, 28)).is_empty());
    let on = v.maps_to(45835016, date(2015, 1, 29));
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].concept_id, 40174052);
    assert_eq!(on[0].origin, MappingOrigin::Vocabulary);
    assert_eq!(on[0].valid_start_date, date(2015, 1, 29));
    assert_eq!(v.maps_to(45835016, None).len(), 1);

    // The target of a mapping carries its domain, from concept_seed.csv line 2213:
    // 1127433,acetaminophen 325 MG Oral Tablet,Drug,RxNorm,Clinical Drug,S,313782,...
    let c = v.concept(1127433).expect("concept 1127433");
    assert_eq!((c.domain_id, c.vocabulary_id), ("Drug", "RxNorm"));

    // concept_ancestor_seed.csv: `awk -F, '$1==1127433'` gives two rows,
    // 1127433,1127433,0,0 and 1127433,19041324,0,0; `awk -F, '$2==1127433'` gives 415.
    let d = v.descendants(1127433).expect("descendants");
    let ids: Vec<i32> = d.iter().map(|l| l.concept_id).collect();
    assert_eq!(ids, vec![1127433, 19041324]);
    assert_eq!(d[0].min_levels_of_separation, Some(0));
    let a = v.ancestors(1127433).expect("ancestors");
    assert_eq!(a.len(), 415);
    // Row `21604253,1127433,5,6` of concept_ancestor_seed.csv.
    let atc = a
        .iter()
        .find(|l| l.concept_id == 21604253)
        .expect("21604253");
    assert_eq!(
        (atc.min_levels_of_separation, atc.max_levels_of_separation),
        (Some(5), Some(6))
    );

    // vocabulary_seed.csv: None,OMOP Standardized Vocabularies,OMOP generated,v5.0 29-FEB-24,44819096
    assert_eq!(v.version().as_deref(), Some("v5.0 29-FEB-24"));
}

#[test]
fn source_to_standard_covers_the_valid_maps_to_rows() {
    let Some(dir) = vocab_dir() else { return };
    let cache = tempfile::tempdir().expect("temp dir");
    let v = load(&dir, cache.path());
    let s2s = v.source_to_standard().expect("source_to_standard");
    // awk over the two files: 'Maps to' / 'Maps to value' rows with an empty
    // invalid_reason whose concept_id_1 is in concept_seed.csv: 2251.
    assert_eq!(s2s.height(), 2251);
    let names: Vec<&str> = s2s.get_column_names().iter().map(|n| n.as_str()).collect();
    for col in [
        "source_vocabulary_id",
        "source_code",
        "source_concept_id",
        "target_concept_id",
        "target_domain_id",
        "target_vocabulary_id",
        "relationship_id",
        "valid_start_date",
        "valid_end_date",
    ] {
        assert!(names.contains(&col), "missing {col} in {names:?}");
    }
    // Prediabetes (SNOMED 15777000) maps to 4311629.
    let hit = s2s
        .clone()
        .lazy()
        .filter(
            col("source_vocabulary_id")
                .eq(lit("SNOMED"))
                .and(col("source_code").eq(lit("15777000"))),
        )
        .collect()
        .expect("filter");
    assert_eq!(hit.height(), 1);
    let target = hit
        .column("target_concept_id")
        .expect("col")
        .i32()
        .expect("i32")
        .get(0);
    assert_eq!(target, Some(4311629));
}

#[test]
fn second_load_reads_the_parquet_cache() {
    let Some(dir) = vocab_dir() else { return };
    let cache = tempfile::tempdir().expect("temp dir");
    let cold = load(&dir, cache.path());
    assert!(!cold.load_info().from_cache);
    let entry = cold
        .load_info()
        .cache_entry
        .clone()
        .expect("a cache entry was written");
    // ../shared is read-only, so the fallback folder holds the entry and
    // nothing is written next to the source files.
    assert!(entry.starts_with(cache.path()), "{}", entry.display());
    assert!(!dir.join(".omopkit-cache").exists());

    let warm = load(&dir, cache.path());
    assert!(warm.load_info().from_cache);
    assert_eq!(warm.load_info().cache_entry.as_ref(), Some(&entry));
    assert!(cold.concepts().equals_missing(warm.concepts()));
    assert!(
        cold.relationships()
            .expect("rel")
            .equals_missing(warm.relationships().expect("rel"))
    );
    assert!(
        cold.ancestors_df()
            .expect("anc")
            .equals_missing(warm.ancestors_df().expect("anc"))
    );
    assert!(cold.vocabularies().equals_missing(warm.vocabularies()));
    assert!(
        cold.source_to_standard()
            .expect("s2s")
            .equals_missing(&warm.source_to_standard().expect("s2s"))
    );
}

#[test]
fn imports_the_synthea_source_to_concept_map() {
    let Some(dir) = vocab_dir() else { return };
    let cache = tempfile::tempdir().expect("temp dir");
    let mut v = load(&dir, cache.path());
    let summary = v
        .import_source_to_concept_map(&dir.join("source_to_concept_map_seed.csv"), None)
        .expect("import");
    assert_eq!(summary.rows_read, 2);
    assert_eq!(summary.added, 2);

    // source_to_concept_map_seed.csv:
    // "U/L",0,"Synthea units","U/L","Unit","Unit",8645,"unit per liter","UCUM","Unit","Unit",1970-01-01,2099-12-31,
    let m = v.map_code("Synthea units", "U/L", MapKind::MapsTo, date(2020, 1, 1));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].concept_id, 8645);
    assert_eq!(m[0].domain_id, Some("Unit"));
    assert_eq!(m[0].vocabulary_id, Some("UCUM"));
    assert_eq!(m[0].origin, MappingOrigin::SourceToConceptMap);
    let m = v.map_code("Synthea units", "{score}", MapKind::MapsTo, None);
    assert_eq!(
        m.iter().map(|m| m.concept_id).collect::<Vec<_>>(),
        vec![44777566]
    );

    let s2s = v.source_to_standard().expect("s2s");
    assert_eq!(s2s.height(), 2251 + 2);
    let units = s2s
        .lazy()
        .filter(col("source_vocabulary_id").eq(lit("Synthea units")))
        .collect()
        .expect("filter");
    assert_eq!(units.height(), 2);
}
