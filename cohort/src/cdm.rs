//! The CDM tables the evaluator reads, held in memory column by column.
//!
//! Every event table is sorted by person, then start date, then row id, and
//! carries per-person offsets, so all events of one person are one contiguous
//! slice of each column. Dates are days since 1970-01-01 ([`Day`]); ids and
//! concept ids are `i64`. Nulls are sentinels ([`NULL_DAY`], [`NULL_ID`],
//! `NaN`) so that the columns stay flat.
//!
//! Both CDM v5.3 and v5.4 layouts load: `*_date` columns may be DATE or
//! TIMESTAMP, ids may be 32- or 64-bit, decimals become `f64`, and a missing
//! table or optional column reads as empty / null.

use crate::error::{CohortError, Result};
use polars::prelude::*;
use rayon::prelude::*;
use roaring::RoaringBitmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Days since 1970-01-01.
pub type Day = i32;
/// A null date.
pub const NULL_DAY: Day = i32::MIN;
/// A null id or concept id.
pub const NULL_ID: i64 = i64::MIN;

/// The event tables (domains) Circe criteria read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// condition_occurrence
    ConditionOccurrence,
    /// drug_exposure
    DrugExposure,
    /// procedure_occurrence
    ProcedureOccurrence,
    /// measurement
    Measurement,
    /// observation
    Observation,
    /// visit_occurrence
    VisitOccurrence,
    /// visit_detail
    VisitDetail,
    /// device_exposure
    DeviceExposure,
    /// specimen
    Specimen,
    /// death
    Death,
    /// condition_era
    ConditionEra,
    /// drug_era
    DrugEra,
    /// dose_era
    DoseEra,
    /// observation_period
    ObservationPeriod,
}

/// Extra columns some domains carry, beyond the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extra {
    /// condition_status_concept_id
    ConditionStatus,
    /// days_supply
    DaysSupply,
    /// quantity
    Quantity,
    /// refills
    Refills,
    /// route_concept_id
    Route,
    /// dose_unit_concept_id
    DoseUnit,
    /// modifier_concept_id
    Modifier,
    /// operator_concept_id
    Operator,
    /// value_as_number / dose_value
    ValueAsNumber,
    /// value_as_concept_id
    ValueAsConcept,
    /// unit_concept_id
    Unit,
    /// range_low
    RangeLow,
    /// range_high
    RangeHigh,
    /// qualifier_concept_id
    Qualifier,
    /// care_site_id
    CareSite,
    /// anatomic_site_concept_id
    AnatomicSite,
    /// disease_status_concept_id
    DiseaseStatus,
    /// condition_occurrence_count / drug_exposure_count
    OccurrenceCount,
    /// gap_days
    GapDays,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Num,
}

struct TableSpec {
    domain: Domain,
    table: &'static str,
    id: &'static str,
    start: &'static str,
    end: Option<&'static str>,
    concept: Option<&'static str>,
    source: Option<&'static str>,
    type_concept: Option<&'static str>,
    visit: Option<&'static str>,
    provider: Option<&'static str>,
    extras: &'static [(Extra, &'static str, Kind)],
}

