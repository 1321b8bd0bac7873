//! The in-memory concept table and its indexes.

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Result, VocabError};
use crate::reader::days_to_date;

/// A concept borrowed from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConceptRef<'a> {
    /// `concept_id`.
    pub concept_id: i32,
    /// `concept_name`.
    pub concept_name: &'a str,
    /// `domain_id`.
    pub domain_id: &'a str,
    /// `vocabulary_id`.
    pub vocabulary_id: &'a str,
    /// `concept_class_id`.
    pub concept_class_id: &'a str,
    /// `standard_concept`: `Some("S")`, `Some("C")` or `None`.
    pub standard_concept: Option<&'a str>,
    /// `concept_code`.
    pub concept_code: &'a str,
    /// `valid_start_date`.
    pub valid_start_date: Option<NaiveDate>,
    /// `valid_end_date`.
    pub valid_end_date: Option<NaiveDate>,
    /// `invalid_reason`: `None` for a valid concept, `Some("D")` or `Some("U")`.
    pub invalid_reason: Option<&'a str>,
}

impl ConceptRef<'_> {
    /// True when `standard_concept` is `S`.
    pub fn is_standard(&self) -> bool {
        self.standard_concept == Some("S")
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Concept {
        Concept {
            concept_id: self.concept_id,
            concept_name: self.concept_name.to_string(),
            domain_id: self.domain_id.to_string(),
            vocabulary_id: self.vocabulary_id.to_string(),
            concept_class_id: self.concept_class_id.to_string(),
            standard_concept: self.standard_concept.map(str::to_string),
            concept_code: self.concept_code.to_string(),
            valid_start_date: self.valid_start_date,
            valid_end_date: self.valid_end_date,
            invalid_reason: self.invalid_reason.map(str::to_string),
        }
    }
}

/// An owned concept row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Concept {
    /// `concept_id`.
    pub concept_id: i32,
    /// `concept_name`.
    pub concept_name: String,
    /// `domain_id`.
    pub domain_id: String,
    /// `vocabulary_id`.
    pub vocabulary_id: String,
    /// `concept_class_id`.
    pub concept_class_id: String,
    /// `standard_concept`.
    pub standard_concept: Option<String>,
    /// `concept_code`.
    pub concept_code: String,
    /// `valid_start_date`.
    pub valid_start_date: Option<NaiveDate>,
    /// `valid_end_date`.
    pub valid_end_date: Option<NaiveDate>,
    /// `invalid_reason`.
    pub invalid_reason: Option<String>,
}

/// The concept frame (sorted by `concept_id`, one chunk) with typed column
/// handles for row access without copying.
pub(crate) struct ConceptTable {
    pub df: DataFrame,
    ids: Vec<i32>,
    name: StringChunked,
    domain: StringChunked,
    vocabulary: StringChunked,
    class: StringChunked,
    standard: StringChunked,
    code: StringChunked,
    start: Int32Chunked,
    end: Int32Chunked,
    invalid: StringChunked,
}

fn strs(df: &DataFrame, name: &str) -> Result<StringChunked> {
    df.column(name)
        .and_then(|c| c.str().cloned())
        .map_err(|e| VocabError::polars(format!("concept column {name}"), e))
}

fn dates(df: &DataFrame, name: &str) -> Result<Int32Chunked> {
    df.column(name)
        .and_then(|c| c.date().map(|d| d.physical().clone()))
        .map_err(|e| VocabError::polars(format!("concept column {name}"), e))
}

impl ConceptTable {
    /// Wraps a frame; sorts it by `concept_id` unless it already is.
    pub(crate) fn new(mut df: DataFrame) -> Result<Self> {
        let ids_ca = df
            .column("concept_id")
            .and_then(|c| c.i32().cloned())
            .map_err(|e| VocabError::polars("concept column concept_id", e))?;
        let sorted = ids_ca
            .iter()
            .zip(ids_ca.iter().skip(1))
            .all(|(a, b)| a <= b);
        if !sorted {
            df.sort_in_place(["concept_id"], SortMultipleOptions::default())
                .map_err(|e| VocabError::polars("sorting concepts", e))?;
        }
        df.rechunk_mut();
        let ids: Vec<i32> = df
            .column("concept_id")
            .and_then(|c| c.i32().cloned())
            .map_err(|e| VocabError::polars("concept column concept_id", e))?
            .iter()
            .map(|v| v.unwrap_or(i32::MIN))
            .collect();
        Ok(ConceptTable {
            name: strs(&df, "concept_name")?,
            domain: strs(&df, "domain_id")?,
            vocabulary: strs(&df, "vocabulary_id")?,
            class: strs(&df, "concept_class_id")?,
            standard: strs(&df, "standard_concept")?,
            code: strs(&df, "concept_code")?,
            start: dates(&df, "valid_start_date")?,
            end: dates(&df, "valid_end_date")?,
            invalid: strs(&df, "invalid_reason")?,
            ids,
            df,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Row of a concept id.
    pub(crate) fn row_of(&self, concept_id: i32) -> Option<usize> {
        self.ids.binary_search(&concept_id).ok()
    }

    pub(crate) fn vocabulary_at(&self, row: usize) -> &str {
        self.vocabulary.get(row).unwrap_or("")
    }

    pub(crate) fn code_at(&self, row: usize) -> &str {
        self.code.get(row).unwrap_or("")
    }

    pub(crate) fn domain_at(&self, row: usize) -> &str {
        self.domain.get(row).unwrap_or("")
    }

    pub(crate) fn standard_at(&self, row: usize) -> Option<&str> {
        self.standard.get(row)
    }

    pub(crate) fn get(&self, row: usize) -> Option<ConceptRef<'_>> {
        let concept_id = *self.ids.get(row)?;
        Some(ConceptRef {
            concept_id,
            concept_name: self.name.get(row).unwrap_or(""),
            domain_id: self.domain.get(row).unwrap_or(""),
            vocabulary_id: self.vocabulary.get(row).unwrap_or(""),
            concept_class_id: self.class.get(row).unwrap_or(""),
            standard_concept: self.standard.get(row),
            concept_code: self.code.get(row).unwrap_or(""),
            valid_start_date: self.start.get(row).and_then(days_to_date),
            valid_end_date: self.end.get(row).and_then(days_to_date),
            invalid_reason: self.invalid.get(row),
        })
    }

    /// Row positions sorted by (vocabulary_id, concept_code): 4 bytes a concept.
    pub(crate) fn build_code_index(&self) -> Vec<u32> {
        let mut rows: Vec<u32> = (0..self.len() as u32).collect();
        rows.par_sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            (self.vocabulary_at(a), self.code_at(a))
                .cmp(&(self.vocabulary_at(b), self.code_at(b)))
                // Among duplicates, a valid concept first, then the lowest id.
                .then_with(|| {
                    self.invalid
                        .get(a)
                        .is_some()
                        .cmp(&self.invalid.get(b).is_some())
                })
                .then_with(|| self.ids[a].cmp(&self.ids[b]))
        });
        rows
    }

    /// Looks a (vocabulary_id, concept_code) pair up in a code index.
    pub(crate) fn find_code(
        &self,
        index: &[u32],
        vocabulary_id: &str,
        code: &str,
    ) -> Option<usize> {
        let key = (vocabulary_id, code);
        let pos = index.partition_point(|&r| {
            let r = r as usize;
            (self.vocabulary_at(r), self.code_at(r)) < key
        });
        let row = *index.get(pos)? as usize;
        ((self.vocabulary_at(row), self.code_at(row)) == key).then_some(row)
    }
}
