//! Compilation of parsed expressions into polars expressions.
//!
//! Functions that need another table (`ref`, `source_concept_id`,
//! `standard_concept_id`) cannot be a single polars expression: the compiler
//! records them as [`JoinRequest`]s and returns a reference to the column the
//! engine will add by joining. Parsing functions (`date`, `number`, ...) record a
//! [`Check`] so that values that fail to parse send their row to quarantine
//! instead of silently becoming null.

use super::parse::{Ast, BinOp, Lit};
use polars::prelude::*;
use std::collections::BTreeSet;
use std::fmt;

/// A data check attached to an expression: rows where `bad` is true are rejected with `reason`.
#[derive(Debug, Clone)]
pub struct Check {
    /// True for rows that fail the check.
    pub bad: Expr,
    /// Why such a row is rejected.
    pub reason: String,
}

/// What a join request looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinKind {
    /// The id of a row of a CDM table, by that row's source key.
    Ref {
        /// The CDM table.
        table: String,
        /// The column to return; `None` for the row's id.
        column: Option<String>,
    },
    /// The concept id of a (vocabulary, code) pair.
    SourceConcept,
    /// The standard concept a (vocabulary, code) pair 'Maps to' (the smallest id if several).
    StandardConcept,
}

/// A column the engine adds by a left join before the expressions run.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// What to look up.
    pub kind: JoinKind,
    /// The key (a source code or a source key).
    pub key: Expr,
    /// The vocabulary id, for concept look-ups.
    pub vocabulary: Option<Expr>,
    /// The vocabulary id when it is a literal (`standard_concept_id('UCUM', UNITS)`): then the
    /// look-up can be keyed by the code alone.
    pub vocabulary_id: Option<String>,
    /// Name of the column that receives the result.
    pub output: String,
    /// Identifies the key expression: look-ups with the same kind of target and key share one join.
    pub key_id: String,
    dedup_key: String,
}

/// A compile error: an unknown column or function, or a wrong argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

/// Names and arities of the built-in functions, for documentation and lint messages.
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "date(x)",
        "parses 'YYYY-MM-DD' or the date part of an ISO 8601 timestamp",
    ),
    (
        "datetime(x)",
        "parses an ISO 8601 timestamp ('YYYY-MM-DDTHH:MM:SS[Z]') or a date",
    ),
    ("number(x)", "parses a decimal number"),
    ("int(x)", "parses a whole number"),
    (
        "try_date(x) / try_datetime(x) / try_number(x) / try_int(x)",
        "like date() etc., but null instead of a rejected row when the text does not parse",
    ),
    (
        "replace(x, from, to)",
        "replaces every occurrence of the text `from`",
    ),
    ("text(x)", "converts to text"),
    ("year(d) / month(d) / day(d)", "parts of a date"),
    ("as_date(t)", "the date of a timestamp"),
    ("date_add(d, n)", "the date n days after d"),
    ("days_between(a, b)", "days from a to b"),
    ("coalesce(a, b, ...)", "the first non-null value"),
    ("concat(a, b, ...)", "text concatenation, skipping nulls"),
    ("if(cond, a, b)", "a where cond is true, else b"),
    ("map(x, {k: v, ...}[, default])", "value mapping"),
    ("nullif(x, v)", "null where x equals v"),
    (
        "lower(x) / upper(x) / trim(x)",
        "text case and surrounding spaces",
    ),
    (
        "substr(x, start, len)",
        "part of a text, start counted from 1",
    ),
    (
        "least(a, ...) / greatest(a, ...)",
        "smallest / largest value",
    ),
    (
        "ref(table, key[, column])",
        "the id (or another column) of the row of a CDM table written with that source key",
    ),
    (
        "source_concept_id(vocabulary, code)",
        "the concept id of a code",
    ),
    (
        "standard_concept_id(vocabulary, code)",
        "the standard concept the code 'Maps to'",
    ),
];

/// Compiles expressions of one rule. Join requests accumulate across calls and are
/// shared when two expressions ask for the same look-up.
pub struct Compiler<'a> {
    columns: &'a BTreeSet<String>,
    /// Joins the engine must perform before evaluating the compiled expressions.
    pub joins: Vec<JoinRequest>,
    /// Parse checks collected so far.
    pub checks: Vec<Check>,
    /// Source columns the expressions read.
    pub used_columns: BTreeSet<String>,
    /// Parsed values computed once as columns of their own (see [`Compiler::hoisting`]), in
    /// the order they must be added.
    pub hoisted: Vec<(String, Expr)>,
    hoist: bool,
    prefix: String,
}

