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

/// Indexes a key map frame by its `key` column, sharing the index of one of `others` that
/// has the same keys in the same order.
pub fn key_map(frame: DataFrame, others: &[std::sync::Arc<KeyMap>]) -> PolarsResult<KeyMap> {
    KeyMap::sharing(frame, "key", others)
}

/// The rows of a keyed table that become CDM rows, in id order: of the rows sharing a key,
/// the first in `order` (positions into `keys`); sorted by key. Null keys are left out.
///
/// Done here rather than as a polars sort because source keys are often long (36-character
/// UUIDs): sorting such a column with polars took over a second per million keys. Each row
/// becomes `(first 8 bytes of its key, rank in order, row)`; sorting those compares the
/// integers first and looks at the key text only when two keys share their first 8 bytes,
/// and after the sort the rows of one key are adjacent, best rank first.
pub fn first_by_key(keys: &StringChunked, order: &IdxCa) -> IdxCa {
    use rayon::prelude::*;
    let keys: Vec<Option<&str>> = keys.iter().collect();
    let text = |r: IdxSize| -> &str { keys[r as usize].unwrap_or_default() };
    let mut entries: Vec<(u64, IdxSize, IdxSize)> = order
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(rank, r)| {
            keys.get(r as usize)
                .copied()
                .flatten()
                .map(|k| (prefix(k), rank as IdxSize, r))
        })
        .collect();
    entries.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| text(a.2).cmp(text(b.2)))
            .then(a.1.cmp(&b.1))
    });
    let mut kept: Vec<IdxSize> = Vec::with_capacity(entries.len());
    let mut last: Option<(u64, IdxSize)> = None;
    for &(p, _, r) in &entries {
        if let Some((lp, lr)) = last
            && lp == p
            && text(lr) == text(r)
        {
            continue;
        }
        kept.push(r);
        last = Some((p, r));
    }
    IdxCa::from_vec("position".into(), kept)
}

/// The first 8 bytes of `k` as a big-endian integer (zero-padded), so that integer order
/// agrees with byte order wherever the prefixes differ.
fn prefix(k: &str) -> u64 {
    let b = k.as_bytes();
    let mut p = [0u8; 8];
    let n = b.len().min(8);
    p[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(p)
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
        let map = key_map(frame, &[]).unwrap();
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

    #[test]
    fn keys_sharing_a_prefix_sort_by_their_whole_text() {
        // Keys alike in their first 8 bytes, keys shorter than 8 bytes and a key that is a
        // prefix of another all come out in byte order, one row each.
        let texts = [
            "abcdefgh2",
            "abcdefgh10",
            "abc",
            "abc\u{0}",
            "abcdefgh",
            "ab",
            "abcdefgh2",
            "b",
            "abcdefgh10",
        ];
        let keys = StringChunked::new("k".into(), texts.map(Some));
        let order = IdxCa::from_vec("o".into(), (0..texts.len() as IdxSize).rev().collect());
        let kept: Vec<IdxSize> = first_by_key(&keys, &order).iter().flatten().collect();
        let got: Vec<&str> = kept.iter().map(|&r| texts[r as usize]).collect();
        let mut want: Vec<&str> = texts.to_vec();
        want.sort();
        want.dedup();
        assert_eq!(got, want);
        // Of the repeated keys the row that comes first in `order` (the later row) wins.
        assert!(kept.contains(&6) && !kept.contains(&0));
        assert!(kept.contains(&8) && !kept.contains(&1));
    }
}
