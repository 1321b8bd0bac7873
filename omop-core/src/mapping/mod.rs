//! Mapping packs: loading, schema validation and lint.
//!
//! A pack is a folder with `pack.yaml` (the rules) and optionally `tests.yaml`
//! (source rows and the CDM rows they must become). The YAML is first checked
//! against the pack JSON Schema, then parsed into [`Pack`], then linted against
//! the CDM specification: unknown tables and fields, expressions that do not
//! parse or name unknown columns, rules whose references cannot be resolved.

pub mod lint;
mod model;
pub mod slots;

pub use lint::{Diagnostic, Severity, lint};
pub use model::*;

use std::path::{Path, PathBuf};

/// An error reading a pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the pack model.
    #[error("{path}:{line}:{column}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The YAML does not match the JSON Schema.
    #[error("{path}: does not match the mapping pack schema:\n{}", .problems.join("\n"))]
    Schema {
        /// The file.
        path: PathBuf,
        /// One line per schema violation, with its location in the document.
        problems: Vec<String>,
    },
    /// The pack has lint errors.
    #[error("{path}: {} lint error(s):\n{}", .errors.len(), .errors.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Lint {
        /// The file.
        path: PathBuf,
        /// The errors.
        errors: Vec<Diagnostic>,
    },
}

/// The JSON Schema of `pack.yaml`, generated from the Rust model.
pub fn pack_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Pack)).unwrap_or(serde_json::Value::Null)
}

/// The file name of a pack's rules inside its folder.
pub const PACK_FILE: &str = "pack.yaml";

/// Resolves a pack path: a folder holding `pack.yaml`, or the YAML file itself.
pub fn pack_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(PACK_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads, validates and parses a pack (no lint). `path` is the folder or the YAML file.
pub fn load_pack(path: &Path) -> Result<Pack, PackError> {
    let file = pack_file(path);
    let text = std::fs::read_to_string(&file).map_err(|source| PackError::Io {
        path: file.clone(),
        source,
    })?;
    parse_pack(&text, &file)
}

/// Parses pack YAML text; `path` is used in messages only.
pub fn parse_pack(text: &str, path: &Path) -> Result<Pack, PackError> {
    let value: serde_json::Value = parse_yaml(text, path)?;
    validate_schema(&value, path)?;
    // The schema accepted the document, so typed parsing errors are rare; they still carry locations.
    parse_yaml(text, path)
}

/// Parses YAML into any deserialisable type, with file:line:column errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, PackError> {
    serde_norway::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        PackError::Yaml {
            path: path.to_path_buf(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

fn validate_schema(value: &serde_json::Value, path: &Path) -> Result<(), PackError> {
    let schema = pack_schema();
    let validator = jsonschema::validator_for(&schema).map_err(|e| PackError::Schema {
        path: path.to_path_buf(),
        problems: vec![format!("internal schema error: {e}")],
    })?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!(
                "  at {}: {e}",
                if at.is_empty() { "/" } else { at.as_str() }
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PackError::Schema {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Loads a pack and fails on lint errors; warnings are returned.
pub fn load_and_lint(path: &Path) -> Result<(Pack, Vec<Diagnostic>), PackError> {
    let pack = load_pack(path)?;
    let diags = lint(&pack);
    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if errors.is_empty() {
        Ok((pack, warnings))
    } else {
        Err(PackError::Lint {
            path: pack_file(path),
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_yaml_names_line_and_column() {
        let err = parse_pack("name: x\nsources:\n  a: [1,\n", Path::new("p.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("p.yaml:"), "{msg}");
        let PackError::Yaml { line, column, .. } = err else {
            panic!("expected a YAML error, got {msg}")
        };
        assert!(line >= 3 && column >= 1, "{msg}");
    }

    #[test]
    fn schema_violation_names_the_path() {
        let err = parse_pack(
            "name: x\nsources: {}\nrules: []\nbogus: 1\n",
            Path::new("p.yaml"),
        )
        .unwrap_err();
        assert!(matches!(err, PackError::Schema { .. }), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = parse_pack(
            "name: x\nsources: {}\nrules: [{id: r}]\n",
            Path::new("p.yaml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/rules/0"), "{err}");
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/mapping-pack.schema.json");
        let current =
            serde_json::to_string_pretty(&pack_schema()).expect("schema serialises") + "\n";
        if std::env::var_os("OMOPKIT_BLESS").is_some() {
            std::fs::write(&path, &current).expect("write schema");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == current,
            "{} is out of date; rerun with OMOPKIT_BLESS=1",
            path.display()
        );
    }
}