impl<'a> Compiler<'a> {
    /// A compiler for expressions over `columns`; generated join columns start with `prefix`.
    pub fn new(columns: &'a BTreeSet<String>, prefix: &str) -> Self {
        Self {
            columns,
            joins: Vec::new(),
            checks: Vec::new(),
            used_columns: BTreeSet::new(),
            hoisted: Vec::new(),
            hoist: false,
            prefix: prefix.to_string(),
        }
    }

    /// Compiles `date(x)` and `datetime(x)` (and their `try_` forms) over source columns to
    /// columns of [`Compiler::hoisted`], which the caller adds before evaluating the compiled
    /// expressions: each text is parsed once, however many fields and checks read it.
    pub fn hoisting(mut self) -> Self {
        self.hoist = true;
        self
    }

    /// `parsed` as a hoisted column when hoisting is on and `arg` needs no look-up.
    fn hoisted(&mut self, kind: &str, arg: &Ast, parsed: Expr) -> Expr {
        fn looks_up(ast: &Ast) -> bool {
            match ast {
                Ast::Call(name, args) => {
                    matches!(
                        name.as_str(),
                        "ref" | "source_concept_id" | "standard_concept_id"
                    ) || args.iter().any(looks_up)
                }
                Ast::Neg(a)
                | Ast::Not(a)
                | Ast::IsNull { expr: a, .. }
                | Ast::In { expr: a, .. } => looks_up(a),
                Ast::Binary(_, a, b) => looks_up(a) || looks_up(b),
                Ast::Column(_) | Ast::Lit(_) | Ast::Map(_) => false,
            }
        }
        if !self.hoist || looks_up(arg) {
            return parsed;
        }
        let name = format!("{}p:{kind}:{arg:?}", self.prefix);
        if !self.hoisted.iter().any(|(n, _)| n == &name) {
            self.hoisted.push((name.clone(), parsed));
        }
        col(name.as_str())
    }

    /// Compiles one expression. `source` is its text, used in check reasons.
    pub fn compile(&mut self, ast: &Ast, source: &str) -> Result<Expr, CompileError> {
        self.expr(ast, source)
    }

