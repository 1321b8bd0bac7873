//! A tiny Athena download generated in a temporary folder: loading, cache,
//! validity dates, hierarchy, imports, local concepts and error messages.

use std::path::Path;

use chrono::NaiveDate;
use omop_vocab::{LoadOptions, MapKind, MappingOrigin, VocabError, Vocabulary};
use polars::prelude::*;

const CONCEPT: &str = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason
100\tCough \"wet\tCondition\tSNOMED\tClinical Finding\tS\t49727002\t20020131\t20991231\t
101\tPatient's \"dry\" cough\tCondition\tSNOMED\tClinical Finding\tS\t11833005\t20020131\t20991231\t
102\tChronic cough\tCondition\tSNOMED\tClinical Finding\tS\t68154008\t20020131\t20991231\t
200\tCough, unspecified\tCondition\tICD10CM\t4-char billing code\t\tR05.9\t20200101\t20991231\t
201\tOld cough code\tCondition\tICD10CM\t4-char billing code\t\tR05\t19700101\t20191231\tU
300\tPositive\tMeas Value\tSNOMED\tQualifier Value\tS\t10828004\t20020131\t20991231\t
";

const RELATIONSHIP: &str =
    "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason
200\t100\tMaps to\t20000101\t20101231\t
200\t101\tMaps to\t20110101\t20991231\t
200\t102\tMaps to\t19700101\t20991231\tD
200\t300\tMaps to value\t19700101\t20991231\t
201\t100\tMaps to\t19700101\t20991231\t
100\t200\tMapped from\t20000101\t20101231\t
102\t100\tIs a\t19700101\t20991231\t
";

const ANCESTOR: &str =
    "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation
100\t100\t0\t0
100\t102\t1\t1
100\t101\t1\t2
101\t101\t0\t0
102\t102\t0\t0
102\t101\t1\t1
";

const VOCABULARY: &str = "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\tvocabulary_concept_id
None\tOMOP Standardized Vocabularies\tOMOP generated\tv5.0 31-AUG-24\t44819096
SNOMED\tSystematic Nomenclature of Medicine\thttp://example.org\t2024-03-01 SNOMED CT\t44819097
";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write test file");
}