const SPECS: &[TableSpec] = &[
    TableSpec {
        domain: Domain::ConditionOccurrence,
        table: "condition_occurrence",
        id: "condition_occurrence_id",
        start: "condition_start_date",
        end: Some("condition_end_date"),
        concept: Some("condition_concept_id"),
        source: Some("condition_source_concept_id"),
        type_concept: Some("condition_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[(
            Extra::ConditionStatus,
            "condition_status_concept_id",
            Kind::Id,
        )],
    },
    TableSpec {
        domain: Domain::DrugExposure,
        table: "drug_exposure",
        id: "drug_exposure_id",
        start: "drug_exposure_start_date",
        end: Some("drug_exposure_end_date"),
        concept: Some("drug_concept_id"),
        source: Some("drug_source_concept_id"),
        type_concept: Some("drug_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[
            (Extra::DaysSupply, "days_supply", Kind::Num),
            (Extra::Quantity, "quantity", Kind::Num),
            (Extra::Refills, "refills", Kind::Num),
            (Extra::Route, "route_concept_id", Kind::Id),
            (Extra::DoseUnit, "dose_unit_concept_id", Kind::Id),
        ],
    },
    TableSpec {
        domain: Domain::ProcedureOccurrence,
        table: "procedure_occurrence",
        id: "procedure_occurrence_id",
        start: "procedure_date",
        end: None,
        concept: Some("procedure_concept_id"),
        source: Some("procedure_source_concept_id"),
        type_concept: Some("procedure_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[
            (Extra::Modifier, "modifier_concept_id", Kind::Id),
            (Extra::Quantity, "quantity", Kind::Num),
        ],
    },
    TableSpec {
        domain: Domain::Measurement,
        table: "measurement",
        id: "measurement_id",
        start: "measurement_date",
        end: None,
        concept: Some("measurement_concept_id"),
        source: Some("measurement_source_concept_id"),
        type_concept: Some("measurement_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[
            (Extra::Operator, "operator_concept_id", Kind::Id),
            (Extra::ValueAsNumber, "value_as_number", Kind::Num),
            (Extra::ValueAsConcept, "value_as_concept_id", Kind::Id),
            (Extra::Unit, "unit_concept_id", Kind::Id),
            (Extra::RangeLow, "range_low", Kind::Num),
            (Extra::RangeHigh, "range_high", Kind::Num),
        ],
    },
    TableSpec {
        domain: Domain::Observation,
        table: "observation",
        id: "observation_id",
        start: "observation_date",
        end: None,
        concept: Some("observation_concept_id"),
        source: Some("observation_source_concept_id"),
        type_concept: Some("observation_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[
            (Extra::ValueAsNumber, "value_as_number", Kind::Num),
            (Extra::ValueAsConcept, "value_as_concept_id", Kind::Id),
            (Extra::Qualifier, "qualifier_concept_id", Kind::Id),
            (Extra::Unit, "unit_concept_id", Kind::Id),
        ],
    },
    TableSpec {
        domain: Domain::VisitOccurrence,
        table: "visit_occurrence",
        id: "visit_occurrence_id",
        start: "visit_start_date",
        end: Some("visit_end_date"),
        concept: Some("visit_concept_id"),
        source: Some("visit_source_concept_id"),
        type_concept: Some("visit_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[(Extra::CareSite, "care_site_id", Kind::Id)],
    },
    TableSpec {
        domain: Domain::VisitDetail,
        table: "visit_detail",
        id: "visit_detail_id",
        start: "visit_detail_start_date",
        end: Some("visit_detail_end_date"),
        concept: Some("visit_detail_concept_id"),
        source: Some("visit_detail_source_concept_id"),
        type_concept: Some("visit_detail_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[(Extra::CareSite, "care_site_id", Kind::Id)],
    },
    TableSpec {
        domain: Domain::DeviceExposure,
        table: "device_exposure",
        id: "device_exposure_id",
        start: "device_exposure_start_date",
        end: Some("device_exposure_end_date"),
        concept: Some("device_concept_id"),
        source: Some("device_source_concept_id"),
        type_concept: Some("device_type_concept_id"),
        visit: Some("visit_occurrence_id"),
        provider: Some("provider_id"),
        extras: &[(Extra::Quantity, "quantity", Kind::Num)],
    },
    TableSpec {
        domain: Domain::Specimen,
        table: "specimen",
        id: "specimen_id",
        start: "specimen_date",
        end: None,
        concept: Some("specimen_concept_id"),
        source: None,
        type_concept: Some("specimen_type_concept_id"),
        visit: None,
        provider: None,
        extras: &[
            (Extra::Quantity, "quantity", Kind::Num),
            (Extra::Unit, "unit_concept_id", Kind::Id),
            (Extra::AnatomicSite, "anatomic_site_concept_id", Kind::Id),
            (Extra::DiseaseStatus, "disease_status_concept_id", Kind::Id),
        ],
    },
    TableSpec {
        domain: Domain::Death,
        table: "death",
        id: "person_id",
        start: "death_date",
        end: None,
        concept: Some("cause_concept_id"),
        source: Some("cause_source_concept_id"),
        type_concept: Some("death_type_concept_id"),
        visit: None,
        provider: None,
        extras: &[],
    },
    TableSpec {
        domain: Domain::ConditionEra,
        table: "condition_era",
        id: "condition_era_id",
        start: "condition_era_start_date",
        end: Some("condition_era_end_date"),
        concept: Some("condition_concept_id"),
        source: None,
        type_concept: None,
        visit: None,
        provider: None,
        extras: &[(
            Extra::OccurrenceCount,
            "condition_occurrence_count",
            Kind::Num,
        )],
    },
    TableSpec {
        domain: Domain::DrugEra,
        table: "drug_era",
        id: "drug_era_id",
        start: "drug_era_start_date",
        end: Some("drug_era_end_date"),
        concept: Some("drug_concept_id"),
        source: None,
        type_concept: None,
        visit: None,
        provider: None,
        extras: &[
            (Extra::OccurrenceCount, "drug_exposure_count", Kind::Num),
            (Extra::GapDays, "gap_days", Kind::Num),
        ],
    },
    TableSpec {
        domain: Domain::DoseEra,
        table: "dose_era",
        id: "dose_era_id",
        start: "dose_era_start_date",
        end: Some("dose_era_end_date"),
        concept: Some("drug_concept_id"),
        source: None,
        type_concept: None,
        visit: None,
        provider: None,
        extras: &[
            (Extra::Unit, "unit_concept_id", Kind::Id),
            (Extra::ValueAsNumber, "dose_value", Kind::Num),
        ],
    },
    TableSpec {
        domain: Domain::ObservationPeriod,
        table: "observation_period",
        id: "observation_period_id",
        start: "observation_period_start_date",
        end: Some("observation_period_end_date"),
        concept: None,
        source: None,
        type_concept: Some("period_type_concept_id"),
        visit: None,
        provider: None,
        extras: &[],
    },
];

/// A column of one of the [`Extra`] kinds.
#[derive(Debug, Clone)]
pub enum ExtraColumn {
    /// Ids and concept ids, [`NULL_ID`] for null.
    Id(Vec<i64>),
    /// Numbers, `NaN` for null.
    Num(Vec<f64>),
}

/// One event table, sorted by person, start date and id.
#[derive(Debug, Clone, Default)]
pub struct EventTable {
    /// `offsets[p]..offsets[p + 1]` are the rows of person index `p`.
    pub offsets: Vec<u32>,
    /// Row id (`person_id` for death).
    pub id: Vec<i64>,
    /// Start date.
    pub start: Vec<Day>,
    /// End date as stored (may be [`NULL_DAY`]); tables without one hold nulls.
    pub end: Vec<Day>,
    /// The domain concept.
    pub concept: Vec<i64>,
    /// The source concept.
    pub source: Vec<i64>,
    /// The type concept.
    pub type_concept: Vec<i64>,
    /// visit_occurrence_id.
    pub visit: Vec<i64>,
    /// provider_id.
    pub provider: Vec<i64>,
    /// Domain-specific columns.
    pub extras: HashMap<Extra, ExtraColumn>,
}

impl EventTable {
    /// The row range of person index `p`.
    #[inline]
    pub fn rows(&self, p: usize) -> std::ops::Range<usize> {
        self.offsets[p] as usize..self.offsets[p + 1] as usize
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.id.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// An id-typed extra column, if the table has it.
    pub fn extra_id(&self, e: Extra) -> Option<&[i64]> {
        match self.extras.get(&e) {
            Some(ExtraColumn::Id(v)) => Some(v),
            _ => None,
        }
    }

    /// A numeric extra column, if the table has it.
    pub fn extra_num(&self, e: Extra) -> Option<&[f64]> {
        match self.extras.get(&e) {
            Some(ExtraColumn::Num(v)) => Some(v),
            _ => None,
        }
    }
}

/// Which persons have rows with a given concept, per event table.
#[derive(Debug, Clone, Default)]
pub struct ConceptIndex {
    /// Domain concept → person indexes.
    pub concept: HashMap<i64, RoaringBitmap>,
    /// Source concept → person indexes.
    pub source: HashMap<i64, RoaringBitmap>,
    /// Persons with any row.
    pub any: RoaringBitmap,
}

impl ConceptIndex {
    /// Builds the bitmaps of one table.
    pub fn build(t: &EventTable) -> Self {
        let mut idx = ConceptIndex::default();
        let n_persons = t.offsets.len().saturating_sub(1);
        for p in 0..n_persons {
            let rows = t.rows(p);
            if rows.is_empty() {
                continue;
            }
            let p = p as u32;
            idx.any.try_push(p).ok();
            for r in rows {
                // Rows are sorted by person, so each push appends (or is a repeat).
                idx.concept
                    .entry(t.concept[r])
                    .or_default()
                    .try_push(p)
                    .ok();
                if t.source[r] != NULL_ID {
                    idx.source.entry(t.source[r]).or_default().try_push(p).ok();
                }
            }
        }
        idx
    }

    /// Persons with a row whose concept (or source concept) is in `ids`.
    pub fn persons_with(&self, ids: &[i64], source: bool) -> RoaringBitmap {
        let map = if source { &self.source } else { &self.concept };
        let mut out = RoaringBitmap::new();
        for id in ids {
            if let Some(b) = map.get(id) {
                out |= b;
            }
        }
        out
    }
}

/// Person attributes, one entry per person index.
#[derive(Debug, Clone, Default)]
pub struct Persons {
    /// person_id, sorted ascending; the position is the person index.
    pub id: Vec<i64>,
    /// Whether the person has a row in `person` (Circe inner-joins it).
    pub in_person_table: Vec<bool>,
    /// year_of_birth ([`NULL_ID`] when null).
    pub year_of_birth: Vec<i64>,
    /// gender_concept_id.
    pub gender: Vec<i64>,
    /// race_concept_id.
    pub race: Vec<i64>,
    /// ethnicity_concept_id.
    pub ethnicity: Vec<i64>,
}

/// The vocabulary tables concept sets are resolved against.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// concept_id → whether `invalid_reason` is null.
    pub concept_valid: HashMap<i64, bool>,
    /// ancestor → descendants (concept_ancestor).
    pub descendants: HashMap<i64, Vec<i64>>,
    /// concept_id_2 → concept_id_1 of valid `Maps to` rows.
    pub mapped_from: HashMap<i64, Vec<i64>>,
}

/// An OMOP CDM loaded for cohort evaluation.
#[derive(Debug, Clone, Default)]
pub struct Cdm {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Persons with an observation period or a `person` row.
    pub persons: Persons,
    /// Event tables by domain.
    pub tables: HashMap<Domain, EventTable>,
    /// Per-concept person bitmaps by domain.
    pub index: HashMap<Domain, ConceptIndex>,
    /// provider_id → specialty_concept_id.
    pub provider_specialty: HashMap<i64, i64>,
    /// care_site_id → place_of_service_concept_id.
    pub care_site_place: HashMap<i64, i64>,
    /// Vocabulary.
    pub vocabulary: Vocabulary,
}

fn cdm_err(path: &Path, message: impl Into<String>) -> CohortError {
    CohortError::Cdm {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the named columns of a Parquet file; absent columns are skipped.
/// Returns `None` when the file does not exist.
fn read_table(path: &Path, wanted: &[&str]) -> Result<Option<DataFrame>> {
    if !path.exists() {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|source| CohortError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    let schema = reader.schema().map_err(|e| cdm_err(path, e.to_string()))?;
    let mut cols: Vec<String> = Vec::new();
    for w in wanted {
        if schema.contains(w) && !cols.iter().any(|c| c == w) {
            cols.push((*w).to_string());
        }
    }
    let df = reader
        .with_columns(Some(cols))
        .finish()
        .map_err(|e| cdm_err(path, e.to_string()))?;
    Ok(Some(df))
}

fn id_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<i64>> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![NULL_ID; df.height()]);
    };
    let cast = col
        .cast(&DataType::Int64)
        .map_err(|e| cdm_err(path, format!("column {name}: expected an integer id: {e}")))?;
    let ca = cast
        .i64()
        .map_err(|e| cdm_err(path, format!("column {name}: {e}")))?;
    Ok(ca.iter().map(|v| v.unwrap_or(NULL_ID)).collect())
}

fn num_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<f64>> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![f64::NAN; df.height()]);
    };
    let cast = col
        .cast(&DataType::Float64)
        .map_err(|e| cdm_err(path, format!("column {name}: expected a number: {e}")))?;
    let ca = cast
        .f64()
        .map_err(|e| cdm_err(path, format!("column {name}: {e}")))?;
    Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn day_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Day>> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![NULL_DAY; df.height()]);
    };
    let as_date = match col.dtype() {
        DataType::Date => col.clone(),
        DataType::Datetime(_, _) => col
            .cast(&DataType::Date)
            .map_err(|e| cdm_err(path, format!("column {name}: {e}")))?,
        other => {
            return Err(cdm_err(
                path,
                format!("column {name}: expected DATE or TIMESTAMP, found {other}"),
            ));
        }
    };
    let days = as_date
        .cast(&DataType::Int32)
        .map_err(|e| cdm_err(path, format!("column {name}: {e}")))?;
    let ca = days
        .i32()
        .map_err(|e| cdm_err(path, format!("column {name}: {e}")))?;
    Ok(ca.iter().map(|v| v.unwrap_or(NULL_DAY)).collect())
}

