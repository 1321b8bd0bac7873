//! `omopkit mapping`: lint, test and explain mapping packs.

use super::{CliError, CmdResult};
use omop_core::engine::{self, EtlOptions};
use omop_core::mapping::{self, Severity, lint::field_for, lint::rule_tables};
use omop_core::packtest;
use polars::prelude::*;
use std::path::PathBuf;
use std::process::ExitCode;

/// Sub-commands of `omopkit mapping`.
#[derive(Debug, clap::Subcommand)]
pub enum MappingCommand {
    /// Check a pack against its JSON Schema and the CDM specification.
    Lint {
        /// The pack folder (or its pack.yaml).
        pack: PathBuf,
    },
    /// Run the pack's own tests (tests.yaml: source rows and the CDM rows they must become).
    Test {
        /// The pack folder.
        pack: PathBuf,
        /// A vocabulary folder, when tests.yaml has no `vocabulary` section.
        #[arg(long)]
        vocab: Option<PathBuf>,
    },
    /// Show how one source row flows through a rule: its values, the look-up, and the CDM rows it becomes.
    Explain {
        /// The pack folder.
        #[arg(long)]
        mapping: PathBuf,
        /// The source folder.
        #[arg(long)]
        source: PathBuf,
        /// The vocabulary folder.
        #[arg(long)]
        vocab: PathBuf,
        /// The rule id.
        #[arg(long)]
        rule: String,
        /// The data row number in the rule's source file, as the run report and quarantine give
        /// it (1 = the first record after the header; blank lines are not rows).
        #[arg(long)]
        row: u64,
        /// Where to keep the vocabulary's Parquet cache.
        #[arg(long)]
        vocab_cache: Option<PathBuf>,
    },
    /// Print the JSON Schema of pack.yaml.
    Schema,
}

/// Runs a mapping sub-command.
pub fn run(command: MappingCommand) -> CmdResult {
    match command {
        MappingCommand::Lint { pack } => lint(pack),
        MappingCommand::Test { pack, vocab } => test(pack, vocab),
        MappingCommand::Explain {
            mapping,
            source,
            vocab,
            rule,
            row,
            vocab_cache,
        } => explain(mapping, source, vocab, rule, row, vocab_cache),
        MappingCommand::Schema => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&mapping::pack_schema()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lint(pack: PathBuf) -> CmdResult {
    let p = mapping::load_pack(&pack).map_err(|e| CliError::invalid(e.to_string()))?;
    let diags = mapping::lint(&p);
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    for d in &diags {
        eprintln!("{}: {d}", mapping::pack_file(&pack).display());
    }
    if errors > 0 {
        return Err(CliError::invalid(format!("{errors} lint error(s)")));
    }
    eprintln!(
        "{}: ok ({} rules, {} warning(s))",
        mapping::pack_file(&pack).display(),
        p.rules.len(),
        diags.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(pack: PathBuf, vocab: Option<PathBuf>) -> CmdResult {
    let results = packtest::run_pack_tests(&pack, vocab.as_deref())
        .map_err(|e| CliError::invalid(e.to_string()))?;
    let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
    for r in &results {
        if r.failures.is_empty() {
            outln!("ok      {}", r.name);
        } else {
            outln!("FAILED  {}", r.name);
            for f in &r.failures {
                outln!("  {f}");
            }
        }
    }
    outln!("{} passed, {} failed", results.len() - failed, failed);
    if failed > 0 {
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs the pack with the rule's source cut down to the one row, then prints what came of it.
fn explain(
    mapping: PathBuf,
    source: PathBuf,
    vocab: PathBuf,
    rule_id: String,
    row: u64,
    vocab_cache: Option<PathBuf>,
) -> CmdResult {
    let pack = mapping::load_pack(&mapping).map_err(|e| CliError::invalid(e.to_string()))?;
    let rule = pack.rules.iter().find(|r| r.id == rule_id).ok_or_else(|| {
        CliError::invalid(format!(
            "no rule `{rule_id}` in {}",
            mapping::pack_file(&mapping).display()
        ))
    })?;
    let src = &pack.sources[&rule.source];
    let work = std::env::temp_dir().join(format!("omopkit-explain-{}", std::process::id()));
    let src_dir = work.join("source");
    std::fs::create_dir_all(&src_dir)?;
    // Every other source is linked in whole; the rule's own source keeps only the header and the row.
    for other in pack.sources.values() {
        let from = source.join(&other.file);
        let to = src_dir.join(&other.file);
        if other.file != src.file {
            std::os::unix::fs::symlink(std::fs::canonicalize(&from)?, &to)?;
        }
    }
    let separator = src.separator.unwrap_or(',') as u8;
    let engine::DataRow { header, record } =
        engine::data_row(&source.join(&src.file), separator, row.max(1))?.ok_or_else(|| {
            CliError::invalid(format!(
                "{}: there is no data row {row}",
                source.join(&src.file).display()
            ))
        })?;
    let mut text = header;
    text.push(b'\n');
    text.extend_from_slice(&record);
    text.push(b'\n');
    std::fs::write(src_dir.join(&src.file), text)?;
    let out = work.join("out");
    let result = engine::run(&EtlOptions {
        pack: mapping.clone(),
        source: src_dir,
        vocab,
        vocab_cache,
        out: out.clone(),
        chunk_rows: None,
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e.into());
        }
    };
    outln!(
        "rule {} ({} → {}), {} row {row}:",
        rule.id,
        rule.source,
        rule_tables(rule).join(" | "),
        src.file
    );
    // Only the columns the pack declares are shown: the others (e.g. identity numbers) are never read.
    let one_row = engine::read_source(src, &work.join("source"))?;
    for c in one_row.columns() {
        let v = c.get(0).map(|v| v.to_string()).unwrap_or_default();
        outln!("  {:<34} {v}", format!("{}:", c.name()));
    }
    if let Some(r) = report.sources.iter().find(|r| r.rule == rule.id) {
        for why in r.filtered_by_reason.keys() {
            outln!("  filtered: {why}");
        }
        for why in r.rejected_by_reason.keys() {
            outln!(
                "  rejected: {why} (see _omopkit/quarantine/{}.parquet)",
                rule.id
            );
        }
    }
    for table in rule_tables(rule) {
        let lineage = out.join(format!("_omopkit/lineage/{table}.parquet"));
        let Ok(file) = std::fs::File::open(&lineage) else {
            continue;
        };
        let lin = ParquetReader::new(file)
            .finish()
            .map_err(|e| CliError::failed(e.to_string()))?;
        let rows = ParquetReader::new(std::fs::File::open(out.join(format!("{table}.parquet")))?)
            .finish()
            .map_err(|e| CliError::failed(e.to_string()))?;
        let mask = lin
            .column("rule_id")
            .and_then(|c| c.as_materialized_series().equal(rule.id.as_str()))
            .map_err(|e| CliError::failed(e.to_string()))?;
        let picked = rows
            .filter(&mask)
            .map_err(|e| CliError::failed(e.to_string()))?;
        for i in 0..picked.height() {
            outln!("  → {table} row:");
            for c in picked.columns() {
                let v = c.get(i).map(|v| v.to_string()).unwrap_or_default();
                let how = field_for(rule, table, c.name())
                    .map_or(String::new(), |(k, e)| format!("   ← {k}: {e}"));
                outln!("      {:<32} {v}{how}", c.name().as_str());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(ExitCode::SUCCESS)
}
