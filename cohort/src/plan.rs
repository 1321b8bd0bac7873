//! Compilation of a [`CohortExpression`] into an evaluation plan.
//!
//! Compilation resolves concept sets, parses dates and operators, and decides,
//! per criteria type, which attributes apply and how (following the SQL Circe
//! generates for that type). Anything the evaluator cannot do is rejected
//! here with [`CohortError::Unsupported`], naming the element.

use crate::cdm::{Cdm, Day, Domain, Extra, Matcher};
use crate::concepts;
use crate::error::{CohortError, Result};
use crate::lenient::Number;
use crate::model::{
    CohortExpression, Concept, ConceptSetSelection, CorrelatedCriteria, Criteria, CriteriaGroup,
    DateField, DateRange, DateType, DemographicCriteria, DomainCriteria, EndStrategy, NumericRange,
    TextFilter, Window,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A resolved concept set (sorted ids).
pub type ConceptIds = Arc<Vec<i64>>;

/// A comparison operator of Circe's ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeOp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// between, inclusive
    Between,
    /// not between
    NotBetween,
}

fn parse_op(op: Option<&str>, what: &str) -> Result<RangeOp> {
    let op = op.ok_or_else(|| CohortError::Invalid(format!("{what}: Op is missing")))?;
    Ok(match op {
        "lt" => RangeOp::Lt,
        "lte" => RangeOp::Lte,
        "eq" => RangeOp::Eq,
        "!eq" => RangeOp::Ne,
        "gt" => RangeOp::Gt,
        "gte" => RangeOp::Gte,
        o if o.ends_with("bt") => {
            if o.starts_with('!') {
                RangeOp::NotBetween
            } else {
                RangeOp::Between
            }
        }
        other => {
            return Err(CohortError::Invalid(format!(
                "{what}: unknown operator \"{other}\" (expected lt, lte, eq, !eq, gt, gte, bt or !bt)"
            )));
        }
    })
}

/// A compiled numeric range, compared in `f64`.
#[derive(Debug, Clone, Copy)]
pub struct NumRange {
    /// Operator.
    pub op: RangeOp,
    /// Value.
    pub a: f64,
    /// Extent (between only).
    pub b: f64,
}

impl NumRange {
    /// Whether `x` passes; a null (`NaN`) never does.
    #[inline]
    pub fn test(&self, x: f64) -> bool {
        if x.is_nan() {
            return false;
        }
        match self.op {
            RangeOp::Lt => x < self.a,
            RangeOp::Lte => x <= self.a,
            RangeOp::Eq => x == self.a,
            RangeOp::Ne => x != self.a,
            RangeOp::Gt => x > self.a,
            RangeOp::Gte => x >= self.a,
            RangeOp::Between => x >= self.a && x <= self.b,
            RangeOp::NotBetween => !(x >= self.a && x <= self.b),
        }
    }
}

fn num_range(r: &NumericRange, decimal: bool, what: &str) -> Result<NumRange> {
    let op = parse_op(r.op.as_deref(), what)?;
    let conv = |n: Option<Number>, field: &str| -> Result<f64> {
        let n = n.ok_or_else(|| CohortError::Invalid(format!("{what}: {field} is missing")))?;
        Ok(if decimal {
            n.decimal4()
        } else {
            n.int_value() as f64
        })
    };
    let a = conv(r.value, "Value")?;
    let b = if matches!(op, RangeOp::Between | RangeOp::NotBetween) {
        conv(r.extent, "Extent")?
    } else {
        0.0
    };
    Ok(NumRange { op, a, b })
}

/// A compiled date range.
#[derive(Debug, Clone, Copy)]
pub struct DayRange {
    /// Operator.
    pub op: RangeOp,
    /// Value.
    pub a: Day,
    /// Extent (between only).
    pub b: Day,
}

impl DayRange {
    /// Whether `d` passes; a null date never does.
    #[inline]
    pub fn test(&self, d: Day) -> bool {
        if d == crate::cdm::NULL_DAY {
            return false;
        }
        match self.op {
            RangeOp::Lt => d < self.a,
            RangeOp::Lte => d <= self.a,
            RangeOp::Eq => d == self.a,
            RangeOp::Ne => d != self.a,
            RangeOp::Gt => d > self.a,
            RangeOp::Gte => d >= self.a,
            RangeOp::Between => d >= self.a && d <= self.b,
            RangeOp::NotBetween => !(d >= self.a && d <= self.b),
        }
    }
}

/// Parses a Circe date literal (`YYYY-MM-DD`).
pub fn parse_date(s: Option<&str>, what: &str) -> Result<Day> {
    let s = s.ok_or_else(|| CohortError::Invalid(format!("{what}: date is missing")))?;
    let parts: Vec<&str> = s.split('-').filter(|p| !p.is_empty()).collect();
    let bad = || {
        CohortError::Invalid(format!(
            "{what}: \"{s}\" is not a date (expected YYYY-MM-DD)"
        ))
    };
    if parts.len() < 3 {
        return Err(bad());
    }
    let y: i32 = parts[0].trim().parse().map_err(|_| bad())?;
    let m: u32 = parts[1].trim().parse().map_err(|_| bad())?;
    let d: u32 = parts[2].trim().parse().map_err(|_| bad())?;
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).ok_or_else(bad)?;
    Ok(days_from_date(date))
}

/// Days since 1970-01-01 of a calendar date.
pub fn days_from_date(d: chrono::NaiveDate) -> Day {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as Day
}

fn day_range(r: &DateRange, what: &str) -> Result<DayRange> {
    let op = parse_op(r.op.as_deref(), what)?;
    let a = parse_date(r.value.as_deref(), what)?;
    let b = if matches!(op, RangeOp::Between | RangeOp::NotBetween) {
        parse_date(r.extent.as_deref(), what)?
    } else {
        0
    };
    Ok(DayRange { op, a, b })
}

/// An id-valued column a filter tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdCol {
    /// The domain concept.
    Concept,
    /// The type concept.
    Type,
    /// A domain-specific column.
    Extra(Extra),
    /// person.gender_concept_id
    Gender,
    /// person.race_concept_id
    Race,
    /// person.ethnicity_concept_id
    Ethnicity,
    /// visit_concept_id of the event's visit (inner join)
    VisitConcept,
    /// provider.specialty_concept_id (left join)
    ProviderSpecialty,
    /// care_site.place_of_service_concept_id (inner join)
    PlaceOfService,
}

/// A number-valued expression a filter tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumCol {
    /// A domain-specific column.
    Extra(Extra),
    /// Days from start to end.
    Duration,
    /// YEAR(start) - year_of_birth.
    AgeAtStart,
    /// YEAR(end) - year_of_birth.
    AgeAtEnd,
    /// value_as_number / range_low.
    LowRatio,
    /// value_as_number / range_high.
    HighRatio,
}

