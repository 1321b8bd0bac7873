//! Look-ups of source keys in a keyed table, for `ref(table, key[, column])`.
//!
//! A keyed table (person, visit_occurrence, ...) keeps a key map: its source keys with the
//! CDM id and the columns other rules read. Every chunk of every rule that refers to it looks
//! keys up in the same map, so the hash table is built once per run instead of once per join.

use super::lookup;
use polars::prelude::*;

/// A keyed table's key map: `key`, `id` and the columns read by `ref()`, indexed by `key`
/// (the same structure as the vocabulary look-ups).
pub type KeyMap = lookup::Lookup;

/// Indexes a key map frame by its `key` column.
pub fn key_map(frame: DataFrame) -> PolarsResult<KeyMap> {
    KeyMap::new(frame, "key")
}

/// The rows of a keyed table that become CDM rows, in id order: of the rows sharing a key,
/// the first in `order` (positions into `keys`); sorted by key. Null keys are left out.
///
/// Done here rather than as a polars sort because source keys are often long (36-character
/// UUIDs) and sorting such a column with polars took over a second per million keys; the
/// distinct keys are sorted as byte slices in parallel instead.
pub fn first_by_key(keys: &StringChunked, order: &IdxCa) -> IdxCa {
    let keys: Vec<Option<&str>> = keys.iter().collect();
    let key = |r: IdxSize| -> Option<&str> { keys.get(r as usize).copied().flatten() };
    let mut kept: Vec<IdxSize> = Vec::with_capacity(keys.len());
    drop(lookup::first_rows(
        &lookup::hasher(),
        keys.len(),
        order.iter().flatten(),
        key,
        |r| kept.push(r),
    ));
    {
        use rayon::prelude::*;
        kept.par_sort_unstable_by(|&a, &b| key(a).cmp(&key(b)));
    }
    IdxCa::from_vec("position".into(), kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_rows() {
        let frame = df!(
            "key" => ["a", "bb", "c"],
            "id" => [10i64, 20, 30],
        )
        .unwrap();
        let map = key_map(frame).unwrap();
        let probe = StringChunked::new("k".into(), [Some("c"), None, Some("zz"), Some("a")]);
        let rows: Vec<Option<IdxSize>> = map.rows(&probe).iter().collect();
        assert_eq!(rows, vec![Some(2), None, None, Some(0)]);
    }

    #[test]
    fn first_row_of_each_key_in_key_order() {
        let keys = StringChunked::new(
            "k".into(),
            [Some("b"), Some("a"), None, Some("b"), Some("c"), Some("a")],
        );
        // Rows 3 and 5 come before 0 and 1 in the tie-break order, so they win their keys.
        let order = IdxCa::from_vec("o".into(), vec![5, 3, 0, 1, 2, 4]);
        let kept: Vec<Option<IdxSize>> = first_by_key(&keys, &order).iter().collect();
        assert_eq!(kept, vec![Some(5), Some(3), Some(4)]);
    }
}
