//! Site mappings and local concepts added on top of a loaded vocabulary:
//! `source_to_concept_map` files, Usagi exports and local concepts.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Result, VocabError};
use crate::reader::{ColSpec, ColType::*, read_table};
use crate::store::{
    ExtraMapping, ImportSummary, LOCAL_CONCEPT_ID_MIN, MapKind, MappingOrigin, Vocabulary,
    default_end, default_start, map_rows,
};
use crate::tables::{CONCEPT, CONCEPT_RELATIONSHIP};

const STCM: &[ColSpec] = &[
    ColSpec::key("source_code", Str),
    ColSpec::opt("source_concept_id", Int),
    ColSpec::opt("source_vocabulary_id", Str),
    ColSpec::opt("source_code_description", Str),
    ColSpec::key("target_concept_id", Int),
    ColSpec::opt("target_vocabulary_id", Str),
    ColSpec::opt("target_domain_id", Str),
    ColSpec::opt("valid_start_date", Date),
    ColSpec::opt("valid_end_date", Date),
    ColSpec::opt("invalid_reason", Str),
];

const USAGI: &[ColSpec] = &[
    ColSpec::key("sourceCode", Str),
    ColSpec::opt("sourceName", Str),
    ColSpec::key("mappingStatus", Str),
    ColSpec::key("conceptId", Int),
    ColSpec::opt("domainId", Str),
    ColSpec::opt("mappingType", Str),
];

/// Local concept files may leave out the optional CDM columns.
const LOCAL_CONCEPT: &[ColSpec] = &[
    ColSpec::key("concept_id", Int),
    ColSpec::key("concept_name", Str),
    ColSpec::key("domain_id", Str),
    ColSpec::key("vocabulary_id", Str),
    ColSpec::key("concept_class_id", Str),
    ColSpec::opt("standard_concept", Str),
    ColSpec::key("concept_code", Str),
    ColSpec::opt("valid_start_date", Date),
    ColSpec::opt("valid_end_date", Date),
    ColSpec::opt("invalid_reason", Str),
];

const LOCAL_RELATIONSHIP: &[ColSpec] = &[
    ColSpec::key("concept_id_1", Int),
    ColSpec::key("concept_id_2", Int),
    ColSpec::key("relationship_id", Str),
    ColSpec::opt("valid_start_date", Date),
    ColSpec::opt("valid_end_date", Date),
    ColSpec::opt("invalid_reason", Str),
];

fn ints<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a Int32Chunked> {
    df.column(name)
        .and_then(|c| c.i32())
        .map_err(|e| VocabError::polars(format!("{}: column {name}", path.display()), e))
}

fn strs<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a StringChunked> {
    df.column(name)
        .and_then(|c| c.str())
        .map_err(|e| VocabError::polars(format!("{}: column {name}", path.display()), e))
}

fn days<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a Int32Chunked> {
    df.column(name)
        .and_then(|c| c.date().map(|d| d.physical()))
        .map_err(|e| VocabError::polars(format!("{}: column {name}", path.display()), e))
}

/// Replaces null dates by the CDM defaults 1970-01-01 and 2099-12-31.
fn fill_dates(df: &mut DataFrame, path: &Path) -> Result<()> {
    for (name, default) in [
        ("valid_start_date", default_start()),
        ("valid_end_date", default_end()),
    ] {
        let filled: Int32Chunked = days(df, name, path)?
            .iter()
            .map(|v| Some(v.unwrap_or(default)))
            .collect();
        let column = filled.with_name(name.into()).into_date().into_column();
        df.with_column(column)
            .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
    }
    Ok(())
}

