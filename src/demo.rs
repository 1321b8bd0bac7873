//! `omopkit demo`: the whole ETL, end to end, on data omopkit makes itself.
//!
//! The command writes Synthea v3.0-shaped source files for synthetic patients
//! ([`sources::generate`]) and a small OMOP vocabulary that covers their codes
//! ([`vocabulary::write_vocabulary`]), then runs the Synthea mapping pack over them:
//!
//! ```text
//! <out>/source/       patients.csv, encounters.csv, ... (11 files)
//! <out>/vocabulary/   concept.csv, concept_relationship.csv, concept_ancestor.csv, ...
//! <out>/cdm/          the OMOP CDM tables as Parquet, and _omopkit/report.json
//! ```
//!
//! Everything is deterministic: the same `--seed` gives byte-identical source files. A few
//! codes are left out of the vocabulary on purpose ([`codes::UNMAPPED`]) so that the run
//! report's mapping coverage shows what unmapped codes look like.

pub mod codes;
pub mod sources;
pub mod vocabulary;

use crate::cmd::{CliError, CmdResult};
use omop_core::engine::{self, EtlOptions};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `omopkit demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The folder to write into: source/, vocabulary/ and cdm/ go inside it.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// How many patients to generate.
    #[arg(long, default_value_t = 1000)]
    pub patients: usize,
    /// The random seed; the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The Synthea mapping pack.
    #[arg(long, default_value = "mappings/synthea")]
    pub mapping: PathBuf,
    /// Only write the source files and the vocabulary; do not run the ETL.
    #[arg(long)]
    pub generate_only: bool,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// An error while writing the demo files.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl DemoError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DemoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Runs `omopkit demo`.
pub fn run(args: DemoArgs) -> CmdResult {
    if args.patients == 0 {
        return Err(CliError::invalid("--patients must be at least 1"));
    }
    if !args.generate_only && !args.mapping.exists() {
        return Err(CliError::invalid(format!(
            "{}: mapping pack not found (run from the repository root, or pass --mapping <folder with pack.yaml>)",
            args.mapping.display()
        )));
    }
    let source = args.out.join("source");
    let vocab = args.out.join("vocabulary");
    let cdm = args.out.join("cdm");

    let t = Instant::now();
    let generated = sources::generate(&source, args.patients, args.seed)?;
    vocabulary::write_vocabulary(&vocab)?;
    let rows: u64 = generated.rows.iter().map(|(_, n)| n).sum();
    eprintln!(
        "omopkit demo: {} patients ({} died), {} source rows in {} and a vocabulary of {} concepts in {} ({:.2} s, seed {})",
        args.patients,
        generated.deaths,
        rows,
        source.display(),
        codes::CONCEPTS.len(),
        vocab.display(),
        t.elapsed().as_secs_f64(),
        args.seed
    );
    let unmapped: Vec<String> = codes::UNMAPPED
        .iter()
        .map(|c| format!("{} {}", c.vocabulary, c.code))
        .collect();
    eprintln!(
        "  left out of the vocabulary on purpose, to show in the coverage report: {}",
        unmapped.join(", ")
    );
    if args.generate_only {
        return Ok(ExitCode::SUCCESS);
    }

    let opts = EtlOptions {
        pack: args.mapping.clone(),
        source,
        vocab,
        vocab_cache: None,
        out: cdm.clone(),
        chunk_rows: None,
    };
    crate::no_huge_pages();
    let report = engine::run(&opts)?;
    eprint!("{}", report.summary());
    eprintln!("  report: {}", engine::report_path(&cdm).display());
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::failed(e.to_string()))?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A comma-separated file being written: its header first, then one line per row.
pub(crate) struct CsvFile {
    path: PathBuf,
    name: String,
    rows: u64,
    w: std::io::BufWriter<std::fs::File>,
}

impl CsvFile {
    pub(crate) fn create(dir: &Path, name: &str, header: &str) -> Result<Self, DemoError> {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).map_err(|e| DemoError::io(&path, e))?;
        let mut f = Self {
            w: std::io::BufWriter::with_capacity(1 << 16, file),
            path,
            name: name.to_string(),
            rows: 0,
        };
        writeln!(f.w, "{header}").map_err(|e| DemoError::io(&f.path, e))?;
        Ok(f)
    }

    pub(crate) fn row(&mut self, fields: &[&str]) -> Result<(), DemoError> {
        for (i, field) in fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(self.w, "{sep}{}", csv_field(field))
                .map_err(|e| DemoError::io(&self.path, e))?;
        }
        writeln!(self.w).map_err(|e| DemoError::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the file; returns its name and number of data rows.
    pub(crate) fn finish(mut self) -> Result<(String, u64), DemoError> {
        self.w.flush().map_err(|e| DemoError::io(&self.path, e))?;
        Ok((self.name, self.rows))
    }
}

/// A field quoted as RFC 4180 asks when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(s: &str) -> Cow<'_, str> {
    // A plain loop over bytes: this runs for every field, and stays fast in debug builds.
    let mut special = false;
    for &b in s.as_bytes() {
        special |= b == b',' || b == b'"' || b == b'\n' || b == b'\r';
    }
    if special {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