/// Which date a date filter tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DateCol {
    /// The (adjusted) start date.
    Start,
    /// The (adjusted) end date.
    End,
}

/// A row-level predicate.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Column in (or not in) a list; a null never passes.
    IdIn {
        /// Column.
        col: IdCol,
        /// Sorted ids.
        ids: ConceptIds,
        /// `not in`.
        negate: bool,
    },
    /// `col is [not] null` (a concept set selection without an id).
    IdNull {
        /// Column.
        col: IdCol,
        /// `is null` (true) or `is not null`.
        is_null: bool,
    },
    /// A numeric range.
    Num(NumCol, NumRange),
    /// A date range.
    Date(DateCol, DayRange),
    /// Measurement `Abnormal`.
    Abnormal,
    /// Date adjustment sanity: end >= start.
    EndNotBeforeStart,
    /// A calendar date the (real) period must contain.
    Contains(Day),
    /// A text column `[not] like` a pattern (`%` any run of characters, `_` one); a null
    /// never passes, negated or not.
    Text {
        /// Column.
        col: Extra,
        /// The SQL LIKE pattern.
        pattern: String,
        /// `not like`.
        negate: bool,
    },
}

/// The filter Circe writes for a text filter on `col` (its `buildTextFilterClause`):
/// `startsWith`, `contains`, `endsWith` and their negations (`!startsWith`, ...) become
/// `[not] like` with `%` added where the text may continue; the text itself is used as is,
/// so `%` and `_` in it are wildcards, as in Circe's SQL. A missing text is the word `null`,
/// as Java's string formatting writes it.
fn text_filter(t: &TextFilter, col: Extra, what: &str) -> Result<Filter> {
    let Some(op) = t.op.as_deref() else {
        return Err(CohortError::Invalid(format!(
            "{what}: a text filter needs an Op (startsWith, contains, endsWith or one of them with !)"
        )));
    };
    let negate = op.starts_with('!');
    let prefix = if op.ends_with("endsWith") || op.ends_with("contains") {
        "%"
    } else {
        ""
    };
    let postfix = if op.ends_with("startsWith") || op.ends_with("contains") {
        "%"
    } else {
        ""
    };
    // Circe doubles a quote (dropping backslashes before it) to quote the text in SQL, so
    // the pattern holds the quote itself.
    let text = match &t.text {
        Some(text) => {
            let mut out = String::with_capacity(text.len());
            let mut pending_backslashes = 0;
            for ch in text.chars() {
                match ch {
                    '\\' => pending_backslashes += 1,
                    '\'' => {
                        pending_backslashes = 0;
                        out.push('\'');
                    }
                    _ => {
                        out.extend(std::iter::repeat_n('\\', pending_backslashes));
                        pending_backslashes = 0;
                        out.push(ch);
                    }
                }
            }
            out.extend(std::iter::repeat_n('\\', pending_backslashes));
            out
        }
        None => "null".to_string(),
    };
    Ok(Filter::Text {
        col,
        pattern: format!("{prefix}{text}{postfix}"),
        negate,
    })
}

/// SQL `value LIKE pattern` without an escape character: `%` matches any run of characters
/// (also none), `_` exactly one; everything else matches itself, case-sensitively.
pub fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Greedy matching with backtracking to the last `%`: linear in practice, at worst
    // proportional to the product of the lengths.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        if j < p.len() && (p[j] == '_' || (p[j] != '%' && p[j] == v[i])) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|&c| c == '%')
}

/// Which table a criteria reads and how its dates are derived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EndRule {
    /// end as stored (may be null)
    Stored,
    /// coalesce(end, start + 1)
    StoredOrNextDay,
    /// coalesce(end, start + days_supply, start + 1)
    DrugExposure,
    /// start + 1
    NextDay,
}

/// A compiled criteria.
#[derive(Debug, Clone)]
pub struct CriteriaPlan {
    /// Source table.
    pub domain: Domain,
    /// How the end date is derived.
    pub end_rule: EndRule,
    /// Domain concept must be in this set.
    pub codeset: Option<ConceptIds>,
    /// Source concept must be in this set.
    pub source_codeset: Option<ConceptIds>,
    /// The clusters of the domain table whose concept is in `codeset`
    /// (`None`: every cluster, when there is no codeset).
    pub clusters: Option<Vec<u32>>,
    /// `source_codeset` as a matcher of the domain table's source concept column.
    pub source_match: Option<Matcher>,
    /// Keep only the first codeset-matching row (before other filters).
    pub first: bool,
    /// (start from end?, start offset, end from start?, end offset).
    pub date_adjustment: Option<(bool, i32, bool, i32)>,
    /// Row filters.
    pub filters: Vec<Filter>,
    /// Inner join with `person`.
    pub needs_person: bool,
    /// Inner join with `visit_occurrence`.
    pub needs_visit: bool,
    /// Inner join with `care_site`.
    pub needs_care_site: bool,
    /// Observation period: user-defined start and end replace the output dates.
    pub user_period: (Option<Day>, Option<Day>),
    /// Correlated criteria that each row must satisfy.
    pub correlated: Option<Box<GroupPlan>>,
    /// Number of this criteria within its plan (`0..CohortPlan::slots`); the
    /// evaluator keeps the rows it selects under this number.
    pub slot: usize,
}

impl CriteriaPlan {
    /// Every row of `domain`, nothing filtered, joined or pruned yet.
    fn unfiltered(domain: Domain, end_rule: EndRule) -> Self {
        CriteriaPlan {
            domain,
            end_rule,
            codeset: None,
            source_codeset: None,
            clusters: None,
            source_match: None,
            first: false,
            date_adjustment: None,
            filters: Vec::new(),
            needs_person: false,
            needs_visit: false,
            needs_care_site: false,
            user_period: (None, None),
            correlated: None,
            slot: 0,
        }
    }
}

/// Which column a distinct occurrence count counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountColumn {
    /// The domain concept.
    DomainConcept,
    /// The start date.
    StartDate,
    /// The end date.
    EndDate,
    /// The visit.
    Visit,
}

/// One bound of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Index date + days.
    Offset(i32),
    /// The index event's observation period start.
    OpStart,
    /// The index event's observation period end.
    OpEnd,
}

/// A window test: which dates and which bounds.
#[derive(Debug, Clone, Copy)]
pub struct WindowPlan {
    /// Measure from the index end date.
    pub index_end: bool,
    /// Test the related event's end date.
    pub event_end: bool,
    /// Lower bound.
    pub lower: Option<Bound>,
    /// Upper bound.
    pub upper: Option<Bound>,
}