fn permute<T: Copy>(v: &[T], order: &[u32]) -> Vec<T> {
    order.iter().map(|&i| v[i as usize]).collect()
}

impl Cdm {
    /// Loads the tables cohort evaluation needs from a folder of
    /// `<table>.parquet` files.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(cdm_err(dir, "not a folder"));
        }
        let file = |t: &str| dir.join(format!("{t}.parquet"));

        // Persons: everyone with a person row or an observation period.
        let person_path = file("person");
        let person_df = read_table(
            &person_path,
            &[
                "person_id",
                "gender_concept_id",
                "year_of_birth",
                "race_concept_id",
                "ethnicity_concept_id",
            ],
        )?;
        let op_path = file("observation_period");
        let op_df = read_table(&op_path, &["person_id"])?;
        let mut ids: Vec<i64> = Vec::new();
        let mut person_rows: Vec<(i64, i64, i64, i64, i64)> = Vec::new();
        if let Some(df) = &person_df {
            let pid = id_column(df, "person_id", &person_path)?;
            let g = id_column(df, "gender_concept_id", &person_path)?;
            let y = id_column(df, "year_of_birth", &person_path)?;
            let r = id_column(df, "race_concept_id", &person_path)?;
            let e = id_column(df, "ethnicity_concept_id", &person_path)?;
            for i in 0..pid.len() {
                person_rows.push((pid[i], g[i], y[i], r[i], e[i]));
            }
            ids.extend(pid.iter().copied().filter(|&p| p != NULL_ID));
        }
        if let Some(df) = &op_df {
            ids.extend(
                id_column(df, "person_id", &op_path)?
                    .into_iter()
                    .filter(|&p| p != NULL_ID),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        let n = ids.len();
        let mut persons = Persons {
            in_person_table: vec![false; n],
            year_of_birth: vec![NULL_ID; n],
            gender: vec![NULL_ID; n],
            race: vec![NULL_ID; n],
            ethnicity: vec![NULL_ID; n],
            id: ids,
        };
        for (pid, g, y, r, e) in person_rows {
            if let Ok(p) = persons.id.binary_search(&pid) {
                persons.in_person_table[p] = true;
                persons.gender[p] = g;
                persons.year_of_birth[p] = y;
                persons.race[p] = r;
                persons.ethnicity[p] = e;
            }
        }

        let loaded: Vec<(Domain, EventTable)> = SPECS
            .par_iter()
            .map(|spec| {
                Ok((
                    spec.domain,
                    load_event_table(&file(spec.table), spec, &persons.id)?,
                ))
            })
            .collect::<Result<_>>()?;
        let index: HashMap<Domain, ConceptIndex> = loaded
            .par_iter()
            .map(|(d, t)| (*d, ConceptIndex::build(t)))
            .collect();
        let tables: HashMap<Domain, EventTable> = loaded.into_iter().collect();

        let mut provider_specialty = HashMap::new();
        let provider_path = file("provider");
        if let Some(df) = read_table(&provider_path, &["provider_id", "specialty_concept_id"])? {
            let id = id_column(&df, "provider_id", &provider_path)?;
            let sp = id_column(&df, "specialty_concept_id", &provider_path)?;
            provider_specialty.extend(id.into_iter().zip(sp));
        }
        let mut care_site_place = HashMap::new();
        let cs_path = file("care_site");
        if let Some(df) = read_table(&cs_path, &["care_site_id", "place_of_service_concept_id"])? {
            let id = id_column(&df, "care_site_id", &cs_path)?;
            let pl = id_column(&df, "place_of_service_concept_id", &cs_path)?;
            care_site_place.extend(id.into_iter().zip(pl));
        }

        let vocabulary = load_vocabulary(dir)?;
        Ok(Cdm {
            dir: dir.to_path_buf(),
            persons,
            tables,
            index,
            provider_specialty,
            care_site_place,
            vocabulary,
        })
    }

    /// The event table of a domain.
    pub fn table(&self, d: Domain) -> &EventTable {
        // Every domain is inserted by `load`; an empty table stands in otherwise.
        static EMPTY: std::sync::OnceLock<EventTable> = std::sync::OnceLock::new();
        self.tables
            .get(&d)
            .unwrap_or_else(|| EMPTY.get_or_init(EventTable::default))
    }

    /// The concept bitmaps of a domain.
    pub fn concept_index(&self, d: Domain) -> &ConceptIndex {
        static EMPTY: std::sync::OnceLock<ConceptIndex> = std::sync::OnceLock::new();
        self.index
            .get(&d)
            .unwrap_or_else(|| EMPTY.get_or_init(ConceptIndex::default))
    }

    /// Number of persons.
    pub fn person_count(&self) -> usize {
        self.persons.id.len()
    }
}

