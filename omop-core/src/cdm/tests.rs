//! Tests of the CDM model. Facts are taken from the OHDSI spec CSVs in `../shared/spec/cdm`;
//! the cross-check tests read those files directly and skip when they are absent.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::*;

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared not found ({})", dir.display());
        None
    }
}

fn v54(name: &str) -> &'static TableSpec {
    table(CdmVersion::V54, name).unwrap_or_else(|| panic!("v5.4 has no table {name}"))
}

fn v53(name: &str) -> &'static TableSpec {
    table(CdmVersion::V53, name).unwrap_or_else(|| panic!("v5.3 has no table {name}"))
}

fn field(t: &'static TableSpec, name: &str) -> &'static FieldSpec {
    t.field(name)
        .unwrap_or_else(|| panic!("{} has no field {name}", t.name))
}

#[test]
fn cdm_counts() {
    let t54 = tables(CdmVersion::V54);
    assert_eq!(t54.len(), 39);
    assert_eq!(t54.iter().map(|t| t.fields.len()).sum::<usize>(), 432);
    let t53 = tables(CdmVersion::V53);
    assert_eq!(t53.len(), 37);
    assert_eq!(t53.iter().map(|t| t.fields.len()).sum::<usize>(), 396);
    // Spec order: person first, cohort_definition last in v5.4.
    assert_eq!(t54.first().map(|t| t.name), Some("person"));
    assert_eq!(t54.last().map(|t| t.name), Some("cohort_definition"));
    assert_eq!(t53.last().map(|t| t.name), Some("attribute_definition"));
}

#[test]
fn cdm_spec_facts_v54() {
    let person = v54("person");
    let pid = field(person, "person_id");
    assert!(pid.required && pid.primary_key);
    assert_eq!(pid.datatype, CdmType::Integer);
    assert_eq!(person.primary_key().map(|f| f.name), Some("person_id"));
    assert_eq!(person.fields.len(), 18);
    assert_eq!(person.fields[1].name, "gender_concept_id");
    let gender = field(person, "gender_concept_id");
    let fk = gender
        .foreign_key
        .expect("gender_concept_id has a foreign key");
    assert_eq!(
        (fk.table, fk.field, fk.domain),
        ("concept", "concept_id", Some("Gender"))
    );
    assert!(!field(person, "month_of_birth").required);
    assert_eq!(
        field(person, "person_source_value").datatype,
        CdmType::Varchar(Some(50))
    );

    let m = v54("measurement");
    assert_eq!(field(m, "value_as_number").datatype, CdmType::Float);
    assert!(!field(m, "value_as_number").required);
    assert_eq!(
        field(m, "measurement_time").datatype,
        CdmType::Varchar(Some(10))
    );
    assert_eq!(field(m, "measurement_datetime").datatype, CdmType::Datetime);
    assert_eq!(
        field(m, "unit_concept_id")
            .foreign_key
            .and_then(|f| f.domain),
        Some("Unit")
    );

    let op = v54("observation_period");
    let fk = field(op, "person_id").foreign_key.expect("fk to person");
    assert_eq!((fk.table, fk.field), ("person", "person_id"));
    assert!(field(op, "observation_period_start_date").required);
    assert_eq!(
        field(op, "observation_period_start_date").datatype,
        CdmType::Date
    );

    // `Integer` with a capital letter in the spec is still an integer.
    assert_eq!(
        field(v54("visit_occurrence"), "visit_type_concept_id").datatype,
        CdmType::Integer
    );
    assert_eq!(
        field(v54("note"), "note_text").datatype,
        CdmType::Varchar(None)
    );
    let de = field(v54("drug_era"), "drug_concept_id").foreign_key;
    assert_eq!(de.and_then(|f| f.domain), Some("Drug"));
    assert_eq!(de.and_then(|f| f.class), Some("Ingredient"));
    let ds = field(v54("drug_strength"), "ingredient_concept_id").foreign_key;
    assert_eq!(ds.map(|f| (f.table, f.class)), Some(("concept", None)));
    assert_eq!(v54("concept").schema, TableSchema::Vocab);
    assert_eq!(v54("cohort").schema, TableSchema::Results);
    assert_eq!(v54("person").schema, TableSchema::Cdm);
    assert!(v54("person").required && v54("observation_period").required);
    assert!(!v54("measurement").required);
    assert_eq!(v54("fact_relationship").primary_key(), None);
    assert_eq!(
        field(v54("episode"), "episode_parent_id").foreign_key,
        None,
        "episode_parent_id has no fk in the spec"
    );
}

#[test]
fn cdm_v53_differences() {
    assert!(table(CdmVersion::V53, "episode").is_none());
    assert!(table(CdmVersion::V53, "episode_event").is_none());
    assert!(table(CdmVersion::V53, "cohort").is_none());
    assert!(table(CdmVersion::V53, "attribute_definition").is_some());
    assert!(table(CdmVersion::V54, "attribute_definition").is_none());

    let vo53 = v53("visit_occurrence");
    let vo54 = v54("visit_occurrence");
    assert!(vo53.field("admitting_source_concept_id").is_some());
    assert!(vo53.field("admitted_from_concept_id").is_none());
    assert!(vo54.field("admitted_from_concept_id").is_some());
    assert!(vo54.field("admitting_source_concept_id").is_none());
    assert!(vo53.field("discharge_to_concept_id").is_some());
    assert!(vo54.field("discharged_to_concept_id").is_some());

    // v5.4 added measurement.unit_source_concept_id and measurement_event_id.
    assert!(v53("measurement").field("unit_source_concept_id").is_none());
    assert!(v54("measurement").field("unit_source_concept_id").is_some());
    assert!(v54("measurement").field("measurement_event_id").is_some());
    // v5.3 location has no latitude; v5.4 does.
    assert!(v53("location").field("latitude").is_none());
    assert_eq!(field(v54("location"), "latitude").datatype, CdmType::Float);

    // The v5.3 file names a target while saying isForeignKey = No; the target is kept.
    let fk = field(v53("procedure_occurrence"), "provider_id").foreign_key;
    assert_eq!(fk.map(|f| f.table), Some("provider"));
    assert_eq!(v53("cohort_definition").schema, TableSchema::Vocab);
}

#[test]
fn cdm_lookup_is_case_insensitive() {
    assert_eq!(
        table(CdmVersion::V54, "PERSON").map(|t| t.name),
        Some("person")
    );
    assert_eq!(
        table(CdmVersion::V54, "Drug_Exposure").map(|t| t.name),
        Some("drug_exposure")
    );
    assert!(table(CdmVersion::V54, "persons").is_none());
    assert_eq!(
        v54("person").field("PERSON_ID").map(|f| f.name),
        Some("person_id")
    );
    assert!(v54("person").field("person").is_none());
}

#[test]
fn cdm_version_parsing() {
    for s in [
        "5.3",
        "5.3.1",
        "v5.3",
        "V5.3.1",
        " 5.3 ",
        "CDM v5.3.1",
        "cdm 5.3",
    ] {
        assert_eq!(s.parse::<CdmVersion>(), Ok(CdmVersion::V53), "{s}");
    }
    for s in ["5.4", "v5.4", "5.4.0", "v5.4.2", "CDM v5.4"] {
        assert_eq!(s.parse::<CdmVersion>(), Ok(CdmVersion::V54), "{s}");
    }
    for s in ["", "5", "5.2", "6.0", "5.4x", "5.4.", "v", "5.35", "54"] {
        assert_eq!(
            s.parse::<CdmVersion>(),
            Err(CdmError::UnknownVersion(s.to_string())),
            "{s:?}"
        );
    }
    assert_eq!(CdmVersion::V54.to_string(), "5.4");
    assert_eq!(
        CdmVersion::V53.to_string().parse::<CdmVersion>(),
        Ok(CdmVersion::V53)
    );
}

#[test]
fn cdm_storage_types() {
    let person = v54("person");
    assert_eq!(field(person, "person_id").column_type(), ColumnType::Int64);
    assert_eq!(
        field(person, "gender_concept_id").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(person, "year_of_birth").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(person, "location_id").column_type(),
        ColumnType::Int64
    );
    assert_eq!(
        field(person, "birth_datetime").column_type(),
        ColumnType::Timestamp
    );
    assert_eq!(
        field(person, "person_source_value").column_type(),
        ColumnType::Utf8
    );
    let vo = v54("visit_occurrence");
    assert_eq!(
        field(vo, "visit_occurrence_id").column_type(),
        ColumnType::Int64
    );
    assert_eq!(field(vo, "provider_id").column_type(), ColumnType::Int64);
    assert_eq!(
        field(vo, "preceding_visit_occurrence_id").column_type(),
        ColumnType::Int64
    );
    assert_eq!(
        field(vo, "visit_type_concept_id").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(vo, "visit_start_date").column_type(),
        ColumnType::Date
    );
    let fr = v54("fact_relationship");
    assert_eq!(field(fr, "fact_id_1").column_type(), ColumnType::Int64);
    assert_eq!(
        field(fr, "domain_concept_id_2").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(v54("concept"), "concept_id").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(v54("concept"), "domain_id").column_type(),
        ColumnType::Utf8
    );
    assert_eq!(
        field(v54("concept_relationship"), "concept_id_1").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(v54("drug_exposure"), "quantity").column_type(),
        ColumnType::Float64
    );
    assert_eq!(
        field(v54("drug_exposure"), "days_supply").column_type(),
        ColumnType::Int32
    );
    assert_eq!(
        field(v54("cohort"), "subject_id").column_type(),
        ColumnType::Int64
    );

    let m = v54("measurement");
    use arrow::datatypes::{DataType as A, TimeUnit as U};
    assert_eq!(field(m, "value_as_number").arrow_type(), A::Float64);
    assert_eq!(
        field(m, "measurement_datetime").arrow_type(),
        A::Timestamp(U::Microsecond, None)
    );
    assert_eq!(field(m, "measurement_date").arrow_type(), A::Date32);
    assert_eq!(field(m, "measurement_id").arrow_type(), A::Int64);
    assert_eq!(field(m, "measurement_concept_id").arrow_type(), A::Int32);
    assert_eq!(field(m, "unit_source_value").arrow_type(), A::Utf8);
    assert_eq!(
        field(m, "measurement_datetime").polars_dtype(),
        DataType::Datetime(TimeUnit::Microseconds, None)
    );
    assert_eq!(field(m, "measurement_date").polars_dtype(), DataType::Date);
    assert_eq!(
        field(m, "unit_source_value").polars_dtype(),
        DataType::String
    );
}

#[test]
fn cdm_arrow_and_polars_schemas() {
    for version in CdmVersion::ALL {
        for t in tables(version) {
            let a = t.arrow_schema();
            let p = t.polars_schema();
            assert_eq!(a.fields().len(), t.fields.len(), "{}", t.name);
            assert_eq!(p.len(), t.fields.len(), "{}", t.name);
            for (i, f) in t.fields.iter().enumerate() {
                let af = a.field(i);
                assert_eq!(af.name(), f.name);
                assert_eq!(af.is_nullable(), !f.required, "{}.{}", t.name, f.name);
                let (pname, pdtype) = p.get_at_index(i).expect("field in polars schema");
                assert_eq!(pname.as_str(), f.name);
                assert_eq!(pdtype, &f.polars_dtype());
            }
        }
    }
    let a = v54("person").arrow_schema();
    assert!(
        !a.field_with_name("person_id")
            .expect("person_id")
            .is_nullable()
    );
    assert!(
        a.field_with_name("location_id")
            .expect("location_id")
            .is_nullable()
    );
}

#[test]
fn cdm_postgres_ddl_person() {
    insta::assert_snapshot!(v54("person").postgres_ddl("cdm"));
}

#[test]
fn cdm_postgres_ddl_measurement() {
    insta::assert_snapshot!(v54("measurement").postgres_ddl("cdm"));
}

#[test]
fn cdm_postgres_ddl_quoting() {
    let ddl = v54("note_nlp").postgres_ddl("");
    assert!(ddl.starts_with("CREATE TABLE note_nlp (\n"), "{ddl}");
    assert!(ddl.contains("\n    \"offset\" varchar(50),\n"), "{ddl}");
    let ddl = v54("person").postgres_ddl("My Schema");
    assert!(
        ddl.starts_with("CREATE TABLE \"My Schema\".person ("),
        "{ddl}"
    );
    let ddl = v54("fact_relationship").postgres_ddl("cdm");
    assert!(!ddl.contains("PRIMARY KEY"), "{ddl}");
}

/// Every row of the spec CSVs appears in the model with the same flags and keys, and nothing
/// else does.
#[test]
fn cdm_matches_spec_csv_rows() {
    let Some(shared) = shared_dir() else { return };
    for (version, file) in [
        (CdmVersion::V54, "OMOP_CDMv5.4_Field_Level.csv"),
        (CdmVersion::V53, "OMOP_CDMv5.3_Field_Level.csv"),
    ] {
        let path = shared.join("spec/cdm").join(file);
        let mut reader = csv::Reader::from_path(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let mut seen = 0usize;
        let mut previous: Option<(String, usize)> = None;
        for record in reader.records() {
            let r = record.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The spec quotes `"offset"` because it is an SQL keyword.
            let (tname, fname) = (&r[0], r[1].trim_matches('"'));
            let t = table(version, tname).unwrap_or_else(|| panic!("{version}: no table {tname}"));
            let f = t
                .field(fname)
                .unwrap_or_else(|| panic!("{version}: no field {tname}.{fname}"));
            // Spec order within a table.
            let index = t
                .fields
                .iter()
                .position(|x| x.name == f.name)
                .unwrap_or(usize::MAX);
            let expected = match &previous {
                Some((p, i)) if p == tname => i + 1,
                _ => 0,
            };
            assert_eq!(index, expected, "{version}: {tname}.{fname} out of order");
            previous = Some((tname.to_string(), index));
            assert_eq!(
                f.required,
                &r[2] == "Yes",
                "{version}: {tname}.{fname} required"
            );
            assert_eq!(
                f.datatype.to_string(),
                r[3].to_ascii_lowercase(),
                "{version}: {tname}.{fname} datatype"
            );
            assert_eq!(
                f.primary_key,
                &r[6] == "Yes",
                "{version}: {tname}.{fname} pk"
            );
            match f.foreign_key {
                Some(fk) => {
                    assert!(fk.table.eq_ignore_ascii_case(&r[8]), "{tname}.{fname}");
                    assert!(fk.field.eq_ignore_ascii_case(&r[9]), "{tname}.{fname}");
                    assert_eq!(fk.domain.unwrap_or("NA"), &r[10], "{tname}.{fname}");
                    assert_eq!(fk.class.unwrap_or("NA"), &r[11], "{tname}.{fname}");
                }
                None => assert_eq!(&r[8], "NA", "{version}: {tname}.{fname} fk"),
            }
            seen += 1;
        }
        let total: usize = tables(version).iter().map(|t| t.fields.len()).sum();
        assert_eq!(seen, total, "{version}: field count");
    }
}

fn df(columns: Vec<Column>) -> DataFrame {
    DataFrame::new_infer_height(columns).expect("test frame")
}

#[test]
fn cdm_conform_orders_casts_and_fills() {
    let op = v54("observation_period");
    let input = df(vec![
        Column::new("period_type_concept_id".into(), [32817i64, 32817, 32817]),
        Column::new("extra".into(), ["a", "b", "c"]),
        Column::new("PERSON_ID".into(), [1i32, 2, 3]),
        Column::new("observation_period_id".into(), ["10", "11", "12"]),
        Column::new(
            "observation_period_start_date".into(),
            ["2020-01-01", "2020-02-01", "2020-03-01"],
        ),
        Column::new(
            "observation_period_end_date".into(),
            ["2021-01-01", "2021-02-01", "2021-03-01"],
        ),
    ]);
    let out = op.conform(input).expect("conform");
    let names: Vec<&str> = out.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "observation_period_id",
            "person_id",
            "observation_period_start_date",
            "observation_period_end_date",
            "period_type_concept_id"
        ]
    );
    assert_eq!(out.schema().as_ref(), &op.polars_schema());
    assert_eq!(out.height(), 3);
    let ids: Vec<Option<i64>> = out
        .column("observation_period_id")
        .and_then(|c| c.i64().cloned())
        .expect("i64")
        .iter()
        .collect();
    assert_eq!(ids, [Some(10), Some(11), Some(12)]);
    let start = out
        .column("observation_period_start_date")
        .and_then(|c| c.cast(&DataType::String))
        .expect("cast back");
    assert_eq!(start.str().expect("str").get(1), Some("2020-02-01"));

    // Missing optional fields become typed nulls.
    let person = v54("person");
    let input = df(vec![
        Column::new("person_id".into(), [1i64, 2]),
        Column::new("gender_concept_id".into(), [8507i32, 8532]),
        Column::new("year_of_birth".into(), [1950i32, 1960]),
        Column::new("race_concept_id".into(), [0i32, 0]),
        Column::new("ethnicity_concept_id".into(), [0i32, 0]),
    ]);
    let out = person.conform(input).expect("conform person");
    assert_eq!(out.width(), 18);
    let birth = out.column("birth_datetime").expect("birth_datetime");
    assert_eq!(
        birth.dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, None)
    );
    assert_eq!(birth.null_count(), 2);
    assert_eq!(
        out.column("gender_source_value")
            .map(|c| c.null_count())
            .ok(),
        Some(2)
    );
}

