//! Static checks of a pack against the CDM specification.

use super::model::{Pack, Rule};
use super::slots;
use crate::cdm::{self, CdmVersion, TableSpec};
use crate::expr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The pack cannot run.
    Error,
    /// The pack runs, but probably not as intended.
    Warning,
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the pack, e.g. `rule conditions, field start_date`.
    pub location: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}", self.location, self.message)
    }
}

/// Columns a rule's expressions may use besides its source columns, filled by the concept look-up.
pub const VIRTUAL_COLUMNS: [&str; 3] = ["_concept_id", "_source_concept_id", "_domain_id"];

/// Source column names that hold national identity numbers; a pack must never read them.
const IDENTITY_COLUMNS: [&str; 8] = [
    "ssn",
    "fnr",
    "fodselsnummer",
    "fødselsnummer",
    "personnummer",
    "national_id",
    "nin",
    "dnr",
];

/// The CDM tables a rule can write: its `table` and every routed table, without duplicates.
pub fn rule_tables(rule: &Rule) -> Vec<&str> {
    let mut out = vec![rule.table.as_str()];
    if let Some(c) = &rule.concept {
        for t in c.domains.values() {
            if !out.contains(&t.as_str()) {
                out.push(t.as_str());
            }
        }
    }
    out
}

/// The expression (and the field name it came from) that fills `column` of `table` for `rule`.
pub fn field_for<'r>(rule: &'r Rule, table: &str, column: &str) -> Option<(&'r str, &'r str)> {
    if let Some((k, v)) = rule
        .table_fields
        .get(table)
        .and_then(|m| m.get_key_value(column))
    {
        return Some((k.as_str(), v.as_str()));
    }
    if let Some((k, v)) = rule.fields.get_key_value(column) {
        return Some((k.as_str(), v.as_str()));
    }
    rule.fields
        .iter()
        .find(|(k, _)| slots::is_slot(k) && slots::slot_column(table, k) == Some(column))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The columns of `table` that the engine fills itself for `rule` when the pack does not.
pub fn engine_filled(rule: &Rule, spec: &TableSpec, column: &str) -> bool {
    if spec.primary_key().is_some_and(|pk| pk.name == column) {
        return true;
    }
    if column == "person_id" && rule.person.is_some() {
        return true;
    }
    if rule.concept.is_some() {
        for slot in ["concept_id", "source_concept_id", "source_value"] {
            if slots::slot_column(spec.name, slot) == Some(column) {
                return true;
            }
        }
    }
    false
}

/// Lints a pack. Errors mean the pack cannot run.
pub fn lint(pack: &Pack) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut err = |location: String, message: String| {
        out.push(Diagnostic {
            severity: Severity::Error,
            location,
            message,
        });
    };
    let version = match pack.cdm_version.parse::<CdmVersion>() {
        Ok(CdmVersion::V54) => CdmVersion::V54,
        _ => {
            err(
                "cdm_version".into(),
                format!(
                    "`{}` is not supported; omopkit writes CDM 5.4",
                    pack.cdm_version
                ),
            );
            CdmVersion::V54
        }
    };

    for (name, source) in &pack.sources {
        for column in &source.columns {
            if IDENTITY_COLUMNS.contains(&column.to_lowercase().as_str()) {
                err(
                    format!("source {name}"),
                    format!(
                        "column `{column}` looks like a national identity number; remove it from `columns` so it is never read"
                    ),
                );
            }
        }
        for k in &source.key {
            if !source.columns.contains(k) {
                err(
                    format!("source {name}"),
                    format!("key column `{k}` is not listed in `columns`"),
                );
            }
        }
    }

    // Tables whose rows carry a source key, so that ref(table, key) can find them.
    let keyed: BTreeSet<&str> = pack
        .rules
        .iter()
        .filter(|r| r.key.is_some())
        .map(|r| r.table.as_str())
        .collect();
    let mut ids = BTreeMap::new();
    for (i, rule) in pack.rules.iter().enumerate() {
        let loc = format!("rule {} (#{})", rule.id, i + 1);
        if let Some(prev) = ids.insert(rule.id.as_str(), i) {
            err(
                loc.clone(),
                format!("duplicate rule id (also rule #{})", prev + 1),
            );
        }
        let Some(source) = pack.sources.get(&rule.source) else {
            let known: Vec<&str> = pack.sources.keys().map(String::as_str).collect();
            err(
                loc,
                format!(
                    "unknown source `{}` (sources: {})",
                    rule.source,
                    known.join(", ")
                ),
            );
            continue;
        };
        let mut specs = Vec::new();
        for t in rule_tables(rule) {
            match cdm::table(version, t) {
                Some(spec) => specs.push(spec),
                None => err(loc.clone(), format!("unknown CDM table `{t}`")),
            }
        }
        if specs.len() != rule_tables(rule).len() {
            continue;
        }
        if rule.key.is_some() && rule.concept.as_ref().is_some_and(|c| !c.domains.is_empty()) {
            err(
                loc.clone(),
                "a rule with `key` cannot route rows to other tables".into(),
            );
        }

        // Fields must be slots or columns of at least one table the rule writes.
        for name in rule.fields.keys() {
            if slots::is_slot(name) {
                if !specs
                    .iter()
                    .any(|s| slots::slot_column(s.name, name).is_some())
                {
                    err(
                        format!("{loc}, field {name}"),
                        format!(
                            "none of the tables {:?} has a `{name}` column",
                            rule_tables(rule)
                        ),
                    );
                }
            } else if !specs.iter().any(|s| s.field(name).is_some()) {
                err(
                    format!("{loc}, field {name}"),
                    format!("unknown CDM field `{name}` in table {}", rule.table),
                );
            }
            for s in &specs {
                if s.primary_key().is_some_and(|pk| pk.name == name) {
                    err(
                        format!("{loc}, field {name}"),
                        format!(
                            "`{name}` is the primary key of {}; omopkit assigns it",
                            s.name
                        ),
                    );
                }
            }
        }
        for (t, fields) in &rule.table_fields {
            match specs.iter().find(|s| s.name == t) {
                None => err(
                    format!("{loc}, table_fields.{t}"),
                    format!(
                        "`{t}` is not a table this rule writes ({:?})",
                        rule_tables(rule)
                    ),
                ),
                Some(s) => {
                    for name in fields.keys() {
                        if s.field(name).is_none() {
                            err(
                                format!("{loc}, table_fields.{t}.{name}"),
                                format!("unknown CDM field `{name}` in table {t}"),
                            );
                        }
                    }
                }
            }
        }

        // Every required column of every table the rule writes must get a value.
        for s in &specs {
            if s.field("person_id").is_some()
                && rule.person.is_none()
                && field_for(rule, s.name, "person_id").is_none()
                && s.name != "person"
            {
                err(
                    loc.clone(),
                    format!(
                        "table {} needs person_id: set `person` to the source person key",
                        s.name
                    ),
                );
            }
            for f in s.required_fields() {
                if field_for(rule, s.name, f.name).is_none()
                    && !engine_filled(rule, s, f.name)
                    && f.name != "person_id"
                {
                    err(
                        loc.clone(),
                        format!(
                            "required field {}.{} has no value: add it to `fields`",
                            s.name, f.name
                        ),
                    );
                }
            }
        }

        // Expressions parse and use known columns, functions and tables.
        let mut columns: BTreeSet<String> = source.columns.iter().cloned().collect();
        if rule.concept.is_some() {
            columns.extend(VIRTUAL_COLUMNS.iter().map(|c| c.to_string()));
        }
        let mut compiler = expr::Compiler::new(&columns, "__lint");
        let mut exprs: Vec<(String, &str)> = Vec::new();
        if let Some(w) = &rule.filter {
            exprs.push(("where".into(), w));
        }
        if let Some(k) = &rule.key {
            exprs.push(("key".into(), k));
        }
        if let Some(p) = &rule.person {
            exprs.push(("person".into(), p));
        }
        if let Some(c) = &rule.concept {
            exprs.push(("concept.code".into(), &c.code));
            if let Some(v) = &c.vocabulary_from {
                exprs.push(("concept.vocabulary_from".into(), v));
            }
            if let Some(v) = &c.valid_at {
                exprs.push(("concept.valid_at".into(), v));
            }
            if c.vocabularies.is_empty() && c.vocabulary_from.is_none() {
                err(
                    format!("{loc}, concept"),
                    "give `vocabularies` or `vocabulary_from`".into(),
                );
            }
        }
        for (k, v) in &rule.fields {
            exprs.push((format!("field {k}"), v));
        }
        for (t, m) in &rule.table_fields {
            for (k, v) in m {
                exprs.push((format!("table_fields.{t}.{k}"), v));
            }
        }
        for (what, text) in exprs {
            let result = expr::parse(text)
                .map_err(|e| e.to_string())
                .and_then(|ast| {
                    compiler
                        .compile(&ast, text)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = result {
                err(format!("{loc}, {what}"), format!("in `{text}`: {e}"));
            }
        }
        for j in &compiler.joins {
            if let expr::JoinKind::Ref { table, .. } = &j.kind {
                if cdm::table(version, table).is_none() {
                    err(
                        loc.clone(),
                        format!("ref() names unknown CDM table `{table}`"),
                    );
                } else if !keyed.contains(table.as_str()) {
                    err(
                        loc.clone(),
                        format!("ref({table}, ...) needs a rule that writes {table} with a `key`"),
                    );
                }
            }
        }
        if rule.person.is_some() && !keyed.contains("person") {
            err(
                loc.clone(),
                "`person` needs a rule that writes the person table with a `key`".into(),
            );
        }
        if let Some(d) = &rule.deduplicate {
            for c in d.by.iter().chain(&d.order) {
                if !specs.iter().any(|s| s.field(c).is_some()) {
                    err(
                        format!("{loc}, deduplicate"),
                        format!("`{c}` is not a column of {}", rule.table),
                    );
                }
            }
        }
    }

    if let Some(op) = &pack.observation_period {
        for t in &op.from {
            if cdm::table(version, t).is_none() {
                err(
                    "observation_period.from".into(),
                    format!("unknown CDM table `{t}`"),
                );
            }
        }
    }
    let used: BTreeSet<&str> = pack.rules.iter().map(|r| r.source.as_str()).collect();
    for name in pack.sources.keys() {
        if !used.contains(name.as_str()) {
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: format!("source {name}"),
                message: "no rule reads this source".into(),
            });
        }
    }
    out
}