fn load_event_table(path: &Path, spec: &TableSpec, persons: &[i64]) -> Result<EventTable> {
    let n_persons = persons.len();
    let mut wanted: Vec<&str> = vec!["person_id", spec.id, spec.start];
    wanted.extend(
        [
            spec.end,
            spec.concept,
            spec.source,
            spec.type_concept,
            spec.visit,
            spec.provider,
        ]
        .into_iter()
        .flatten(),
    );
    wanted.extend(spec.extras.iter().map(|(_, c, _)| *c));
    let Some(df) = read_table(path, &wanted)? else {
        return Ok(EventTable {
            offsets: vec![0; n_persons + 1],
            ..EventTable::default()
        });
    };
    if df.height() > 0 && df.column("person_id").is_err() {
        return Err(cdm_err(path, "column person_id is missing"));
    }
    let pid = id_column(&df, "person_id", path)?;
    let id = id_column(&df, spec.id, path)?;
    let start = day_column(&df, spec.start, path)?;
    let opt_id = |c: Option<&str>| -> Result<Vec<i64>> {
        match c {
            Some(c) => id_column(&df, c, path),
            None => Ok(vec![NULL_ID; df.height()]),
        }
    };
    let end = match spec.end {
        Some(c) => day_column(&df, c, path)?,
        None => vec![NULL_DAY; df.height()],
    };
    let concept = opt_id(spec.concept)?;
    let source = opt_id(spec.source)?;
    let type_concept = opt_id(spec.type_concept)?;
    let visit = opt_id(spec.visit)?;
    let provider = opt_id(spec.provider)?;

    // Keep rows of known persons with a start date, ordered by person, start, id.
    let mut pidx: Vec<u32> = vec![u32::MAX; pid.len()];
    let mut order: Vec<u32> = Vec::with_capacity(pid.len());
    for i in 0..pid.len() {
        if start[i] == NULL_DAY {
            continue;
        }
        if let Ok(p) = persons.binary_search(&pid[i]) {
            pidx[i] = p as u32;
            order.push(i as u32);
        }
    }
    order.sort_unstable_by_key(|&i| (pidx[i as usize], start[i as usize], id[i as usize], i));
    let mut offsets = vec![0u32; n_persons + 1];
    for &i in &order {
        offsets[pidx[i as usize] as usize + 1] += 1;
    }
    for p in 0..n_persons {
        offsets[p + 1] += offsets[p];
    }
    let mut extras = HashMap::new();
    for (e, c, kind) in spec.extras {
        let col = match kind {
            Kind::Id => ExtraColumn::Id(permute(&id_column(&df, c, path)?, &order)),
            Kind::Num => ExtraColumn::Num(permute(&num_column(&df, c, path)?, &order)),
        };
        extras.insert(*e, col);
    }
    Ok(EventTable {
        offsets,
        id: permute(&id, &order),
        start: permute(&start, &order),
        end: permute(&end, &order),
        concept: permute(&concept, &order),
        source: permute(&source, &order),
        type_concept: permute(&type_concept, &order),
        visit: permute(&visit, &order),
        provider: permute(&provider, &order),
        extras,
    })
}

