//! Hash look-ups built once per run and shared by every chunk: source codes in the vocabulary,
//! and source keys in keyed tables (`ref()`, see `keymap.rs`).
//!
//! A full Athena vocabulary has millions of concepts and 'Maps to' rows. Joining each chunk of
//! source rows against those frames made polars hash the whole vocabulary again for every
//! chunk of every rule (and re-rank, deduplicate and group it first), so a run with a real
//! vocabulary spent most of its time there. A [`Lookup`] is the prepared right-hand side of
//! such a join, with a hash index over its key, built the first time a rule asks for it; each
//! chunk then only hashes its own codes.

use polars::prelude::*;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

type Hasher = foldhash::fast::FixedState;

/// Separator between the parts of a key made of several text columns. It cannot occur in
/// vocabulary ids or concept codes (it is a control character).
const KEY_SEP: &str = "\u{1f}";

/// The hasher of every look-up (fixed, so runs are reproducible).
fn hasher() -> Hasher {
    Hasher::with_seed(0x766f_6361)
}

/// A frame with one row per distinct text key, indexed by that key.
pub struct Lookup {
    /// The values looked up, one row per key (list columns for keys with several values).
    pub frame: DataFrame,
    index: Arc<KeyIndex>,
}

/// Row positions by text key.
struct KeyIndex {
    keys: StringChunked,
    table: hashbrown::HashTable<IdxSize>,
    hasher: Hasher,
}

impl KeyIndex {
    /// Indexes `keys`: the first row of each distinct non-null key.
    fn new(keys: StringChunked) -> Self {
        let hasher = hasher();
        let key = |r: IdxSize| keys.get(r as usize);
        let mut table = hashbrown::HashTable::with_capacity(keys.len());
        for (r, k) in keys.iter().enumerate() {
            let Some(k) = k else { continue };
            let h = hasher.hash_one(k);
            if table.find(h, |&s: &IdxSize| key(s) == Some(k)).is_none() {
                table.insert_unique(h, r as IdxSize, |&s| {
                    hasher.hash_one(key(s).unwrap_or_default())
                });
            }
        }
        Self {
            keys,
            table,
            hasher,
        }
    }

    fn rows(&self, probe: &StringChunked) -> IdxCa {
        probe
            .iter()
            .map(|k| {
                let k = k?;
                self.table
                    .find(self.hasher.hash_one(k), |&r| {
                        self.keys.get(r as usize) == Some(k)
                    })
                    .copied()
            })
            .collect()
    }
}

impl Lookup {
    /// Indexes `frame` by its text column `key` (null keys are never found; of rows with the
    /// same key, the first wins).
    pub fn new(frame: DataFrame, key: &str) -> PolarsResult<Self> {
        Self::sharing(frame, key, &[])
    }

    /// Like [`Lookup::new`], but reuses the index of one of `others` whose keys are the same,
    /// in the same order (the visit tables of the Synthea pack are both keyed by encounter):
    /// no second hash table is built, and rules that look the same key up in both probe once
    /// (see [`Lookup::shares_index`]).
    pub fn sharing(frame: DataFrame, key: &str, others: &[Arc<Lookup>]) -> PolarsResult<Self> {
        let keys = frame.column(key)?.str()?.rechunk().into_owned();
        for other in others {
            let theirs = &other.index.keys;
            if theirs.len() == keys.len() && theirs.iter().eq(keys.iter()) {
                return Ok(Self {
                    frame,
                    index: other.index.clone(),
                });
            }
        }
        Ok(Self {
            frame,
            index: Arc::new(KeyIndex::new(keys)),
        })
    }

    /// Whether `self` and `other` find every key at the same row.
    pub fn shares_index(&self, other: &Lookup) -> bool {
        Arc::ptr_eq(&self.index, &other.index)
    }

    /// The row of each probe key (null when the key is null or absent).
    pub fn rows(&self, probe: &StringChunked) -> IdxCa {
        self.index.rows(probe)
    }

    /// Adds to `lf` the columns `outputs` (`(column of the look-up frame, output name)`) of the
    /// row whose key equals `key` (nulls where there is none). `tmp` names a scratch column.
    pub fn apply(
        self: &Arc<Self>,
        lf: LazyFrame,
        key: Expr,
        outputs: &[(&str, &str)],
        tmp: &str,
    ) -> PolarsResult<LazyFrame> {
        apply_shared(&[(self.clone(), outputs.to_vec())], lf, key, tmp)
    }
}

/// A look-up and the columns taken from it: `(column of its frame, output name)`.
pub type Outputs<'a> = (Arc<Lookup>, Vec<(&'a str, &'a str)>);

