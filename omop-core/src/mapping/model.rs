//! The typed model of a mapping pack, as read from its YAML files.
//!
//! The same types generate the pack JSON Schema (`mappings/mapping-pack.schema.json`)
//! through `schemars`, so the schema and the parser cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole mapping pack: where the source tables are, and what each CDM table is made of.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// Short machine name of the pack, e.g. `synthea`.
    pub name: String,
    /// What the pack converts, for people reading it.
    #[serde(default)]
    pub description: String,
    /// The CDM version the pack writes. Only `5.4` is written today.
    #[serde(default = "default_cdm_version")]
    pub cdm_version: String,
    /// Source tables by name.
    pub sources: BTreeMap<String, Source>,
    /// Rules that produce CDM rows. Each rule reads one source table.
    pub rules: Vec<Rule>,
    /// Observation periods derived from the CDM rows written by the rules.
    #[serde(default)]
    pub observation_period: Option<ObservationPeriod>,
    /// Era tables (condition_era, drug_era) built from the written events.
    #[serde(default)]
    pub eras: Option<Eras>,
    /// The `cdm_source` row. The vocabulary version is filled in from the vocabulary.
    #[serde(default)]
    pub cdm_source: Option<CdmSourceInfo>,
    /// Mappings and local concepts added to the vocabulary for this pack.
    #[serde(default)]
    pub vocabulary: VocabularyExtras,
}

/// Mappings and local concepts that a pack brings along, with paths relative to the pack folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VocabularyExtras {
    /// `source_to_concept_map` CSV files.
    #[serde(default)]
    pub source_to_concept_map: Vec<String>,
    /// Usagi exports; only APPROVED rows are used.
    #[serde(default)]
    pub usagi: Vec<UsagiFile>,
    /// Local concepts (ids of 2,000,000,000 and above) for code systems that OMOP lacks.
    #[serde(default)]
    pub local_concepts: Vec<LocalConceptFiles>,
}

/// One Usagi export.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsagiFile {
    /// The CSV file.
    pub file: String,
    /// The vocabulary id its source codes belong to (what rules list in `vocabularies`).
    pub vocabulary_id: String,
}

/// Local concepts in CONCEPT layout, with their 'Maps to' rows in CONCEPT_RELATIONSHIP layout.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalConceptFiles {
    /// The concepts.
    pub concepts: String,
    /// Their relationships.
    #[serde(default)]
    pub relationships: Option<String>,
}

fn default_cdm_version() -> String {
    "5.4".to_string()
}

/// A source table: a delimited text file with a header.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// File name relative to the `--source` folder.
    pub file: String,
    /// Field separator; a comma unless given.
    #[serde(default)]
    pub separator: Option<char>,
    /// Columns the pack reads. A missing column is an error naming the file and the column.
    /// Columns not listed are never read, so identifiers that must not reach the CDM stay out.
    pub columns: Vec<String>,
    /// Columns that identify a row, reported in lineage next to the row number.
    #[serde(default)]
    pub key: Vec<String>,
}

/// One mapping rule: rows of a source become rows of a CDM table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id of the rule, recorded in lineage for every row it writes.
    pub id: String,
    /// Name of the source table (a key of `sources`).
    pub source: String,
    /// The CDM table written; with `concept.domains`, the table for rows whose domain has no route.
    pub table: String,
    /// Explains the rule to readers.
    #[serde(default)]
    pub description: String,
    /// Keep only rows where this expression is true. The others count as filtered by this rule.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Expression for the source key of the row; other rules find this row's id with `ref(table, key)`.
    #[serde(default)]
    pub key: Option<String>,
    /// Expression for the source person key; it becomes `person_id` through the person rule's key.
    /// Rows whose person is unknown are rejected.
    #[serde(default)]
    pub person: Option<String>,
    /// Code look-up: the source concept, the standard concept(s) and domain routing.
    #[serde(default)]
    pub concept: Option<ConceptLookup>,
    /// Output fields: CDM columns of `table`, or event slots (`start_date`, `concept_id`, ...)
    /// that are placed in whichever table the row is routed to.
    pub fields: BTreeMap<String, String>,
    /// Extra columns per routed table, for columns that only one table has.
    #[serde(default)]
    pub table_fields: BTreeMap<String, BTreeMap<String, String>>,
    /// Collapse rows into one per group (e.g. merging encounters into visits).
    #[serde(default)]
    pub deduplicate: Option<Deduplicate>,
}

/// A code look-up against the vocabulary.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConceptLookup {
    /// Expression giving the source code.
    pub code: String,
    /// Vocabulary ids to search for the code, in order; an expression can pick one per row
    /// with `vocabulary_from`.
    #[serde(default)]
    pub vocabularies: Vec<String>,
    /// Expression giving the vocabulary id per row (instead of a fixed list).
    #[serde(default)]
    pub vocabulary_from: Option<String>,
    /// Domain routing: standard concept domain → CDM table. Domains not listed go to the rule's `table`.
    #[serde(default)]
    pub domains: BTreeMap<String, String>,
    /// What happens to codes with no standard concept.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// What happens to mapped rows whose domain is not listed in `domains`.
    #[serde(default)]
    pub unrouted: Unrouted,
    /// Respect the validity dates of 'Maps to' at this date expression (event date).
    #[serde(default)]
    pub valid_at: Option<String>,
}

/// Policy for codes without a standard concept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Keep the row with concept 0 in the rule's table (OHDSI convention).
    #[default]
    Keep,
    /// Drop rows whose code is not in the vocabulary at all; they count as filtered by this rule.
    DropUnknown,
    /// Drop rows whose code has no standard concept; they count as filtered by this rule.
    Drop,
}

/// Policy for mapped rows whose standard concept's domain has no route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unrouted {
    /// Write them to the rule's `table`.
    #[default]
    Default,
    /// Drop them; they count as filtered by this rule.
    Drop,
}

/// Collapse the rule's rows to one per group, keeping the first by `order`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deduplicate {
    /// Output columns that define a group.
    pub by: Vec<String>,
    /// Output columns that order rows inside a group.
    #[serde(default)]
    pub order: Vec<String>,
}

/// How observation periods are derived.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationPeriod {
    /// CDM tables whose event dates span the period (e.g. visit_occurrence).
    pub from: Vec<String>,
    /// The period_type_concept_id written.
    pub period_type_concept_id: i32,
}

/// Era building.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Eras {
    /// Build condition_era from condition_occurrence.
    #[serde(default)]
    pub condition_era: Option<EraRule>,
    /// Build drug_era from drug_exposure, rolled up to ingredients.
    #[serde(default)]
    pub drug_era: Option<EraRule>,
}

/// Parameters of one era table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EraRule {
    /// Events closer than this many days join the same era (OHDSI uses 30).
    pub gap_days: i32,
}

/// Descriptive fields of the `cdm_source` row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CdmSourceInfo {
    /// cdm_source_name.
    pub cdm_source_name: String,
    /// cdm_source_abbreviation.
    pub cdm_source_abbreviation: String,
    /// cdm_holder.
    pub cdm_holder: String,
    /// source_description.
    #[serde(default)]
    pub source_description: String,
    /// source_documentation_reference.
    #[serde(default)]
    pub source_documentation_reference: String,
    /// cdm_etl_reference.
    #[serde(default)]
    pub cdm_etl_reference: String,
}
