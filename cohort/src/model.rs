//! The OHDSI Circe cohort definition model (the JSON ATLAS exports).
//!
//! Keys are case-sensitive and PascalCase (concept sets use camelCase), unknown
//! keys are ignored and scalar values are coerced the way Circe's reader does
//! (see [`crate::lenient`]). Every criteria type shares one struct,
//! [`DomainCriteria`], that holds the union of their attributes; the
//! evaluator only reads the attributes Circe reads for that type.

use crate::error::{CohortError, Result};
use crate::lenient::{self, Number};
use serde::Deserialize;
use std::path::Path;

/// A whole cohort definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CohortExpression {
    /// Optional title.
    #[serde(rename = "Title", deserialize_with = "lenient::opt_string")]
    pub title: Option<String>,
    /// The concept sets referenced by `CodesetId`.
    #[serde(rename = "ConceptSets", deserialize_with = "lenient::opt_vec")]
    pub concept_sets: Option<Vec<ConceptSet>>,
    /// The entry events.
    #[serde(rename = "PrimaryCriteria")]
    pub primary_criteria: Option<PrimaryCriteria>,
    /// Criteria every entry event must also meet.
    #[serde(rename = "AdditionalCriteria")]
    pub additional_criteria: Option<CriteriaGroup>,
    /// Limit applied after the additional criteria.
    #[serde(rename = "QualifiedLimit")]
    pub qualified_limit: Option<ResultLimit>,
    /// Limit applied after the inclusion rules.
    #[serde(rename = "ExpressionLimit")]
    pub expression_limit: Option<ResultLimit>,
    /// Named inclusion rules.
    #[serde(rename = "InclusionRules", deserialize_with = "lenient::vec_or_empty")]
    pub inclusion_rules: Vec<InclusionRule>,
    /// How a cohort episode ends.
    #[serde(rename = "EndStrategy")]
    pub end_strategy: Option<EndStrategy>,
    /// Events that end an episode early.
    #[serde(rename = "CensoringCriteria", deserialize_with = "lenient::opt_vec")]
    pub censoring_criteria: Option<Vec<Criteria>>,
    /// Era collapsing of the final episodes.
    #[serde(rename = "CollapseSettings")]
    pub collapse_settings: Option<CollapseSettings>,
    /// Calendar window the episodes are clipped to.
    #[serde(rename = "CensorWindow")]
    pub censor_window: Option<Period>,
    /// The CDM versions the definition was written for (informational).
    #[serde(rename = "cdmVersionRange", deserialize_with = "lenient::opt_string")]
    pub cdm_version_range: Option<String>,
}

impl CohortExpression {
    /// Parses a definition from JSON text. `origin` names the source in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|source| CohortError::Json {
            file: origin.to_string(),
            source,
        })
    }

    /// Reads and parses a definition file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| CohortError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }
}

/// A vocabulary concept as embedded in a definition. Only the id matters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Concept {
    /// The concept id.
    #[serde(rename = "CONCEPT_ID", deserialize_with = "lenient::opt_long")]
    pub concept_id: Option<i64>,
    /// The concept name (informational).
    #[serde(rename = "CONCEPT_NAME", deserialize_with = "lenient::opt_string")]
    pub concept_name: Option<String>,
}

/// One line of a concept set expression.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConceptSetItem {
    /// The concept.
    pub concept: Option<Concept>,
    /// Remove the resolved concepts instead of adding them.
    #[serde(rename = "isExcluded", deserialize_with = "lenient::bool")]
    pub is_excluded: bool,
    /// Add all descendants (via `concept_ancestor`).
    #[serde(rename = "includeDescendants", deserialize_with = "lenient::bool")]
    pub include_descendants: bool,
    /// Add the source concepts that map to it (`Maps to`).
    #[serde(rename = "includeMapped", deserialize_with = "lenient::bool")]
    pub include_mapped: bool,
}