/// [`Lookup::apply`] for several look-ups that share one index: the key is looked up once,
/// and each look-up's `outputs` are taken from its own frame.
pub fn apply_shared(
    lookups: &[Outputs<'_>],
    lf: LazyFrame,
    key: Expr,
    tmp: &str,
) -> PolarsResult<LazyFrame> {
    let Some((first, _)) = lookups.first() else {
        return Ok(lf);
    };
    if let Some((other, _)) = lookups.iter().find(|(l, _)| !l.shares_index(first)) {
        polars_bail!(InvalidOperation: "look-ups over different keys ({} and {} rows) cannot share a probe", first.frame.height(), other.frame.height());
    }
    let index = first.index.clone();
    let mut lf = lf.with_column(
        key.cast(DataType::String)
            .map(
                move |c: Column| {
                    Ok(index
                        .rows(c.str()?)
                        .with_name(c.name().clone())
                        .into_column())
                },
                |_, f: &Field| Ok(Field::new(f.name().clone(), IDX_DTYPE)),
            )
            .alias(tmp),
    );
    let mut columns = Vec::new();
    for (lookup, outputs) in lookups {
        for &(from, to) in outputs {
            let values = lookup.frame.column(from)?.clone();
            let dtype = values.dtype().clone();
            columns.push(
                col(tmp)
                    .map(
                        move |r: Column| values.take(r.idx()?),
                        move |_, f: &Field| Ok(Field::new(f.name().clone(), dtype.clone())),
                    )
                    .alias(to),
            );
        }
    }
    lf = lf.with_columns(columns).drop(cols([tmp]));
    Ok(lf)
}

/// A key expression over several text expressions, matching [`key_column`] on the build side.
pub fn key_expr(parts: Vec<Expr>) -> Expr {
    concat_str(
        parts
            .into_iter()
            .map(|p| p.cast(DataType::String))
            .collect::<Vec<_>>(),
        KEY_SEP,
        false,
    )
}

/// The build-side key column named `name` over the text columns `parts`.
pub fn key_column(parts: &[&str], name: &str) -> Expr {
    key_expr(parts.iter().map(|p| col(*p)).collect()).alias(name)
}

/// Look-ups built so far in a run, by a name that says what they hold.
#[derive(Default)]
pub struct Lookups {
    built: Mutex<HashMap<String, Arc<Lookup>>>,
}

impl Lookups {
    /// The look-up called `name`, built by `build` (a frame and its key column) the first time.
    pub fn get(
        &self,
        name: &str,
        build: impl FnOnce() -> PolarsResult<(DataFrame, &'static str)>,
    ) -> PolarsResult<Arc<Lookup>> {
        // The lock is not held while building: the build runs polars on rayon, whose
        // waiting threads may pick up another chunk that asks for the same look-up, and a
        // lock held across that would deadlock. Two chunks asking at once may both build it;
        // the first one stored is kept.
        let lock = || {
            self.built
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(l) = lock().get(name) {
            return Ok(l.clone());
        }
        let (frame, key) = build()?;
        let lookup = Arc::new(Lookup::new(frame, key)?);
        Ok(lock().entry(name.to_string()).or_insert(lookup).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_part_keys_find_their_rows_and_nulls_find_nothing() {
        let frame = df!(
            "vocabulary_id" => ["SNOMED", "LOINC", "SNOMED"],
            "concept_code" => ["1", "1", "2"],
            "concept_id" => [10i32, 20, 30],
        )
        .unwrap()
        .lazy()
        .with_column(key_column(&["vocabulary_id", "concept_code"], "k"))
        .collect()
        .unwrap();
        let lookup = Arc::new(Lookup::new(frame, "k").unwrap());
        let chunk = df!(
            "v" => [Some("LOINC"), Some("SNOMED"), None, Some("SNOMED")],
            "c" => [Some("1"), Some("3"), Some("1"), Some("2")],
        )
        .unwrap();
        let out = lookup
            .apply(
                chunk.lazy(),
                key_expr(vec![col("v"), col("c")]),
                &[("concept_id", "id")],
                "__tmp",
            )
            .unwrap()
            .collect()
            .unwrap();
        let ids: Vec<Option<i32>> = out.column("id").unwrap().i32().unwrap().iter().collect();
        assert_eq!(ids, vec![Some(20), None, None, Some(30)]);
        assert!(out.column("__tmp").is_err());
    }

    #[test]
    fn lookups_with_the_same_keys_share_one_index_and_one_probe() {
        let a = Arc::new(
            Lookup::new(
                df!("key" => ["x", "y", "z"], "id" => [1i64, 2, 3]).unwrap(),
                "key",
            )
            .unwrap(),
        );
        let same = Arc::new(
            Lookup::sharing(
                df!("key" => ["x", "y", "z"], "id" => [7i64, 8, 9]).unwrap(),
                "key",
                std::slice::from_ref(&a),
            )
            .unwrap(),
        );
        // Same keys in another order: a table of its own.
        let other = Lookup::sharing(
            df!("key" => ["y", "x", "z"], "id" => [1i64, 2, 3]).unwrap(),
            "key",
            std::slice::from_ref(&a),
        )
        .unwrap();
        assert!(same.shares_index(&a));
        assert!(!other.shares_index(&a));
        let probe = StringChunked::new("k".into(), [Some("y"), Some("q")]);
        let rows: Vec<Option<IdxSize>> = other.rows(&probe).iter().collect();
        assert_eq!(rows, vec![Some(0), None]);

        let chunk = df!("k" => [Some("z"), None, Some("x"), Some("w")]).unwrap();
        let out = apply_shared(
            &[
                (a.clone(), vec![("id", "a")]),
                (same.clone(), vec![("id", "b")]),
            ],
            chunk.clone().lazy(),
            col("k"),
            "__tmp",
        )
        .unwrap()
        .collect()
        .unwrap();
        let got = |c: &str| -> Vec<Option<i64>> {
            out.column(c).unwrap().i64().unwrap().iter().collect()
        };
        assert_eq!(got("a"), vec![Some(3), None, Some(1), None]);
        assert_eq!(got("b"), vec![Some(9), None, Some(7), None]);
        let mixed = apply_shared(
            &[(a, vec![("id", "a")]), (Arc::new(other), vec![("id", "b")])],
            chunk.lazy(),
            col("k"),
            "__tmp",
        );
        assert!(mixed.is_err());
    }

    #[test]
    fn a_lookup_is_built_once() {
        let lookups = Lookups::default();
        let mut builds = 0;
        for _ in 0..3 {
            lookups
                .get("codes", || {
                    builds += 1;
                    Ok((df!("k" => ["a"]).unwrap(), "k"))
                })
                .unwrap();
        }
        assert_eq!(builds, 1);
    }
}
