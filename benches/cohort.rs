//! Cohort engine benchmark: loads a CDM (or an index), saves and reloads the
//! index, then evaluates every reference cohort of
//! `../shared/cohorts/expected-gibleed.csv` and prints one CSV line per cohort
//! (`cohort,rows,subjects,ms`) followed by a summary: load and index build
//! time, index size on disk, median / p95 / max cohort time and peak RSS.
//!
//! `cargo bench --workspace --bench cohort` uses GiBleed; set
//! `OMOPKIT_BENCH_CDM=<dir>` for another CDM (for example GiBleed × 372 made
//! with `../shared/tools/scale_cdm.py`) and `OMOPKIT_BENCH_INDEX=<dir>` to keep
//! the index there.

use omop_cohort::{Cdm, CohortExpression, evaluate, store};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Peak resident set size in MiB (Linux), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let shared = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
    if !shared.is_dir() {
        eprintln!("skipped: ../shared not found");
        return;
    }
    let cdm_dir = std::env::var_os("OMOPKIT_BENCH_CDM")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("data/eunomia-gibleed"));
    let tmp = tempfile::tempdir().expect("temporary folder");
    let index_dir = std::env::var_os("OMOPKIT_BENCH_INDEX")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("index"));

    let t = Instant::now();
    let cdm = Cdm::load(&cdm_dir).unwrap_or_else(|e| panic!("{e}"));
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store::save(&cdm, &index_dir).unwrap_or_else(|e| panic!("{e}"));
    let save_s = t.elapsed().as_secs_f64();
    drop(cdm);
    let t = Instant::now();
    let cdm = store::load(&index_dir).unwrap_or_else(|e| panic!("{e}"));
    let index_load_s = t.elapsed().as_secs_f64();

    let expected = std::fs::read_to_string(shared.join("cohorts/expected-gibleed.csv"))
        .expect("expected-gibleed.csv");
    let mut times = Vec::new();
    println!("cohort,rows,subjects,ms");
    for line in expected.lines().skip(1) {
        let id = line.split(',').next().unwrap_or_default();
        let mut path = shared.join(format!("cohorts/phenotype-library/{id}.json"));
        if !path.exists() {
            path = shared.join(format!("cohorts/cohort-generator/{id}.json"));
        }
        let def = CohortExpression::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        let result = evaluate(&cdm, &def).unwrap_or_else(|e| panic!("{id}: {e}"));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        println!(
            "{id},{},{},{ms:.2}",
            result.rows.len(),
            result.subject_count()
        );
    }
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!("# persons {}", cdm.person_count());
    println!(
        "# parquet load + sort + bitmaps {load_s:.2} s; index save {save_s:.2} s; index load {index_load_s:.2} s"
    );
    println!(
        "# index size {:.1} MiB",
        dir_size(&index_dir) as f64 / (1024.0 * 1024.0)
    );
    println!(
        "# cohort ms: median {:.2}, p95 {:.2}, max {:.2}",
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    if let Some(rss) = peak_rss_mib() {
        println!("# peak RSS {rss:.0} MiB");
    }
}