/// The expression of a concept set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConceptSetExpression {
    /// The lines of the expression.
    #[serde(deserialize_with = "lenient::opt_vec")]
    pub items: Option<Vec<ConceptSetItem>>,
}

/// A concept set of a cohort definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConceptSet {
    /// The id criteria refer to as `CodesetId`.
    #[serde(deserialize_with = "lenient::int")]
    pub id: i64,
    /// The name (informational).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// The expression.
    pub expression: Option<ConceptSetExpression>,
}

/// A reference to a concept set, possibly negated (the `...CS` attributes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConceptSetSelection {
    /// The concept set id; absent means "the column is not null".
    #[serde(rename = "CodesetId", deserialize_with = "lenient::opt_int")]
    pub codeset_id: Option<i64>,
    /// Negate the membership test.
    #[serde(rename = "IsExclusion", deserialize_with = "lenient::bool")]
    pub is_exclusion: bool,
}

/// A date comparison: `Op` is one of lt, lte, eq, !eq, gt, gte, bt, !bt.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DateRange {
    /// The date (YYYY-MM-DD).
    #[serde(rename = "Value", deserialize_with = "lenient::opt_string")]
    pub value: Option<String>,
    /// The operator.
    #[serde(rename = "Op", deserialize_with = "lenient::opt_string")]
    pub op: Option<String>,
    /// The upper date for `bt` / `!bt`.
    #[serde(rename = "Extent", deserialize_with = "lenient::opt_string")]
    pub extent: Option<String>,
}

/// A numeric comparison with the same operators as [`DateRange`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NumericRange {
    /// The value.
    #[serde(rename = "Value", deserialize_with = "lenient::opt_number")]
    pub value: Option<Number>,
    /// The operator.
    #[serde(rename = "Op", deserialize_with = "lenient::opt_string")]
    pub op: Option<String>,
    /// The upper value for `bt` / `!bt`.
    #[serde(rename = "Extent", deserialize_with = "lenient::opt_number")]
    pub extent: Option<Number>,
}

/// A text comparison (`startsWith`, `contains`, `endsWith`, possibly negated).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TextFilter {
    /// The text.
    #[serde(rename = "Text", deserialize_with = "lenient::opt_string")]
    pub text: Option<String>,
    /// The operator.
    #[serde(rename = "Op", deserialize_with = "lenient::opt_string")]
    pub op: Option<String>,
}

/// A calendar period with optional ends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Period {
    /// Start (YYYY-MM-DD).
    #[serde(rename = "StartDate", deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// End (YYYY-MM-DD).
    #[serde(rename = "EndDate", deserialize_with = "lenient::opt_string")]
    pub end_date: Option<String>,
}

/// Which date of an event a [`DateAdjustment`] starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DateType {
    /// The start date.
    #[default]
    #[serde(rename = "START_DATE")]
    StartDate,
    /// The end date.
    #[serde(rename = "END_DATE")]
    EndDate,
}

/// Shifts the start and end dates of a criteria's events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DateAdjustment {
    /// The date the new start is computed from.
    #[serde(rename = "StartWith")]
    pub start_with: DateType,
    /// Days added to it.
    #[serde(rename = "StartOffset", deserialize_with = "lenient::int")]
    pub start_offset: i64,
    /// The date the new end is computed from.
    #[serde(rename = "EndWith")]
    pub end_with: DateType,
    /// Days added to it.
    #[serde(rename = "EndOffset", deserialize_with = "lenient::int")]
    pub end_offset: i64,
}

impl Default for DateAdjustment {
    fn default() -> Self {
        Self {
            start_with: DateType::StartDate,
            start_offset: 0,
            end_with: DateType::EndDate,
            end_offset: 0,
        }
    }
}

