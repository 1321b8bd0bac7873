//! The vocabulary tables the store knows, their columns and file names.

use std::path::{Path, PathBuf};

use crate::error::{Result, VocabError};
use crate::reader::{ColSpec, ColType::*};

/// A vocabulary table of the OMOP CDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `concept` (required).
    Concept,
    /// `concept_relationship`.
    ConceptRelationship,
    /// `concept_ancestor`.
    ConceptAncestor,
    /// `vocabulary`.
    Vocabulary,
    /// `domain`.
    Domain,
    /// `concept_class`.
    ConceptClass,
    /// `relationship`.
    Relationship,
    /// `concept_synonym`.
    ConceptSynonym,
    /// `drug_strength`.
    DrugStrength,
}

impl Table {
    /// All tables, in load order.
    pub const ALL: [Table; 9] = [
        Table::Concept,
        Table::ConceptRelationship,
        Table::ConceptAncestor,
        Table::Vocabulary,
        Table::Domain,
        Table::ConceptClass,
        Table::Relationship,
        Table::ConceptSynonym,
        Table::DrugStrength,
    ];

    /// The CDM table name (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Table::Concept => "concept",
            Table::ConceptRelationship => "concept_relationship",
            Table::ConceptAncestor => "concept_ancestor",
            Table::Vocabulary => "vocabulary",
            Table::Domain => "domain",
            Table::ConceptClass => "concept_class",
            Table::Relationship => "relationship",
            Table::ConceptSynonym => "concept_synonym",
            Table::DrugStrength => "drug_strength",
        }
    }

    pub(crate) fn columns(self) -> &'static [ColSpec] {
        match self {
            Table::Concept => CONCEPT,
            Table::ConceptRelationship => CONCEPT_RELATIONSHIP,
            Table::ConceptAncestor => CONCEPT_ANCESTOR,
            Table::Vocabulary => VOCABULARY,
            Table::Domain => DOMAIN,
            Table::ConceptClass => CONCEPT_CLASS,
            Table::Relationship => RELATIONSHIP,
            Table::ConceptSynonym => CONCEPT_SYNONYM,
            Table::DrugStrength => DRUG_STRENGTH,
        }
    }

    /// Finds this table's file in `dir`: `CONCEPT.csv` (Athena), `concept.csv`,
    /// `concept_seed.csv`, or the same with `.tsv`/`.txt`, matched without
    /// regard to case.
    pub(crate) fn find_file(self, dir: &Path, entries: &[PathBuf]) -> Option<PathBuf> {
        let stem = self.name();
        let candidates = [
            format!("{stem}.csv"),
            format!("{stem}_seed.csv"),
            format!("{stem}.tsv"),
            format!("{stem}.txt"),
        ];
        for want in &candidates {
            if let Some(found) = entries.iter().find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(want))
            }) {
                return Some(dir.join(found.file_name().unwrap_or_default()));
            }
        }
        None
    }
}

/// Lists the regular files of a folder, sorted by name.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| VocabError::io(dir, "cannot list", e))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| VocabError::io(dir, "cannot list", e))?;
        let path = entry.path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) const CONCEPT: &[ColSpec] = &[
    ColSpec::key("concept_id", Int),
    ColSpec::col("concept_name", Str),
    ColSpec::key("domain_id", Str),
    ColSpec::key("vocabulary_id", Str),
    ColSpec::col("concept_class_id", Str),
    ColSpec::col("standard_concept", Str),
    ColSpec::col("concept_code", Str),
    ColSpec::col("valid_start_date", Date),
    ColSpec::col("valid_end_date", Date),
    ColSpec::col("invalid_reason", Str),
];

pub(crate) const CONCEPT_RELATIONSHIP: &[ColSpec] = &[
    ColSpec::key("concept_id_1", Int),
    ColSpec::key("concept_id_2", Int),
    ColSpec::key("relationship_id", Str),
    ColSpec::col("valid_start_date", Date),
    ColSpec::col("valid_end_date", Date),
    ColSpec::col("invalid_reason", Str),
];

pub(crate) const CONCEPT_ANCESTOR: &[ColSpec] = &[
    ColSpec::key("ancestor_concept_id", Int),
    ColSpec::key("descendant_concept_id", Int),
    ColSpec::col("min_levels_of_separation", Int),
    ColSpec::col("max_levels_of_separation", Int),
];

pub(crate) const VOCABULARY: &[ColSpec] = &[
    ColSpec::key("vocabulary_id", Str),
    ColSpec::col("vocabulary_name", Str),
    ColSpec::opt("vocabulary_reference", Str),
    ColSpec::col("vocabulary_version", Str),
    ColSpec::opt("vocabulary_concept_id", Int),
];

pub(crate) const DOMAIN: &[ColSpec] = &[
    ColSpec::key("domain_id", Str),
    ColSpec::col("domain_name", Str),
    ColSpec::opt("domain_concept_id", Int),
];

pub(crate) const CONCEPT_CLASS: &[ColSpec] = &[
    ColSpec::key("concept_class_id", Str),
    ColSpec::col("concept_class_name", Str),
    ColSpec::opt("concept_class_concept_id", Int),
];

pub(crate) const RELATIONSHIP: &[ColSpec] = &[
    ColSpec::key("relationship_id", Str),
    ColSpec::col("relationship_name", Str),
    ColSpec::col("is_hierarchical", Str),
    ColSpec::col("defines_ancestry", Str),
    ColSpec::col("reverse_relationship_id", Str),
    ColSpec::opt("relationship_concept_id", Int),
];

pub(crate) const CONCEPT_SYNONYM: &[ColSpec] = &[
    ColSpec::key("concept_id", Int),
    ColSpec::col("concept_synonym_name", Str),
    ColSpec::col("language_concept_id", Int),
];

pub(crate) const DRUG_STRENGTH: &[ColSpec] = &[
    ColSpec::key("drug_concept_id", Int),
    ColSpec::key("ingredient_concept_id", Int),
    ColSpec::col("amount_value", Float),
    ColSpec::col("amount_unit_concept_id", Int),
    ColSpec::col("numerator_value", Float),
    ColSpec::col("numerator_unit_concept_id", Int),
    ColSpec::col("denominator_value", Float),
    ColSpec::col("denominator_unit_concept_id", Int),
    ColSpec::col("box_size", Int),
    ColSpec::col("valid_start_date", Date),
    ColSpec::col("valid_end_date", Date),
    ColSpec::col("invalid_reason", Str),
];
