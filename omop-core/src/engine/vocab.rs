//! The vocabulary as the frames the engine joins against.

use super::{EtlError, polars_err};
use crate::mapping::VocabularyExtras;
use omop_vocab::{LoadOptions, Vocabulary};
use polars::prelude::*;
use std::path::Path;

/// Vocabulary frames used by the rules.
pub struct VocabTables {
    /// Every known code: `vocabulary_id`, `concept_code`, `concept_id` (0 for codes that only
    /// exist in `source_to_concept_map` or Usagi imports).
    pub codes: DataFrame,
    /// Valid 'Maps to' targets that are standard concepts: `vocabulary_id`, `concept_code`,
    /// `target_concept_id`, `target_domain_id`, `valid_start_date`, `valid_end_date`.
    pub maps: DataFrame,
    /// Drug concept → RxNorm (Extension) ingredient: `descendant_concept_id`, `ingredient_concept_id`.
    pub ingredients: DataFrame,
    /// The vocabulary release, for `cdm_source`.
    pub version: Option<String>,
    /// Whether some code maps to more than one standard concept (one source row may then
    /// become several CDM rows).
    pub multi_target: bool,
    /// Indexed forms of the frames above, built when a rule first needs them.
    pub(crate) lookups: super::lookup::Lookups,
}

impl VocabTables {
    /// Loads the vocabulary in `dir`. The Parquet cache goes inside `dir` (where a cache
    /// already there is also read first); when `dir` is read-only it goes to `cache`, or
    /// without one into a folder next to the output `out`.
    pub fn load(
        dir: &Path,
        cache: Option<&Path>,
        out: &Path,
        extras: &VocabularyExtras,
        pack_dir: &Path,
    ) -> Result<Self, EtlError> {
        let fallback = cache.map(Path::to_path_buf).unwrap_or_else(|| {
            let name = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.with_file_name(format!(".{name}.vocab-cache"))
        });
        let mut vocab = Vocabulary::load(dir, LoadOptions::with_cache_dir(fallback))
            .map_err(|e| EtlError::Vocab(e.to_string()))?;
        let verr = |e: omop_vocab::VocabError| EtlError::Vocab(e.to_string());
        for f in &extras.local_concepts {
            let rel = f.relationships.as_ref().map(|r| pack_dir.join(r));
            vocab
                .add_local_concepts(&pack_dir.join(&f.concepts), rel.as_deref())
                .map_err(verr)?;
        }
        // A source_to_concept_map shipped inside the vocabulary folder counts as part of it.
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut stcm: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().to_lowercase())
                        .unwrap_or_default();
                    name.starts_with("source_to_concept_map")
                        && (name.ends_with(".csv") || name.ends_with(".tsv"))
                })
                .collect();
            stcm.sort();
            for p in stcm {
                vocab.import_source_to_concept_map(&p, None).map_err(verr)?;
            }
        }
        for f in &extras.source_to_concept_map {
            vocab
                .import_source_to_concept_map(&pack_dir.join(f), None)
                .map_err(verr)?;
        }
        for f in &extras.usagi {
            vocab
                .import_usagi(&pack_dir.join(&f.file), &f.vocabulary_id)
                .map_err(verr)?;
        }
        Self::from_vocabulary(&vocab)
    }

    /// Builds the frames from a loaded vocabulary.
    pub fn from_vocabulary(vocab: &Vocabulary) -> Result<Self, EtlError> {
        let err = |e| polars_err("vocabulary", e);
        let s2s = vocab
            .source_to_standard()
            .map_err(|e| EtlError::Vocab(e.to_string()))?
            .lazy();
        let concept_codes = vocab.concepts().clone().lazy().select([
            col("vocabulary_id"),
            col("concept_code"),
            col("concept_id"),
        ]);
        let extra_codes = s2s
            .clone()
            .filter(col("source_concept_id").eq(lit(0)))
            .select([
                col("source_vocabulary_id").alias("vocabulary_id"),
                col("source_code").alias("concept_code"),
                col("source_concept_id").alias("concept_id"),
            ]);
        let codes = concat([concept_codes, extra_codes], UnionArgs::default())
            .and_then(|l| {
                l.unique_stable_generic(
                    Some(vec![col("vocabulary_id"), col("concept_code")]),
                    UniqueKeepStrategy::First,
                )
                .collect()
            })
            .map_err(err)?;
        let maps = s2s
            .filter(
                col("relationship_id")
                    .eq(lit("Maps to"))
                    .and(col("target_standard_concept").eq(lit("S"))),
            )
            .select([
                col("source_vocabulary_id").alias("vocabulary_id"),
                col("source_code").alias("concept_code"),
                col("target_concept_id"),
                col("target_domain_id"),
                col("valid_start_date"),
                col("valid_end_date"),
            ])
            .unique_stable(None, UniqueKeepStrategy::First)
            .collect()
            .map_err(err)?;
        let ingredient_ids = vocab
            .concepts()
            .clone()
            .lazy()
            .filter(
                col("concept_class_id").eq(lit("Ingredient")).and(
                    col("vocabulary_id")
                        .eq(lit("RxNorm"))
                        .or(col("vocabulary_id").eq(lit("RxNorm Extension"))),
                ),
            )
            .select([col("concept_id").alias("ingredient_concept_id")]);
        let ingredients = match vocab.ancestors_df() {
            Ok(anc) => anc
                .clone()
                .lazy()
                .join(
                    ingredient_ids,
                    [col("ancestor_concept_id")],
                    [col("ingredient_concept_id")],
                    JoinArgs::new(JoinType::Inner),
                )
                .select([
                    col("descendant_concept_id"),
                    col("ancestor_concept_id").alias("ingredient_concept_id"),
                ])
                .unique_stable(None, UniqueKeepStrategy::First)
                .collect()
                .map_err(err)?,
            Err(_) => DataFrame::empty_with_schema(&Schema::from_iter([
                Field::new("descendant_concept_id".into(), DataType::Int32),
                Field::new("ingredient_concept_id".into(), DataType::Int32),
            ])),
        };
        let per_code = maps
            .clone()
            .lazy()
            .group_by([col("vocabulary_id"), col("concept_code")])
            .agg([len().alias("n")])
            .select([col("n").max().cast(DataType::UInt64).alias("n")])
            .collect()
            .map_err(err)?;
        let most = per_code
            .column("n")
            .ok()
            .and_then(|c| c.u64().ok().and_then(|v| v.get(0)))
            .unwrap_or(0);
        Ok(Self {
            codes,
            maps,
            ingredients,
            version: vocab.version(),
            multi_target: most > 1,
            lookups: Default::default(),
        })
    }
}
