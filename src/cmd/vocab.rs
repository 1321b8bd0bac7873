//! `omopkit vocab`: load and query vocabularies.

use super::CmdResult;

/// Sub-commands of `omopkit vocab`.
#[derive(Debug, clap::Subcommand)]
pub enum VocabCommand {}

/// Runs a vocabulary sub-command.
pub fn run(command: VocabCommand) -> CmdResult {
    match command {}
}
