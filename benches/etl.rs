//! Criterion benchmark of the ETL engine on OHDSI's 27-patient Synthea sample, and of the
//! expression language. The end-to-end throughput at 10,000 and 100,000 patients, next to
//! DuckDB, is measured by `benches/etl_scale.py`.

use criterion::{Criterion, criterion_group, criterion_main};
use omop_core::engine::{self, EtlOptions};
use std::path::PathBuf;

fn etl(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("../shared/data/synthea-source");
    let tmp = std::env::temp_dir().join(format!("omopkit-bench-{}", std::process::id()));
    if src.exists() {
        let opts = EtlOptions {
            pack: root.join("mappings/synthea"),
            source: src.join("csv"),
            vocab: src.join("vocabulary"),
            vocab_cache: Some(tmp.join("vocab-cache")),
            out: tmp.join("cdm"),
            chunk_rows: None,
        };
        c.bench_function("etl synthea 27 patients", |b| {
            b.iter(|| engine::run(&opts).expect("run"))
        });
    } else {
        eprintln!("skipped the ETL benchmark: ../shared not found");
    }
    c.bench_function("parse and compile 100 expressions", |b| {
        let columns = ["START", "STOP", "CODE", "GENDER"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        b.iter(|| {
            let mut comp = omop_core::expr::Compiler::new(&columns, "__b");
            for _ in 0..25 {
                for text in [
                    "date(coalesce(STOP, START))",
                    "map(upper(GENDER), {'M': 8507, 'F': 8532}, 0)",
                    "days_between(date(START), date(STOP))",
                    "if(CODE in ['1', '2'], 1, 0)",
                ] {
                    let ast = omop_core::expr::parse(text).expect("parses");
                    let _ = std::hint::black_box(comp.compile(&ast, text).expect("compiles"));
                }
            }
        })
    });
    let _ = std::fs::remove_dir_all(&tmp);
}

criterion_group!(benches, etl);
criterion_main!(benches);
