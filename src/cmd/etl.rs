//! `omopkit etl`: run a mapping pack.

use super::CmdResult;
use omop_core::engine::{self, EtlOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `omopkit etl`.
#[derive(Debug, clap::Args)]
pub struct EtlArgs {
    /// The mapping pack folder (holds pack.yaml).
    #[arg(long)]
    pub mapping: PathBuf,
    /// The folder with the source files.
    #[arg(long)]
    pub source: PathBuf,
    /// The vocabulary folder: an Athena download (tab-separated) or CSV files with a header.
    #[arg(long)]
    pub vocab: PathBuf,
    /// The output folder for the CDM tables; replaced only when the run succeeds.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to keep the vocabulary's Parquet cache when the vocabulary folder is read-only
    /// (a writable vocabulary folder keeps it inside; without this option a read-only one
    /// gets it next to the output folder).
    #[arg(long)]
    pub vocab_cache: Option<PathBuf>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Source rows processed at once; lower it to use less memory.
    #[arg(long, default_value_t = omop_core::engine::DEFAULT_CHUNK_ROWS)]
    pub chunk_rows: usize,
}

/// Runs the ETL and prints a summary on stderr.
pub fn run(args: EtlArgs) -> CmdResult {
    let opts = EtlOptions {
        pack: args.mapping,
        source: args.source,
        vocab: args.vocab,
        vocab_cache: args.vocab_cache,
        out: args.out.clone(),
        chunk_rows: Some(args.chunk_rows),
    };
    crate::no_huge_pages();
    let report = engine::run(&opts)?;
    eprint!("{}", report.summary());
    eprintln!("  report: {}", engine::report_path(&args.out).display());
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report)
                .map_err(|e| super::CliError::failed(e.to_string()))?
        );
    }
    Ok(ExitCode::SUCCESS)
}
