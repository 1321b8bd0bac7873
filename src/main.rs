//! `omopkit`: the command-line front end of the omopkit toolkit.
//!
//! Each sub-command lives in its own module under `cmd/` and returns a
//! [`CliError`]; `main` prints errors without a backtrace and sets the exit code.

/// `println!` for command output, except that a closed pipe (`omopkit ... | head`) ends the
/// program quietly with success instead of a panic, and another write error ends it with a
/// message.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// Ends the program after a failed write to standard output.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(1);
}

mod cmd;
mod demo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// polars and the cohort evaluator allocate many small buffers from several threads at once;
// mimalloc's thread-local free lists make that markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` enum in `mimalloc.h`,
/// the same in its versions 2 and 3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory in the process instead of handing it back to the OS
/// after a second: cohort queries free and reallocate buffers of the same sizes
/// over and over, and every page handed back costs a page fault and the kernel
/// zeroing it when it is taken again. Called once the large one-off
/// allocations (loading or building an index) are over, so that their
/// transient memory is still returned.
pub(crate) fn keep_freed_memory() {
    // SAFETY: sets one mimalloc option, a plain store the allocator reads
    // whenever it considers purging; any value is valid (-1: never purge).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Turns transparent huge pages off for this process. mimalloc asks for huge pages for its
/// arenas and hands freed 64 KiB ranges back to the OS; an ETL run frees and reallocates
/// large column buffers all the time, and each fault in such a range then made the kernel
/// zero a whole 2 MiB page. With huge pages off the ETL spent a third less time in the
/// kernel and peaked lower (100k Synthea patients: system time 6-7.7 s to 4.1 s, peak RSS
/// 1.73 to 1.63 GB). Call it before the large allocations start; it applies to memory
/// already mapped as well, at its next fault.
pub(crate) fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    // A kernel without it returns an error, which changes nothing and is ignored.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Build and explore OMOP CDM v5.4 data.
#[derive(Debug, Parser)]
#[command(name = "omopkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mapping pack over source tables and write OMOP CDM tables.
    Etl(cmd::etl::EtlArgs),
    /// Lint, test and explain mapping packs.
    #[command(subcommand)]
    Mapping(cmd::mapping::MappingCommand),
    /// Load and query an OMOP vocabulary.
    #[command(subcommand)]
    Vocab(cmd::vocab::VocabCommand),
    /// Evaluate OHDSI Circe cohort definitions over a CDM.
    #[command(subcommand)]
    Cohort(cmd::cohort::CohortCommand),
    /// Generate synthetic Synthea-style patients and a small vocabulary, then run the ETL on them.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Etl(args) => cmd::etl::run(args),
        Command::Mapping(c) => cmd::mapping::run(c),
        Command::Vocab(c) => cmd::vocab::run(c),
        Command::Cohort(c) => cmd::cohort::run(c),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs go to stderr; `RUST_LOG` selects the level (default: warnings only).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    /// The option number is mimalloc's purge delay: it has that option's default
    /// (1,000 ms in mimalloc 3), which its neighbours in the enum do not have.
    #[test]
    fn the_purge_delay_option_is_the_right_one() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one mimalloc option.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, 1000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_after_no_huge_pages() {
        super::no_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE only reads a flag of this process.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
