//! The OMOP Common Data Model: tables, fields, types and keys for CDM v5.4 and v5.3.
//!
//! The model is generated from the OHDSI specification CSVs (see [`codegen`]) into static
//! tables, so looking up a table or field costs nothing at run time. v5.4 is the version
//! omopkit writes; v5.3 is read as well (for example the Eunomia GiBleed data set is v5.3.1).
//!
//! ```
//! use omop_core::cdm::{self, CdmVersion};
//!
//! let person = cdm::table(CdmVersion::V54, "PERSON").unwrap();
//! assert_eq!(person.primary_key().map(|f| f.name), Some("person_id"));
//! let schema = person.polars_schema();
//! assert_eq!(schema.len(), person.fields.len());
//! ```
//!
//! # Storage types
//!
//! The spec only says `integer` for every id. omopkit stores them as follows, the same in
//! Arrow, polars and PostgreSQL ([`ColumnType`]):
//!
//! | spec type                          | Arrow / polars                 | PostgreSQL         |
//! |------------------------------------|--------------------------------|--------------------|
//! | `integer`, concept id              | Int32                          | `integer`          |
//! | `integer`, other name ending `_id` | Int64                          | `bigint`           |
//! | `integer`, anything else           | Int32                          | `integer`          |
//! | `bigint`                           | Int64                          | `bigint`           |
//! | `float`                            | Float64                        | `double precision` |
//! | `date`                             | Date32 / Date                  | `date`             |
//! | `datetime`                         | Timestamp(µs) / Datetime(µs)   | `timestamp`        |
//! | `varchar(n)`, `varchar(max)`       | Utf8 / String                  | `varchar(n)`, `text` |
//!
//! A concept id is a field named `concept_id`, a field ending in `_concept_id`, or a field with
//! a foreign key to `concept`. Numbered pairs such as `fact_id_1` or `domain_concept_id_2` follow
//! the rule for their name without the number, so `fact_relationship.fact_id_1` is Int64 like
//! the event ids it refers to. Concept ids fit in 32 bits, including local concepts from
//! 2,000,000,000 up; event and person ids get 64 bits so that stable hashed ids have room.
//!
//! # Conforming data frames
//!
//! [`TableSpec::conform`] turns a data frame into exactly the table's columns, in spec order
//! and with the storage types above. Rows with a null in a required field are not rejected by
//! `conform`; find them with [`TableSpec::required_null_mask`] (or
//! [`TableSpec::null_required_field`] for a per-row reason) and quarantine them.

pub mod codegen;
mod generated;

use std::fmt;
use std::str::FromStr;

use polars::prelude::{
    BooleanChunked, ChunkFull, ChunkFullNull, ChunkZip, Column, DataFrame, DataType as PlDataType,
    Expr, IntoColumn, PlSmallStr, Schema as PlSchema, StringChunked, TimeUnit as PlTimeUnit, col,
    lit,
};
use thiserror::Error;

/// A supported CDM version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CdmVersion {
    /// CDM v5.3 (including v5.3.1).
    V53,
    /// CDM v5.4 (including v5.4.x patch releases).
    V54,
}

impl CdmVersion {
    /// All supported versions, oldest first.
    pub const ALL: [CdmVersion; 2] = [CdmVersion::V53, CdmVersion::V54];

    /// The version as `major.minor`, e.g. `"5.4"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CdmVersion::V53 => "5.3",
            CdmVersion::V54 => "5.4",
        }
    }
}

impl fmt::Display for CdmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CdmVersion {
    type Err = CdmError;

    /// Parses `5.3`, `5.3.1`, `v5.4`, `V5.4.0`, `CDM v5.4` and similar spellings (as found in
    /// `cdm_source.cdm_version`). Only the major and minor numbers matter.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || CdmError::UnknownVersion(s.to_string());
        let mut t = s.trim();
        if t.len() >= 3 && t[..3].eq_ignore_ascii_case("cdm") {
            t = t[3..].trim_start();
        }
        let t = t
            .strip_prefix('v')
            .or_else(|| t.strip_prefix('V'))
            .unwrap_or(t);
        let mut parts = t.split('.');
        let major = parts.next().ok_or_else(unknown)?;
        let minor = parts.next().ok_or_else(unknown)?;
        for patch in parts {
            if patch.is_empty() || !patch.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
        }
        match (major, minor) {
            ("5", "3") => Ok(CdmVersion::V53),
            ("5", "4") => Ok(CdmVersion::V54),
            _ => Err(unknown()),
        }
    }
}

