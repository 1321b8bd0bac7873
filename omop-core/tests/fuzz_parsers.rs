//! Seeded fuzzing of the pack parsers: random and mutated expression text and pack YAML
//! must parse or fail with an error, and whatever parses must lint and compile without a
//! panic. A failure prints the seed and the input, so it reproduces.

use omop_core::expr;
use omop_core::mapping;
use std::collections::BTreeSet;
use std::path::Path;

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

const PIECES: &[&str] = &[
    "date(",
    "datetime(",
    "number(",
    "map(",
    "ref(",
    "if(",
    "coalesce(",
    "concat(",
    "substr(",
    "replace(",
    "standard_concept_id(",
    "year(",
    "try_int(",
    ")",
    "(",
    ",",
    " ",
    "'",
    "''",
    "`",
    "{",
    "}",
    ":",
    "[",
    "]",
    "+",
    "-",
    "*",
    "/",
    "==",
    "=",
    "!=",
    "<",
    ">=",
    " and ",
    " or ",
    " not ",
    " is ",
    " null",
    " in ",
    "START",
    "CODE",
    "x",
    "0",
    "-1",
    "9999999999999999999999",
    "1.5e3",
    ".5",
    "'M'",
    "'é'",
    "\u{0}",
    "true",
];

#[test]
fn random_expressions_never_panic() {
    let columns: BTreeSet<String> = ["START", "CODE", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for seed in 0..4000u64 {
        let mut rng = Lcg(seed);
        let n = 1 + rng.next(24);
        let text: String = (0..n).map(|_| PIECES[rng.next(PIECES.len())]).collect();
        let result = std::panic::catch_unwind(|| {
            if let Ok(ast) = expr::parse(&text) {
                let mut comp = expr::Compiler::new(&columns, "__t");
                let _ = comp.compile(&ast, &text);
            }
        });
        assert!(result.is_ok(), "seed {seed}: panic on expression {text:?}");
    }
}

#[test]
fn mutated_packs_never_panic() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/synthea/pack.yaml"),
    )
    .expect("pack");
    let bytes = base.as_bytes();
    for seed in 0..300u64 {
        let mut rng = Lcg(seed);
        let mut text = bytes.to_vec();
        for _ in 0..1 + rng.next(6) {
            if text.is_empty() {
                break;
            }
            let at = rng.next(text.len());
            match rng.next(4) {
                0 => {
                    text.remove(at);
                }
                1 => {
                    const NOISE: &[u8] = b"x:{[]}'\"-#&*!|> \n\t0";
                    text.insert(at, NOISE[rng.next(NOISE.len())]);
                }
                2 => text.truncate(at),
                _ => {
                    let len = rng.next(80).min(text.len() - at);
                    let chunk: Vec<u8> = text[at..at + len].to_vec();
                    let to = rng.next(text.len());
                    text.splice(to..to, chunk);
                }
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let result = std::panic::catch_unwind(|| {
            if let Ok(pack) = mapping::parse_pack(&text, Path::new("pack.yaml")) {
                let _ = mapping::lint(&pack);
            }
        });
        assert!(result.is_ok(), "seed {seed}: panic on a mutated pack");
    }
}