impl Vocabulary {
    /// Imports a `source_to_concept_map` file (CDM layout, tab- or
    /// comma-separated with a header). Each row becomes a 'Maps to' mapping
    /// from (`source_vocabulary_id`, `source_code`) to `target_concept_id`,
    /// consulted by [`Vocabulary::map_code`] (and by [`Vocabulary::maps_to`]
    /// when `source_concept_id` is not 0) and included in
    /// [`Vocabulary::source_to_standard`].
    ///
    /// `source_vocabulary_id`, when given, replaces the file's column (which
    /// may then be absent). Rows whose target is 0 are skipped; rows with an
    /// `invalid_reason` are kept but never used. Missing dates default to
    /// 1970-01-01 and 2099-12-31.
    pub fn import_source_to_concept_map(
        &mut self,
        path: &Path,
        source_vocabulary_id: Option<&str>,
    ) -> Result<ImportSummary> {
        let mut df = read_table(path, STCM)?;
        fill_dates(&mut df, path)?;
        let code = strs(&df, "source_code", path)?;
        let s_id = ints(&df, "source_concept_id", path)?;
        let s_vocab = strs(&df, "source_vocabulary_id", path)?;
        let t_id = ints(&df, "target_concept_id", path)?;
        let t_vocab = strs(&df, "target_vocabulary_id", path)?;
        let t_domain = strs(&df, "target_domain_id", path)?;
        let start = days(&df, "valid_start_date", path)?;
        let end = days(&df, "valid_end_date", path)?;
        let invalid = strs(&df, "invalid_reason", path)?;

        let mut summary = ImportSummary {
            rows_read: df.height(),
            ..Default::default()
        };
        let mut rows = Vec::new();
        for row in 0..df.height() {
            let vocab = match source_vocabulary_id.or(s_vocab.get(row)) {
                Some(v) => v,
                None => {
                    return Err(VocabError::EmptyValue {
                        path: path.to_path_buf(),
                        line: row + 2,
                        column: "source_vocabulary_id".into(),
                        expected: "a vocabulary id (or pass one to the import)",
                    });
                }
            };
            let target = t_id.get(row).unwrap_or(0);
            if target == 0 {
                summary.skipped += 1;
                continue;
            }
            rows.push(ExtraMapping {
                source_vocabulary_id: vocab.to_string(),
                source_code: code.get(row).unwrap_or("").to_string(),
                source_concept_id: s_id.get(row).unwrap_or(0),
                target_concept_id: target,
                target_vocabulary_id: t_vocab.get(row).map(str::to_string),
                target_domain_id: t_domain.get(row).map(str::to_string),
                kind: MapKind::MapsTo,
                start: start.get(row).unwrap_or_else(default_start),
                end: end.get(row).unwrap_or_else(default_end),
                invalid: invalid.get(row).is_some(),
                origin: MappingOrigin::SourceToConceptMap,
            });
        }
        summary.added = rows.len();
        for m in rows {
            self.extras.push(m);
        }
        self.invalidate();
        Ok(summary)
    }

    /// Imports a Usagi export (its CSV save file). Only rows whose
    /// `mappingStatus` is `APPROVED` and whose `conceptId` is not 0 are used;
    /// `mappingType` `MAPS_TO` (the default when the column is absent or
    /// empty) gives 'Maps to' and `MAPS_TO_VALUE` gives 'Maps to value'.
    /// `MAPS_TO_UNIT` and `MAPS_TO_OPERATOR` rows are counted as skipped. The
    /// mappings are filed under `source_vocabulary_id` and valid from
    /// 1970-01-01 to 2099-12-31. `ADD_INFO:*` columns are ignored.
    pub fn import_usagi(
        &mut self,
        path: &Path,
        source_vocabulary_id: &str,
    ) -> Result<ImportSummary> {
        let df = read_table(path, USAGI)?;
        let code = strs(&df, "sourceCode", path)?;
        let status = strs(&df, "mappingStatus", path)?;
        let target = ints(&df, "conceptId", path)?;
        let domain = strs(&df, "domainId", path)?;
        let mtype = strs(&df, "mappingType", path)?;

        let mut summary = ImportSummary {
            rows_read: df.height(),
            ..Default::default()
        };
        let mut rows = Vec::new();
        for row in 0..df.height() {
            let kind = match mtype.get(row).map(str::trim) {
                None | Some("") | Some("MAPS_TO") | Some("EVENT") => Some(MapKind::MapsTo),
                Some("MAPS_TO_VALUE") | Some("VALUE") => Some(MapKind::MapsToValue),
                Some("MAPS_TO_UNIT") | Some("UNIT") | Some("MAPS_TO_OPERATOR") => None,
                Some(other) => {
                    return Err(VocabError::InvalidRow {
                        path: path.to_path_buf(),
                        line: row + 2,
                        message: format!(
                            "column `mappingType`: unknown value `{}` \
                             (expected MAPS_TO, MAPS_TO_VALUE, MAPS_TO_UNIT or MAPS_TO_OPERATOR)",
                            crate::error::snippet(other)
                        ),
                    });
                }
            };
            let concept_id = target.get(row).unwrap_or(0);
            let approved = status.get(row).map(str::trim) == Some("APPROVED");
            let (Some(kind), true, true) = (kind, approved, concept_id != 0) else {
                summary.skipped += 1;
                continue;
            };
            rows.push(ExtraMapping {
                source_vocabulary_id: source_vocabulary_id.to_string(),
                source_code: code.get(row).unwrap_or("").to_string(),
                source_concept_id: 0,
                target_concept_id: concept_id,
                target_vocabulary_id: None,
                target_domain_id: domain.get(row).map(str::to_string),
                kind,
                start: default_start(),
                end: default_end(),
                invalid: false,
                origin: MappingOrigin::Usagi,
            });
        }
        summary.added = rows.len();
        for m in rows {
            self.extras.push(m);
        }
        self.invalidate();
        Ok(summary)
    }