/// How many related events a correlated criterion requires.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Occurrence {
    /// 0 = exactly, 1 = at most, 2 = at least.
    #[serde(rename = "Type", deserialize_with = "lenient::int")]
    pub kind: i64,
    /// The count.
    #[serde(rename = "Count", deserialize_with = "lenient::int")]
    pub count: i64,
    /// Count distinct values of `CountColumn` instead of events.
    #[serde(rename = "IsDistinct", deserialize_with = "lenient::bool")]
    pub is_distinct: bool,
    /// The column counted when distinct (default `DOMAIN_CONCEPT`).
    #[serde(rename = "CountColumn", deserialize_with = "lenient::opt_string")]
    pub count_column: Option<String>,
}

/// One end of a window: `Days` days before (`Coeff` -1) or after (+1) the
/// index date; no `Days` means the observation period boundary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// Days from the index date; absent means unbounded.
    #[serde(rename = "Days", deserialize_with = "lenient::opt_int")]
    pub days: Option<i64>,
    /// -1 before, +1 after.
    #[serde(rename = "Coeff", deserialize_with = "lenient::int")]
    pub coeff: i64,
}

/// A time window relative to an index event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Window {
    /// Lower bound.
    #[serde(rename = "Start")]
    pub start: Option<Endpoint>,
    /// Upper bound.
    #[serde(rename = "End")]
    pub end: Option<Endpoint>,
    /// Measure from the index event's end date.
    #[serde(rename = "UseIndexEnd", deserialize_with = "lenient::opt_bool")]
    pub use_index_end: Option<bool>,
    /// Test the related event's end date.
    #[serde(rename = "UseEventEnd", deserialize_with = "lenient::opt_bool")]
    pub use_event_end: Option<bool>,
}

/// A criterion evaluated relative to an index event, with an occurrence count.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CorrelatedCriteria {
    /// The related events.
    #[serde(rename = "Criteria")]
    pub criteria: Option<Criteria>,
    /// Window on the related event's start (or end) date.
    #[serde(rename = "StartWindow")]
    pub start_window: Option<Window>,
    /// Optional window on the related event's end (or start) date.
    #[serde(rename = "EndWindow")]
    pub end_window: Option<Window>,
    /// The related event must be in the index event's visit.
    #[serde(rename = "RestrictVisit", deserialize_with = "lenient::bool")]
    pub restrict_visit: bool,
    /// Do not require the related event to be in the index observation period.
    #[serde(rename = "IgnoreObservationPeriod", deserialize_with = "lenient::bool")]
    pub ignore_observation_period: bool,
    /// How many related events are required.
    #[serde(rename = "Occurrence")]
    pub occurrence: Option<Occurrence>,
}

/// Person-level conditions at the index event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DemographicCriteria {
    /// Age in years at the index start (year difference).
    #[serde(rename = "Age")]
    pub age: Option<NumericRange>,
    /// Allowed gender concepts.
    #[serde(rename = "Gender", deserialize_with = "lenient::opt_vec")]
    pub gender: Option<Vec<Concept>>,
    /// Gender concept set.
    #[serde(rename = "GenderCS")]
    pub gender_cs: Option<ConceptSetSelection>,
    /// Allowed race concepts.
    #[serde(rename = "Race", deserialize_with = "lenient::opt_vec")]
    pub race: Option<Vec<Concept>>,
    /// Race concept set.
    #[serde(rename = "RaceCS")]
    pub race_cs: Option<ConceptSetSelection>,
    /// Allowed ethnicity concepts.
    #[serde(rename = "Ethnicity", deserialize_with = "lenient::opt_vec")]
    pub ethnicity: Option<Vec<Concept>>,
    /// Ethnicity concept set.
    #[serde(rename = "EthnicityCS")]
    pub ethnicity_cs: Option<ConceptSetSelection>,
    /// Index start date range.
    #[serde(rename = "OccurrenceStartDate")]
    pub occurrence_start_date: Option<DateRange>,
    /// Index end date range.
    #[serde(rename = "OccurrenceEndDate")]
    pub occurrence_end_date: Option<DateRange>,
}