/// The count comparison of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountOp {
    /// `=`
    Exactly,
    /// `<=`
    AtMost,
    /// `>=`
    AtLeast,
}

impl CountOp {
    /// Applies the comparison.
    #[inline]
    pub fn test(self, count: i64, n: i64) -> bool {
        match self {
            CountOp::Exactly => count == n,
            CountOp::AtMost => count <= n,
            CountOp::AtLeast => count >= n,
        }
    }
}

/// A compiled correlated criteria.
#[derive(Debug, Clone)]
pub struct CorrelatedPlan {
    /// The related events.
    pub criteria: CriteriaPlan,
    /// Start window.
    pub start: WindowPlan,
    /// End window.
    pub end: Option<WindowPlan>,
    /// Same visit as the index event.
    pub restrict_visit: bool,
    /// Require the related event in the index observation period.
    pub check_op: bool,
    /// Count comparison.
    pub op: CountOp,
    /// Count.
    pub count: i64,
    /// Count distinct values of this column.
    pub distinct: Option<CountColumn>,
}

/// A compiled demographic criteria.
#[derive(Debug, Clone, Default)]
pub struct DemographicPlan {
    /// Filters on the person and the index dates.
    pub filters: Vec<Filter>,
}

/// How many members of a group must pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GroupRule {
    /// All.
    All,
    /// At least one.
    Any,
    /// At least n.
    AtLeast(i64),
    /// At most n.
    AtMost(i64),
}

/// A compiled criteria group.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The rule.
    pub rule: GroupRule,
    /// Correlated criteria members.
    pub criteria: Vec<CorrelatedPlan>,
    /// Demographic members.
    pub demographics: Vec<DemographicPlan>,
    /// Nested groups.
    pub groups: Vec<GroupPlan>,
}

impl GroupPlan {
    /// Number of members.
    pub fn members(&self) -> usize {
        self.criteria.len() + self.demographics.len() + self.groups.len()
    }
}

/// The end strategy.
#[derive(Debug, Clone)]
pub enum EndPlan {
    /// End of the observation period.
    ObservationPeriodEnd,
    /// Date field + offset, capped at the observation period end.
    DateOffset {
        /// Count from the end date.
        from_end: bool,
        /// Days.
        offset: i32,
    },
    /// End of the drug era containing the entry date.
    CustomEra {
        /// Drug concepts (matched on drug_concept_id and drug_source_concept_id).
        drugs: ConceptIds,
        /// The drug_exposure clusters of `drugs`.
        clusters: Vec<u32>,
        /// Gap days.
        gap: i32,
        /// Offset.
        offset: i32,
        /// Days supply override.
        days_supply: Option<i32>,
    },
}

/// A result limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Keep all.
    All,
    /// Keep the first by date.
    First,
    /// Keep the last by date.
    Last,
}

fn limit_of(kind: Option<&str>) -> Limit {
    match kind {
        Some(k) if k.eq_ignore_ascii_case("all") => Limit::All,
        Some(k) if k.eq_ignore_ascii_case("last") => Limit::Last,
        _ => Limit::First,
    }
}

/// A compiled cohort definition.
#[derive(Debug, Clone)]
pub struct CohortPlan {
    /// Entry event criteria.
    pub primary: Vec<CriteriaPlan>,
    /// Days of observation required before the entry event.
    pub prior_days: i32,
    /// Days of observation required after the entry event.
    pub post_days: i32,
    /// Entry event limit.
    pub primary_limit: Limit,
    /// Additional criteria, if present and non-empty.
    pub additional: Option<GroupPlan>,
    /// Qualified limit (only applies when additional criteria are present).
    pub qualified_limit: Limit,
    /// Inclusion rules.
    pub rules: Vec<GroupPlan>,
    /// Inclusion rule names.
    pub rule_names: Vec<String>,
    /// Expression limit.
    pub expression_limit: Limit,
    /// End strategy.
    pub end: EndPlan,
    /// Censoring criteria.
    pub censoring: Vec<CriteriaPlan>,
    /// Era pad.
    pub era_pad: i32,
    /// Censor window.
    pub censor_window: (Option<Day>, Option<Day>),
    /// Number of criteria in the plan (see [`CriteriaPlan::slot`]).
    pub slots: usize,
}

struct Compiler<'a> {
    codesets: HashMap<i64, ConceptIds>,
    empty: ConceptIds,
    cdm: &'a Cdm,
    next_slot: std::cell::Cell<usize>,
}

fn unsupported(what: impl Into<String>) -> CohortError {
    CohortError::Unsupported(what.into())
}

fn concept_list(list: &[Concept], what: &str) -> Result<ConceptIds> {
    let mut ids = Vec::with_capacity(list.len());
    for c in list {
        ids.push(
            c.concept_id.ok_or_else(|| {
                CohortError::Invalid(format!("{what}: a concept has no CONCEPT_ID"))
            })?,
        );
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Arc::new(ids))
}

fn has(list: &Option<Vec<Concept>>) -> bool {
    list.as_ref().is_some_and(|l| !l.is_empty())
}

fn i32_of(v: i64) -> i32 {
    v as i32
}