    fn expr(&mut self, ast: &Ast, src: &str) -> Result<Expr, CompileError> {
        Ok(match ast {
            Ast::Column(name) => {
                if !self.columns.contains(name) {
                    let known: Vec<&str> = self.columns.iter().map(String::as_str).collect();
                    return Err(CompileError(format!(
                        "unknown column `{name}` (known: {})",
                        known.join(", ")
                    )));
                }
                self.used_columns.insert(name.clone());
                col(name.as_str())
            }
            Ast::Lit(l) => lit_expr(l),
            Ast::Neg(e) => lit(0) - self.expr(e, src)?,
            Ast::Not(e) => self.expr(e, src)?.not(),
            Ast::Binary(op, a, b) => {
                let (a, b) = (self.expr(a, src)?, self.expr(b, src)?);
                match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    BinOp::Eq => a.eq(b),
                    BinOp::Ne => a.neq(b),
                    BinOp::Lt => a.lt(b),
                    BinOp::Le => a.lt_eq(b),
                    BinOp::Gt => a.gt(b),
                    BinOp::Ge => a.gt_eq(b),
                    BinOp::And => a.and(b),
                    BinOp::Or => a.or(b),
                }
            }
            Ast::IsNull { expr, negated } => {
                let e = self.expr(expr, src)?;
                if *negated {
                    e.is_not_null()
                } else {
                    e.is_null()
                }
            }
            Ast::In {
                expr,
                list,
                negated,
            } => {
                let e = self.expr(expr, src)?;
                let mut any = lit(false);
                for l in list {
                    any = any.or(e.clone().eq(lit_expr(l)));
                }
                let any = any.fill_null(lit(false));
                if *negated { any.not() } else { any }
            }
            Ast::Map(_) => {
                return Err(CompileError(
                    "a {key: value} map is only valid as the second argument of map()".into(),
                ));
            }
            Ast::Call(name, args) => self.call(name, args, src)?,
        })
    }

    fn args(
        &mut self,
        name: &str,
        args: &[Ast],
        n: std::ops::RangeInclusive<usize>,
        src: &str,
    ) -> Result<Vec<Expr>, CompileError> {
        if !n.contains(&args.len()) {
            let want = if n.start() == n.end() {
                n.start().to_string()
            } else {
                format!("{} to {}", n.start(), n.end())
            };
            return Err(CompileError(format!(
                "{name}() takes {want} argument(s), got {}",
                args.len()
            )));
        }
        args.iter().map(|a| self.expr(a, src)).collect()
    }

    fn call(&mut self, name: &str, args: &[Ast], src: &str) -> Result<Expr, CompileError> {
        let many = 1..=usize::MAX;
        Ok(match name {
            "date" | "try_date" => {
                let x = self.args(name, args, 1..=1, src)?.remove(0);
                let out = self.hoisted("date", &args[0], parse_date(x.clone()));
                if name == "date" {
                    self.check_parsed(x, out.clone(), src, "a date (YYYY-MM-DD)");
                }
                out
            }
            "datetime" | "try_datetime" => {
                let x = self.args(name, args, 1..=1, src)?.remove(0);
                let out = self.hoisted("datetime", &args[0], parse_datetime(x.clone()));
                if name == "datetime" {
                    self.check_parsed(
                        x,
                        out.clone(),
                        src,
                        "a timestamp (YYYY-MM-DDTHH:MM:SS) or a date",
                    );
                }
                out
            }
            "number" | "try_number" | "int" | "try_int" => {
                let x = self.args(name, args, 1..=1, src)?.remove(0);
                let whole = name.ends_with("int");
                let dtype = if whole {
                    DataType::Int64
                } else {
                    DataType::Float64
                };
                let out = x
                    .clone()
                    .cast(DataType::String)
                    .str()
                    .strip_chars(lit(NULL))
                    .cast(dtype);
                if !name.starts_with("try_") {
                    self.check_parsed(
                        x,
                        out.clone(),
                        src,
                        if whole { "a whole number" } else { "a number" },
                    );
                }
                out
            }
            "text" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .cast(DataType::String),
            "year" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .dt()
                .year()
                .cast(DataType::Int32),
            "month" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .dt()
                .month()
                .cast(DataType::Int32),
            "day" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .dt()
                .day()
                .cast(DataType::Int32),
            "as_date" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .cast(DataType::Date),
            "date_add" => {
                let mut a = self.args(name, args, 2..=2, src)?;
                let n = a.remove(1);
                let d = a.remove(0);
                (d.cast(DataType::Int32) + n.cast(DataType::Int32)).cast(DataType::Date)
            }
            "days_between" => {
                let mut a = self.args(name, args, 2..=2, src)?;
                let b = a.remove(1);
                let x = a.remove(0);
                b.cast(DataType::Date).cast(DataType::Int32)
                    - x.cast(DataType::Date).cast(DataType::Int32)
            }
            "coalesce" => coalesce(&self.args(name, args, many, src)?),
            "concat" => concat_str(self.args(name, args, many, src)?, "", true),
            "if" => {
                let mut a = self.args(name, args, 3..=3, src)?;
                let otherwise = a.remove(2);
                let then = a.remove(1);
                when(a.remove(0).fill_null(lit(false)))
                    .then(then)
                    .otherwise(otherwise)
            }
            "nullif" => {
                let mut a = self.args(name, args, 2..=2, src)?;
                let v = a.remove(1);
                let x = a.remove(0);
                when(x.clone().eq(v).fill_null(lit(false)))
                    .then(lit(NULL))
                    .otherwise(x)
            }
            "replace" => {
                let (Some(Ast::Lit(Lit::Str(from))), Some(Ast::Lit(Lit::Str(to)))) =
                    (args.get(1), args.get(2))
                else {
                    return Err(CompileError(
                        "replace() takes (value, 'from', 'to') with texts in quotes".into(),
                    ));
                };
                let (from, to) = (from.clone(), to.clone());
                let x = self.args(name, &args[..1], 1..=1, src)?.remove(0);
                x.cast(DataType::String).map(
                    move |c: Column| {
                        let ca = c.str()?;
                        let out: StringChunked = ca.apply_into_string_amortized(|v, buf| {
                            buf.push_str(&v.replace(from.as_str(), to.as_str()))
                        });
                        Ok(out.into_column())
                    },
                    |_, f: &Field| Ok(Field::new(f.name().clone(), DataType::String)),
                )
            }
            "lower" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .str()
                .to_lowercase(),
            "upper" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .str()
                .to_uppercase(),
            "trim" => self
                .args(name, args, 1..=1, src)?
                .remove(0)
                .str()
                .strip_chars(lit(NULL)),
            "substr" => {
                let mut a = self.args(name, args, 3..=3, src)?;
                let len = a.remove(2);
                let start = a.remove(1);
                a.remove(0).str().slice(start - lit(1), len)
            }
            "least" => polars::lazy::dsl::min_horizontal(self.args(name, args, many, src)?)
                .map_err(|e| CompileError(e.to_string()))?,
            "greatest" => polars::lazy::dsl::max_horizontal(self.args(name, args, many, src)?)
                .map_err(|e| CompileError(e.to_string()))?,
            "map" => self.map_call(args, src)?,
            "ref" => {
                if !(2..=3).contains(&args.len()) {
                    return Err(CompileError(format!(
                        "ref() takes 2 or 3 arguments (table, key[, column]), got {}",
                        args.len()
                    )));
                }
                let table = match &args[0] {
                    Ast::Column(t) | Ast::Lit(Lit::Str(t)) => t.clone(),
                    _ => {
                        return Err(CompileError(
                            "the first argument of ref() must be a CDM table name".into(),
                        ));
                    }
                };
                let column = match args.get(2) {
                    None => None,
                    Some(Ast::Lit(Lit::Str(c))) => Some(c.clone()),
                    Some(_) => {
                        return Err(CompileError(
                            "the third argument of ref() must be a column name in quotes".into(),
                        ));
                    }
                };
                let key = self.expr(&args[1], src)?.cast(DataType::String);
                let key_id = format!("ref:{table}:{:?}", args[1]);
                let dedup = format!("{key_id}:{column:?}");
                self.join(JoinKind::Ref { table, column }, key, None, key_id, dedup)?
            }
            "source_concept_id" | "standard_concept_id" => {
                let mut a = self.args(name, args, 2..=2, src)?;
                let code = a.remove(1).cast(DataType::String);
                let vocab = a.remove(0).cast(DataType::String);
                let kind = if name == "source_concept_id" {
                    JoinKind::SourceConcept
                } else {
                    JoinKind::StandardConcept
                };
                let id = format!("{name}:{args:?}");
                let literal = match &args[0] {
                    Ast::Lit(Lit::Str(v)) => Some(v.clone()),
                    _ => None,
                };
                let before = self.joins.len();
                let out = self.join(kind, code, Some(vocab), id.clone(), id)?;
                if self.joins.len() > before
                    && let Some(j) = self.joins.last_mut()
                {
                    j.vocabulary_id = literal;
                }
                out
            }
            other => {
                let known: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
                return Err(CompileError(format!(
                    "unknown function `{other}` (known: {})",
                    known.join(", ")
                )));
            }
        })
    }

    fn map_call(&mut self, args: &[Ast], src: &str) -> Result<Expr, CompileError> {
        let (x, pairs, default) = match args {
            [x, Ast::Map(p)] => (x, p, None),
            [x, Ast::Map(p), d] => (x, p, Some(d)),
            _ => {
                return Err(CompileError(
                    "map() takes (value, {key: value, ...}[, default])".into(),
                ));
            }
        };
        let x = self.expr(x, src)?;
        let default = match default {
            Some(d) => self.expr(d, src)?,
            None => lit(NULL),
        };
        let branches = pairs
            .iter()
            .map(|(k, v)| (x.clone().eq(lit_expr(k)), lit_expr(v)))
            .collect();
        Ok(case_when(branches, default))
    }

    fn check_parsed(&mut self, input: Expr, output: Expr, src: &str, expected: &str) {
        self.checks.push(Check {
            bad: has_text(input).and(output.is_null()),
            reason: format!("`{src}`: expected {expected}"),
        });
    }

    fn join(
        &mut self,
        kind: JoinKind,
        key: Expr,
        vocabulary: Option<Expr>,
        key_id: String,
        dedup_key: String,
    ) -> Result<Expr, CompileError> {
        if let Some(j) = self.joins.iter().find(|j| j.dedup_key == dedup_key) {
            return Ok(col(j.output.as_str()));
        }
        let output = format!("{}{}", self.prefix, self.joins.len());
        self.joins.push(JoinRequest {
            kind,
            key,
            vocabulary,
            vocabulary_id: None,
            output: output.clone(),
            key_id,
            dedup_key,
        });
        Ok(col(output.as_str()))
    }
}