#[test]
fn cdm_conform_errors_name_table_and_field() {
    let op = v54("observation_period");
    let input = df(vec![
        Column::new("observation_period_id".into(), [1i64]),
        Column::new("person_id".into(), [1i64]),
        Column::new("observation_period_start_date".into(), ["2020-01-01"]),
        Column::new("period_type_concept_id".into(), [32817i32]),
    ]);
    let err = op.conform(input).expect_err("missing required end date");
    assert_eq!(
        err,
        CdmError::MissingRequiredField {
            table: "observation_period",
            field: "observation_period_end_date"
        }
    );
    assert!(err.to_string().contains("observation_period_end_date"));

    let input = df(vec![
        Column::new("observation_period_id".into(), [1i64, 2, 3]),
        Column::new("person_id".into(), ["1", "secret-value", "x9"]),
        Column::new("observation_period_start_date".into(), ["2020-01-01"; 3]),
        Column::new("observation_period_end_date".into(), ["2020-01-01"; 3]),
        Column::new("period_type_concept_id".into(), [32817i32; 3]),
    ]);
    let err = op.conform(input).expect_err("unparseable person_id");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CdmError::Cast {
                field: "person_id",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("observation_period") && msg.contains("person_id"),
        "{msg}"
    );
    assert!(msg.contains("2 value(s)") && msg.contains("row 1"), "{msg}");
    assert!(!msg.contains("secret-value"), "record data leaked: {msg}");

    // Int32 overflow of a concept id is an error, not a silent null.
    let input = df(vec![
        Column::new("observation_period_id".into(), [1i64]),
        Column::new("person_id".into(), [1i64]),
        Column::new("observation_period_start_date".into(), ["2020-01-01"]),
        Column::new("observation_period_end_date".into(), ["2020-01-01"]),
        Column::new("period_type_concept_id".into(), [5_000_000_000i64]),
    ]);
    let err = op.conform(input).expect_err("overflow");
    assert!(
        matches!(
            err,
            CdmError::Cast {
                field: "period_type_concept_id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cdm_required_null_mask_and_reason() {
    let op = v54("observation_period");
    let input = df(vec![
        Column::new(
            "observation_period_id".into(),
            [Some(1i64), Some(2), Some(3), None],
        ),
        Column::new("person_id".into(), [Some(1i64), None, Some(3), None]),
        Column::new(
            "observation_period_start_date".into(),
            [Some("2020-01-01"); 4],
        ),
        Column::new(
            "observation_period_end_date".into(),
            [
                Some("2020-01-01"),
                Some("2020-01-01"),
                None,
                Some("2020-01-01"),
            ],
        ),
        Column::new("period_type_concept_id".into(), [Some(32817i32); 4]),
        Column::new("extra".into(), [None::<i32>; 4]),
    ]);
    let mask: Vec<Option<bool>> = op
        .required_null_mask(&input)
        .expect("mask")
        .iter()
        .collect();
    assert_eq!(mask, [Some(false), Some(true), Some(true), Some(true)]);

    let reason = op.null_required_field(&input).expect("reason");
    let reason: Vec<Option<&str>> = reason.str().expect("str").iter().collect();
    assert_eq!(
        reason,
        [
            None,
            Some("person_id"),
            Some("observation_period_end_date"),
            Some("observation_period_id")
        ]
    );

    let conformed = op.conform(input).expect("conform keeps nulls");
    let lazy = conformed
        .lazy()
        .select([op.required_null_expr().alias("bad")])
        .collect()
        .expect("lazy mask");
    let lazy: Vec<Option<bool>> = lazy
        .column("bad")
        .and_then(|c| c.bool().cloned())
        .expect("bool")
        .iter()
        .collect();
    assert_eq!(lazy, mask);

    let without = df(vec![Column::new("observation_period_id".into(), [1i64])]);
    assert_eq!(
        op.required_null_mask(&without).map(|_| ()),
        Err(CdmError::MissingRequiredField {
            table: "observation_period",
            field: "person_id"
        })
    );
}

/// Conforms the Eunomia GiBleed (CDM v5.3.1) Parquet tables to v5.3 and checks that rows and
/// values survive.
#[test]
fn cdm_conform_gibleed_v53() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("data/eunomia-gibleed");
    for name in [
        "person",
        "visit_occurrence",
        "observation_period",
        "condition_occurrence",
    ] {
        let path = dir.join(format!("{name}.parquet"));
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let input = ParquetReader::new(file)
            .finish()
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let t = v53(name);
        let mask = t.required_null_mask(&input).expect("mask");
        assert_eq!(
            mask.sum(),
            Some(0),
            "{name}: GiBleed has no nulls in required fields"
        );
        let out = t
            .conform(input.clone())
            .unwrap_or_else(|e| panic!("conform {name}: {e}"));
        assert_eq!(out.height(), input.height(), "{name}");
        assert_eq!(out.schema().as_ref(), &t.polars_schema(), "{name}");
        let pk = t.primary_key().expect("pk").name;
        let original = input
            .column(pk)
            .and_then(|c| c.cast(&DataType::Int64))
            .expect("pk");
        assert!(
            out.column(pk).expect("pk").equals(&original),
            "{name}: {pk} changed"
        );
    }
}