impl<'a> Compiler<'a> {
    fn codeset(&self, id: i64) -> ConceptIds {
        self.codesets
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.empty.clone())
    }

    fn cs_filter(&self, col: IdCol, sel: &ConceptSetSelection) -> Filter {
        match sel.codeset_id {
            Some(id) => Filter::IdIn {
                col,
                ids: self.codeset(id),
                negate: sel.is_exclusion,
            },
            None => Filter::IdNull {
                col,
                is_null: sel.is_exclusion,
            },
        }
    }

    fn text(
        f: &mut Vec<Filter>,
        t: &Option<TextFilter>,
        col: Extra,
        name: &str,
        ty: &str,
    ) -> Result<()> {
        if let Some(t) = t {
            f.push(text_filter(t, col, &format!("{ty}.{name}"))?);
        }
        Ok(())
    }

    fn criteria(&self, c: &Criteria) -> Result<CriteriaPlan> {
        let ty = c.type_name();
        let d: &DomainCriteria = match c {
            Criteria::ConditionEra(d)
            | Criteria::ConditionOccurrence(d)
            | Criteria::Death(d)
            | Criteria::DeviceExposure(d)
            | Criteria::DoseEra(d)
            | Criteria::DrugEra(d)
            | Criteria::DrugExposure(d)
            | Criteria::Measurement(d)
            | Criteria::Observation(d)
            | Criteria::ObservationPeriod(d)
            | Criteria::ProcedureOccurrence(d)
            | Criteria::Specimen(d)
            | Criteria::VisitDetail(d)
            | Criteria::VisitOccurrence(d) => d,
            other => return Err(unsupported(format!("{} criteria", other.type_name()))),
        };
        let (domain, end_rule) = match c {
            Criteria::ConditionEra(_) => (Domain::ConditionEra, EndRule::Stored),
            Criteria::ConditionOccurrence(_) => {
                (Domain::ConditionOccurrence, EndRule::StoredOrNextDay)
            }
            Criteria::Death(_) => (Domain::Death, EndRule::NextDay),
            Criteria::DeviceExposure(_) => (Domain::DeviceExposure, EndRule::StoredOrNextDay),
            Criteria::DoseEra(_) => (Domain::DoseEra, EndRule::Stored),
            Criteria::DrugEra(_) => (Domain::DrugEra, EndRule::Stored),
            Criteria::DrugExposure(_) => (Domain::DrugExposure, EndRule::DrugExposure),
            Criteria::Measurement(_) => (Domain::Measurement, EndRule::NextDay),
            Criteria::Observation(_) => (Domain::Observation, EndRule::NextDay),
            Criteria::ObservationPeriod(_) => (Domain::ObservationPeriod, EndRule::Stored),
            Criteria::ProcedureOccurrence(_) => (Domain::ProcedureOccurrence, EndRule::NextDay),
            Criteria::Specimen(_) => (Domain::Specimen, EndRule::NextDay),
            Criteria::VisitDetail(_) => (Domain::VisitDetail, EndRule::Stored),
            _ => (Domain::VisitOccurrence, EndRule::Stored),
        };
        let mut p = CriteriaPlan::unfiltered(domain, end_rule);
        let is_specimen = matches!(c, Criteria::Specimen(_));
        let is_death = matches!(c, Criteria::Death(_));
        let is_op = matches!(c, Criteria::ObservationPeriod(_));
        if !is_op {
            p.codeset = d.codeset_id.map(|id| self.codeset(id));
        }
        if !is_death {
            p.first = d.first == Some(true);
        }
        if let Some(da) = &d.date_adjustment
            && !is_specimen
        {
            p.date_adjustment = Some((
                da.start_with == DateType::EndDate,
                i32_of(da.start_offset),
                da.end_with == DateType::StartDate,
                i32_of(da.end_offset),
            ));
            p.filters.push(Filter::EndNotBeforeStart);
        }
        let f = &mut p.filters;
        let w = |name: &str| format!("{ty}.{name}");
        let num = |r: &NumericRange, dec: bool, name: &str| num_range(r, dec, &w(name));
        let date = |r: &DateRange, name: &str| day_range(r, &w(name));
        let list = |l: &[Concept], name: &str| concept_list(l, &w(name));

        // Shared pieces: age / gender / provider / visit, as the builders use them.
        let std_person = |f: &mut Vec<Filter>, age_col: NumCol| -> Result<bool> {
            let mut needs = false;
            if let Some(a) = &d.age {
                f.push(Filter::Num(age_col, num(a, false, "Age")?));
                needs = true;
            }
            if let Some(g) = d.gender.as_ref().filter(|g| !g.is_empty()) {
                f.push(Filter::IdIn {
                    col: IdCol::Gender,
                    ids: list(g, "Gender")?,
                    negate: false,
                });
                needs = true;
            }
            if let Some(cs) = &d.gender_cs {
                f.push(self.cs_filter(IdCol::Gender, cs));
                needs = true;
            }
            Ok(needs)
        };
        let provider_visit = |f: &mut Vec<Filter>| -> Result<bool> {
            if let Some(l) = d.provider_specialty.as_ref().filter(|l| !l.is_empty()) {
                f.push(Filter::IdIn {
                    col: IdCol::ProviderSpecialty,
                    ids: list(l, "ProviderSpecialty")?,
                    negate: false,
                });
            }
            if let Some(cs) = &d.provider_specialty_cs {
                f.push(self.cs_filter(IdCol::ProviderSpecialty, cs));
            }
            let mut visit = false;
            if let Some(l) = d.visit_type.as_ref().filter(|l| !l.is_empty()) {
                f.push(Filter::IdIn {
                    col: IdCol::VisitConcept,
                    ids: list(l, "VisitType")?,
                    negate: false,
                });
                visit = true;
            }
            if let Some(cs) = &d.visit_type_cs {
                f.push(self.cs_filter(IdCol::VisitConcept, cs));
                visit = true;
            }
            Ok(visit)
        };
        let type_filter = |f: &mut Vec<Filter>,
                           l: &Option<Vec<Concept>>,
                           cs: &Option<ConceptSetSelection>,
                           ex: bool,
                           name: &str| {
            if let Some(l) = l.as_ref().filter(|l| !l.is_empty()) {
                f.push(Filter::IdIn {
                    col: IdCol::Type,
                    ids: list(l, name)?,
                    negate: ex,
                });
            }
            if let Some(cs) = cs {
                f.push(self.cs_filter(IdCol::Type, cs));
            }
            Ok::<(), CohortError>(())
        };
        let id_list = |f: &mut Vec<Filter>,
                       col: IdCol,
                       l: &Option<Vec<Concept>>,
                       cs: &Option<ConceptSetSelection>,
                       name: &str| {
            if let Some(l) = l.as_ref().filter(|l| !l.is_empty()) {
                f.push(Filter::IdIn {
                    col,
                    ids: list(l, name)?,
                    negate: false,
                });
            }
            if let Some(cs) = cs {
                f.push(self.cs_filter(col, cs));
            }
            Ok::<(), CohortError>(())
        };
        let era_person = |f: &mut Vec<Filter>| -> Result<bool> {
            let mut needs = false;
            if let Some(a) = &d.age_at_start {
                f.push(Filter::Num(
                    NumCol::AgeAtStart,
                    num(a, false, "AgeAtStart")?,
                ));
                needs = true;
            }
            if let Some(a) = &d.age_at_end {
                f.push(Filter::Num(NumCol::AgeAtEnd, num(a, false, "AgeAtEnd")?));
                needs = true;
            }
            if let Some(g) = d.gender.as_ref().filter(|g| !g.is_empty()) {
                f.push(Filter::IdIn {
                    col: IdCol::Gender,
                    ids: list(g, "Gender")?,
                    negate: false,
                });
                needs = true;
            }
            if let Some(cs) = &d.gender_cs {
                f.push(self.cs_filter(IdCol::Gender, cs));
                needs = true;
            }
            Ok(needs)
        };

        match c {
            Criteria::ConditionOccurrence(_) => {
                p.source_codeset = d.condition_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                if let Some(r) = &d.occurrence_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "OccurrenceEndDate")?));
                }
                type_filter(
                    f,
                    &d.condition_type,
                    &d.condition_type_cs,
                    d.condition_type_exclude,
                    "ConditionType",
                )?;
                Self::text(f, &d.stop_reason, Extra::StopReason, "StopReason", ty)?;
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
                id_list(
                    f,
                    IdCol::Extra(Extra::ConditionStatus),
                    &d.condition_status,
                    &d.condition_status_cs,
                    "ConditionStatus",
                )?;
            }
            Criteria::DrugExposure(_) => {
                p.source_codeset = d.drug_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                if let Some(r) = &d.occurrence_end_date {
                    // Circe compares the start date here.
                    f.push(Filter::Date(DateCol::Start, date(r, "OccurrenceEndDate")?));
                }
                type_filter(
                    f,
                    &d.drug_type,
                    &d.drug_type_cs,
                    d.drug_type_exclude,
                    "DrugType",
                )?;
                Self::text(f, &d.stop_reason, Extra::StopReason, "StopReason", ty)?;
                if let Some(r) = &d.refills {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::Refills),
                        num(r, false, "Refills")?,
                    ));
                }
                if let Some(r) = &d.quantity {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::Quantity),
                        num(r, true, "Quantity")?,
                    ));
                }
                if let Some(r) = &d.days_supply {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::DaysSupply),
                        num(r, false, "DaysSupply")?,
                    ));
                }
                id_list(
                    f,
                    IdCol::Extra(Extra::Route),
                    &d.route_concept,
                    &d.route_concept_cs,
                    "RouteConcept",
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::DoseUnit),
                    &d.dose_unit,
                    &d.dose_unit_cs,
                    "DoseUnit",
                )?;
                Self::text(f, &d.lot_number, Extra::LotNumber, "LotNumber", ty)?;
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
            }
            Criteria::ProcedureOccurrence(_) => {
                p.source_codeset = d.procedure_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                type_filter(
                    f,
                    &d.procedure_type,
                    &d.procedure_type_cs,
                    d.procedure_type_exclude,
                    "ProcedureType",
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::Modifier),
                    &d.modifier,
                    &d.modifier_cs,
                    "Modifier",
                )?;
                if let Some(r) = &d.quantity {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::Quantity),
                        num(r, false, "Quantity")?,
                    ));
                }
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
            }
            Criteria::Measurement(_) => {
                p.source_codeset = d.measurement_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                type_filter(
                    f,
                    &d.measurement_type,
                    &d.measurement_type_cs,
                    d.measurement_type_exclude,
                    "MeasurementType",
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::Operator),
                    &d.operator,
                    &d.operator_cs,
                    "Operator",
                )?;
                if let Some(r) = &d.value_as_number {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::ValueAsNumber),
                        num(r, true, "ValueAsNumber")?,
                    ));
                }
                id_list(
                    f,
                    IdCol::Extra(Extra::ValueAsConcept),
                    &d.value_as_concept,
                    &d.value_as_concept_cs,
                    "ValueAsConcept",
                )?;
                id_list(f, IdCol::Extra(Extra::Unit), &d.unit, &d.unit_cs, "Unit")?;
                if let Some(r) = &d.range_low {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::RangeLow),
                        num(r, true, "RangeLow")?,
                    ));
                }
                if let Some(r) = &d.range_high {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::RangeHigh),
                        num(r, true, "RangeHigh")?,
                    ));
                }
                if let Some(r) = &d.range_low_ratio {
                    f.push(Filter::Num(
                        NumCol::LowRatio,
                        num(r, true, "RangeLowRatio")?,
                    ));
                }
                if let Some(r) = &d.range_high_ratio {
                    f.push(Filter::Num(
                        NumCol::HighRatio,
                        num(r, true, "RangeHighRatio")?,
                    ));
                }
                if d.abnormal == Some(true) {
                    f.push(Filter::Abnormal);
                }
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
            }
            Criteria::Observation(_) => {
                p.source_codeset = d.observation_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                type_filter(
                    f,
                    &d.observation_type,
                    &d.observation_type_cs,
                    d.observation_type_exclude,
                    "ObservationType",
                )?;
                if let Some(r) = &d.value_as_number {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::ValueAsNumber),
                        num(r, true, "ValueAsNumber")?,
                    ));
                }
                Self::text(
                    f,
                    &d.value_as_string,
                    Extra::ValueAsString,
                    "ValueAsString",
                    ty,
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::ValueAsConcept),
                    &d.value_as_concept,
                    &d.value_as_concept_cs,
                    "ValueAsConcept",
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::Qualifier),
                    &d.qualifier,
                    &d.qualifier_cs,
                    "Qualifier",
                )?;
                id_list(f, IdCol::Extra(Extra::Unit), &d.unit, &d.unit_cs, "Unit")?;
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
            }
            Criteria::DeviceExposure(_) => {
                p.source_codeset = d.device_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                if let Some(r) = &d.occurrence_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "OccurrenceEndDate")?));
                }
                type_filter(
                    f,
                    &d.device_type,
                    &d.device_type_cs,
                    d.device_type_exclude,
                    "DeviceType",
                )?;
                Self::text(
                    f,
                    &d.unique_device_id,
                    Extra::UniqueDeviceId,
                    "UniqueDeviceId",
                    ty,
                )?;
                if let Some(r) = &d.quantity {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::Quantity),
                        num(r, false, "Quantity")?,
                    ));
                }
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                p.needs_visit = provider_visit(f)?;
            }
            Criteria::Specimen(_) => {
                // Circe ignores DateAdjustment and the source concept for specimens.
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                type_filter(
                    f,
                    &d.specimen_type,
                    &d.specimen_type_cs,
                    d.specimen_type_exclude,
                    "SpecimenType",
                )?;
                if let Some(r) = &d.quantity {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::Quantity),
                        num(r, true, "Quantity")?,
                    ));
                }
                id_list(f, IdCol::Extra(Extra::Unit), &d.unit, &d.unit_cs, "Unit")?;
                id_list(
                    f,
                    IdCol::Extra(Extra::AnatomicSite),
                    &d.anatomic_site,
                    &d.anatomic_site_cs,
                    "AnatomicSite",
                )?;
                id_list(
                    f,
                    IdCol::Extra(Extra::DiseaseStatus),
                    &d.disease_status,
                    &d.disease_status_cs,
                    "DiseaseStatus",
                )?;
                Self::text(f, &d.source_id, Extra::SpecimenSourceId, "SourceId", ty)?;
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
            }
            Criteria::Death(_) => {
                p.source_codeset = d.death_source_concept.map(|id| self.codeset(id));
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                type_filter(
                    f,
                    &d.death_type,
                    &d.death_type_cs,
                    d.death_type_exclude,
                    "DeathType",
                )?;
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
            }
            Criteria::ConditionEra(_) | Criteria::DrugEra(_) | Criteria::DoseEra(_) => {
                if let Some(r) = &d.era_start_date {
                    f.push(Filter::Date(DateCol::Start, date(r, "EraStartDate")?));
                }
                if let Some(r) = &d.era_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "EraEndDate")?));
                }
                if matches!(c, Criteria::DoseEra(_)) {
                    id_list(f, IdCol::Extra(Extra::Unit), &d.unit, &d.unit_cs, "Unit")?;
                    if let Some(r) = &d.dose_value {
                        f.push(Filter::Num(
                            NumCol::Extra(Extra::ValueAsNumber),
                            num(r, true, "DoseValue")?,
                        ));
                    }
                } else if let Some(r) = &d.occurrence_count {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::OccurrenceCount),
                        num(r, false, "OccurrenceCount")?,
                    ));
                }
                if let Some(r) = &d.era_length {
                    f.push(Filter::Num(NumCol::Duration, num(r, false, "EraLength")?));
                }
                if matches!(c, Criteria::DrugEra(_))
                    && let Some(r) = &d.gap_days
                {
                    f.push(Filter::Num(
                        NumCol::Extra(Extra::GapDays),
                        num(r, false, "GapDays")?,
                    ));
                }
                p.needs_person = era_person(f)?;
            }
            Criteria::ObservationPeriod(_) => {
                if let Some(u) = &d.user_defined_period {
                    if let Some(s) = &u.start_date {
                        let day = parse_date(Some(s), &w("UserDefinedPeriod.StartDate"))?;
                        f.push(Filter::Contains(day));
                        p.user_period.0 = Some(day);
                    }
                    if let Some(e) = &u.end_date {
                        let day = parse_date(Some(e), &w("UserDefinedPeriod.EndDate"))?;
                        f.push(Filter::Contains(day));
                        p.user_period.1 = Some(day);
                    }
                }
                if let Some(r) = &d.period_start_date {
                    f.push(Filter::Date(DateCol::Start, date(r, "PeriodStartDate")?));
                }
                if let Some(r) = &d.period_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "PeriodEndDate")?));
                }
                type_filter(f, &d.period_type, &d.period_type_cs, false, "PeriodType")?;
                if let Some(r) = &d.period_length {
                    f.push(Filter::Num(
                        NumCol::Duration,
                        num(r, false, "PeriodLength")?,
                    ));
                }
                let mut needs = false;
                if let Some(a) = &d.age_at_start {
                    f.push(Filter::Num(
                        NumCol::AgeAtStart,
                        num(a, false, "AgeAtStart")?,
                    ));
                    needs = true;
                }
                if let Some(a) = &d.age_at_end {
                    f.push(Filter::Num(NumCol::AgeAtEnd, num(a, false, "AgeAtEnd")?));
                    needs = true;
                }
                p.needs_person = needs;
            }
            Criteria::VisitOccurrence(_) => {
                p.source_codeset = d.visit_source_concept.map(|id| self.codeset(id));
                if d.place_of_service_location.is_some() {
                    return Err(unsupported(w("PlaceOfServiceLocation")));
                }
                if let Some(r) = &d.occurrence_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "OccurrenceStartDate")?,
                    ));
                }
                if let Some(r) = &d.occurrence_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "OccurrenceEndDate")?));
                }
                type_filter(
                    f,
                    &d.visit_type,
                    &d.visit_type_cs,
                    d.visit_type_exclude,
                    "VisitType",
                )?;
                if let Some(r) = &d.visit_length {
                    f.push(Filter::Num(NumCol::Duration, num(r, false, "VisitLength")?));
                }
                p.needs_person = std_person(f, NumCol::AgeAtStart)?;
                if let Some(l) = d.provider_specialty.as_ref().filter(|l| !l.is_empty()) {
                    f.push(Filter::IdIn {
                        col: IdCol::ProviderSpecialty,
                        ids: list(l, "ProviderSpecialty")?,
                        negate: false,
                    });
                }
                if let Some(cs) = &d.provider_specialty_cs {
                    f.push(self.cs_filter(IdCol::ProviderSpecialty, cs));
                }
                if let Some(l) = d.place_of_service.as_ref().filter(|l| !l.is_empty()) {
                    f.push(Filter::IdIn {
                        col: IdCol::PlaceOfService,
                        ids: list(l, "PlaceOfService")?,
                        negate: false,
                    });
                }
                if let Some(cs) = &d.place_of_service_cs {
                    f.push(self.cs_filter(IdCol::PlaceOfService, cs));
                }
                p.needs_care_site = has(&d.place_of_service) || d.place_of_service_cs.is_some();
            }
            Criteria::VisitDetail(_) => {
                p.source_codeset = d.visit_detail_source_concept.map(|id| self.codeset(id));
                if d.place_of_service_location.is_some() {
                    return Err(unsupported(w("PlaceOfServiceLocation")));
                }
                if let Some(r) = &d.visit_detail_start_date {
                    f.push(Filter::Date(
                        DateCol::Start,
                        date(r, "VisitDetailStartDate")?,
                    ));
                }
                if let Some(r) = &d.visit_detail_end_date {
                    f.push(Filter::Date(DateCol::End, date(r, "VisitDetailEndDate")?));
                }
                if let Some(cs) = &d.visit_detail_type_cs {
                    f.push(self.cs_filter(IdCol::Type, cs));
                }
                if let Some(r) = &d.visit_detail_length {
                    f.push(Filter::Num(
                        NumCol::Duration,
                        num(r, false, "VisitDetailLength")?,
                    ));
                }
                let mut needs = false;
                if let Some(a) = &d.age {
                    // Circe measures the age at the visit detail's end here.
                    f.push(Filter::Num(NumCol::AgeAtEnd, num(a, false, "Age")?));
                    needs = true;
                }
                if let Some(cs) = &d.gender_cs {
                    f.push(self.cs_filter(IdCol::Gender, cs));
                    needs = true;
                }
                p.needs_person = needs;
                if let Some(cs) = &d.provider_specialty_cs {
                    f.push(self.cs_filter(IdCol::ProviderSpecialty, cs));
                }
                if let Some(cs) = &d.place_of_service_cs {
                    f.push(self.cs_filter(IdCol::PlaceOfService, cs));
                    p.needs_care_site = true;
                }
            }
            _ => return Err(unsupported(format!("{ty} criteria"))),
        }
        if let Some(g) = &d.correlated_criteria
            && !g.is_empty()
        {
            p.correlated = Some(Box::new(self.group(g, &w("CorrelatedCriteria"))?));
        }
        let table = self.cdm.table(p.domain);
        p.clusters = p.codeset.as_ref().map(|cs| table.clusters_in(cs));
        p.source_match = p
            .source_codeset
            .as_ref()
            .map(|cs| Matcher::new(&table.source, cs));
        p.slot = self.next_slot.get();
        self.next_slot.set(p.slot + 1);
        Ok(p)
    }

    fn window(
        &self,
        w: &Window,
        check_op: bool,
        start_window: bool,
        what: &str,
    ) -> Result<WindowPlan> {
        let index_end = w.use_index_end == Some(true);
        let event_end = if start_window {
            w.use_event_end == Some(true)
        } else {
            w.use_event_end.is_none_or(|b| b)
        };
        let bound = |e: &Option<crate::model::Endpoint>, name: &str| -> Result<Option<Bound>> {
            let e = e
                .as_ref()
                .ok_or_else(|| CohortError::Invalid(format!("{what}.{name} is missing")))?;
            Ok(match e.days {
                Some(days) => Some(Bound::Offset(i32_of(e.coeff.wrapping_mul(days)))),
                None if check_op => Some(if e.coeff == -1 {
                    Bound::OpStart
                } else {
                    Bound::OpEnd
                }),
                None => None,
            })
        };
        Ok(WindowPlan {
            index_end,
            event_end,
            lower: bound(&w.start, "Start")?,
            upper: bound(&w.end, "End")?,
        })
    }

    fn correlated(&self, c: &CorrelatedCriteria, what: &str) -> Result<CorrelatedPlan> {
        let crit = c
            .criteria
            .as_ref()
            .ok_or_else(|| CohortError::Invalid(format!("{what}: Criteria is missing")))?;
        let criteria = self.criteria(crit)?;
        let occ = c
            .occurrence
            .as_ref()
            .ok_or_else(|| CohortError::Invalid(format!("{what}: Occurrence is missing")))?;
        let op = match occ.kind {
            0 => CountOp::Exactly,
            1 => CountOp::AtMost,
            2 => CountOp::AtLeast,
            k => {
                return Err(CohortError::Invalid(format!(
                    "{what}: Occurrence.Type {k} is not 0, 1 or 2"
                )));
            }
        };
        let distinct = if occ.is_distinct {
            Some(
                match occ.count_column.as_deref().unwrap_or("DOMAIN_CONCEPT") {
                    "DOMAIN_CONCEPT" => CountColumn::DomainConcept,
                    "START_DATE" => CountColumn::StartDate,
                    "END_DATE" => CountColumn::EndDate,
                    "VISIT_ID" => CountColumn::Visit,
                    other => return Err(unsupported(format!("Occurrence.CountColumn {other}"))),
                },
            )
        } else {
            None
        };
        let check_op = !c.ignore_observation_period;
        let sw = c
            .start_window
            .as_ref()
            .ok_or_else(|| CohortError::Invalid(format!("{what}: StartWindow is missing")))?;
        let start = self.window(sw, check_op, true, &format!("{what}.StartWindow"))?;
        let end = match &c.end_window {
            Some(ew) => Some(self.window(ew, check_op, false, &format!("{what}.EndWindow"))?),
            None => None,
        };
        Ok(CorrelatedPlan {
            criteria,
            start,
            end,
            restrict_visit: c.restrict_visit,
            check_op,
            op,
            count: occ.count,
            distinct,
        })
    }

    fn demographic(&self, d: &DemographicCriteria) -> Result<DemographicPlan> {
        let w = "DemographicCriteria";
        let mut f = Vec::new();
        if let Some(a) = &d.age {
            f.push(Filter::Num(
                NumCol::AgeAtStart,
                num_range(a, false, &format!("{w}.Age"))?,
            ));
        }
        let mut lists =
            |col: IdCol, l: &Option<Vec<Concept>>, cs: &Option<ConceptSetSelection>, name: &str| {
                if let Some(l) = l.as_ref().filter(|l| !l.is_empty()) {
                    f.push(Filter::IdIn {
                        col,
                        ids: concept_list(l, &format!("{w}.{name}"))?,
                        negate: false,
                    });
                }
                if let Some(cs) = cs {
                    f.push(self.cs_filter(col, cs));
                }
                Ok::<(), CohortError>(())
            };
        lists(IdCol::Gender, &d.gender, &d.gender_cs, "Gender")?;
        lists(IdCol::Race, &d.race, &d.race_cs, "Race")?;
        lists(IdCol::Ethnicity, &d.ethnicity, &d.ethnicity_cs, "Ethnicity")?;
        if let Some(r) = &d.occurrence_start_date {
            f.push(Filter::Date(
                DateCol::Start,
                day_range(r, &format!("{w}.OccurrenceStartDate"))?,
            ));
        }
        if let Some(r) = &d.occurrence_end_date {
            f.push(Filter::Date(
                DateCol::End,
                day_range(r, &format!("{w}.OccurrenceEndDate"))?,
            ));
        }
        Ok(DemographicPlan { filters: f })
    }

    fn group(&self, g: &CriteriaGroup, what: &str) -> Result<GroupPlan> {
        let criteria = g
            .criteria_list
            .iter()
            .enumerate()
            .map(|(i, c)| self.correlated(c, &format!("{what}.CriteriaList[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let demographics = g
            .demographic_criteria_list
            .iter()
            .map(|d| self.demographic(d))
            .collect::<Result<Vec<_>>>()?;
        let groups = g
            .groups
            .iter()
            .enumerate()
            .map(|(i, s)| self.group(s, &format!("{what}.Groups[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let rule = if g.is_empty() {
            GroupRule::All
        } else {
            let kind = g
                .kind
                .as_deref()
                .ok_or_else(|| CohortError::Invalid(format!("{what}: Type is missing")))?;
            let upper = kind.to_ascii_uppercase();
            if upper == "ALL" {
                GroupRule::All
            } else if upper == "ANY" {
                GroupRule::Any
            } else if upper.starts_with("AT_") {
                let n = g.count.ok_or_else(|| {
                    CohortError::Invalid(format!("{what}: Count is missing for {kind}"))
                })?;
                if upper.ends_with("LEAST") {
                    GroupRule::AtLeast(n)
                } else {
                    GroupRule::AtMost(n)
                }
            } else {
                return Err(CohortError::Invalid(format!(
                    "{what}: unknown group Type \"{kind}\" (expected ALL, ANY, AT_LEAST or AT_MOST)"
                )));
            }
        };
        Ok(GroupPlan {
            rule,
            criteria,
            demographics,
            groups,
        })
    }
}

impl CohortPlan {
    /// The event tables the plan reads (always the observation periods).
    pub fn domains(&self) -> Vec<Domain> {
        fn criteria(c: &CriteriaPlan, out: &mut Vec<Domain>) {
            out.push(c.domain);
            if let Some(g) = &c.correlated {
                group(g, out);
            }
        }
        fn group(g: &GroupPlan, out: &mut Vec<Domain>) {
            for c in &g.criteria {
                criteria(&c.criteria, out);
            }
            for s in &g.groups {
                group(s, out);
            }
        }
        let mut out = vec![Domain::ObservationPeriod];
        for c in self.primary.iter().chain(&self.censoring) {
            criteria(c, &mut out);
        }
        for g in self.additional.iter().chain(&self.rules) {
            group(g, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// Compiles a definition against a CDM: its vocabulary resolves the concept
    /// sets, and its columns' dictionaries turn them into matchers. Evaluate the
    /// plan over this same CDM.
    pub fn compile(expr: &CohortExpression, cdm: &Cdm) -> Result<Self> {
        let mut codesets = HashMap::new();
        for cs in expr.concept_sets.as_deref().unwrap_or(&[]) {
            let ids = concepts::resolve(&cdm.vocabulary, cs.expression.as_ref());
            codesets
                .entry(cs.id)
                .and_modify(|v: &mut Vec<i64>| {
                    v.extend(ids.iter().copied());
                    v.sort_unstable();
                    v.dedup();
                })
                .or_insert(ids);
        }
        let c = Compiler {
            codesets: codesets
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            empty: Arc::new(Vec::new()),
            cdm,
            next_slot: std::cell::Cell::new(0),
        };
        let pc = expr
            .primary_criteria
            .as_ref()
            .ok_or_else(|| CohortError::Invalid("PrimaryCriteria is missing".into()))?;
        let primary = pc
            .criteria_list
            .iter()
            .map(|x| c.criteria(x))
            .collect::<Result<Vec<_>>>()?;
        let ow = pc.observation_window.as_ref().ok_or_else(|| {
            CohortError::Invalid("PrimaryCriteria.ObservationWindow is missing".into())
        })?;
        let primary_limit = limit_of(
            pc.primary_limit
                .as_ref()
                .and_then(|l| l.kind.as_deref())
                .or(Some("First")),
        );
        let additional = match &expr.additional_criteria {
            Some(g) if !g.is_empty() => Some(c.group(g, "AdditionalCriteria")?),
            _ => None,
        };
        // The qualified limit only applies when AdditionalCriteria is present (even empty).
        let qualified_limit = if expr.additional_criteria.is_some() {
            match &expr.qualified_limit {
                Some(l) => match l.kind.as_deref() {
                    None => Limit::All,
                    k => limit_of(k),
                },
                None => Limit::First,
            }
        } else {
            Limit::All
        };
        let mut rules = Vec::new();
        let mut rule_names = Vec::new();
        for (i, r) in expr.inclusion_rules.iter().enumerate() {
            let what = format!("InclusionRules[{i}]");
            let g = r
                .expression
                .as_ref()
                .ok_or_else(|| CohortError::Invalid(format!("{what}: expression is missing")))?;
            rules.push(c.group(g, &what)?);
            rule_names.push(r.name.clone().unwrap_or_default());
        }
        let expression_limit = match &expr.expression_limit {
            Some(l) => match l.kind.as_deref() {
                None => Limit::All,
                k => limit_of(k),
            },
            None => Limit::First,
        };
        let end = match &expr.end_strategy {
            None => EndPlan::ObservationPeriodEnd,
            Some(EndStrategy::DateOffset(s)) => EndPlan::DateOffset {
                from_end: s.date_field == DateField::EndDate,
                offset: i32_of(s.offset),
            },
            Some(EndStrategy::CustomEra(s)) => {
                let id = s.drug_codeset_id.ok_or_else(|| {
                    CohortError::Invalid("EndStrategy.CustomEra: DrugCodesetId is missing".into())
                })?;
                let drugs = c.codeset(id);
                EndPlan::CustomEra {
                    clusters: cdm.table(Domain::DrugExposure).clusters_in(&drugs),
                    drugs,
                    gap: i32_of(s.gap_days),
                    offset: i32_of(s.offset),
                    days_supply: s.days_supply_override.map(i32_of),
                }
            }
        };
        let censoring = expr
            .censoring_criteria
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|x| c.criteria(x))
            .collect::<Result<Vec<_>>>()?;
        let era_pad = i32_of(expr.collapse_settings.as_ref().map_or(0, |s| s.era_pad));
        let censor_window = match &expr.censor_window {
            Some(w) => (
                match w.start_date.as_deref() {
                    Some(s) if !s.is_empty() => {
                        Some(parse_date(Some(s), "CensorWindow.StartDate")?)
                    }
                    _ => None,
                },
                match w.end_date.as_deref() {
                    Some(s) if !s.is_empty() => Some(parse_date(Some(s), "CensorWindow.EndDate")?),
                    _ => None,
                },
            ),
            None => (None, None),
        };
        Ok(CohortPlan {
            primary,
            prior_days: i32_of(ow.prior_days),
            post_days: i32_of(ow.post_days),
            primary_limit,
            additional,
            qualified_limit,
            rules,
            rule_names,
            expression_limit,
            end,
            censoring,
            era_pad,
            censor_window,
            slots: c.next_slot.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql_patterns() {
        assert!(like("Adverse event", "%dverse%"));
        assert!(like("Adverse", "Adv%"));
        assert!(!like("adverse", "Adv%"), "case-sensitive");
        assert!(like("abc", "a_c"));
        assert!(!like("abbc", "a_c"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("it's 50% better", "it's 50%%"));
        assert!(like("aXbXc", "%b%c"));
        assert!(!like("aXbXd", "%b%c"));
        assert!(like("mississippi", "%iss%ppi"));
    }

    #[test]
    fn text_filters_become_circe_like_patterns() {
        let t = |text: Option<&str>, op: &str| TextFilter {
            text: text.map(String::from),
            op: Some(op.to_string()),
        };
        let pattern = |f: Filter| match f {
            Filter::Text {
                pattern, negate, ..
            } => (pattern, negate),
            other => panic!("{other:?}"),
        };
        let f = |t: TextFilter| pattern(text_filter(&t, Extra::StopReason, "x").unwrap());
        assert_eq!(f(t(Some("ab"), "startsWith")), ("ab%".into(), false));
        assert_eq!(f(t(Some("ab"), "contains")), ("%ab%".into(), false));
        assert_eq!(f(t(Some("ab"), "endsWith")), ("%ab".into(), false));
        assert_eq!(f(t(Some("ab"), "!contains")), ("%ab%".into(), true));
        // Backslashes before a quote go, as in Circe's quoting; others stay.
        assert_eq!(
            f(t(Some("it\\'s a\\b"), "startsWith")),
            ("it's a\\b%".into(), false)
        );
        assert_eq!(f(t(None, "startsWith")), ("null%".into(), false));
        let no_op = TextFilter {
            text: Some("x".into()),
            op: None,
        };
        assert!(text_filter(&no_op, Extra::StopReason, "x").is_err());
    }
}