/// A boolean group of criteria: `Type` is ALL, ANY, AT_LEAST or AT_MOST.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CriteriaGroup {
    /// The group type.
    #[serde(rename = "Type", deserialize_with = "lenient::opt_string")]
    pub kind: Option<String>,
    /// The count for AT_LEAST / AT_MOST.
    #[serde(rename = "Count", deserialize_with = "lenient::opt_int")]
    pub count: Option<i64>,
    /// Correlated criteria.
    #[serde(rename = "CriteriaList", deserialize_with = "lenient::vec_or_empty")]
    pub criteria_list: Vec<CorrelatedCriteria>,
    /// Demographic criteria.
    #[serde(
        rename = "DemographicCriteriaList",
        deserialize_with = "lenient::vec_or_empty"
    )]
    pub demographic_criteria_list: Vec<DemographicCriteria>,
    /// Nested groups.
    #[serde(rename = "Groups", deserialize_with = "lenient::vec_or_empty")]
    pub groups: Vec<CriteriaGroup>,
}

impl CriteriaGroup {
    /// A group without any member passes every event.
    pub fn is_empty(&self) -> bool {
        self.criteria_list.is_empty()
            && self.demographic_criteria_list.is_empty()
            && self.groups.is_empty()
    }
}

/// A criteria: which table it reads and its attributes. JSON form:
/// `{"ConditionOccurrence": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub enum Criteria {
    /// `condition_era`.
    ConditionEra(Box<DomainCriteria>),
    /// `condition_occurrence`.
    ConditionOccurrence(Box<DomainCriteria>),
    /// `death`.
    Death(Box<DomainCriteria>),
    /// `device_exposure`.
    DeviceExposure(Box<DomainCriteria>),
    /// `dose_era`.
    DoseEra(Box<DomainCriteria>),
    /// `drug_era`.
    DrugEra(Box<DomainCriteria>),
    /// `drug_exposure`.
    DrugExposure(Box<DomainCriteria>),
    /// `measurement`.
    Measurement(Box<DomainCriteria>),
    /// `observation`.
    Observation(Box<DomainCriteria>),
    /// `observation_period`.
    ObservationPeriod(Box<DomainCriteria>),
    /// `procedure_occurrence`.
    ProcedureOccurrence(Box<DomainCriteria>),
    /// `specimen`.
    Specimen(Box<DomainCriteria>),
    /// `visit_detail`.
    VisitDetail(Box<DomainCriteria>),
    /// `visit_occurrence`.
    VisitOccurrence(Box<DomainCriteria>),
    /// Eras built on the fly from other criteria (not evaluated yet).
    CustomEra(serde_json::Value),
    /// `episode` (not evaluated yet).
    Episode(serde_json::Value),
    /// `location` regions (not evaluated yet).
    LocationRegion(serde_json::Value),
    /// `payer_plan_period` (not evaluated yet).
    PayerPlanPeriod(serde_json::Value),
}

impl Criteria {
    /// The Circe name of the criteria type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Criteria::ConditionEra(_) => "ConditionEra",
            Criteria::ConditionOccurrence(_) => "ConditionOccurrence",
            Criteria::Death(_) => "Death",
            Criteria::DeviceExposure(_) => "DeviceExposure",
            Criteria::DoseEra(_) => "DoseEra",
            Criteria::DrugEra(_) => "DrugEra",
            Criteria::DrugExposure(_) => "DrugExposure",
            Criteria::Measurement(_) => "Measurement",
            Criteria::Observation(_) => "Observation",
            Criteria::ObservationPeriod(_) => "ObservationPeriod",
            Criteria::ProcedureOccurrence(_) => "ProcedureOccurrence",
            Criteria::Specimen(_) => "Specimen",
            Criteria::VisitDetail(_) => "VisitDetail",
            Criteria::VisitOccurrence(_) => "VisitOccurrence",
            Criteria::CustomEra(_) => "CustomEra",
            Criteria::Episode(_) => "Episode",
            Criteria::LocationRegion(_) => "LocationRegion",
            Criteria::PayerPlanPeriod(_) => "PayerPlanPeriod",
        }
    }
}

