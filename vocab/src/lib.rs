//! # omop-vocab: the OMOP vocabulary store
//!
//! This crate loads the OMOP standardized vocabularies and answers the
//! questions an ETL and a cohort engine ask of them: which concept a source
//! code is, which standard concept it maps to (and in which domain), and
//! which concepts descend from a given one.
//!
//! **Loading.** [`Vocabulary::load`] reads a folder of vocabulary tables. It
//! accepts an Athena download (tab-separated `CONCEPT.csv`,
//! `CONCEPT_RELATIONSHIP.csv`, ..., dates as `YYYYMMDD`, no quoting because
//! concept names contain stray quotes) and comma-separated files with a header
//! (`concept.csv` or `concept_seed.csv`, ISO dates, `"` quoting). The format is
//! detected per file from its header line. Only the concept table is
//! required. Columns are typed (`concept_id` as `i32`, dates as polars `Date`).
//!
//! **Caching.** The first load writes every table as Parquet into a cache
//! entry keyed by a fingerprint of the source files (names, sizes, modification
//! times) and the cache format version; later loads read the Parquet files.
//! The entry is written to a temporary folder and renamed into place. Large
//! tables (`concept_relationship`, `concept_ancestor`, ...) are read from the
//! cache only when first asked for; the valid 'Maps to' rows are cached
//! separately so that start-up stays fast for a full Athena download.
//!
//! **Look-ups.** [`Vocabulary::source_concept`], [`Vocabulary::maps_to`],
//! [`Vocabulary::maps_to_value`], [`Vocabulary::map_code`],
//! [`Vocabulary::descendants`] and [`Vocabulary::ancestors`] work on compact
//! sorted indexes (a few bytes per concept or mapping). The ETL engine joins
//! source codes against [`Vocabulary::source_to_standard`] with polars.
//!
//! **Site additions.** [`Vocabulary::import_source_to_concept_map`] and
//! [`Vocabulary::import_usagi`] add mappings of local source codes;
//! [`Vocabulary::add_local_concepts`] adds concepts with ids of
//! 2,000,000,000 and above.
//!
//! ```no_run
//! use omop_vocab::{LoadOptions, Vocabulary};
//! # fn main() -> Result<(), omop_vocab::VocabError> {
//! let vocab = Vocabulary::load("vocab/".as_ref(), LoadOptions::with_cache_dir("/tmp/omopkit"))?;
//! if let Some(c) = vocab.source_concept("SNOMED", "44054006") {
//!     for target in vocab.maps_to(c.concept_id, None) {
//!         println!("{} -> {} ({:?})", c.concept_id, target.concept_id, target.domain_id);
//!     }
//! }
//! println!("vocabulary version: {:?}", vocab.version());
//! # Ok(()) }
//! ```

mod cache;
mod concepts;
mod error;
mod imports;
mod reader;
mod store;
mod tables;

pub use cache::DEFAULT_CACHE_DIR_NAME;
pub use concepts::{Concept, ConceptRef};
pub use error::{Result, VocabError};
pub use store::{
    AncestorLink, ImportSummary, LOCAL_CONCEPT_ID_MIN, LoadInfo, LoadOptions, MapKind,
    MappedConcept, MappingOrigin, Vocabulary,
};
pub use tables::Table;
