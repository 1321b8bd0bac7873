//! Edge cases of Circe's semantics on a small generated CDM: windows
//! (event/index end, observation-period bounds, ignored observation periods),
//! restricted visits, occurrence and distinct counts, nested groups, limits,
//! end strategies, censoring, era padding, censor windows, mapped and source
//! concepts, several observation periods per person, and text filters.
//!
//! The expected rows were produced by the reference implementation
//! (`../shared/tools/circe_oracle.py`, the Python port of OHDSI Circe run by
//! DuckDB) on exactly the CDM and definitions built here. To regenerate them:
//! `OMOPKIT_EDGE_DIR=/tmp/edge cargo test --workspace --test cohort_edge_cases`,
//! then `circe_oracle.py /tmp/edge/cdm /tmp/edge/cohorts/*.json`.

mod cohort_support;

use omop_cohort::{Cdm, CohortExpression, evaluate};
use polars::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

/// Days since 1970-01-01 (proleptic Gregorian) of a calendar date.
fn day(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

/// A small deterministic pseudo-random generator (LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

fn date_series(name: &str, days: Vec<Option<i32>>) -> Column {
    Series::new(name.into(), days)
        .cast(&DataType::Date)
        .expect("date cast")
        .into_column()
}

fn write(dir: &Path, table: &str, mut df: DataFrame) {
    let path = dir.join(format!("{table}.parquet"));
    let file = std::fs::File::create(&path).expect("create parquet");
    ParquetWriter::new(file)
        .finish(&mut df)
        .expect("write parquet");
}

/// Builds the CDM: 60 persons, one or two observation periods each, and a
/// time-ordered sequence of conditions, drugs, visits and measurements on
/// distinct days (so that no limit depends on tie order).
fn build_cdm(dir: &Path) {
    std::fs::create_dir_all(dir).expect("cdm dir");
    let mut rng = Lcg(42);
    let (mut p_id, mut p_gender, mut p_yob) = (vec![], vec![], vec![]);
    let (mut op_id, mut op_person, mut op_start, mut op_end) = (vec![], vec![], vec![], vec![]);
    let mut co: [Vec<Option<i64>>; 5] = Default::default(); // id, person, concept, source, visit
    let (mut co_start, mut co_end) = (vec![], vec![]);
    let mut de: [Vec<Option<i64>>; 5] = Default::default(); // id, person, concept, source, days_supply
    let (mut de_start, mut de_end) = (vec![], vec![]);
    let mut vo: [Vec<Option<i64>>; 3] = Default::default(); // id, person, concept
    let (mut vo_start, mut vo_end) = (vec![], vec![]);
    let mut me: [Vec<Option<i64>>; 4] = Default::default(); // id, person, concept, unit
    let (mut me_date, mut me_value) = (vec![], vec![]);
    let mut next_id = 1000i64;
    for p in 1..=60i64 {
        p_id.push(p);
        p_gender.push(if p % 2 == 1 { 8507i64 } else { 8532 });
        p_yob.push(1930 + (p * 7) % 60);
        if p % 5 == 0 {
            for (s, e) in [
                (day(2000, 1, 1), day(2004, 12, 31)),
                (day(2006, 1, 1), day(2012, 12, 31)),
            ] {
                next_id += 1;
                op_id.push(next_id);
                op_person.push(p);
                op_start.push(Some(s));
                op_end.push(Some(e));
            }
        } else {
            next_id += 1;
            op_id.push(next_id);
            op_person.push(p);
            op_start.push(Some(day(2000, 1, 1) + p as i32 * 3));
            op_end.push(Some(day(2012, 12, 31) - p as i32 * 5));
        }
        let mut d = day(1999, 6, 1) + rng.next(200) as i32;
        let mut last_visit: Option<(i64, i32, i32)> = None;
        for _ in 0..(8 + rng.next(10)) {
            d += 1 + rng.next(150) as i32;
            next_id += 1;
            match rng.next(10) {
                0..=3 => {
                    let concept = [101i64, 102, 103, 104, 301][rng.next(5) as usize];
                    let source = if rng.next(4) == 0 { Some(301) } else { Some(0) };
                    let end = match rng.next(3) {
                        0 => None,
                        _ => Some(d + rng.next(40) as i32),
                    };
                    let visit = last_visit.filter(|v| d >= v.1 && d <= v.2).map(|v| v.0);
                    co[0].push(Some(next_id));
                    co[1].push(Some(p));
                    co[2].push(Some(concept));
                    co[3].push(source);
                    co[4].push(visit);
                    co_start.push(Some(d));
                    co_end.push(end);
                }
                4..=6 => {
                    let concept = [201i64, 202][rng.next(2) as usize];
                    let supply = 10 + rng.next(50);
                    let end = if rng.next(3) == 0 {
                        None
                    } else {
                        Some(d + supply as i32)
                    };
                    de[0].push(Some(next_id));
                    de[1].push(Some(p));
                    de[2].push(Some(concept));
                    de[3].push(Some(if rng.next(3) == 0 { 201 } else { 0 }));
                    de[4].push(Some(supply));
                    de_start.push(Some(d));
                    de_end.push(end);
                }
                7..=8 => {
                    let len = rng.next(6) as i32;
                    vo[0].push(Some(next_id));
                    vo[1].push(Some(p));
                    vo[2].push(Some([9201i64, 9202][rng.next(2) as usize]));
                    vo_start.push(Some(d));
                    vo_end.push(Some(d + len));
                    last_visit = Some((next_id, d, d + len));
                    // A condition inside the visit, two days later at most.
                    if len >= 2 && rng.next(2) == 0 {
                        next_id += 1;
                        d += 1;
                        co[0].push(Some(next_id));
                        co[1].push(Some(p));
                        co[2].push(Some(104));
                        co[3].push(Some(0));
                        co[4].push(Some(last_visit.map_or(0, |v| v.0)));
                        co_start.push(Some(d));
                        co_end.push(Some(d + 1));
                    }
                }
                _ => {
                    me[0].push(Some(next_id));
                    me[1].push(Some(p));
                    me[2].push(Some(3_004_410));
                    me[3].push(Some(8840));
                    me_date.push(Some(d));
                    me_value.push(Some(rng.next(160) as f64 / 10.0));
                }
            }
        }
    }
    let n = p_id.len();
    write(
        dir,
        "person",
        DataFrame::new(
            n,
            vec![
                Column::new("person_id".into(), p_id),
                Column::new("gender_concept_id".into(), p_gender),
                Column::new("year_of_birth".into(), p_yob),
                Column::new("race_concept_id".into(), vec![0i64; n]),
                Column::new("ethnicity_concept_id".into(), vec![0i64; n]),
            ],
        )
        .expect("person"),
    );
    let n = op_id.len();
    write(
        dir,
        "observation_period",
        DataFrame::new(
            n,
            vec![
                Column::new("observation_period_id".into(), op_id),
                Column::new("person_id".into(), op_person),
                date_series("observation_period_start_date", op_start),
                date_series("observation_period_end_date", op_end),
                Column::new("period_type_concept_id".into(), vec![44_814_724i64; n]),
            ],
        )
        .expect("observation_period"),
    );
    let n = co_start.len();
    let [a, b, c, s, v] = co;
    // Text columns for Circe's text filters, a function of the row id (the random stream
    // that places the events is left as it was).
    let co_stop: Vec<Option<&str>> = a
        .iter()
        .map(|id| match id.unwrap_or(0) % 6 {
            0 => None,
            1 => Some("Adverse event"),
            2 => Some("adverse_event"),
            3 => Some("Resolved"),
            4 => Some("it's 50% better"),
            _ => Some("Adverse"),
        })
        .collect();
    write(
        dir,
        "condition_occurrence",
        DataFrame::new(
            n,
            vec![
                Column::new("condition_occurrence_id".into(), a),
                Column::new("person_id".into(), b),
                Column::new("condition_concept_id".into(), c),
                date_series("condition_start_date", co_start),
                date_series("condition_end_date", co_end),
                Column::new("condition_type_concept_id".into(), vec![32_020i64; n]),
                Column::new("condition_source_concept_id".into(), s),
                Column::new("visit_occurrence_id".into(), v),
                Column::new("provider_id".into(), vec![None::<i64>; n]),
                Column::new("condition_status_concept_id".into(), vec![None::<i64>; n]),
                Column::new("visit_detail_id".into(), vec![None::<i64>; n]),
                Column::new("stop_reason".into(), co_stop),
            ],
        )
        .expect("condition_occurrence"),
    );
    let n = de_start.len();
    let [a, b, c, s, ds] = de;
    let de_stop: Vec<Option<&str>> = a
        .iter()
        .map(|id| match id.unwrap_or(0) % 4 {
            0 => None,
            1 => Some("Side effect"),
            2 => Some("side effect: rash"),
            _ => Some("Completed"),
        })
        .collect();
    let de_lot: Vec<Option<&str>> = a
        .iter()
        .map(|id| match id.unwrap_or(0) % 3 {
            0 => Some("L100"),
            1 => Some("l100x"),
            _ => None,
        })
        .collect();
    write(
        dir,
        "drug_exposure",
        DataFrame::new(
            n,
            vec![
                Column::new("drug_exposure_id".into(), a),
                Column::new("person_id".into(), b),
                Column::new("drug_concept_id".into(), c),
                date_series("drug_exposure_start_date", de_start),
                date_series("drug_exposure_end_date", de_end),
                Column::new("drug_type_concept_id".into(), vec![38_000_177i64; n]),
                Column::new("days_supply".into(), ds),
                Column::new("drug_source_concept_id".into(), s),
                Column::new("visit_occurrence_id".into(), vec![None::<i64>; n]),
                Column::new("provider_id".into(), vec![None::<i64>; n]),
                Column::new("refills".into(), vec![None::<i64>; n]),
                Column::new("route_concept_id".into(), vec![None::<i64>; n]),
                Column::new("visit_detail_id".into(), vec![None::<i64>; n]),
                Column::new("quantity".into(), vec![None::<f64>; n]),
                Column::new("stop_reason".into(), de_stop),
                Column::new("lot_number".into(), de_lot),
            ],
        )
        .expect("drug_exposure"),
    );
    let n = vo_start.len();
    let [a, b, c] = vo;
    write(
        dir,
        "visit_occurrence",
        DataFrame::new(
            n,
            vec![
                Column::new("visit_occurrence_id".into(), a),
                Column::new("person_id".into(), b),
                Column::new("visit_concept_id".into(), c),
                date_series("visit_start_date", vo_start),
                date_series("visit_end_date", vo_end),
                Column::new("visit_type_concept_id".into(), vec![44_818_517i64; n]),
                Column::new("provider_id".into(), vec![None::<i64>; n]),
                Column::new("care_site_id".into(), vec![None::<i64>; n]),
                Column::new("visit_source_concept_id".into(), vec![None::<i64>; n]),
            ],
        )
        .expect("visit_occurrence"),
    );
    let n = me_date.len();
    let [a, b, c, u] = me;
    write(
        dir,
        "measurement",
        DataFrame::new(
            n,
            vec![
                Column::new("measurement_id".into(), a),
                Column::new("person_id".into(), b),
                Column::new("measurement_concept_id".into(), c),
                date_series("measurement_date", me_date),
                Column::new("measurement_type_concept_id".into(), vec![44_818_702i64; n]),
                Column::new("value_as_number".into(), me_value),
                Column::new("unit_concept_id".into(), u),
                Column::new("range_low".into(), vec![4.0f64; n]),
                Column::new("range_high".into(), vec![10.0f64; n]),
                Column::new("visit_occurrence_id".into(), vec![None::<i64>; n]),
                Column::new("provider_id".into(), vec![None::<i64>; n]),
                Column::new("operator_concept_id".into(), vec![None::<i64>; n]),
                Column::new("value_as_concept_id".into(), vec![None::<i64>; n]),
                Column::new("measurement_source_concept_id".into(), vec![None::<i64>; n]),
                Column::new("visit_detail_id".into(), vec![None::<i64>; n]),
            ],
        )
        .expect("measurement"),
    );
    let concepts = [
        100i64, 101, 102, 103, 104, 201, 202, 301, 3_004_410, 9201, 9202, 8507, 8532,
    ];
    let invalid: Vec<Option<&str>> = concepts
        .iter()
        .map(|&c| if c == 103 { Some("D") } else { None })
        .collect();
    let n = concepts.len();
    write(
        dir,
        "concept",
        DataFrame::new(
            n,
            vec![
                Column::new("concept_id".into(), concepts.to_vec()),
                Column::new(
                    "concept_name".into(),
                    concepts.iter().map(|c| format!("c{c}")).collect::<Vec<_>>(),
                ),
                Column::new("invalid_reason".into(), invalid),
            ],
        )
        .expect("concept"),
    );
    let pairs = [
        (100i64, 100i64),
        (100, 101),
        (100, 102),
        (100, 103),
        (101, 101),
        (102, 102),
        (103, 103),
        (104, 104),
    ];
    write(
        dir,
        "concept_ancestor",
        DataFrame::new(
            pairs.len(),
            vec![
                Column::new(
                    "ancestor_concept_id".into(),
                    pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
                ),
                Column::new(
                    "descendant_concept_id".into(),
                    pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
                ),
            ],
        )
        .expect("concept_ancestor"),
    );
    write(
        dir,
        "concept_relationship",
        DataFrame::new(
            2,
            vec![
                Column::new("concept_id_1".into(), vec![301i64, 101]),
                Column::new("concept_id_2".into(), vec![101i64, 301]),
                Column::new("relationship_id".into(), vec!["Maps to", "Mapped from"]),
                Column::new("invalid_reason".into(), vec![None::<&str>, None]),
            ],
        )
        .expect("concept_relationship"),
    );
}

fn item(id: i64, descendants: bool, mapped: bool, excluded: bool) -> Value {
    json!({"concept": {"CONCEPT_ID": id}, "includeDescendants": descendants, "includeMapped": mapped, "isExcluded": excluded})
}

fn concept_set(id: i64, items: Vec<Value>) -> Value {
    json!({"id": id, "name": format!("set {id}"), "expression": {"items": items}})
}

fn concept_sets() -> Value {
    json!([
        concept_set(0, vec![item(100, true, false, false)]),
        concept_set(1, vec![item(101, false, true, false)]),
        concept_set(2, vec![item(102, false, false, false)]),
        concept_set(3, vec![item(104, false, false, false)]),
        concept_set(4, vec![item(201, false, false, false)]),
        concept_set(5, vec![item(202, false, false, false)]),
        concept_set(6, vec![item(9201, false, false, false)]),
        concept_set(7, vec![item(3_004_410, false, false, false)]),
        concept_set(
            8,
            vec![item(100, true, false, false), item(102, false, false, true)]
        ),
        concept_set(
            9,
            vec![
                item(201, false, false, false),
                item(202, false, false, false)
            ]
        ),
    ])
}

fn window(start: Option<i64>, start_coeff: i64, end: Option<i64>, end_coeff: i64) -> Value {
    let ep = |d: Option<i64>, c: i64| match d {
        Some(d) => json!({"Days": d, "Coeff": c}),
        None => json!({"Coeff": c}),
    };
    json!({"Start": ep(start, start_coeff), "End": ep(end, end_coeff), "UseEventEnd": false})
}

fn correlated(criteria: Value, start_window: Value, occ_type: i64, count: i64) -> Value {
    json!({"Criteria": criteria, "StartWindow": start_window, "Occurrence": {"Type": occ_type, "Count": count}})
}

fn group(kind: &str, criteria: Vec<Value>) -> Value {
    json!({"Type": kind, "CriteriaList": criteria, "DemographicCriteriaList": [], "Groups": []})
}

fn base(primary: Vec<Value>, prior: i64, limit: &str) -> Value {
    json!({
        "ConceptSets": concept_sets(),
        "PrimaryCriteria": {
            "CriteriaList": primary,
            "ObservationWindow": {"PriorDays": prior, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": limit}
        },
        "QualifiedLimit": {"Type": "First"},
        "ExpressionLimit": {"Type": "All"},
        "InclusionRules": [],
        "CensoringCriteria": [],
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
        "CensorWindow": {}
    })
}

fn cond(codeset: i64) -> Value {
    json!({"ConditionOccurrence": {"CodesetId": codeset}})
}

fn drug(codeset: i64) -> Value {
    json!({"DrugExposure": {"CodesetId": codeset}})
}

fn rule(name: &str, expression: Value) -> Value {
    json!({"name": name, "expression": expression})
}

/// The definitions, by name.
fn definitions() -> Vec<(&'static str, Value)> {
    let mut defs = Vec::new();

    // First condition of a descendant set, 365 days of prior observation.
    defs.push((
        "first_condition_prior365",
        base(vec![cond(0)], 365, "First"),
    ));

    // All conditions except an excluded concept; end = end date + 7, era pad 30.
    let mut d = base(vec![cond(8)], 0, "All");
    d["EndStrategy"] = json!({"DateOffset": {"DateField": "EndDate", "Offset": 7}});
    d["CollapseSettings"]["EraPad"] = json!(30);
    defs.push(("all_conditions_offset_pad", d));

    // Drug eras as the end; rule: a condition 102 in the 180 days before.
    let mut d = base(vec![drug(4)], 0, "All");
    d["EndStrategy"] = json!({"CustomEra": {"DrugCodesetId": 4, "GapDays": 30, "Offset": 0}});
    d["InclusionRules"] = json!([rule(
        "prior 102",
        group(
            "ALL",
            vec![correlated(cond(2), window(Some(180), -1, Some(0), 1), 2, 1)]
        )
    )]);
    defs.push(("drug_custom_era_rule", d));

    // No drug within 30 days either side; last event.
    let mut d = base(vec![cond(2)], 0, "All");
    d["QualifiedLimit"] = json!({"Type": "All"});
    d["ExpressionLimit"] = json!({"Type": "Last"});
    d["InclusionRules"] = json!([rule(
        "no drug",
        group(
            "ALL",
            vec![correlated(drug(9), window(Some(30), -1, Some(30), 1), 0, 0)]
        )
    )]);
    defs.push(("no_drug_around_last", d));

    // Visits with a condition 104 in the same visit, measured on its end date.
    let mut d = base(vec![json!({"VisitOccurrence": {"CodesetId": 6}})], 0, "All");
    let mut c = correlated(cond(3), window(Some(0), -1, Some(10), 1), 2, 1);
    c["RestrictVisit"] = json!(true);
    c["EndWindow"] = json!({"Start": {"Days": 0, "Coeff": -1}, "End": {"Days": 30, "Coeff": 1}, "UseEventEnd": true, "UseIndexEnd": true});
    d["InclusionRules"] = json!([rule("in visit", group("ALL", vec![c]))]);
    d["EndStrategy"] = json!({"DateOffset": {"DateField": "StartDate", "Offset": 0}});
    defs.push(("visit_restricted", d));

    // First drug 202; censored at the first condition of set 1 (with mapped concept).
    let mut d = base(vec![drug(5)], 0, "First");
    d["CensoringCriteria"] = json!([cond(1)]);
    defs.push(("drug_censored", d));

    // High measurements in men aged 50+.
    let m = json!({"Measurement": {"CodesetId": 7, "ValueAsNumber": {"Value": 10, "Op": "gt"},
                   "Age": {"Value": 50, "Op": "gte"}, "Gender": [{"CONCEPT_ID": 8507}]}});
    let mut d = base(vec![m], 0, "All");
    d["EndStrategy"] = json!({"DateOffset": {"DateField": "StartDate", "Offset": 1}});
    defs.push(("high_measurement_men", d));

    // At least 2 distinct condition concepts in the prior year, or age 40–65.
    let mut distinct = correlated(cond(0), window(Some(365), -1, Some(0), 1), 2, 2);
    distinct["Occurrence"]["IsDistinct"] = json!(true);
    let mut g = group("ANY", vec![distinct]);
    g["DemographicCriteriaList"] = json!([{"Age": {"Value": 40, "Op": "bt", "Extent": 65}}]);
    let mut d = base(vec![json!({"Measurement": {"CodesetId": 7}})], 0, "All");
    d["InclusionRules"] = json!([rule("distinct or age", g)]);
    defs.push(("distinct_or_age", d));

    // Additional criteria (drug within 30 days after the index end), qualified First.
    let mut ac_window = window(Some(0), 1, Some(30), 1);
    ac_window["UseIndexEnd"] = json!(true);
    let mut d = base(vec![cond(0)], 0, "All");
    d["AdditionalCriteria"] = group("ALL", vec![correlated(drug(9), ac_window, 2, 1)]);
    defs.push(("additional_qualified_first", d));

    // Observation-period bounds: any drug before the index in the same period,
    // and (ignoring observation periods) a condition any time after.
    let mut ignore = correlated(cond(1), window(Some(1), 1, None, 1), 2, 1);
    ignore["IgnoreObservationPeriod"] = json!(true);
    let mut d = base(vec![json!({"Measurement": {"CodesetId": 7}})], 0, "All");
    d["InclusionRules"] = json!([
        rule(
            "drug earlier in period",
            group(
                "ALL",
                vec![correlated(drug(9), window(None, -1, Some(1), -1), 2, 1)]
            )
        ),
        rule("condition later", group("ALL", vec![ignore])),
    ]);
    defs.push(("period_bounds", d));

    // Nested groups and AT_MOST.
    let inner = group(
        "AT_LEAST",
        vec![
            correlated(cond(2), window(Some(730), -1, Some(0), 1), 2, 1),
            correlated(cond(3), window(Some(730), -1, Some(0), 1), 2, 1),
        ],
    );
    let mut inner = inner;
    inner["Count"] = json!(1);
    let mut outer = group(
        "AT_MOST",
        vec![correlated(drug(4), window(Some(90), -1, Some(90), 1), 2, 2)],
    );
    outer["Count"] = json!(1);
    outer["Groups"] = json!([inner]);
    let mut d = base(vec![json!({"VisitOccurrence": {}})], 0, "All");
    d["InclusionRules"] = json!([rule("nested", outer)]);
    d["CollapseSettings"]["EraPad"] = json!(60);
    defs.push(("nested_groups", d));

    // Source concept codeset, censor window.
    let mut d = base(
        vec![json!({"ConditionOccurrence": {"ConditionSourceConcept": 1}})],
        0,
        "All",
    );
    d["CensorWindow"] = json!({"StartDate": "2003-01-01", "EndDate": "2008-06-30"});
    d["EndStrategy"] = json!({"DateOffset": {"DateField": "StartDate", "Offset": 400}});
    defs.push(("source_concept_censor_window", d));

    // Criteria-level correlated criteria and First on the nested criteria.
    let nested = json!({"ConditionOccurrence": {"CodesetId": 0, "CorrelatedCriteria":
        group("ALL", vec![correlated(json!({"DrugExposure": {"CodesetId": 9, "First": true}}), window(None, -1, Some(0), 1), 2, 1)])}});
    defs.push(("correlated_first_drug", base(vec![nested], 0, "All")));

    // Text filters: LIKE patterns, case-sensitive, nulls never pass (negated or not), `%` and
    // `_` in the text are wildcards, and a quote in the text is itself.
    let text = |criteria: Value| base(vec![criteria], 0, "All");
    defs.push((
        "text_stop_reason_contains",
        text(json!({"ConditionOccurrence": {"CodesetId": 0,
            "StopReason": {"Text": "dverse", "Op": "contains"}}})),
    ));
    defs.push((
        "text_stop_reason_not_startswith",
        text(json!({"ConditionOccurrence": {"CodesetId": 0,
            "StopReason": {"Text": "Adv", "Op": "!startsWith"}}})),
    ));
    defs.push((
        "text_wildcards_and_quote",
        text(json!({"ConditionOccurrence": {"CodesetId": 0,
            "StopReason": {"Text": "it's 50%", "Op": "startsWith"}}})),
    ));
    defs.push((
        "text_underscore_is_one_character",
        text(json!({"ConditionOccurrence": {"CodesetId": 0,
            "StopReason": {"Text": "_dverse", "Op": "endsWith"}}})),
    ));
    defs.push((
        "text_drug_lot_and_reason",
        text(json!({"DrugExposure": {"CodesetId": 9,
            "LotNumber": {"Text": "L1", "Op": "startsWith"},
            "StopReason": {"Text": "effect", "Op": "!endsWith"}}})),
    ));

    defs
}

/// Reference results from circe_oracle.py: (name, rows, subjects, md5 of the canonical rows).
const EXPECTED: &[(&str, usize, usize, &str)] = &[
    (
        "additional_qualified_first",
        1,
        1,
        "21e16039b794ec8e7252fd4205624f84",
    ),
    (
        "all_conditions_offset_pad",
        43,
        27,
        "929cda23ec6fe4b5e373367b7ac82dba",
    ),
    (
        "correlated_first_drug",
        24,
        24,
        "d6354d5806cd637969d6722b73284ba0",
    ),
    (
        "distinct_or_age",
        21,
        21,
        "3c36adafcfd13f06db54f1b28378cd02",
    ),
    ("drug_censored", 45, 45, "1d77cec9db6ac30bc8b43b8ada715c39"),
    (
        "drug_custom_era_rule",
        12,
        11,
        "e50cc8ba164b4b5e83846e2efa36b8c2",
    ),
    (
        "first_condition_prior365",
        32,
        32,
        "2e123fe19d0d3fce8bb6855d7ab33ec7",
    ),
    (
        "high_measurement_men",
        6,
        4,
        "619b6c1f816214c278dcdd99f3938922",
    ),
    ("nested_groups", 51, 51, "d422b03133ac19cd532b23d281c7f677"),
    (
        "no_drug_around_last",
        35,
        35,
        "0d5fd01edfb0b1fde9ca910c0fbe37ff",
    ),
    ("period_bounds", 16, 16, "1cf04ce12bc5017fc245098fd3dc0d9c"),
    (
        "source_concept_censor_window",
        12,
        12,
        "12b4d3ce18c352b45ec922433eb91f81",
    ),
    (
        "text_drug_lot_and_reason",
        23,
        23,
        "20c6241be83327a6b3456ff472c5ec41",
    ),
    (
        "text_stop_reason_contains",
        39,
        39,
        "828661fb5dab303e4be2df96ddb4c32a",
    ),
    (
        "text_stop_reason_not_startswith",
        30,
        30,
        "fb38eb1f72eeab13d51d3a40ce67aab1",
    ),
    (
        "text_underscore_is_one_character",
        12,
        12,
        "33711b04e753053b1216ad011f09c086",
    ),
    (
        "text_wildcards_and_quote",
        17,
        17,
        "d9623aeb9b7a61779e5a7d5d3b46ea2d",
    ),
    ("visit_restricted", 3, 3, "396135dffdffc4a1997fc6b11f756fe2"),
];

#[test]
fn edge_cases_match_the_reference() {
    let keep = std::env::var_os("OMOPKIT_EDGE_DIR");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = keep.map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let cdm_dir = root.join("cdm");
    build_cdm(&cdm_dir);
    let cdm = Cdm::load(&cdm_dir).expect("generated CDM loads");
    // The same CDM through a saved and reloaded index (text columns included).
    let index_dir = root.join("index");
    omop_cohort::store::save(&cdm, &index_dir).expect("index written");
    let reloaded = omop_cohort::store::load(&index_dir).expect("index read");
    let defs_dir = root.join("cohorts");
    std::fs::create_dir_all(&defs_dir).expect("cohorts dir");
    let mut failures = Vec::new();
    let mut seen = 0;
    for (name, def) in definitions() {
        let text = serde_json::to_string_pretty(&def).expect("json");
        std::fs::write(defs_dir.join(format!("{name}.json")), &text).expect("write definition");
        let expr = CohortExpression::from_json(&text, name).expect("definition parses");
        let result = evaluate(&cdm, &expr).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = evaluate(&reloaded, &expr).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            result.canonical_text(),
            again.canonical_text(),
            "{name}: the reloaded index gives other rows"
        );
        let md5 = cohort_support::md5_hex(result.canonical_text().as_bytes());
        let got = (result.rows.len(), result.subject_count(), md5.as_str());
        println!("{name},{},{},{}", got.0, got.1, got.2);
        if let Some(&(_, rows, subjects, hash)) = EXPECTED.iter().find(|e| e.0 == name) {
            seen += 1;
            if got != (rows, subjects, hash) {
                failures.push(format!(
                    "{name}: got {got:?}, expected ({rows}, {subjects}, {hash})"
                ));
            }
        }
    }
    assert_eq!(
        seen,
        EXPECTED.len(),
        "every reference case has a definition"
    );
    assert_eq!(
        seen,
        definitions().len(),
        "every definition has a reference result"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