/// The attributes of every domain criteria type (their union).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct DomainCriteria {
    #[serde(rename = "CorrelatedCriteria")]
    pub correlated_criteria: Option<CriteriaGroup>,
    #[serde(rename = "DateAdjustment")]
    pub date_adjustment: Option<DateAdjustment>,
    #[serde(rename = "CodesetId", deserialize_with = "lenient::opt_int")]
    pub codeset_id: Option<i64>,
    #[serde(rename = "First", deserialize_with = "lenient::opt_bool")]
    pub first: Option<bool>,
    #[serde(rename = "OccurrenceStartDate")]
    pub occurrence_start_date: Option<DateRange>,
    #[serde(rename = "OccurrenceEndDate")]
    pub occurrence_end_date: Option<DateRange>,
    #[serde(rename = "Age")]
    pub age: Option<NumericRange>,
    #[serde(rename = "Gender", deserialize_with = "lenient::opt_vec")]
    pub gender: Option<Vec<Concept>>,
    #[serde(rename = "GenderCS")]
    pub gender_cs: Option<ConceptSetSelection>,
    #[serde(rename = "ProviderSpecialty", deserialize_with = "lenient::opt_vec")]
    pub provider_specialty: Option<Vec<Concept>>,
    #[serde(rename = "ProviderSpecialtyCS")]
    pub provider_specialty_cs: Option<ConceptSetSelection>,
    #[serde(rename = "VisitType", deserialize_with = "lenient::opt_vec")]
    pub visit_type: Option<Vec<Concept>>,
    #[serde(rename = "VisitTypeCS")]
    pub visit_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "VisitTypeExclude", deserialize_with = "lenient::bool")]
    pub visit_type_exclude: bool,
    #[serde(rename = "AgeAtStart")]
    pub age_at_start: Option<NumericRange>,
    #[serde(rename = "AgeAtEnd")]
    pub age_at_end: Option<NumericRange>,
    #[serde(rename = "EraStartDate")]
    pub era_start_date: Option<DateRange>,
    #[serde(rename = "EraEndDate")]
    pub era_end_date: Option<DateRange>,
    #[serde(rename = "EraLength")]
    pub era_length: Option<NumericRange>,
    #[serde(rename = "OccurrenceCount")]
    pub occurrence_count: Option<NumericRange>,
    #[serde(rename = "GapDays")]
    pub gap_days: Option<NumericRange>,
    #[serde(rename = "Unit", deserialize_with = "lenient::opt_vec")]
    pub unit: Option<Vec<Concept>>,
    #[serde(rename = "UnitCS")]
    pub unit_cs: Option<ConceptSetSelection>,
    #[serde(rename = "Quantity")]
    pub quantity: Option<NumericRange>,
    #[serde(rename = "ValueAsNumber")]
    pub value_as_number: Option<NumericRange>,
    #[serde(rename = "ValueAsConcept", deserialize_with = "lenient::opt_vec")]
    pub value_as_concept: Option<Vec<Concept>>,
    #[serde(rename = "ValueAsConceptCS")]
    pub value_as_concept_cs: Option<ConceptSetSelection>,
    #[serde(rename = "ValueAsString")]
    pub value_as_string: Option<TextFilter>,
    #[serde(rename = "StopReason")]
    pub stop_reason: Option<TextFilter>,
    #[serde(rename = "UserDefinedPeriod")]
    pub user_defined_period: Option<Period>,
    #[serde(rename = "PeriodStartDate")]
    pub period_start_date: Option<DateRange>,
    #[serde(rename = "PeriodEndDate")]
    pub period_end_date: Option<DateRange>,
    #[serde(rename = "PeriodLength")]
    pub period_length: Option<NumericRange>,
    #[serde(rename = "PeriodType", deserialize_with = "lenient::opt_vec")]
    pub period_type: Option<Vec<Concept>>,
    #[serde(rename = "PeriodTypeCS")]
    pub period_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "PlaceOfService", deserialize_with = "lenient::opt_vec")]
    pub place_of_service: Option<Vec<Concept>>,
    #[serde(rename = "PlaceOfServiceCS")]
    pub place_of_service_cs: Option<ConceptSetSelection>,
    #[serde(
        rename = "PlaceOfServiceLocation",
        deserialize_with = "lenient::opt_int"
    )]
    pub place_of_service_location: Option<i64>,
    #[serde(rename = "ConditionType", deserialize_with = "lenient::opt_vec")]
    pub condition_type: Option<Vec<Concept>>,
    #[serde(rename = "ConditionTypeCS")]
    pub condition_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "ConditionTypeExclude", deserialize_with = "lenient::bool")]
    pub condition_type_exclude: bool,
    #[serde(
        rename = "ConditionSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub condition_source_concept: Option<i64>,
    #[serde(rename = "ConditionStatus", deserialize_with = "lenient::opt_vec")]
    pub condition_status: Option<Vec<Concept>>,
    #[serde(rename = "ConditionStatusCS")]
    pub condition_status_cs: Option<ConceptSetSelection>,
    #[serde(rename = "DeathType", deserialize_with = "lenient::opt_vec")]
    pub death_type: Option<Vec<Concept>>,
    #[serde(rename = "DeathTypeCS")]
    pub death_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "DeathTypeExclude", deserialize_with = "lenient::bool")]
    pub death_type_exclude: bool,
    #[serde(rename = "DeathSourceConcept", deserialize_with = "lenient::opt_int")]
    pub death_source_concept: Option<i64>,
    #[serde(rename = "DeviceType", deserialize_with = "lenient::opt_vec")]
    pub device_type: Option<Vec<Concept>>,
    #[serde(rename = "DeviceTypeCS")]
    pub device_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "DeviceTypeExclude", deserialize_with = "lenient::bool")]
    pub device_type_exclude: bool,
    #[serde(rename = "UniqueDeviceId")]
    pub unique_device_id: Option<TextFilter>,
    #[serde(rename = "DeviceSourceConcept", deserialize_with = "lenient::opt_int")]
    pub device_source_concept: Option<i64>,
    #[serde(rename = "DoseValue")]
    pub dose_value: Option<NumericRange>,
    #[serde(rename = "DrugType", deserialize_with = "lenient::opt_vec")]
    pub drug_type: Option<Vec<Concept>>,
    #[serde(rename = "DrugTypeCS")]
    pub drug_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "DrugTypeExclude", deserialize_with = "lenient::bool")]
    pub drug_type_exclude: bool,
    #[serde(rename = "Refills")]
    pub refills: Option<NumericRange>,
    #[serde(rename = "DaysSupply")]
    pub days_supply: Option<NumericRange>,
    #[serde(rename = "RouteConcept", deserialize_with = "lenient::opt_vec")]
    pub route_concept: Option<Vec<Concept>>,
    #[serde(rename = "RouteConceptCS")]
    pub route_concept_cs: Option<ConceptSetSelection>,
    #[serde(rename = "EffectiveDrugDose")]
    pub effective_drug_dose: Option<NumericRange>,
    #[serde(rename = "DoseUnit", deserialize_with = "lenient::opt_vec")]
    pub dose_unit: Option<Vec<Concept>>,
    #[serde(rename = "DoseUnitCS")]
    pub dose_unit_cs: Option<ConceptSetSelection>,
    #[serde(rename = "LotNumber")]
    pub lot_number: Option<TextFilter>,
    #[serde(rename = "DrugSourceConcept", deserialize_with = "lenient::opt_int")]
    pub drug_source_concept: Option<i64>,
    #[serde(rename = "MeasurementType", deserialize_with = "lenient::opt_vec")]
    pub measurement_type: Option<Vec<Concept>>,
    #[serde(rename = "MeasurementTypeCS")]
    pub measurement_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "MeasurementTypeExclude", deserialize_with = "lenient::bool")]
    pub measurement_type_exclude: bool,
    #[serde(rename = "Operator", deserialize_with = "lenient::opt_vec")]
    pub operator: Option<Vec<Concept>>,
    #[serde(rename = "OperatorCS")]
    pub operator_cs: Option<ConceptSetSelection>,
    #[serde(rename = "RangeLow")]
    pub range_low: Option<NumericRange>,
    #[serde(rename = "RangeHigh")]
    pub range_high: Option<NumericRange>,
    #[serde(rename = "RangeLowRatio")]
    pub range_low_ratio: Option<NumericRange>,
    #[serde(rename = "RangeHighRatio")]
    pub range_high_ratio: Option<NumericRange>,
    #[serde(rename = "Abnormal", deserialize_with = "lenient::opt_bool")]
    pub abnormal: Option<bool>,
    #[serde(
        rename = "MeasurementSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub measurement_source_concept: Option<i64>,
    #[serde(rename = "ObservationType", deserialize_with = "lenient::opt_vec")]
    pub observation_type: Option<Vec<Concept>>,
    #[serde(rename = "ObservationTypeCS")]
    pub observation_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "ObservationTypeExclude", deserialize_with = "lenient::bool")]
    pub observation_type_exclude: bool,
    #[serde(rename = "Qualifier", deserialize_with = "lenient::opt_vec")]
    pub qualifier: Option<Vec<Concept>>,
    #[serde(rename = "QualifierCS")]
    pub qualifier_cs: Option<ConceptSetSelection>,
    #[serde(
        rename = "ObservationSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub observation_source_concept: Option<i64>,
    #[serde(rename = "ProcedureType", deserialize_with = "lenient::opt_vec")]
    pub procedure_type: Option<Vec<Concept>>,
    #[serde(rename = "ProcedureTypeCS")]
    pub procedure_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "ProcedureTypeExclude", deserialize_with = "lenient::bool")]
    pub procedure_type_exclude: bool,
    #[serde(rename = "Modifier", deserialize_with = "lenient::opt_vec")]
    pub modifier: Option<Vec<Concept>>,
    #[serde(rename = "ModifierCS")]
    pub modifier_cs: Option<ConceptSetSelection>,
    #[serde(
        rename = "ProcedureSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub procedure_source_concept: Option<i64>,
    #[serde(rename = "SpecimenType", deserialize_with = "lenient::opt_vec")]
    pub specimen_type: Option<Vec<Concept>>,
    #[serde(rename = "SpecimenTypeCS")]
    pub specimen_type_cs: Option<ConceptSetSelection>,
    #[serde(rename = "SpecimenTypeExclude", deserialize_with = "lenient::bool")]
    pub specimen_type_exclude: bool,
    #[serde(rename = "AnatomicSite", deserialize_with = "lenient::opt_vec")]
    pub anatomic_site: Option<Vec<Concept>>,
    #[serde(rename = "AnatomicSiteCS")]
    pub anatomic_site_cs: Option<ConceptSetSelection>,
    #[serde(rename = "DiseaseStatus", deserialize_with = "lenient::opt_vec")]
    pub disease_status: Option<Vec<Concept>>,
    #[serde(rename = "DiseaseStatusCS")]
    pub disease_status_cs: Option<ConceptSetSelection>,
    #[serde(rename = "SourceId")]
    pub source_id: Option<TextFilter>,
    #[serde(
        rename = "SpecimenSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub specimen_source_concept: Option<i64>,
    #[serde(rename = "VisitDetailStartDate")]
    pub visit_detail_start_date: Option<DateRange>,
    #[serde(rename = "VisitDetailEndDate")]
    pub visit_detail_end_date: Option<DateRange>,
    #[serde(rename = "VisitDetailTypeCS")]
    pub visit_detail_type_cs: Option<ConceptSetSelection>,
    #[serde(
        rename = "VisitDetailSourceConcept",
        deserialize_with = "lenient::opt_int"
    )]
    pub visit_detail_source_concept: Option<i64>,
    #[serde(rename = "VisitDetailLength")]
    pub visit_detail_length: Option<NumericRange>,
    #[serde(rename = "VisitSourceConcept", deserialize_with = "lenient::opt_int")]
    pub visit_source_concept: Option<i64>,
    #[serde(rename = "VisitLength")]
    pub visit_length: Option<NumericRange>,
}

