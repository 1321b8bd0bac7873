//! The Circe JSON reader on the 1,105 shared definitions and on bad input.

mod cohort_support;

use omop_cohort::{Cdm, CohortError, CohortExpression, CohortPlan};

#[test]
fn every_shared_definition_parses_and_compiles() {
    let Some(shared) = cohort_support::shared_dir() else {
        return;
    };
    let files = cohort_support::all_definitions(&shared);
    assert_eq!(
        files.len(),
        1105,
        "1,100 PhenotypeLibrary + 5 CohortGenerator definitions"
    );
    let cdm = Cdm::default();
    let mut failures = Vec::new();
    for path in &files {
        match CohortExpression::from_file(path) {
            Ok(def) => {
                assert!(
                    def.primary_criteria.is_some(),
                    "{}: no PrimaryCriteria",
                    path.display()
                );
                if let Err(e) = CohortPlan::compile(&def, &cdm) {
                    failures.push(format!("{}: {e}", path.display()));
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} definitions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn invalid_json_reports_line_and_column() {
    let text = "{\n  \"PrimaryCriteria\": {\n    \"CriteriaList\": [,]\n  }\n}";
    let err = CohortExpression::from_json(text, "bad.json").expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("bad.json"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
}

#[test]
fn wrong_scalar_types_are_rejected_with_position() {
    let text = r#"{"PrimaryCriteria": {"ObservationWindow": {"PriorDays": {"x": 1}}}}"#;
    let err = CohortExpression::from_json(text, "t.json").expect_err("object is not an int");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn lenient_scalars_are_coerced_like_circe() {
    let text = r#"{
      "PrimaryCriteria": {
        "CriteriaList": [{"ConditionOccurrence": {"CodesetId": "3", "First": "true"}}],
        "ObservationWindow": {"PriorDays": 30.9, "PostDays": "0"},
        "PrimaryCriteriaLimit": {"Type": "all"}
      },
      "UnknownKey": [1, 2, 3],
      "CollapseSettings": {"CollapseType": "ERA", "EraPad": "2"}
    }"#;
    let def = CohortExpression::from_json(text, "t.json").expect("lenient values parse");
    let pc = def.primary_criteria.expect("primary");
    assert_eq!(pc.observation_window.expect("window").prior_days, 30);
    let omop_cohort::model::Criteria::ConditionOccurrence(c) = &pc.criteria_list[0] else {
        panic!("wrong criteria type")
    };
    assert_eq!(c.codeset_id, Some(3));
    assert_eq!(c.first, Some(true));
    assert_eq!(def.collapse_settings.expect("collapse").era_pad, 2);
}

#[test]
fn unknown_criteria_type_is_an_error_naming_it() {
    let text = r#"{"PrimaryCriteria": {"CriteriaList": [{"Teleportation": {}}]}}"#;
    let err = CohortExpression::from_json(text, "t.json").expect_err("unknown type");
    assert!(err.to_string().contains("Teleportation"), "{err}");
}

#[test]
fn unsupported_elements_fail_with_their_name() {
    let text = r#"{"PrimaryCriteria": {"CriteriaList": [{"PayerPlanPeriod": {}}],
                  "ObservationWindow": {"PriorDays": 0, "PostDays": 0}}}"#;
    let def = CohortExpression::from_json(text, "t.json").expect("parses");
    let err = CohortPlan::compile(&def, &Cdm::default()).expect_err("unsupported");
    assert!(
        matches!(&err, CohortError::Unsupported(m) if m.contains("PayerPlanPeriod")),
        "{err}"
    );

    // A text filter without an operator cannot be evaluated (Circe fails on it too).
    let text = r#"{"PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {"StopReason": {"Text": "x"}}}],
                  "ObservationWindow": {"PriorDays": 0, "PostDays": 0}}}"#;
    let def = CohortExpression::from_json(text, "t.json").expect("parses");
    let err = CohortPlan::compile(&def, &Cdm::default()).expect_err("no operator");
    assert!(
        err.to_string().contains("ConditionOccurrence.StopReason"),
        "{err}"
    );
}