fn athena() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "CONCEPT.csv", CONCEPT);
    write(dir.path(), "CONCEPT_RELATIONSHIP.csv", RELATIONSHIP);
    write(dir.path(), "CONCEPT_ANCESTOR.csv", ANCESTOR);
    write(dir.path(), "VOCABULARY.csv", VOCABULARY);
    dir
}

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn ids(v: &[omop_vocab::MappedConcept<'_>]) -> Vec<i32> {
    v.iter().map(|m| m.concept_id).collect()
}

#[test]
fn loads_a_tab_separated_download_with_stray_quotes() {
    let dir = athena();
    let v = Vocabulary::load(dir.path(), LoadOptions::default()).expect("load");
    assert_eq!(v.concept_count(), 6);
    assert_eq!(v.concept(100).map(|c| c.concept_name), Some("Cough \"wet"));
    assert_eq!(
        v.concept(101).map(|c| c.concept_name),
        Some("Patient's \"dry\" cough")
    );
    let c = v.concept(200).expect("200");
    assert_eq!(c.standard_concept, None);
    assert_eq!(c.valid_start_date, date(2020, 1, 1));
    assert_eq!(v.concept(201).and_then(|c| c.invalid_reason), Some("U"));
    assert_eq!(v.relationships().expect("rel").height(), 7);
    assert_eq!(v.version().as_deref(), Some("v5.0 31-AUG-24"));
    // The default cache folder sits in the (writable) vocabulary folder.
    let entry = v.load_info().cache_entry.clone().expect("cache entry");
    assert!(entry.starts_with(dir.path().join(".omopkit-cache")));
}

#[test]
fn cache_round_trip_gives_equal_frames() {
    let dir = athena();
    let cold = Vocabulary::load(dir.path(), LoadOptions::default()).expect("cold");
    assert!(!cold.load_info().from_cache);
    let warm = Vocabulary::load(dir.path(), LoadOptions::default()).expect("warm");
    assert!(warm.load_info().from_cache);
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
    assert_eq!(
        warm.concept(101).map(|c| c.concept_name),
        Some("Patient's \"dry\" cough")
    );
    assert_eq!(ids(&warm.maps_to(200, None)), ids(&cold.maps_to(200, None)));

    // Changing a source file invalidates the entry.
    let mut text = CONCEPT.to_string();
    text.push_str("103\tNight cough\tCondition\tSNOMED\tClinical Finding\tS\t161923007\t20020131\t20991231\t\n");
    write(dir.path(), "CONCEPT.csv", &text);
    let changed = Vocabulary::load(dir.path(), LoadOptions::default()).expect("changed");
    assert!(!changed.load_info().from_cache);
    assert_eq!(changed.concept_count(), 7);
    // The stale entry of the same folder was removed.
    let entries = std::fs::read_dir(dir.path().join(".omopkit-cache"))
        .expect("cache root")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vocab-"))
        .count();
    assert_eq!(entries, 1);

    // Without the cache nothing is read or written.
    let plain = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("plain");
    assert!(!plain.load_info().from_cache);
    assert!(plain.load_info().cache_entry.is_none());
}

#[test]
fn maps_to_respects_invalid_reason_and_dates() {
    let dir = athena();
    let v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    // 200 -> 102 has invalid_reason D and never shows.
    assert_eq!(ids(&v.maps_to(200, None)), vec![100, 101]);
    assert_eq!(ids(&v.maps_to(200, date(2005, 6, 1))), vec![100]);
    assert_eq!(ids(&v.maps_to(200, date(2010, 12, 31))), vec![100]);
    assert_eq!(ids(&v.maps_to(200, date(2011, 1, 1))), vec![101]);
    assert_eq!(ids(&v.maps_to(200, date(1999, 12, 31))), Vec::<i32>::new());
    let value = v.maps_to_value(200, date(2015, 1, 1));
    assert_eq!(ids(&value), vec![300]);
    assert_eq!(value[0].domain_id, Some("Meas Value"));
    assert_eq!(value[0].relationship, MapKind::MapsToValue);
    let first = v.maps_to(200, date(2005, 6, 1));
    assert_eq!(first[0].domain_id, Some("Condition"));
    assert_eq!(first[0].vocabulary_id, Some("SNOMED"));
    assert_eq!(first[0].standard_concept, Some("S"));
    // Other relationships are not mappings.
    assert!(v.maps_to(100, None).is_empty());
    // By code.
    assert_eq!(
        ids(&v.map_code("ICD10CM", "R05.9", MapKind::MapsTo, date(2012, 1, 1))),
        vec![101]
    );

    let s2s = v.source_to_standard().expect("s2s");
    // 200->100, 200->101, 200->300 (value), 201->100; not the invalid 200->102.
    assert_eq!(s2s.height(), 4);
    let value_rows = s2s
        .lazy()
        .filter(col("relationship_id").eq(lit("Maps to value")))
        .collect()
        .expect("filter");
    assert_eq!(value_rows.height(), 1);
}

#[test]
fn descendants_and_ancestors_include_self() {
    let dir = athena();
    let v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    let d: Vec<(i32, Option<i32>)> = v
        .descendants(100)
        .expect("desc")
        .iter()
        .map(|l| (l.concept_id, l.max_levels_of_separation))
        .collect();
    assert_eq!(d, vec![(100, Some(0)), (101, Some(2)), (102, Some(1))]);
    let a: Vec<i32> = v
        .ancestors(101)
        .expect("anc")
        .iter()
        .map(|l| l.concept_id)
        .collect();
    assert_eq!(a, vec![100, 101, 102]);
    // A known concept without ancestor rows still gets itself.
    let own: Vec<i32> = v
        .descendants(200)
        .expect("desc")
        .iter()
        .map(|l| l.concept_id)
        .collect();
    assert_eq!(own, vec![200]);
    // An unknown concept gets nothing.
    assert!(v.descendants(999).expect("desc").is_empty());
}

#[test]
fn comma_separated_files_load_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "concept.csv",
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
         100,\"Cough, \"\"wet\"\"\",Condition,SNOMED,Clinical Finding,S,49727002,2002-01-31,2099-12-31,\n\
         200,\"Cough, unspecified\",Condition,ICD10CM,4-char billing code,\"\",R05.9,2020-01-01,2099-12-31,\n",
    );
    write(
        dir.path(),
        "concept_relationship.csv",
        "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n\
         200,100,Maps to,2020-01-01,2099-12-31,\n",
    );
    let v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    assert_eq!(
        v.concept(100).map(|c| c.concept_name),
        Some("Cough, \"wet\"")
    );
    assert_eq!(v.concept(200).and_then(|c| c.standard_concept), None);
    assert_eq!(ids(&v.maps_to(200, date(2021, 1, 1))), vec![100]);
    assert_eq!(v.version(), None);
    assert_eq!(v.ancestors_df().expect("anc").height(), 0);
}

