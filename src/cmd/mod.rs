//! Sub-commands of the `omopkit` CLI, one module each.

pub mod cohort;
pub mod etl;
pub mod mapping;
pub mod vocab;

use std::fmt;

/// An error that ends a command. The message is printed as is, so it must
/// already name the file, row or field at fault.
#[derive(Debug)]
pub struct CliError {
    message: String,
    /// 1 for failures of the run, 2 for bad usage or invalid input files.
    code: u8,
}

impl CliError {
    /// A failure with exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// Invalid input (exit code 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every library error converts into a failed run with its own message.
impl<E: std::error::Error> From<E> for CliError {
    fn from(err: E) -> Self {
        Self::failed(err.to_string())
    }
}

/// Result type of every sub-command.
pub type CmdResult = Result<std::process::ExitCode, CliError>;
