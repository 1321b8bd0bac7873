//! `omopkit vocab`: load a vocabulary (building its Parquet cache) and look codes up.

use super::{CliError, CmdResult};
use omop_vocab::{LoadOptions, Vocabulary};
use std::path::PathBuf;
use std::process::ExitCode;

/// Sub-commands of `omopkit vocab`.
#[derive(Debug, clap::Subcommand)]
pub enum VocabCommand {
    /// Load a vocabulary folder, build its Parquet cache, and print what it holds.
    Info {
        /// The vocabulary folder (Athena download or CSV files with a header).
        dir: PathBuf,
        /// Where to keep the cache when the folder is read-only.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Show the source concept of a code and the standard concepts it maps to.
    Lookup {
        /// The vocabulary folder.
        dir: PathBuf,
        /// The vocabulary id, e.g. SNOMED or ICD10.
        vocabulary: String,
        /// The code.
        code: String,
        /// Where to keep the cache when the folder is read-only.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

fn load(dir: &std::path::Path, cache: Option<PathBuf>) -> Result<Vocabulary, CliError> {
    let opts = cache.map_or_else(LoadOptions::default, LoadOptions::with_cache_dir);
    Vocabulary::load(dir, opts).map_err(|e| CliError::invalid(e.to_string()))
}

/// Runs a vocabulary sub-command.
pub fn run(command: VocabCommand) -> CmdResult {
    match command {
        VocabCommand::Info { dir, cache } => {
            let v = load(&dir, cache)?;
            let info = v.load_info();
            outln!("vocabulary: {}", dir.display());
            outln!(
                "  version:  {}",
                v.version().unwrap_or_else(|| "unknown".into())
            );
            outln!("  concepts: {}", v.concept_count());
            outln!(
                "  loaded in {:.0} ms ({})",
                info.elapsed.as_secs_f64() * 1000.0,
                if info.from_cache {
                    "from the Parquet cache"
                } else {
                    "from the source files; cache written"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        VocabCommand::Lookup {
            dir,
            vocabulary,
            code,
            cache,
        } => {
            let v = load(&dir, cache)?;
            let Some(c) = v.source_concept(&vocabulary, &code) else {
                return Err(CliError::invalid(format!(
                    "no concept with code `{code}` in vocabulary {vocabulary}"
                )));
            };
            outln!(
                "{} {} [{} / {} / {}{}]",
                c.concept_id,
                c.concept_name,
                c.domain_id,
                c.concept_class_id,
                c.standard_concept.unwrap_or("non-standard"),
                c.invalid_reason
                    .map_or(String::new(), |r| format!(", invalid: {r}"))
            );
            let id = c.concept_id;
            for m in v
                .maps_to(id, None)
                .into_iter()
                .chain(v.maps_to_value(id, None))
            {
                outln!(
                    "  {} → {} {} [{}]",
                    m.relationship.relationship_id(),
                    m.concept_id,
                    m.concept_name.unwrap_or("?"),
                    m.domain_id.unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
