//! Concept set resolution, with Circe's semantics.
//!
//! - A listed concept counts only if it exists in `concept` (valid or not).
//! - `includeDescendants` adds every `concept_ancestor` descendant that exists
//!   in `concept` with a null `invalid_reason` (the concept itself comes in
//!   through its own ancestor row).
//! - `includeMapped` adds the `concept_id_1` of valid `Maps to` relationships
//!   pointing at the listed concept (and at its descendants when those are
//!   included too).
//! - Excluded items are resolved the same way and removed.
//!
//! Unknown concept ids simply resolve to nothing.

use crate::cdm::Vocabulary;
use crate::model::{ConceptSetExpression, ConceptSetItem};
use std::collections::BTreeSet;

#[derive(Default)]
struct Parts {
    concepts: Vec<i64>,
    descendants: Vec<i64>,
    mapped: Vec<i64>,
    mapped_descendants: Vec<i64>,
}

impl Parts {
    fn add(&mut self, id: i64, item: &ConceptSetItem) {
        self.concepts.push(id);
        if item.include_descendants {
            self.descendants.push(id);
        }
        if item.include_mapped {
            self.mapped.push(id);
            if item.include_descendants {
                self.mapped_descendants.push(id);
            }
        }
    }
}

fn sub_query(voc: &Vocabulary, concepts: &[i64], descendants: &[i64], out: &mut BTreeSet<i64>) {
    for c in concepts {
        if voc.concept_valid.contains_key(c) {
            out.insert(*c);
        }
    }
    for a in descendants {
        if let Some(ds) = voc.descendants.get(a) {
            for d in ds {
                if voc.concept_valid.get(d) == Some(&true) {
                    out.insert(*d);
                }
            }
        }
    }
}

fn resolve_parts(voc: &Vocabulary, p: &Parts) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    if p.concepts.is_empty() {
        return out;
    }
    sub_query(voc, &p.concepts, &p.descendants, &mut out);
    if !p.mapped.is_empty() || !p.mapped_descendants.is_empty() {
        let mut targets = BTreeSet::new();
        sub_query(voc, &p.mapped, &p.mapped_descendants, &mut targets);
        for t in targets {
            if let Some(sources) = voc.mapped_from.get(&t) {
                out.extend(sources.iter().copied());
            }
        }
    }
    out
}

/// Resolves a concept set expression to its sorted concept ids.
pub fn resolve(voc: &Vocabulary, expression: Option<&ConceptSetExpression>) -> Vec<i64> {
    let mut include = Parts::default();
    let mut exclude = Parts::default();
    let items = expression.and_then(|e| e.items.as_deref()).unwrap_or(&[]);
    for item in items {
        let Some(id) = item.concept.as_ref().and_then(|c| c.concept_id) else {
            continue;
        };
        if item.is_excluded {
            exclude.add(id, item);
        } else {
            include.add(id, item);
        }
    }
    let inc = resolve_parts(voc, &include);
    if exclude.concepts.is_empty() {
        return inc.into_iter().collect();
    }
    let exc = resolve_parts(voc, &exclude);
    inc.difference(&exc).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Concept;

    fn item(id: i64, desc: bool, mapped: bool, excluded: bool) -> ConceptSetItem {
        ConceptSetItem {
            concept: Some(Concept {
                concept_id: Some(id),
                concept_name: None,
            }),
            is_excluded: excluded,
            include_descendants: desc,
            include_mapped: mapped,
        }
    }

    fn vocab() -> Vocabulary {
        let mut v = Vocabulary::default();
        for (c, valid) in [(1, true), (2, true), (3, false), (4, true), (10, true)] {
            v.concept_valid.insert(c, valid);
        }
        v.descendants.insert(1, vec![1, 2, 3, 4, 99]);
        v.mapped_from.insert(2, vec![500]);
        v
    }

    #[test]
    fn descendants_need_a_valid_concept_row() {
        let e = ConceptSetExpression {
            items: Some(vec![item(1, true, false, false)]),
        };
        assert_eq!(resolve(&vocab(), Some(&e)), vec![1, 2, 4]);
    }

    #[test]
    fn exclusion_and_mapping() {
        let e = ConceptSetExpression {
            items: Some(vec![
                item(1, true, true, false),
                item(4, false, false, true),
            ]),
        };
        assert_eq!(resolve(&vocab(), Some(&e)), vec![1, 2, 500]);
    }

    #[test]
    fn unknown_concepts_resolve_to_nothing() {
        let e = ConceptSetExpression {
            items: Some(vec![item(12345, true, true, false)]),
        };
        assert!(resolve(&vocab(), Some(&e)).is_empty());
        assert!(resolve(&vocab(), None).is_empty());
    }
}
