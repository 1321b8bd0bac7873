//! Writes the canonical rows (`subject_id,start,end` per line, no header) of
//! each definition to `<out>/<stem>.csv`, and prints `stem,rows,subjects` or
//! the error. A debugging aid for comparing with reference rows.
//!
//! `cargo run --example cohort_rows -- <cdm-dir> <out-dir> <cohort.json>...`

use omop_cohort::{Cdm, CohortExpression, evaluate};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: cohort_rows <cdm-dir> <out-dir> <cohort.json>...".into());
    }
    let t0 = std::time::Instant::now();
    let cdm = Cdm::load(&PathBuf::from(&args[0]))?;
    eprintln!("loaded in {:?}", t0.elapsed());
    let out = PathBuf::from(&args[1]);
    std::fs::create_dir_all(&out)?;
    for f in &args[2..] {
        let path = PathBuf::from(f);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = std::time::Instant::now();
        let res = CohortExpression::from_file(&path).and_then(|d| evaluate(&cdm, &d));
        match res {
            Ok(r) => {
                std::fs::write(out.join(format!("{stem}.csv")), r.canonical_text())?;
                println!(
                    "{stem},{},{},{:.1}ms",
                    r.rows.len(),
                    r.subject_count(),
                    t.elapsed().as_secs_f64() * 1e3
                );
                if r.censored_lost > 0 {
                    eprintln!("{stem} censored lost: {}", r.censored_lost);
                }
                if !r.rule_names.is_empty() {
                    eprintln!("{stem} by event: {:?}", r.stats_by_event);
                    eprintln!("{stem} by person: {:?}", r.stats_by_person);
                }
            }
            Err(e) => println!("{stem},error,{e}"),
        }
    }
    Ok(())
}