/// `when c1 then v1 when c2 then v2 ... otherwise default`; a null condition counts as false.
pub fn case_when(branches: Vec<(Expr, Expr)>, otherwise: Expr) -> Expr {
    branches
        .into_iter()
        .rev()
        .fold(otherwise, |acc, (cond, value)| {
            when(cond.fill_null(lit(false))).then(value).otherwise(acc)
        })
}

fn lit_expr(l: &Lit) -> Expr {
    match l {
        Lit::Null => lit(NULL),
        Lit::Bool(b) => lit(*b),
        Lit::Int(v) => lit(*v),
        Lit::Float(v) => lit(*v),
        Lit::Str(s) => lit(s.as_str()),
    }
}

/// `v` without the white space around it, as `str::trim` cuts it, but cut from the bytes when
/// both ends are ASCII (any other white space is a multi-byte character, so a text whose ends
/// are ASCII after ASCII white space is cut has none left to cut). Called for every date and
/// timestamp, this took a percent of an ETL run as `str::trim`.
fn trimmed(v: &str) -> &[u8] {
    let b = v.as_bytes().trim_ascii();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if first.is_ascii() && last.is_ascii() => b,
        _ => v.trim().as_bytes(),
    }
}

/// True where `x` holds more than white space (false for nulls).
fn has_text(x: Expr) -> Expr {
    x.cast(DataType::String).map(
        |c: Column| {
            let ca = c.str()?;
            let out: BooleanChunked = ca
                .iter()
                .map(|v| Some(v.is_some_and(|v| !trimmed(v).is_empty())))
                .collect();
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f: &Field| Ok(Field::new(f.name().clone(), DataType::Boolean)),
    )
}

/// 'YYYY-MM-DD', or the date part of an ISO 8601 timestamp ('YYYY-MM-DDTHH:MM:SS...').
pub fn parse_date(x: Expr) -> Expr {
    x.cast(DataType::String).map(
        |c: Column| {
            let ca = c.str()?;
            let out: Int32Chunked = ca
                .iter()
                .map(|v| v.and_then(|v| date_days(trimmed(v))))
                .collect();
            Ok(out.with_name(c.name().clone()).into_date().into_column())
        },
        |_, f: &Field| Ok(Field::new(f.name().clone(), DataType::Date)),
    )
}

/// An ISO 8601 timestamp ('YYYY-MM-DDTHH:MM:SS[.ffffff][Z]', `T` or a space), or a date at midnight.
pub fn parse_datetime(x: Expr) -> Expr {
    x.cast(DataType::String).map(
        |c: Column| {
            let ca = c.str()?;
            let out: Int64Chunked = ca
                .iter()
                .map(|v| v.and_then(|v| datetime_micros(trimmed(v))))
                .collect();
            Ok(out
                .with_name(c.name().clone())
                .into_datetime(TimeUnit::Microseconds, None)
                .into_column())
        },
        |_, f: &Field| {
            Ok(Field::new(
                f.name().clone(),
                DataType::Datetime(TimeUnit::Microseconds, None),
            ))
        },
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

/// Days since 1970-01-01 of 'YYYY-MM-DD' optionally followed by a time part.
fn date_days(b: &[u8]) -> Option<i32> {
    if b.len() < 10
        || b[4] != b'-'
        || b[7] != b'-'
        || (b.len() > 10 && b[10] != b'T' && b[10] != b' ')
    {
        return None;
    }
    let (y, m, d) = (
        digits(&b[0..4])? as i64,
        digits(&b[5..7])? as i64,
        digits(&b[8..10])? as i64,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > month_days {
        return None;
    }
    // Howard Hinnant's days_from_civil (proleptic Gregorian calendar).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) as i32)
}

/// Microseconds since 1970-01-01T00:00:00 (no time zone shift: `Z` is read as wall-clock UTC).
fn datetime_micros(b: &[u8]) -> Option<i64> {
    let days = i64::from(date_days(b)?);
    let mut micros = days * 86_400_000_000;
    if b.len() == 10 {
        return Some(micros);
    }
    let t = &b[11..];
    let t = t.strip_suffix(b"Z").unwrap_or(t);
    if t.len() < 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&t[0..2])?, digits(&t[3..5])?, digits(&t[6..8])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    micros += (i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(sec)) * 1_000_000;
    match &t[8..] {
        [] => Some(micros),
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            let f = i64::from(digits(frac)?);
            Some(micros + f * 10i64.pow(6) / 10i64.pow(frac.len() as u32))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    /// With hoisting, each date or timestamp text is parsed once into a column of its own,
    /// and the parse check still tells a bad value from a blank one.
    #[test]
    fn hoisted_parses_are_shared_and_still_checked() {
        let columns: BTreeSet<String> = ["START", "STOP"].map(String::from).into();
        let mut comp = Compiler::new(&columns, "__t").hoisting();
        let mut fields = Vec::new();
        for text in [
            "date(START)",
            "date(START)",
            "try_date(START)",
            "datetime(START)",
            "date(coalesce(STOP, START))",
            "year(date(START))",
        ] {
            let ast = crate::expr::parse(text).unwrap();
            fields.push(comp.compile(&ast, text).unwrap());
        }
        // START as a date, as a timestamp, and coalesce(STOP, START) as a date.
        assert_eq!(comp.hoisted.len(), 3, "{:?}", comp.hoisted);
        // A look-up inside is computed later, so that parse stays inline.
        let mut other = Compiler::new(&columns, "__u").hoisting();
        let ast = crate::expr::parse("date(ref(person, START, 'birth'))").unwrap();
        let _ = other.compile(&ast, "x").unwrap();
        assert!(other.hoisted.is_empty());

        let df = df!(
            "START" => [Some("2020-01-02"), Some("  "), None, Some("2020-13-01")],
            "STOP" => [None, Some("2020-01-05"), None, None],
        )
        .unwrap();
        let mut lf = df.lazy();
        for (name, parsed) in &comp.hoisted {
            lf = lf.with_column(parsed.clone().alias(name.as_str()));
        }
        let bad: Vec<Expr> = comp
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| c.bad.clone().alias(format!("bad{i}")))
            .collect();
        let out = lf
            .with_columns(bad)
            .with_column(fields[0].clone().alias("d"))
            .collect()
            .unwrap();
        let d: Vec<Option<i32>> = out
            .column("d")
            .unwrap()
            .cast(&DataType::Int32)
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(d, vec![Some(18263), None, None, None]);
        // date(START): only the month-13 value is bad; blanks and nulls are just empty.
        let bad0: Vec<Option<bool>> = out.column("bad0").unwrap().bool().unwrap().iter().collect();
        assert_eq!(
            bad0,
            vec![Some(false), Some(false), Some(false), Some(true)]
        );
    }

    #[test]
    fn white_space_is_trimmed_as_str_trim_trims_it() {
        for v in [
            " 2020-01-01\t",
            "\u{a0}2020-01-01\u{2003} ",
            " \u{3000} ",
            "",
            "   ",
            "æ 2020 ø",
            "\r\n2020-01-01\n",
        ] {
            assert_eq!(trimmed(v), v.trim().as_bytes(), "{v:?}");
        }
    }

    #[test]
    fn dates_and_timestamps_parse_strictly() {
        assert_eq!(date_days(b"1970-01-02"), Some(1));
        assert_eq!(date_days(b"2020-02-29T10:00:00Z"), Some(18321));
        assert_eq!(date_days(b"2021-02-29"), None);
        assert_eq!(date_days(b"2020-1-01"), None);
        assert_eq!(date_days(b"2020-01-01x"), None);
        assert_eq!(datetime_micros(b"1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(datetime_micros(b"1970-01-01 00:01:00"), Some(60_000_000));
        assert_eq!(datetime_micros(b"1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(datetime_micros(b"1970-01-02"), Some(86_400_000_000));
        assert_eq!(datetime_micros(b"1970-01-01T25:00:00Z"), None);
        assert_eq!(datetime_micros(b"1970-01-01T10:00"), None);
    }

    /// The hand-written calendar arithmetic agrees with chrono on every day of years 0–9999,
    /// and rejects every day that chrono rejects.
    #[test]
    fn date_arithmetic_matches_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let first = chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let mut d = first;
        while d.year_ce().1 <= 9999 && d.format("%Y").to_string().len() == 4 {
            let text = d.format("%Y-%m-%d").to_string();
            assert_eq!(
                date_days(text.as_bytes()),
                Some((d - epoch).num_days() as i32),
                "{text}"
            );
            d = d.succ_opt().unwrap();
        }
        for y in [1900, 2000, 2023, 2024] {
            for m in 0..=13u32 {
                for day in [0u32, 28, 29, 30, 31, 32] {
                    let text = format!("{y:04}-{m:02}-{day:02}");
                    let expected = chrono::NaiveDate::from_ymd_opt(y, m, day)
                        .map(|x| (x - epoch).num_days() as i32);
                    assert_eq!(date_days(text.as_bytes()), expected, "{text}");
                }
            }
        }
    }
}
