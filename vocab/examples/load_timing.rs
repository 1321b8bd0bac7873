//! Prints cold and cached load times of a vocabulary folder.
//!
//! ```text
//! cargo run --workspace --example load_timing -- <vocab-dir> [cache-dir]
//! ```
//!
//! Without arguments it uses `../shared/data/synthea-source/vocabulary` and a
//! fresh temporary cache folder.

use std::path::PathBuf;
use std::time::Instant;

use omop_vocab::{LoadOptions, Vocabulary};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/synthea-source/vocabulary")
    });
    let (cache, temporary) = match args.next() {
        Some(c) => (PathBuf::from(c), false),
        None => (
            std::env::temp_dir().join(format!("omopkit-vocab-timing-{}", std::process::id())),
            true,
        ),
    };

    let t = Instant::now();
    let cold = Vocabulary::load(&dir, LoadOptions::with_cache_dir(&cache))?;
    let cold_time = t.elapsed();
    println!(
        "first load : {:>8.1} ms (from cache: {}, {} concepts, {} cache entry {:?})",
        cold_time.as_secs_f64() * 1e3,
        cold.load_info().from_cache,
        cold.concept_count(),
        if cold.load_info().cache_entry.is_some() {
            "wrote"
        } else {
            "no"
        },
        cold.load_info().cache_entry,
    );
    drop(cold);

    let t = Instant::now();
    let warm = Vocabulary::load(&dir, LoadOptions::with_cache_dir(&cache))?;
    let warm_time = t.elapsed();
    println!(
        "second load: {:>8.1} ms (from cache: {})",
        warm_time.as_secs_f64() * 1e3,
        warm.load_info().from_cache
    );

    let t = Instant::now();
    let first = warm
        .source_concept("SNOMED", "44054006")
        .map(|c| c.concept_id);
    let index_time = t.elapsed();
    let t = Instant::now();
    let mut hits = 0usize;
    let n = 100_000;
    for i in 0..n {
        let code = if i % 2 == 0 { "44054006" } else { "15777000" };
        if let Some(c) = warm.source_concept("SNOMED", code) {
            hits += warm.maps_to(c.concept_id, None).len();
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!(
        "code index : {:>8.1} ms (first look-up {first:?}); code + maps_to: {per:.0} ns each ({hits} targets)",
        index_time.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let anc = warm.ancestors(1127433)?.len();
    println!(
        "ancestors  : {:>8.1} ms incl. reading concept_ancestor ({anc} rows)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let s2s = warm.source_to_standard()?.height();
    println!(
        "source_to_standard: {:>8.1} ms ({s2s} rows)",
        t.elapsed().as_secs_f64() * 1e3
    );
    if temporary {
        let _ = std::fs::remove_dir_all(&cache);
    }
    Ok(())
}