/// Errors from the CDM model.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CdmError {
    /// A version string that is not 5.3 or 5.4.
    #[error("unknown CDM version `{0}`: expected 5.3 or 5.4 (e.g. `5.4`, `v5.3.1`)")]
    UnknownVersion(String),
    /// A required field is absent from a data frame.
    #[error("table `{table}`: required field `{field}` is missing from the input columns")]
    MissingRequiredField {
        /// The CDM table.
        table: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A column could not be converted to the field's storage type.
    #[error(
        "table `{table}`: field `{field}`: cannot convert column of type {from} to {to}{detail}"
    )]
    Cast {
        /// The CDM table.
        table: &'static str,
        /// The field.
        field: &'static str,
        /// The input column type.
        from: String,
        /// The field's storage type.
        to: String,
        /// How many values failed and where (no values are quoted).
        detail: String,
    },
    /// An error from polars while assembling the output frame.
    #[error("table `{table}`: {message}")]
    Frame {
        /// The CDM table.
        table: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// A data type as written in the CDM specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CdmType {
    /// `integer`
    Integer,
    /// `bigint`
    Bigint,
    /// `float`
    Float,
    /// `date`
    Date,
    /// `datetime`
    Datetime,
    /// `varchar(n)`, or `varchar(max)` when the length is `None`.
    Varchar(Option<u32>),
}

impl fmt::Display for CdmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdmType::Integer => f.write_str("integer"),
            CdmType::Bigint => f.write_str("bigint"),
            CdmType::Float => f.write_str("float"),
            CdmType::Date => f.write_str("date"),
            CdmType::Datetime => f.write_str("datetime"),
            CdmType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            CdmType::Varchar(None) => f.write_str("varchar(max)"),
        }
    }
}

/// The type a field is stored as, shared by Arrow, polars and PostgreSQL (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// 32-bit integer (concept ids and counts).
    Int32,
    /// 64-bit integer (person, event and other ids).
    Int64,
    /// 64-bit float.
    Float64,
    /// Calendar date.
    Date,
    /// Timestamp with microsecond precision, no time zone.
    Timestamp,
    /// UTF-8 text.
    Utf8,
}

impl ColumnType {
    /// The Arrow data type.
    pub fn arrow(self) -> arrow::datatypes::DataType {
        use arrow::datatypes::{DataType, TimeUnit};
        match self {
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Utf8 => DataType::Utf8,
        }
    }

    /// The polars data type.
    pub fn polars(self) -> PlDataType {
        match self {
            ColumnType::Int32 => PlDataType::Int32,
            ColumnType::Int64 => PlDataType::Int64,
            ColumnType::Float64 => PlDataType::Float64,
            ColumnType::Date => PlDataType::Date,
            ColumnType::Timestamp => PlDataType::Datetime(PlTimeUnit::Microseconds, None),
            ColumnType::Utf8 => PlDataType::String,
        }
    }
}

/// The schema a table belongs to in the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableSchema {
    /// Clinical, health-system, derived and metadata tables.
    Cdm,
    /// Standardized vocabulary tables.
    Vocab,
    /// Results tables (`cohort`, `cohort_definition` in v5.4).
    Results,
}

/// A foreign key of a field. Table and field names are lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ForeignKey {
    /// The referenced table, e.g. `"concept"`.
    pub table: &'static str,
    /// The referenced field, e.g. `"concept_id"`.
    pub field: &'static str,
    /// For concept references, the expected domain (e.g. `"Gender"`), as written in the spec.
    pub domain: Option<&'static str>,
    /// For concept references, the expected concept class (e.g. `"Ingredient"`).
    pub class: Option<&'static str>,
}

/// One field (column) of a CDM table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FieldSpec {
    /// Field name, lower case.
    pub name: &'static str,
    /// The data type in the spec.
    pub datatype: CdmType,
    /// Whether the spec requires a value (`isRequired`).
    pub required: bool,
    /// Whether the field is the table's primary key.
    pub primary_key: bool,
    /// The referenced table and field, if any.
    pub foreign_key: Option<ForeignKey>,
}

impl FieldSpec {
    /// Whether the field holds a concept id (see the module docs).
    pub fn is_concept_id(&self) -> bool {
        let base = base_name(self.name);
        base == "concept_id"
            || base.ends_with("_concept_id")
            || self.foreign_key.is_some_and(|fk| fk.table == "concept")
    }

    /// The storage type of the field (see the module docs for the rule).
    pub fn column_type(&self) -> ColumnType {
        match self.datatype {
            CdmType::Integer if self.is_concept_id() => ColumnType::Int32,
            CdmType::Integer if base_name(self.name).ends_with("_id") => ColumnType::Int64,
            CdmType::Integer => ColumnType::Int32,
            CdmType::Bigint => ColumnType::Int64,
            CdmType::Float => ColumnType::Float64,
            CdmType::Date => ColumnType::Date,
            CdmType::Datetime => ColumnType::Timestamp,
            CdmType::Varchar(_) => ColumnType::Utf8,
        }
    }