    /// Adds local concepts from a file in `concept` layout (tab- or
    /// comma-separated with a header; `standard_concept`, the validity dates
    /// and `invalid_reason` may be left out). Every `concept_id` must be
    /// 2,000,000,000 or above and must not exist yet.
    ///
    /// `relationships`, when given, is a file in `concept_relationship`
    /// layout whose `concept_id_1` values are local concepts; its 'Maps to'
    /// and 'Maps to value' rows become mappings like the vocabulary's own, and
    /// all its rows are appended to [`Vocabulary::relationships`].
    pub fn add_local_concepts(
        &mut self,
        concepts: &Path,
        relationships: Option<&Path>,
    ) -> Result<ImportSummary> {
        let mut df = read_table(concepts, LOCAL_CONCEPT)?;
        fill_dates(&mut df, concepts)?;
        let ids = ints(&df, "concept_id", concepts)?;
        let mut seen = std::collections::HashSet::new();
        for (row, id) in ids.iter().enumerate() {
            let id = id.unwrap_or(0);
            if id < LOCAL_CONCEPT_ID_MIN {
                return Err(VocabError::LocalConceptId {
                    path: concepts.to_path_buf(),
                    line: row + 2,
                    concept_id: id,
                });
            }
            if !seen.insert(id) || self.concept(id).is_some() {
                return Err(VocabError::InvalidRow {
                    path: concepts.to_path_buf(),
                    line: row + 2,
                    message: format!("concept_id {id} is defined twice"),
                });
            }
        }
        let names: Vec<&str> = CONCEPT.iter().map(|c| c.name).collect();
        let df = df
            .select(names)
            .map_err(|e| VocabError::polars(concepts.display().to_string(), e))?;
        let mut all = self.concepts.df.clone();
        all.vstack_mut(&df)
            .map_err(|e| VocabError::polars(concepts.display().to_string(), e))?;
        let summary = ImportSummary {
            rows_read: df.height(),
            added: df.height(),
            skipped: 0,
        };
        self.replace_concepts(all)?;

        if let Some(path) = relationships {
            let mut rel = read_table(path, LOCAL_RELATIONSHIP)?;
            fill_dates(&mut rel, path)?;
            let c1 = ints(&rel, "concept_id_1", path)?;
            for (row, id) in c1.iter().enumerate() {
                let id = id.unwrap_or(0);
                if id < LOCAL_CONCEPT_ID_MIN {
                    return Err(VocabError::InvalidRow {
                        path: path.to_path_buf(),
                        line: row + 2,
                        message: format!(
                            "concept_id_1 {id} is not a local concept (expected an id of 2000000000 or above)"
                        ),
                    });
                }
            }
            let names: Vec<&str> = CONCEPT_RELATIONSHIP.iter().map(|c| c.name).collect();
            let rel = rel
                .select(names)
                .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
            let valid = rel
                .clone()
                .lazy()
                .filter(col("invalid_reason").is_null())
                .collect()
                .map_err(|e| VocabError::polars(path.display().to_string(), e))?;
            let rows = map_rows(&valid, MappingOrigin::Local)?;
            self.add_map_rows(rows);
            self.relationships.append(rel)?;
        }
        Ok(summary)
    }
}
