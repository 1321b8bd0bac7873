//! Robustness: mutated definitions (random bytes, truncations, and random
//! changes to JSON values: huge or negative numbers, wrong types, removed
//! keys) must parse or fail with an error, and whatever parses must compile
//! and evaluate without panicking. The mutations are pseudo-random but
//! seeded, so a failure reproduces.

mod cohort_support;

use omop_cohort::{Cdm, CohortExpression, CohortPlan, evaluate_plan};
use serde_json::{Value, json};
use std::sync::OnceLock;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn gibleed() -> Option<&'static (std::path::PathBuf, Cdm)> {
    static CDM: OnceLock<Option<(std::path::PathBuf, Cdm)>> = OnceLock::new();
    CDM.get_or_init(|| {
        let shared = cohort_support::shared_dir()?;
        let cdm = Cdm::load(&shared.join("data/eunomia-gibleed")).expect("GiBleed loads");
        Some((shared, cdm))
    })
    .as_ref()
}

/// Definitions that are non-empty on GiBleed, so that mutations reach the evaluator.
fn seeds(shared: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for id in [
        "celecoxib",
        "celecoxibAge40Male",
        "celecoxibCensored",
        "gi_bleed_first",
    ] {
        let p = shared.join(format!("cohorts/cohort-generator/{id}.json"));
        out.push(std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    let expected =
        std::fs::read_to_string(shared.join("cohorts/expected-gibleed.csv")).expect("expected csv");
    for line in expected.lines().skip(6).step_by(12) {
        let id = line.split(',').next().unwrap_or_default();
        let p = shared.join(format!("cohorts/phenotype-library/{id}.json"));
        if let Ok(text) = std::fs::read_to_string(&p) {
            out.push(text);
        }
    }
    out
}

fn run(text: &str, cdm: &Cdm) {
    if let Ok(def) = CohortExpression::from_json(text, "mutant")
        && let Ok(plan) = CohortPlan::compile(&def, cdm)
    {
        // Errors are fine; panics are not.
        let _ = evaluate_plan(cdm, &plan);
    }
}

fn mutate_value(v: &mut Value, rng: &mut Lcg) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = &keys[rng.next(keys.len())];
            if rng.next(6) == 0 {
                map.remove(k);
            } else if let Some(child) = map.get_mut(k) {
                mutate_value(child, rng);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.next(items.len());
            if rng.next(6) == 0 {
                items.remove(i);
            } else {
                mutate_value(&mut items[i], rng);
            }
        }
        _ => {
            *v = match rng.next(12) {
                0 => json!(null),
                1 => json!(-1),
                2 => json!(0),
                3 => json!(2_147_483_647),
                4 => json!(-2_147_483_648_i64),
                5 => json!(1e300),
                6 => json!("bt"),
                7 => json!("9999-99-99"),
                8 => json!(true),
                9 => json!("ALL"),
                10 => json!({"Days": -99999, "Coeff": -1}),
                _ => json!([]),
            };
        }
    }
}

#[test]
fn mutated_json_text_never_panics() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let mut rng = Lcg(7);
    for seed in seeds(shared) {
        for _ in 0..40 {
            let mut bytes = seed.clone().into_bytes();
            match rng.next(3) {
                0 => bytes.truncate(rng.next(bytes.len())),
                1 => {
                    let i = rng.next(bytes.len());
                    let alphabet = b"{}[],:\"0-9aZ \n";
                    bytes[i] = alphabet[rng.next(alphabet.len())];
                }
                _ => {
                    let i = rng.next(bytes.len());
                    bytes.remove(i);
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            run(&text, cdm);
        }
    }
}

#[test]
fn mutated_json_values_never_panic() {
    let Some((shared, cdm)) = gibleed() else {
        return;
    };
    let mut rng = Lcg(11);
    let mut evaluated = 0;
    for seed in seeds(shared) {
        let original: Value = serde_json::from_str(&seed).expect("seed parses");
        for _ in 0..25 {
            let mut v = original.clone();
            for _ in 0..(1 + rng.next(3)) {
                mutate_value(&mut v, &mut rng);
            }
            let text = v.to_string();
            run(&text, cdm);
            evaluated += 1;
        }
    }
    assert!(evaluated > 100);
}