    /// The Arrow data type of the field.
    pub fn arrow_type(&self) -> arrow::datatypes::DataType {
        self.column_type().arrow()
    }

    /// The Arrow field, nullable unless the field is required.
    pub fn arrow_field(&self) -> arrow::datatypes::Field {
        arrow::datatypes::Field::new(self.name, self.arrow_type(), !self.required)
    }

    /// The polars data type of the field.
    pub fn polars_dtype(&self) -> PlDataType {
        self.column_type().polars()
    }

    /// The PostgreSQL column type, e.g. `bigint` or `varchar(50)`.
    pub fn postgres_type(&self) -> String {
        match (self.column_type(), self.datatype) {
            (ColumnType::Int32, _) => "integer".into(),
            (ColumnType::Int64, _) => "bigint".into(),
            (ColumnType::Float64, _) => "double precision".into(),
            (ColumnType::Date, _) => "date".into(),
            (ColumnType::Timestamp, _) => "timestamp".into(),
            (ColumnType::Utf8, CdmType::Varchar(Some(n))) => format!("varchar({n})"),
            (ColumnType::Utf8, _) => "text".into(),
        }
    }
}

/// `fact_id_1` → `fact_id`: strips a trailing `_<digits>` suffix.
fn base_name(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

/// One table of the CDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TableSpec {
    /// Table name, lower case.
    pub name: &'static str,
    /// The schema the table belongs to.
    pub schema: TableSchema,
    /// Whether the spec requires the table to be populated.
    pub required: bool,
    /// The fields, in spec order.
    pub fields: &'static [FieldSpec],
}

