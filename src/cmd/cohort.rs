//! `omopkit cohort`: evaluate Circe cohort definitions.

use super::{CliError, CmdResult};
use omop_cohort::{Cdm, CohortExpression, CohortResult, day_text, format_day};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options shared by the cohort sub-commands.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Folder of CDM tables as `<table>.parquet` (CDM v5.3 or v5.4).
    #[arg(long, value_name = "DIR")]
    cdm: PathBuf,
    /// Reuse the on-disk index in this folder, or build it there from `--cdm` first.
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Write the time each step took to this CSV file
    /// (`step,name,millis,entries,persons`; steps `load` and `cohort`).
    #[arg(long, value_name = "FILE")]
    timings: Option<PathBuf>,
    /// Circe cohort definition files (ATLAS JSON).
    #[arg(value_name = "COHORT_JSON", required = true)]
    definitions: Vec<PathBuf>,
}

/// Sub-commands of `omopkit cohort`.
#[derive(Debug, clap::Subcommand)]
pub enum CohortCommand {
    /// Evaluate definitions and write `<out-dir>/<file stem>.csv` for each.
    Run {
        /// Where the cohort CSV files go.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        #[command(flatten)]
        source: Source,
    },
    /// Evaluate definitions and print their entry and person counts.
    Count {
        #[command(flatten)]
        source: Source,
    },
}

/// Runs a cohort sub-command.
pub fn run(command: CohortCommand) -> CmdResult {
    match command {
        CohortCommand::Run { out_dir, source } => {
            std::fs::create_dir_all(&out_dir).map_err(|e| {
                CliError::failed(format!("{}: cannot create folder: {e}", out_dir.display()))
            })?;
            evaluate_all(&source, |stem, result| write_csv(&out_dir, stem, result))
        }
        CohortCommand::Count { source } => {
            let mut header = false;
            evaluate_all(&source, |stem, result| {
                if !std::mem::replace(&mut header, true) {
                    outln!("cohort,entries,persons");
                }
                outln!("{stem},{},{}", result.rows.len(), result.subject_count());
                Ok(())
            })
        }
    }
}

fn load(source: &Source) -> Result<Cdm, CliError> {
    match &source.index {
        Some(index) if omop_cohort::store::exists(index) => Ok(omop_cohort::store::load(index)?),
        Some(index) => {
            // Built table by table straight to disk, then read back: the build
            // never holds more than one event table.
            omop_cohort::store::build(&source.cdm, index)?;
            Ok(omop_cohort::store::load(index)?)
        }
        None => Ok(Cdm::load(&source.cdm)?),
    }
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cohort".to_string())
}

/// Loads the CDM once, then evaluates every definition; a definition that
/// fails is reported and the others still run.
fn evaluate_all(
    source: &Source,
    mut emit: impl FnMut(&str, &CohortResult) -> Result<(), CliError>,
) -> CmdResult {
    // Parse first so that a typo fails before the CDM is loaded.
    let mut defs = Vec::new();
    let mut failed = 0usize;
    for path in &source.definitions {
        match CohortExpression::from_file(path) {
            Ok(d) => defs.push((path, d)),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if defs.is_empty() {
        return Err(CliError::invalid("no cohort definition could be read"));
    }
    let clock = std::time::Instant::now();
    let cdm = load(source)?;
    crate::keep_freed_memory();
    let mut timings = vec![format!(
        "load,,{:.3},,",
        clock.elapsed().as_secs_f64() * 1e3
    )];
    for (path, def) in defs {
        let clock = std::time::Instant::now();
        match omop_cohort::evaluate(&cdm, &def) {
            Ok(result) => {
                let ms = clock.elapsed().as_secs_f64() * 1e3;
                let stem = stem_of(path);
                timings.push(format!(
                    "cohort,{stem},{ms:.3},{},{}",
                    result.rows.len(),
                    result.subject_count()
                ));
                emit(&stem, &result)?
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    if let Some(file) = &source.timings {
        let text = format!("step,name,millis,entries,persons\n{}\n", timings.join("\n"));
        std::fs::write(file, text)
            .map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
    }
    if failed > 0 {
        return Err(CliError::failed(format!(
            "{failed} of {} definitions failed",
            source.definitions.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_csv(out_dir: &Path, stem: &str, result: &CohortResult) -> Result<(), CliError> {
    let target = out_dir.join(format!("{stem}.csv"));
    let tmp = out_dir.join(format!("{stem}.csv.tmp-{}", std::process::id()));
    let io_err = |e: std::io::Error| CliError::failed(format!("{}: {e}", tmp.display()));
    let file = std::fs::File::create(&tmp).map_err(io_err)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "subject_id,cohort_start_date,cohort_end_date").map_err(io_err)?;
    let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
    for r in &result.rows {
        match (day_text(r.start, &mut a), day_text(r.end, &mut b)) {
            (Some(start), Some(end)) => writeln!(w, "{},{start},{end}", r.subject_id),
            _ => writeln!(
                w,
                "{},{},{}",
                r.subject_id,
                format_day(r.start),
                format_day(r.end)
            ),
        }
        .map_err(io_err)?;
    }
    w.flush().map_err(io_err)?;
    drop(w);
    std::fs::rename(&tmp, &target)
        .map_err(|e| CliError::failed(format!("{}: {e}", target.display())))?;
    Ok(())
}