fn load_vocabulary(dir: &Path) -> Result<Vocabulary> {
    let mut voc = Vocabulary::default();
    let concept_path = dir.join("concept.parquet");
    if let Some(df) = read_table(&concept_path, &["concept_id", "invalid_reason"])? {
        let id = id_column(&df, "concept_id", &concept_path)?;
        let valid: Vec<bool> = match df.column("invalid_reason") {
            Ok(col) => {
                let s = col
                    .cast(&DataType::String)
                    .map_err(|e| cdm_err(&concept_path, format!("column invalid_reason: {e}")))?;
                let ca = s
                    .str()
                    .map_err(|e| cdm_err(&concept_path, format!("column invalid_reason: {e}")))?;
                ca.iter().map(|v| v.is_none()).collect()
            }
            Err(_) => vec![true; id.len()],
        };
        voc.concept_valid.extend(id.into_iter().zip(valid));
    }
    let ca_path = dir.join("concept_ancestor.parquet");
    if let Some(df) = read_table(&ca_path, &["ancestor_concept_id", "descendant_concept_id"])? {
        let a = id_column(&df, "ancestor_concept_id", &ca_path)?;
        let d = id_column(&df, "descendant_concept_id", &ca_path)?;
        for (a, d) in a.into_iter().zip(d) {
            voc.descendants.entry(a).or_default().push(d);
        }
    }
    let cr_path = dir.join("concept_relationship.parquet");
    if let Some(df) = read_table(
        &cr_path,
        &[
            "concept_id_1",
            "concept_id_2",
            "relationship_id",
            "invalid_reason",
        ],
    )? {
        let c1 = id_column(&df, "concept_id_1", &cr_path)?;
        let c2 = id_column(&df, "concept_id_2", &cr_path)?;
        let rel_col = df
            .column("relationship_id")
            .map_err(|_| cdm_err(&cr_path, "column relationship_id is missing"))?
            .cast(&DataType::String)
            .map_err(|e| cdm_err(&cr_path, format!("column relationship_id: {e}")))?;
        let rel = rel_col
            .str()
            .map_err(|e| cdm_err(&cr_path, format!("column relationship_id: {e}")))?;
        let invalid: Vec<bool> = match df.column("invalid_reason") {
            Ok(col) => {
                let s = col
                    .cast(&DataType::String)
                    .map_err(|e| cdm_err(&cr_path, format!("column invalid_reason: {e}")))?;
                let ca = s
                    .str()
                    .map_err(|e| cdm_err(&cr_path, format!("column invalid_reason: {e}")))?;
                ca.iter().map(|v| v.is_some()).collect()
            }
            Err(_) => vec![false; c1.len()],
        };
        for (i, r) in rel.iter().enumerate() {
            if r == Some("Maps to") && !invalid[i] {
                voc.mapped_from.entry(c2[i]).or_default().push(c1[i]);
            }
        }
    }
    Ok(voc)
}