#[test]
fn missing_concept_file_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "CONCEPT_RELATIONSHIP.csv", RELATIONSHIP);
    let err = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect_err("no concept");
    assert!(matches!(err, VocabError::MissingConceptFile { .. }));
    assert!(err.to_string().contains("CONCEPT.csv"), "{err}");
}

#[test]
fn missing_column_names_file_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = CONCEPT.replace("\tdomain_id", "\tdomain");
    write(dir.path(), "CONCEPT.csv", &text);
    let err = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect_err("bad header");
    let msg = err.to_string();
    assert!(matches!(err, VocabError::MissingColumn { .. }), "{msg}");
    assert!(msg.contains("CONCEPT.csv"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
    assert!(msg.contains("`domain_id`"), "{msg}");
}

#[test]
fn bad_date_names_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Line 4 of the file (third data row) gets an impossible date.
    let text = CONCEPT.replace("R05.9\t20200101", "R05.9\t20201301");
    write(dir.path(), "CONCEPT.csv", &text);
    let err = Vocabulary::load(dir.path(), LoadOptions::default()).expect_err("bad date");
    let msg = err.to_string();
    match &err {
        VocabError::BadValue { line, column, .. } => {
            assert_eq!(*line, 5, "{msg}");
            assert_eq!(column, "valid_start_date");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(msg.contains("CONCEPT.csv: line 5"), "{msg}");
    assert!(msg.contains("20201301"), "{msg}");
    // No cache entry was left behind.
    let cache_root = dir.path().join(".omopkit-cache");
    let leftovers = std::fs::read_dir(&cache_root)
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0);
}

#[test]
fn bad_integer_names_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "CONCEPT.csv", CONCEPT);
    let text = RELATIONSHIP.replace("201\t100\tMaps to", "201x\t100\tMaps to");
    write(dir.path(), "CONCEPT_RELATIONSHIP.csv", &text);
    let err = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect_err("bad int");
    let msg = err.to_string();
    assert!(
        msg.contains("CONCEPT_RELATIONSHIP.csv: line 6: column `concept_id_1`"),
        "{msg}"
    );
}

#[test]
fn local_concepts_need_the_local_id_range() {
    let dir = athena();
    let mut v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    let local = tempfile::tempdir().expect("temp dir");
    let bad = local.path().join("local_concepts.csv");
    std::fs::write(
        &bad,
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,concept_code\n\
         2000000001,Hoste,Condition,NO-ICPC2,Local,R05\n\
         1999999999,Feber,Condition,NO-ICPC2,Local,A03\n",
    )
    .expect("write");
    let err = v
        .add_local_concepts(&bad, None)
        .expect_err("id below range");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            VocabError::LocalConceptId {
                line: 3,
                concept_id: 1999999999,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("local_concepts.csv: line 3"), "{msg}");
    assert_eq!(v.concept_count(), 6, "nothing added on error");
}

