//! The demo vocabulary: a few dozen OMOP concepts, written as comma-separated files with a
//! header, the layout `omop-vocab` reads (`concept.csv`, `concept_relationship.csv`, ...).

use super::codes::{CONCEPTS, DRUG_INGREDIENTS, SYNTHEA_UNITS, VOCABULARIES};
use super::{CsvFile, DemoError};
use std::path::Path;

/// The release name written to the `None` row of `vocabulary.csv`; the ETL copies it to
/// `cdm_source.vocabulary_version`.
pub const VERSION: &str = "omopkit demo vocabulary 2026-11";

const VALID_START: &str = "1970-01-01";
const VALID_END: &str = "2099-12-31";

/// Writes the demo vocabulary into `out` (created if needed): `concept.csv`,
/// `concept_relationship.csv` ('Maps to' and 'Mapped from' rows), `concept_ancestor.csv`
/// (every standard concept to itself, clinical drugs to their ingredients, so that drug_era
/// can be built), `vocabulary.csv` and `source_to_concept_map.csv` (the `Synthea units` map).
pub fn write_vocabulary(out: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(out).map_err(|e| DemoError::io(out, e))?;

    let mut concept = CsvFile::create(
        out,
        "concept.csv",
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason",
    )?;
    for c in CONCEPTS {
        let standard = if c.standard { "S" } else { "" };
        concept.row(&[
            &c.id.to_string(),
            c.name,
            c.domain,
            c.vocabulary,
            c.class,
            standard,
            c.code,
            VALID_START,
            VALID_END,
            "",
        ])?;
    }
    concept.finish()?;

    let mut rel = CsvFile::create(
        out,
        "concept_relationship.csv",
        "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason",
    )?;
    for c in CONCEPTS.iter().filter(|c| c.standard) {
        let id = c.id.to_string();
        rel.row(&[&id, &id, "Maps to", VALID_START, VALID_END, ""])?;
        rel.row(&[&id, &id, "Mapped from", VALID_START, VALID_END, ""])?;
    }
    rel.finish()?;

    let mut anc = CsvFile::create(
        out,
        "concept_ancestor.csv",
        "ancestor_concept_id,descendant_concept_id,min_levels_of_separation,max_levels_of_separation",
    )?;
    for c in CONCEPTS.iter().filter(|c| c.standard) {
        let id = c.id.to_string();
        anc.row(&[&id, &id, "0", "0"])?;
    }
    for (drug, ingredient, min, max) in DRUG_INGREDIENTS {
        anc.row(&[
            &ingredient.to_string(),
            &drug.to_string(),
            &min.to_string(),
            &max.to_string(),
        ])?;
    }
    anc.finish()?;

    let mut voc = CsvFile::create(
        out,
        "vocabulary.csv",
        "vocabulary_id,vocabulary_name,vocabulary_reference,vocabulary_version,vocabulary_concept_id",
    )?;
    voc.row(&[
        "None",
        "OMOP Standardized Vocabularies",
        "omopkit demo",
        VERSION,
        "44819096",
    ])?;
    for (id, name, concept_id) in VOCABULARIES {
        voc.row(&[id, name, "omopkit demo", VERSION, &concept_id.to_string()])?;
    }
    voc.finish()?;

    let mut stcm = CsvFile::create(
        out,
        "source_to_concept_map.csv",
        "source_code,source_concept_id,source_vocabulary_id,source_code_description,target_concept_id,target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason",
    )?;
    for (code, target) in SYNTHEA_UNITS {
        let vocabulary = CONCEPTS
            .iter()
            .find(|c| c.id == *target)
            .map_or("", |c| c.vocabulary);
        stcm.row(&[
            code,
            "0",
            "Synthea units",
            code,
            &target.to_string(),
            vocabulary,
            VALID_START,
            VALID_END,
            "",
        ])?;
    }
    stcm.finish()?;
    Ok(())
}