impl TableSpec {
    /// Looks up a field by name, ignoring ASCII case.
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The primary-key field, if the table has one (every CDM primary key is a single field).
    pub fn primary_key(&self) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.primary_key)
    }

    /// The required fields, in spec order.
    pub fn required_fields(&self) -> impl Iterator<Item = &'static FieldSpec> + use<> {
        self.fields.iter().filter(|f| f.required)
    }

    /// The Arrow schema of the table (nullable = not required).
    pub fn arrow_schema(&self) -> arrow::datatypes::Schema {
        arrow::datatypes::Schema::new(
            self.fields
                .iter()
                .map(FieldSpec::arrow_field)
                .collect::<Vec<_>>(),
        )
    }

    /// The polars schema of the table, in spec order.
    pub fn polars_schema(&self) -> PlSchema {
        self.fields
            .iter()
            .map(|f| (PlSmallStr::from_static(f.name), f.polars_dtype()))
            .collect()
    }

    /// A PostgreSQL `CREATE TABLE` statement for the table in `schema` (no schema prefix when
    /// `schema` is empty). Required fields are `NOT NULL`; the primary key is declared inline.
    /// Foreign keys are not declared, so tables can be loaded in any order.
    pub fn postgres_ddl(&self, schema: &str) -> String {
        let mut name = String::new();
        if !schema.is_empty() {
            name.push_str(&pg_ident(schema));
            name.push('.');
        }
        name.push_str(&pg_ident(self.name));
        let mut lines: Vec<String> = self
            .fields
            .iter()
            .map(|f| {
                let not_null = if f.required { " NOT NULL" } else { "" };
                format!("    {} {}{not_null}", pg_ident(f.name), f.postgres_type())
            })
            .collect();
        if let Some(pk) = self.primary_key() {
            lines.push(format!("    PRIMARY KEY ({})", pg_ident(pk.name)));
        }
        format!("CREATE TABLE {name} (\n{}\n);\n", lines.join(",\n"))
    }

    /// Returns the input column for `field`: an exact name match, else a match ignoring ASCII
    /// case (so upper-case exports such as `PERSON_ID` are accepted).
    fn input_column<'a>(&self, df: &'a DataFrame, field: &FieldSpec) -> Option<&'a Column> {
        df.column(field.name).ok().or_else(|| {
            df.columns()
                .iter()
                .find(|c| c.name().eq_ignore_ascii_case(field.name))
        })
    }

    /// Conforms a data frame to the table.
    ///
    /// The result has exactly the table's fields, in spec order, each cast to
    /// [`FieldSpec::polars_dtype`]. Input columns are matched by name (exactly, else ignoring
    /// case); other input columns are dropped. A missing optional field becomes a column of
    /// typed nulls; a missing required field is an error naming the table and field. A value
    /// that cannot be converted (text that is not a number, an integer that overflows Int32)
    /// is an error naming the table, field and the number of failing rows. Floats cast to
    /// integer fields are truncated. Nulls in required fields are kept: see
    /// [`TableSpec::required_null_mask`].
    pub fn conform(&self, df: DataFrame) -> Result<DataFrame, CdmError> {
        let height = df.height();
        let mut columns = Vec::with_capacity(self.fields.len());
        for field in self.fields {
            let dtype = field.polars_dtype();
            let name = PlSmallStr::from_static(field.name);
            let column = match self.input_column(&df, field) {
                None if field.required => {
                    return Err(CdmError::MissingRequiredField {
                        table: self.name,
                        field: field.name,
                    });
                }
                None => Column::full_null(name, height, &dtype),
                Some(c) if c.dtype() == &dtype => c.clone().with_name(name),
                Some(c) => self.cast(field, c, &dtype)?.with_name(name),
            };
            columns.push(column);
        }
        DataFrame::new(height, columns).map_err(|e| CdmError::Frame {
            table: self.name,
            message: e.to_string(),
        })
    }

    fn cast(&self, field: &FieldSpec, c: &Column, dtype: &PlDataType) -> Result<Column, CdmError> {
        let err = |detail: String| CdmError::Cast {
            table: self.name,
            field: field.name,
            from: c.dtype().to_string(),
            to: dtype.to_string(),
            detail,
        };
        // Non-strict cast, then compare null counts: polars' own strict-cast error quotes the
        // offending values, which must not end up in logs.
        let cast = c
            .cast(dtype)
            .map_err(|_| err(": conversion not supported".to_string()))?;
        if cast.null_count() > c.null_count() {
            let lost = &c.is_not_null() & &cast.is_null();
            let count = lost.sum().unwrap_or(0);
            let first = lost.iter().position(|v| v == Some(true)).unwrap_or(0);
            return Err(err(format!(
                ": {count} value(s) could not be converted, first at row {first} (0-based)"
            )));
        }
        Ok(cast)
    }

    /// For each row of `df`, whether any required field is null. Rows marked `true` break the
    /// spec and should be quarantined. Errors if a required field is missing from `df`.
    pub fn required_null_mask(&self, df: &DataFrame) -> Result<BooleanChunked, CdmError> {
        let mut mask =
            BooleanChunked::full(PlSmallStr::from_static("required_null"), false, df.height());
        for field in self.required_fields() {
            let c = self.required_column(df, field)?;
            if c.has_nulls() {
                mask = &mask | &c.is_null();
            }
        }
        Ok(mask)
    }

    /// For each row of `df`, the name of the first required field (in spec order) that is
    /// null, or null when the row has all required values. Useful as a quarantine reason.
    /// Errors if a required field is missing from `df`.
    pub fn null_required_field(&self, df: &DataFrame) -> Result<Column, CdmError> {
        let name = PlSmallStr::from_static("null_required_field");
        let height = df.height();
        let mut out = StringChunked::full_null(name.clone(), height);
        let required: Vec<&FieldSpec> = self.required_fields().collect();
        for field in required.into_iter().rev() {
            let c = self.required_column(df, field)?;
            if !c.has_nulls() {
                continue;
            }
            let this = StringChunked::full(name.clone(), field.name, height);
            out = this
                .zip_with(&c.is_null(), &out)
                .map_err(|e| CdmError::Frame {
                    table: self.name,
                    message: e.to_string(),
                })?;
        }
        Ok(out.into_column())
    }

    /// A lazy expression that is `true` for rows with a null in any required field, for use
    /// on frames that already carry the table's column names (e.g. after [`TableSpec::conform`]
    /// or inside a lazy plan). `false` for tables without required fields.
    pub fn required_null_expr(&self) -> Expr {
        self.required_fields()
            .map(|f| col(f.name).is_null())
            .reduce(Expr::or)
            .unwrap_or_else(|| lit(false))
    }

    fn required_column<'a>(
        &self,
        df: &'a DataFrame,
        field: &FieldSpec,
    ) -> Result<&'a Column, CdmError> {
        self.input_column(df, field)
            .ok_or(CdmError::MissingRequiredField {
                table: self.name,
                field: field.name,
            })
    }
}

/// PostgreSQL keywords that cannot be used as bare column or table names.
const PG_RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// Quotes a PostgreSQL identifier unless it is a plain lower-case identifier that is not a
/// reserved word (`note_nlp.offset` is quoted).
fn pg_ident(s: &str) -> String {
    let mut chars = s.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !PG_RESERVED.contains(&s);
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// All tables of a CDM version, in spec order.
pub fn tables(version: CdmVersion) -> &'static [TableSpec] {
    match version {
        CdmVersion::V53 => generated::V53,
        CdmVersion::V54 => generated::V54,
    }
}

/// Looks up a table by name, ignoring ASCII case.
pub fn table(version: CdmVersion, name: &str) -> Option<&'static TableSpec> {
    tables(version)
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests;