#[test]
fn local_concepts_become_ordinary_concepts() {
    let dir = athena();
    let mut v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    let local = tempfile::tempdir().expect("temp dir");
    let concepts = local.path().join("concepts.csv");
    std::fs::write(
        &concepts,
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code\n\
         2000000001,Hoste,Condition,NO-ICPC2,Local,,R05\n\
         2000000002,Hoste (ny),Condition,NO-ICPC2,Local,,R05.1\n",
    )
    .expect("write");
    let rels = local.path().join("relationships.csv");
    std::fs::write(
        &rels,
        "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n\
         2000000001,100,Maps to,,,\n\
         2000000002,102,Maps to,2024-01-01,2099-12-31,\n",
    )
    .expect("write");
    let s = v.add_local_concepts(&concepts, Some(&rels)).expect("add");
    assert_eq!(s.added, 2);
    assert_eq!(v.concept_count(), 8);
    let c = v
        .source_concept("NO-ICPC2", "R05")
        .expect("local concept by code");
    assert_eq!(c.concept_id, 2000000001);
    assert_eq!(c.valid_start_date, date(1970, 1, 1));
    let m = v.maps_to(2000000001, date(2000, 1, 1));
    assert_eq!(ids(&m), vec![100]);
    assert_eq!(m[0].origin, MappingOrigin::Local);
    assert!(v.maps_to(2000000002, date(2023, 12, 31)).is_empty());
    assert_eq!(
        ids(&v.map_code("NO-ICPC2", "R05.1", MapKind::MapsTo, None)),
        vec![102]
    );
    assert_eq!(v.relationships().expect("rel").height(), 7 + 2);
    assert_eq!(v.source_to_standard().expect("s2s").height(), 4 + 2);
    // Existing look-ups still work after the concept table was rebuilt.
    assert_eq!(
        v.source_concept("SNOMED", "49727002").map(|c| c.concept_id),
        Some(100)
    );

    // The same ids again are rejected.
    let err = v
        .add_local_concepts(&concepts, None)
        .expect_err("duplicate");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn usagi_export_import_keeps_approved_rows() {
    let dir = athena();
    let mut v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    let f = tempfile::tempdir().expect("temp dir");
    let path = f.path().join("usagi.csv");
    std::fs::write(
        &path,
        "sourceCode,sourceName,sourceFrequency,sourceAutoAssignedConceptIds,ADD_INFO:unit,matchScore,mappingStatus,equivalence,statusSetBy,statusSetOn,conceptId,conceptName,domainId,mappingType,comment,createdBy,createdOn\n\
         K1,\"Hoste, tørr\",120,,,0.8,APPROVED,EQUAL,anna,1700000000000,101,\"Patient's dry cough\",Condition,MAPS_TO,,anna,1700000000000\n\
         K1,\"Hoste, tørr\",120,,,0.8,APPROVED,EQUAL,anna,1700000000000,300,Positive,Meas Value,MAPS_TO_VALUE,,anna,1700000000000\n\
         K2,Feber,80,,,0.5,UNCHECKED,UNREVIEWED,,0,102,Chronic cough,Condition,MAPS_TO,,,0\n\
         K3,Ukjent,5,,,0,APPROVED,UNREVIEWED,anna,1700000000000,0,,,MAPS_TO,,anna,0\n\
         K4,Per minutt,9,,,0.9,APPROVED,EQUAL,anna,1700000000000,8541,per minute,Unit,MAPS_TO_UNIT,,anna,0\n\
         K5,Lokal,3,,,0.9,APPROVED,EQUAL,anna,1700000000000,4999999,Somewhere else,Observation,,,anna,0\n",
    )
    .expect("write");
    let s = v.import_usagi(&path, "NO-LAB").expect("import");
    assert_eq!(s.rows_read, 6);
    assert_eq!(s.added, 3);
    assert_eq!(s.skipped, 3);
    assert_eq!(
        ids(&v.map_code("NO-LAB", "K1", MapKind::MapsTo, None)),
        vec![101]
    );
    let value = v.map_code("NO-LAB", "K1", MapKind::MapsToValue, date(2020, 1, 1));
    assert_eq!(ids(&value), vec![300]);
    assert_eq!(value[0].origin, MappingOrigin::Usagi);
    assert!(v.map_code("NO-LAB", "K2", MapKind::MapsTo, None).is_empty());
    assert!(v.map_code("NO-LAB", "K3", MapKind::MapsTo, None).is_empty());
    // A target outside the loaded vocabulary keeps the domain Usagi gave.
    let k5 = v.map_code("NO-LAB", "K5", MapKind::MapsTo, None);
    assert_eq!(ids(&k5), vec![4999999]);
    assert_eq!(k5[0].domain_id, Some("Observation"));
    let s2s = v.source_to_standard().expect("s2s");
    let lab = s2s
        .lazy()
        .filter(col("source_vocabulary_id").eq(lit("NO-LAB")))
        .collect()
        .expect("filter");
    assert_eq!(lab.height(), 3);
}

#[test]
fn source_to_concept_map_import_with_vocabulary_override() {
    let dir = athena();
    let mut v = Vocabulary::load(dir.path(), LoadOptions::without_cache()).expect("load");
    let f = tempfile::tempdir().expect("temp dir");
    let path = f.path().join("stcm.tsv");
    std::fs::write(
        &path,
        "source_code\tsource_concept_id\tsource_vocabulary_id\tsource_code_description\ttarget_concept_id\ttarget_vocabulary_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n\
         X1\t0\tLAB\tOld code\t100\tSNOMED\t20000101\t20091231\t\n\
         X1\t0\tLAB\tOld code\t101\tSNOMED\t20100101\t20991231\t\n\
         X2\t0\tLAB\tRetired\t102\tSNOMED\t20000101\t20991231\tD\n\
         X3\t0\tLAB\tUnmapped\t0\t\t20000101\t20991231\t\n",
    )
    .expect("write");
    let s = v
        .import_source_to_concept_map(&path, Some("MY-LAB"))
        .expect("import");
    assert_eq!((s.rows_read, s.added, s.skipped), (4, 3, 1));
    assert_eq!(
        ids(&v.map_code("MY-LAB", "X1", MapKind::MapsTo, None)),
        vec![100, 101]
    );
    assert_eq!(
        ids(&v.map_code("MY-LAB", "X1", MapKind::MapsTo, date(2005, 1, 1))),
        vec![100]
    );
    assert!(v.map_code("MY-LAB", "X2", MapKind::MapsTo, None).is_empty());
    assert!(v.map_code("LAB", "X1", MapKind::MapsTo, None).is_empty());

    // A file without the source_vocabulary_id column needs an override.
    let bare = f.path().join("bare.csv");
    std::fs::write(&bare, "source_code,target_concept_id\nA,100\n").expect("write");
    let err = v
        .import_source_to_concept_map(&bare, None)
        .expect_err("no vocabulary");
    assert!(err.to_string().contains("bare.csv: line 2"), "{err}");
    // A missing required column is named.
    let broken = f.path().join("broken.csv");
    std::fs::write(&broken, "source_code,source_vocabulary_id\nA,LAB\n").expect("write");
    let err = v
        .import_source_to_concept_map(&broken, None)
        .expect_err("no target");
    assert!(err.to_string().contains("`target_concept_id`"), "{err}");
}

#[cfg(unix)]
#[test]
fn read_only_folder_uses_the_fallback_cache() {
    use std::os::unix::fs::PermissionsExt;
    let dir = athena();
    let fallback = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let cold = Vocabulary::load(dir.path(), LoadOptions::with_cache_dir(fallback.path()));
    let warm = Vocabulary::load(dir.path(), LoadOptions::with_cache_dir(fallback.path()));
    let default_exists = dir.path().join(".omopkit-cache").exists();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (cold, warm) = (cold.expect("cold"), warm.expect("warm"));
    assert!(!default_exists, "wrote into a read-only folder");
    let entry = cold.load_info().cache_entry.clone().expect("entry");
    assert!(entry.starts_with(fallback.path()));
    assert!(warm.load_info().from_cache);
    assert!(cold.concepts().equals_missing(warm.concepts()));
}