/// The entry event criteria.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PrimaryCriteria {
    /// Alternative entry events (their union).
    #[serde(rename = "CriteriaList", deserialize_with = "lenient::vec_or_empty")]
    pub criteria_list: Vec<Criteria>,
    /// Required observation before and after the entry event.
    #[serde(rename = "ObservationWindow")]
    pub observation_window: Option<ObservationFilter>,
    /// Which entry events of a person to keep.
    #[serde(rename = "PrimaryCriteriaLimit")]
    pub primary_limit: Option<ResultLimit>,
}

/// Days of continuous observation required before and after an entry event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ObservationFilter {
    /// Days before.
    #[serde(rename = "PriorDays", deserialize_with = "lenient::int")]
    pub prior_days: i64,
    /// Days after.
    #[serde(rename = "PostDays", deserialize_with = "lenient::int")]
    pub post_days: i64,
}

/// `First`, `Last` or `All` events per person.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ResultLimit {
    /// The limit type (case-insensitive).
    #[serde(rename = "Type", deserialize_with = "lenient::opt_string")]
    pub kind: Option<String>,
}

impl Default for ResultLimit {
    fn default() -> Self {
        Self {
            kind: Some("First".to_string()),
        }
    }
}

/// A named inclusion rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InclusionRule {
    /// Name.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Description.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    /// The rule.
    pub expression: Option<CriteriaGroup>,
}

/// How a cohort episode ends. JSON form: `{"DateOffset": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub enum EndStrategy {
    /// A fixed offset from the start or end date of the entry event.
    DateOffset(DateOffsetStrategy),
    /// The end of the drug era that contains the entry event.
    CustomEra(CustomEraStrategy),
}

/// Which entry event date a [`DateOffsetStrategy`] counts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DateField {
    /// The entry event's start date.
    #[default]
    StartDate,
    /// The entry event's end date.
    EndDate,
}

/// End = date field + offset, capped at the observation period end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DateOffsetStrategy {
    /// The date counted from.
    #[serde(rename = "DateField")]
    pub date_field: DateField,
    /// Days added.
    #[serde(rename = "Offset", deserialize_with = "lenient::int")]
    pub offset: i64,
}

/// End = end of the drug era (built from a concept set) containing the entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CustomEraStrategy {
    /// The drug concept set.
    #[serde(rename = "DrugCodesetId", deserialize_with = "lenient::opt_int")]
    pub drug_codeset_id: Option<i64>,
    /// Allowed gap between exposures.
    #[serde(rename = "GapDays", deserialize_with = "lenient::int")]
    pub gap_days: i64,
    /// Days added to the era end.
    #[serde(rename = "Offset", deserialize_with = "lenient::int")]
    pub offset: i64,
    /// Replace every exposure's days supply.
    #[serde(rename = "DaysSupplyOverride", deserialize_with = "lenient::opt_int")]
    pub days_supply_override: Option<i64>,
}

/// Era collapsing of the final episodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CollapseSettings {
    /// Only `ERA` exists.
    #[serde(rename = "CollapseType", deserialize_with = "lenient::opt_string")]
    pub collapse_type: Option<String>,
    /// Episodes at most this many days apart are merged.
    #[serde(rename = "EraPad", deserialize_with = "lenient::int")]
    pub era_pad: i64,
}
