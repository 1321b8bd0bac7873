//! The CDM tables the evaluator reads, held in memory column by column.
//!
//! Every event table is clustered by its domain concept: rows are sorted by
//! concept, then person, start date and row id (see [`EventTable`]), so the
//! rows of a concept set are a few contiguous runs, each in person and time
//! order. Dates are days since 1970-01-01 ([`Day`]); ids and
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

impl Domain {
    /// Number of domains.
    pub const COUNT: usize = 14;
}

// `ObservationPeriod` is the last domain; tables are indexed by `Domain as usize`.
const _: () = assert!(Domain::ObservationPeriod as usize + 1 == Domain::COUNT);

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
    /// stop_reason
    StopReason,
    /// lot_number
    LotNumber,
    /// unique_device_id
    UniqueDeviceId,
    /// value_as_string
    ValueAsString,
    /// specimen_source_id
    SpecimenSourceId,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Num,
    Text,
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
        extras: &[
            (
                Extra::ConditionStatus,
                "condition_status_concept_id",
                Kind::Id,
            ),
            (Extra::StopReason, "stop_reason", Kind::Text),
        ],
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
            (Extra::StopReason, "stop_reason", Kind::Text),
            (Extra::LotNumber, "lot_number", Kind::Text),
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
            (Extra::ValueAsString, "value_as_string", Kind::Text),
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
        extras: &[
            (Extra::Quantity, "quantity", Kind::Num),
            (Extra::UniqueDeviceId, "unique_device_id", Kind::Text),
        ],
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
            (Extra::SpecimenSourceId, "specimen_source_id", Kind::Text),
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

/// Rows per block of a [`Ids::Blocked`] or [`Days::Blocked`] column.
pub const ID_BLOCK: usize = 1024;

/// The smallest and largest non-null value of each block of [`ID_BLOCK`] rows among the
/// `n` values `at(0..n)` (`None` for a block of nulls only).
fn block_bounds<T: Copy + Ord>(n: usize, at: impl Fn(usize) -> T, null: T) -> Vec<Option<(T, T)>> {
    (0..n.div_ceil(ID_BLOCK))
        .map(|b| {
            (b * ID_BLOCK..((b + 1) * ID_BLOCK).min(n))
                .map(&at)
                .filter(|&v| v != null)
                .fold(None, |acc, v| match acc {
                    None => Some((v, v)),
                    Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
                })
        })
        .collect()
}

/// Places values by domain: `out[d as usize]` is the value given for `d` (default otherwise).
pub(crate) fn by_domain<T: Clone + Default>(
    items: impl IntoIterator<Item = (Domain, T)>,
) -> Vec<T> {
    let mut out = vec![T::default(); Domain::COUNT];
    for (d, v) in items {
        out[d as usize] = v;
    }
    out
}

/// Base of a [`Ids::Blocked`] block whose values are stored in full in `wide`.
const WIDE: i64 = i64::MIN;

/// Most distinct values a [`Ids::Dict`] column holds.
const DICT_MAX: usize = u16::MAX as usize;

/// A fast hasher for `i64` keys (Fx, as in rustc); keys are not attacker-chosen here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// A column of ids or concept ids, stored as compactly as its values allow.
/// [`NULL_ID`] stands for null.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// Every value is the same (possibly null); the number of rows is kept by the table.
    Const(i64),
    /// At most 65,535 distinct values (concepts, type concepts, units):
    /// value = `values[codes[r]]`.
    Dict {
        /// The distinct values (null included when present).
        values: Vec<i64>,
        /// Index into `values` per row.
        codes: Vec<u16>,
    },
    /// Frame of reference: value = `base[r / ID_BLOCK] + delta[r]`, with
    /// `u32::MAX` as null. A block spanning `u32::MAX` values or more (ids of
    /// two unrelated ranges meeting in one block) has the base `i64::MIN` and
    /// keeps its values in `wide`, `delta` being the position there.
    Blocked {
        /// Smallest value of each block (`i64::MIN` for a wide block).
        base: Vec<i64>,
        /// Offset of each row from its block's base, or position in `wide`.
        delta: Vec<u32>,
        /// Values of the wide blocks.
        wide: Vec<i64>,
    },
    /// Plain 64-bit values.
    Plain(Vec<i64>),
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Const(NULL_ID)
    }
}

impl Ids {
    /// The value of row `r`.
    #[inline(always)]
    pub fn get(&self, r: usize) -> i64 {
        match self {
            Ids::Const(v) => *v,
            Ids::Dict { values, codes } => values[codes[r] as usize],
            Ids::Blocked { base, delta, wide } => {
                let d = delta[r];
                if d == u32::MAX {
                    return NULL_ID;
                }
                let b = base[r / ID_BLOCK];
                if b == WIDE {
                    wide[d as usize]
                } else {
                    b + i64::from(d)
                }
            }
            Ids::Plain(v) => v[r],
        }
    }

    /// Number of rows stored (`None` for a constant column).
    pub fn stored_len(&self) -> Option<usize> {
        match self {
            Ids::Const(_) => None,
            Ids::Dict { codes, .. } => Some(codes.len()),
            Ids::Blocked { delta, .. } => Some(delta.len()),
            Ids::Plain(v) => Some(v.len()),
        }
    }

    /// True when the encoding is internally consistent (codes within the
    /// dictionary, one base per block, positions within `wide`).
    pub fn is_consistent(&self) -> bool {
        match self {
            Ids::Const(_) | Ids::Plain(_) => true,
            Ids::Dict { values, codes } => codes.iter().all(|&c| (c as usize) < values.len()),
            Ids::Blocked { base, delta, wide } => {
                base.len() == delta.len().div_ceil(ID_BLOCK)
                    && delta.chunks(ID_BLOCK).zip(base).all(|(block, &b)| {
                        b != WIDE
                            || block
                                .iter()
                                .all(|&d| d == u32::MAX || (d as usize) < wide.len())
                    })
            }
        }
    }

    /// Encodes `values` (already in table order).
    pub fn encode(values: &[i64]) -> Self {
        let at = |i: usize| values[i];
        let n = values.len();
        if n == 0 {
            return Ids::Const(NULL_ID);
        }
        let first = at(0);
        if (0..n).all(|i| at(i) == first) {
            return Ids::Const(first);
        }
        if let Some(dict) = Self::encode_dict(n, at) {
            return dict;
        }
        let bounds = block_bounds(n, at, NULL_ID);
        let n_blocks = bounds.len();
        let mut n_wide = 0usize;
        let base: Vec<i64> = bounds
            .into_iter()
            .map(|b| match b {
                None => 0,
                Some((lo, hi)) if (hi as i128 - lo as i128) < i128::from(u32::MAX) => lo,
                Some(_) => {
                    n_wide += 1;
                    WIDE
                }
            })
            .collect();
        if n_wide * 2 > n_blocks {
            return Ids::Plain((0..n).map(at).collect());
        }
        let mut wide = Vec::new();
        let delta = (0..n)
            .map(|i| {
                let v = at(i);
                let b = base[i / ID_BLOCK];
                if v == NULL_ID {
                    u32::MAX
                } else if b == WIDE {
                    wide.push(v);
                    (wide.len() - 1) as u32
                } else {
                    (v - b) as u32
                }
            })
            .collect();
        Ids::Blocked { base, delta, wide }
    }

    /// A dictionary encoding, when the column has at most [`DICT_MAX`] distinct values.
    fn encode_dict(n: usize, at: impl Fn(usize) -> i64) -> Option<Self> {
        let mut lookup: FxMap<i64, u16> = FxMap::default();
        let mut values = Vec::new();
        let mut codes = Vec::with_capacity(n);
        for i in 0..n {
            let v = at(i);
            let code = match lookup.get(&v) {
                Some(&c) => c,
                None => {
                    if values.len() >= DICT_MAX {
                        return None;
                    }
                    let c = values.len() as u16;
                    values.push(v);
                    lookup.insert(v, c);
                    c
                }
            };
            codes.push(code);
        }
        Some(Ids::Dict { values, codes })
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Ids::Const(_) => 0,
            Ids::Dict { values, codes } => values.len() * 8 + codes.len() * 2,
            Ids::Blocked { base, delta, wide } => base.len() * 8 + delta.len() * 4 + wide.len() * 8,
            Ids::Plain(v) => v.len() * 8,
        }
    }
}

/// Tests whether a row's value of one [`Ids`] column is in a sorted id set.
/// Over a dictionary column the answer is precomputed per dictionary entry,
/// so the test is one table look-up instead of a binary search.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// Every row of the column gives the same answer.
    Const(bool),
    /// Answer per dictionary code (the column is [`Ids::Dict`]).
    Codes(Vec<bool>),
    /// Binary search in the sorted set.
    Sorted(std::sync::Arc<Vec<i64>>),
}

impl Matcher {
    /// A matcher of `column` against the sorted set `ids` (null never matches).
    pub fn new(column: &Ids, ids: &std::sync::Arc<Vec<i64>>) -> Self {
        let hit = |v: i64| v != NULL_ID && ids.binary_search(&v).is_ok();
        match column {
            Ids::Const(v) => Matcher::Const(hit(*v)),
            Ids::Dict { values, .. } => Matcher::Codes(values.iter().map(|&v| hit(v)).collect()),
            _ => Matcher::Sorted(ids.clone()),
        }
    }

    /// Whether row `r` of `column` (the column the matcher was made for) matches.
    #[inline(always)]
    pub fn test(&self, column: &Ids, r: usize) -> bool {
        match (self, column) {
            (Matcher::Const(b), _) => *b,
            (Matcher::Codes(m), Ids::Dict { codes, .. }) => {
                m.get(codes[r] as usize).copied().unwrap_or(false)
            }
            (Matcher::Sorted(ids), c) => {
                let v = c.get(r);
                v != NULL_ID && ids.binary_search(&v).is_ok()
            }
            // Matchers are built for their own column (see `CohortPlan::compile`).
            (Matcher::Codes(_), _) => false,
        }
    }
}

/// A numeric column: integral values are stored as [`Ids`], others as `f64`
/// (`NaN` for null).
#[derive(Debug, Clone, PartialEq)]
pub enum Nums {
    /// Whole numbers (and nulls), exactly representable.
    Whole(Ids),
    /// Any numbers.
    Float(Vec<f64>),
}

impl Default for Nums {
    fn default() -> Self {
        Nums::Whole(Ids::Const(NULL_ID))
    }
}

impl Nums {
    /// The value of row `r`, `NaN` for null.
    #[inline(always)]
    pub fn get(&self, r: usize) -> f64 {
        match self {
            Nums::Whole(ids) => {
                let v = ids.get(r);
                if v == NULL_ID { f64::NAN } else { v as f64 }
            }
            Nums::Float(v) => v[r],
        }
    }

    /// Encodes `values` (already in table order).
    pub fn encode(values: Vec<f64>) -> Self {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        let whole = values
            .par_iter()
            .all(|&v| v.is_nan() || (v.fract() == 0.0 && v.abs() < EXACT));
        if whole {
            let ints: Vec<i64> = values
                .par_iter()
                .map(|&v| if v.is_nan() { NULL_ID } else { v as i64 })
                .collect();
            Nums::Whole(Ids::encode(&ints))
        } else {
            Nums::Float(values)
        }
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Nums::Whole(ids) => ids.heap_bytes(),
            Nums::Float(v) => v.len() * 8,
        }
    }
}

/// A date column.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Days {
    /// Every value is null.
    #[default]
    Null,
    /// value = `base[r / ID_BLOCK] + delta[r]`, `u16::MAX` for null; used
    /// when every block of 1,024 rows spans less than 179 years.
    Blocked {
        /// Earliest date of each block.
        base: Vec<Day>,
        /// Days after the block's base.
        delta: Vec<u16>,
    },
    /// One date per row, [`NULL_DAY`] for null.
    Plain(Vec<Day>),
}

impl Days {
    /// The value of row `r`.
    #[inline(always)]
    pub fn get(&self, r: usize) -> Day {
        match self {
            Days::Null => NULL_DAY,
            Days::Blocked { base, delta } => {
                let d = delta[r];
                if d == u16::MAX {
                    NULL_DAY
                } else {
                    base[r / ID_BLOCK] + i32::from(d)
                }
            }
            Days::Plain(v) => v[r],
        }
    }

    /// Number of rows stored (`None` for an all-null column).
    pub fn stored_len(&self) -> Option<usize> {
        match self {
            Days::Null => None,
            Days::Blocked { delta, .. } => Some(delta.len()),
            Days::Plain(v) => Some(v.len()),
        }
    }

    /// True when there is one base per block.
    pub fn is_consistent(&self) -> bool {
        match self {
            Days::Null | Days::Plain(_) => true,
            Days::Blocked { base, delta } => base.len() == delta.len().div_ceil(ID_BLOCK),
        }
    }

    /// Encodes `values` (already in table order).
    pub fn encode(values: &[Day]) -> Self {
        let at = |i: usize| values[i];
        let n = values.len();
        if (0..n).all(|i| at(i) == NULL_DAY) {
            return Days::Null;
        }
        let mut base = Vec::new();
        for b in block_bounds(n, at, NULL_DAY) {
            match b {
                None => base.push(0),
                Some((lo, hi)) if i64::from(hi) - i64::from(lo) < i64::from(u16::MAX) => {
                    base.push(lo)
                }
                Some(_) => return Days::Plain((0..n).map(at).collect()),
            }
        }
        let delta = (0..n)
            .map(|i| {
                let v = at(i);
                if v == NULL_DAY {
                    u16::MAX
                } else {
                    (v - base[i / ID_BLOCK]) as u16
                }
            })
            .collect();
        Days::Blocked { base, delta }
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Days::Null => 0,
            Days::Blocked { base, delta } => base.len() * 4 + delta.len() * 2,
            Days::Plain(v) => v.len() * 4,
        }
    }
}

/// A column of one of the [`Extra`] kinds.
#[derive(Debug, Clone)]
pub enum ExtraColumn {
    /// Ids and concept ids, [`NULL_ID`] for null.
    Id(Ids),
    /// Numbers, `NaN` for null.
    Num(Nums),
    /// Text, as codes into a dictionary.
    Text(Texts),
}

/// A text column: each row's index into `dict`, [`NULL_ID`] for null. A column whose rows
/// are all null keeps no dictionary and a constant code, so it costs nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Texts {
    /// The distinct values, in order of first appearance.
    pub dict: Vec<String>,
    /// Per row, the index of its value in `dict`.
    pub codes: Ids,
}

impl Texts {
    /// Encodes `values` (one per row).
    pub fn encode<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut index: HashMap<&'a str, i64> = HashMap::new();
        let mut dict = Vec::new();
        let codes: Vec<i64> = values
            .map(|v| match v {
                None => NULL_ID,
                Some(v) => *index.entry(v).or_insert_with(|| {
                    dict.push(v.to_string());
                    dict.len() as i64 - 1
                }),
            })
            .collect();
        Self {
            dict,
            codes: Ids::encode(&codes),
        }
    }

    /// The value of row `r`, `None` for null.
    pub fn get(&self, r: usize) -> Option<&str> {
        let code = self.codes.get(r);
        if code == NULL_ID {
            return None;
        }
        self.dict.get(code as usize).map(String::as_str)
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        self.dict.iter().map(|d| d.len() + 24).sum::<usize>() + self.codes.heap_bytes()
    }

    /// True when every code points into the dictionary.
    pub fn is_consistent(&self) -> bool {
        self.codes.is_consistent()
            && self.dict.len() < i64::MAX as usize
            && (0..self.codes.stored_len().unwrap_or(0)).all(|r| {
                matches!(self.codes.get(r), NULL_ID)
                    || (self.codes.get(r) as usize) < self.dict.len()
            })
    }
}

/// One event table, clustered by the domain concept.
///
/// Rows are sorted by (domain concept, person, start date, id): the rows of
/// one concept form a *cluster*, and inside a cluster the rows of one person
/// are contiguous and in time order. A concept set therefore selects a few
/// contiguous runs of rows, and the evaluator reads only the rows of the
/// concepts a definition names, front to back. Tables without a domain
/// concept (observation_period) are a single cluster; observation_period also
/// keeps per-person offsets, since every entry event is joined to it.
#[derive(Debug, Clone, Default)]
pub struct EventTable {
    /// Person index of each row.
    pub person: Vec<u32>,
    /// The domain concept of each cluster, ascending ([`NULL_ID`] first when present).
    pub clusters: Vec<i64>,
    /// `bounds[c]..bounds[c + 1]` are the rows of cluster `c`.
    pub bounds: Vec<u32>,
    /// For a single-cluster table: `offsets[p]..offsets[p + 1]` are the rows of
    /// person index `p` (empty otherwise).
    pub offsets: Vec<u32>,
    /// Row id (`person_id` for death).
    pub id: Ids,
    /// Start date (never null).
    pub start: Days,
    /// End date as stored (may be [`NULL_DAY`]); tables without one hold nulls.
    pub end: Days,
    /// The source concept.
    pub source: Ids,
    /// The type concept.
    pub type_concept: Ids,
    /// visit_occurrence_id.
    pub visit: Ids,
    /// provider_id.
    pub provider: Ids,
    /// Domain-specific columns.
    pub extras: HashMap<Extra, ExtraColumn>,
    /// Source concepts of the rows whose source concept is not null and differs
    /// from their domain concept, ascending.
    pub cross_sources: Vec<i64>,
    /// `cross_bounds[i]..cross_bounds[i + 1]` index `cross_rows` for `cross_sources[i]`.
    pub cross_bounds: Vec<u32>,
    /// Those rows, grouped by source concept, ascending within a group (so by
    /// cluster, then person, start date and id).
    pub cross_rows: Vec<u32>,
}

impl EventTable {
    /// The rows whose source concept is `s` but whose domain concept differs,
    /// as runs in person order, one per cluster, with that cluster.
    pub fn rows_with_other_source(&self, s: i64) -> Vec<(&[u32], u32)> {
        let Ok(i) = self.cross_sources.binary_search(&s) else {
            return Vec::new();
        };
        let mut list =
            &self.cross_rows[self.cross_bounds[i] as usize..self.cross_bounds[i + 1] as usize];
        let mut out = Vec::new();
        while let Some(&first) = list.first() {
            let c = self
                .bounds
                .partition_point(|&b| b <= first)
                .saturating_sub(1);
            let end = self.bounds.get(c + 1).copied().unwrap_or(u32::MAX);
            let k = list.partition_point(|&r| r < end);
            out.push((&list[..k], c as u32));
            list = &list[k..];
        }
        out
    }

    /// The rows of cluster `c`.
    #[inline]
    pub fn cluster(&self, c: usize) -> std::ops::Range<usize> {
        self.bounds[c] as usize..self.bounds[c + 1] as usize
    }

    /// The clusters whose concept is in the sorted set `ids`.
    pub fn clusters_in(&self, ids: &[i64]) -> Vec<u32> {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.clusters.len() && j < ids.len() {
            match self.clusters[i].cmp(&ids[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if self.clusters[i] != NULL_ID {
                        out.push(i as u32);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        out
    }

    /// The sub-range of `rows` (a cluster, sorted by person) whose persons lie in `lo..hi`.
    #[inline]
    pub fn persons_in(
        &self,
        rows: std::ops::Range<usize>,
        lo: u32,
        hi: u32,
    ) -> std::ops::Range<usize> {
        let slice = &self.person[rows.clone()];
        let a = slice.partition_point(|&p| p < lo);
        let b = a + slice[a..].partition_point(|&p| p < hi);
        rows.start + a..rows.start + b
    }

    /// The row range of person index `p` (single-cluster tables with offsets only;
    /// empty otherwise).
    #[inline]
    pub fn rows(&self, p: usize) -> std::ops::Range<usize> {
        match (self.offsets.get(p), self.offsets.get(p + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.person.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An id-typed extra column, if the table has it.
    pub fn extra_id(&self, e: Extra) -> Option<&Ids> {
        match self.extras.get(&e) {
            Some(ExtraColumn::Id(v)) => Some(v),
            _ => None,
        }
    }

    /// A text extra column, if the table has it.
    pub fn extra_text(&self, e: Extra) -> Option<&Texts> {
        match self.extras.get(&e) {
            Some(ExtraColumn::Text(v)) => Some(v),
            _ => None,
        }
    }

    /// A numeric extra column, if the table has it.
    pub fn extra_num(&self, e: Extra) -> Option<&Nums> {
        match self.extras.get(&e) {
            Some(ExtraColumn::Num(v)) => Some(v),
            _ => None,
        }
    }

    /// Bytes the columns hold in memory.
    pub fn heap_bytes(&self) -> usize {
        (self.person.len()
            + self.bounds.len()
            + self.offsets.len()
            + self.cross_bounds.len()
            + self.cross_rows.len())
            * 4
            + self.cross_sources.len() * 8
            + self.clusters.len() * 8
            + self.start.heap_bytes()
            + self.end.heap_bytes()
            + [
                &self.id,
                &self.source,
                &self.type_concept,
                &self.visit,
                &self.provider,
            ]
            .iter()
            .map(|c| c.heap_bytes())
            .sum::<usize>()
            + self
                .extras
                .values()
                .map(|c| match c {
                    ExtraColumn::Id(v) => v.heap_bytes(),
                    ExtraColumn::Num(v) => v.heap_bytes(),
                    ExtraColumn::Text(v) => v.heap_bytes(),
                })
                .sum::<usize>()
    }

    /// True when the layout is internally consistent for `n_persons` persons:
    /// clusters ascending, bounds covering the rows, persons in range and
    /// sorted inside each cluster, offsets (when present) matching the rows.
    pub fn layout_is_consistent(&self, n_persons: usize) -> bool {
        let rows = self.person.len();
        let bounds_ok = self.bounds.len() == self.clusters.len() + 1
            && self.bounds.first() == Some(&0)
            && self.bounds.last().is_some_and(|&b| b as usize == rows)
            && self.bounds.windows(2).all(|w| w[0] <= w[1])
            && self.clusters.windows(2).all(|w| w[0] < w[1]);
        if !bounds_ok {
            return false;
        }
        let persons_ok = (0..self.clusters.len()).all(|c| {
            let p = &self.person[self.cluster(c)];
            p.windows(2).all(|w| w[0] <= w[1]) && p.last().is_none_or(|&x| (x as usize) < n_persons)
        });
        let offsets_ok = self.offsets.is_empty()
            || (self.clusters.len() <= 1
                && self.offsets.len() == n_persons + 1
                && self.offsets.last().is_some_and(|&o| o as usize == rows)
                && self.offsets.windows(2).all(|w| w[0] <= w[1])
                && (0..n_persons)
                    .all(|p| self.person[self.rows(p)].iter().all(|&x| x as usize == p)));
        let cross_ok = self.cross_bounds.len() == self.cross_sources.len() + 1
            && self.cross_bounds.first() == Some(&0)
            && self
                .cross_bounds
                .last()
                .is_some_and(|&b| b as usize == self.cross_rows.len())
            && self.cross_bounds.windows(2).all(|w| w[0] <= w[1])
            && self.cross_sources.windows(2).all(|w| w[0] < w[1])
            && self.cross_bounds.windows(2).all(|w| {
                let g = &self.cross_rows[w[0] as usize..w[1] as usize];
                g.windows(2).all(|x| x[0] < x[1]) && g.last().is_none_or(|&r| (r as usize) < rows)
            });
        persons_ok && offsets_ok && cross_ok
    }
}

/// Asks the CPU to start loading `v[i]` into its caches (no effect when `i`
/// is out of range). Evaluation reads person-indexed arrays at scattered
/// positions; asking a few persons ahead overlaps those cache misses.
#[inline(always)]
pub fn prefetch<T>(v: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = v.get(i) {
        // SAFETY: `x` is a valid reference; a prefetch hint neither reads nor
        // writes memory as far as the program is concerned.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                (x as *const T).cast(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}

impl Days {
    /// Prefetches the storage of row `r`.
    #[inline(always)]
    pub fn prefetch(&self, r: usize) {
        match self {
            Days::Null => {}
            Days::Blocked { delta, .. } => prefetch(delta, r),
            Days::Plain(v) => prefetch(v, r),
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
        let mut concept: HashMap<i64, RoaringBitmap> = HashMap::new();
        let mut any = RoaringBitmap::new();
        for (c, &value) in t.clusters.iter().enumerate() {
            // Rows of a cluster are sorted by person, so each push appends (or is a repeat).
            let mut b = RoaringBitmap::new();
            let mut last = u32::MAX;
            for &p in &t.person[t.cluster(c)] {
                if p != last {
                    b.try_push(p).ok();
                    last = p;
                }
            }
            any |= &b;
            concept.insert(value, b);
        }
        // Persons by source concept: the rows whose source concept equals their
        // concept are found cluster by cluster (in person order), the others
        // through the source index.
        let mut source: HashMap<i64, RoaringBitmap> = HashMap::new();
        for (c, &value) in t.clusters.iter().enumerate() {
            let mut b = RoaringBitmap::new();
            let mut last = u32::MAX;
            for r in t.cluster(c) {
                let p = t.person[r];
                if p != last && t.source.get(r) == value {
                    b.try_push(p).ok();
                    last = p;
                }
            }
            if !b.is_empty() {
                source.insert(value, b);
            }
        }
        for (i, &s) in t.cross_sources.iter().enumerate() {
            let rows = &t.cross_rows[t.cross_bounds[i] as usize..t.cross_bounds[i + 1] as usize];
            let mut persons: Vec<u32> = rows.iter().map(|&r| t.person[r as usize]).collect();
            persons.sort_unstable();
            let b = RoaringBitmap::from_sorted_iter(persons).unwrap_or_default();
            *source.entry(s).or_default() |= b;
        }
        ConceptIndex {
            concept,
            source,
            any,
        }
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
    /// Event tables, indexed by `Domain as usize` (see [`Cdm::table`]).
    pub tables: Vec<EventTable>,
    /// Per-concept person bitmaps by domain.
    pub index: Vec<ConceptIndex>,
    /// provider_id → specialty_concept_id.
    pub provider_specialty: HashMap<i64, i64>,
    /// care_site_id → place_of_service_concept_id.
    pub care_site_place: HashMap<i64, i64>,
    /// Vocabulary.
    pub vocabulary: Vocabulary,
    /// Per person index: its id and observation periods together (see [`PersonCore`]).
    pub core: Vec<PersonCore>,
}

/// What evaluation reads of every person with an entry event, in one place:
/// the person id and (up to two of) its observation periods. Reading them from
/// `persons.id` and the observation_period columns costs a cache miss per
/// array; this costs one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PersonCore {
    /// person_id.
    pub id: i64,
    /// The first two observation periods (start, end), in table order.
    pub periods: [(Day, Day); 2],
    /// Number of observation periods; above two, read them from the table.
    pub n_periods: u32,
}

impl PersonCore {
    /// The core of every person index.
    pub fn build(persons: &Persons, ops: &EventTable) -> Vec<PersonCore> {
        (0..persons.id.len())
            .into_par_iter()
            .map(|p| {
                let rows = ops.rows(p);
                let mut core = PersonCore {
                    id: persons.id[p],
                    n_periods: rows.len() as u32,
                    ..PersonCore::default()
                };
                for (k, o) in rows.take(2).enumerate() {
                    core.periods[k] = (ops.start.get(o), ops.end.get(o));
                }
                core
            })
            .collect()
    }
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

/// A text column (any type polars can cast to text); all null when absent.
fn text_column(df: &DataFrame, name: &str, path: &Path) -> Result<StringChunked> {
    let Ok(col) = df.column(name) else {
        return Ok(StringChunked::full_null(name.into(), df.height()));
    };
    let cast = col
        .cast(&DataType::String)
        .map_err(|e| cdm_err(path, format!("column {name}: expected text: {e}")))?;
    cast.str()
        .cloned()
        .map_err(|e| cdm_err(path, format!("column {name}: {e}")))
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

impl Cdm {
    /// Loads the tables cohort evaluation needs from a folder of
    /// `<table>.parquet` files.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_each(dir, &mut |_, _, _| Ok(true))
    }

    /// Loads like [`Cdm::load`], handing each event table and its bitmaps to
    /// `each` as soon as it is built; the table is kept only when `each`
    /// returns true. The on-disk index uses this to write tables one at a
    /// time without holding them all.
    pub fn load_each(
        dir: &Path,
        each: &mut dyn FnMut(Domain, &EventTable, &ConceptIndex) -> Result<bool>,
    ) -> Result<Self> {
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

        // One table at a time, largest first: the Parquet reader is parallel
        // itself, and the transient memory of a large table is then not added
        // to that of another one, nor to many tables already loaded.
        let mut specs: Vec<&TableSpec> = SPECS.iter().collect();
        specs.sort_by_key(|spec| {
            std::cmp::Reverse(
                std::fs::metadata(file(spec.table))
                    .map(|m| m.len())
                    .unwrap_or(0),
            )
        });
        let mut loaded: Vec<(Domain, EventTable)> = Vec::with_capacity(specs.len());
        let mut built: Vec<(Domain, ConceptIndex)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let clock = std::time::Instant::now();
            let t = load_event_table(&file(spec.table), spec, &persons.id)?;
            let idx = ConceptIndex::build(&t);
            tracing::debug!(
                table = spec.table,
                rows = t.len(),
                clusters = t.clusters.len(),
                mib = t.heap_bytes() >> 20,
                seconds = clock.elapsed().as_secs_f64(),
                "table loaded"
            );
            if each(spec.domain, &t, &idx)? {
                loaded.push((spec.domain, t));
                built.push((spec.domain, idx));
            }
        }
        let index = by_domain(built);
        let tables = by_domain(loaded);

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
        let core = PersonCore::build(&persons, &tables[Domain::ObservationPeriod as usize]);
        Ok(Cdm {
            dir: dir.to_path_buf(),
            persons,
            tables,
            index,
            provider_specialty,
            care_site_place,
            vocabulary,
            core,
        })
    }

    /// The event table of a domain.
    #[inline]
    pub fn table(&self, d: Domain) -> &EventTable {
        // Every domain is filled by `load`; an empty table stands in otherwise.
        static EMPTY: std::sync::OnceLock<EventTable> = std::sync::OnceLock::new();
        self.tables
            .get(d as usize)
            .unwrap_or_else(|| EMPTY.get_or_init(EventTable::default))
    }

    /// The concept bitmaps of a domain.
    #[inline]
    pub fn concept_index(&self, d: Domain) -> &ConceptIndex {
        static EMPTY: std::sync::OnceLock<ConceptIndex> = std::sync::OnceLock::new();
        self.index
            .get(d as usize)
            .unwrap_or_else(|| EMPTY.get_or_init(ConceptIndex::default))
    }

    /// Number of persons.
    pub fn person_count(&self) -> usize {
        self.persons.id.len()
    }
}

fn load_event_table(path: &Path, spec: &TableSpec, persons: &[i64]) -> Result<EventTable> {
    let n_persons = persons.len();
    let single_cluster = spec.concept.is_none();
    let empty = || EventTable {
        bounds: vec![0],
        cross_bounds: vec![0],
        offsets: if single_cluster {
            vec![0; n_persons + 1]
        } else {
            Vec::new()
        },
        ..EventTable::default()
    };
    // Columns are read one at a time and encoded right away, so that only one
    // wide column of a large table is held in memory at once.
    let Some(keys) = read_table(path, &["person_id"])? else {
        return Ok(empty());
    };
    let height = keys.height();
    if keys.column("person_id").is_err() {
        let any = read_table(path, &[spec.start])?.map_or(0, |df| df.height());
        if any == 0 {
            return Ok(empty());
        }
        return Err(cdm_err(path, "column person_id is missing"));
    }
    let present = |c: &str| -> Result<bool> {
        let file = std::fs::File::open(path).map_err(|source| CohortError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let schema = ParquetReader::new(file)
            .schema()
            .map_err(|e| cdm_err(path, e.to_string()))?;
        Ok(schema.contains(c))
    };
    let pid = id_column(&keys, "person_id", path)?;
    drop(keys);
    let column = |c: &str| -> Result<DataFrame> {
        if present(c)? {
            Ok(read_table(path, &[c])?.unwrap_or_default())
        } else {
            Ok(DataFrame::empty())
        }
    };
    let plain_ids = |c: Option<&str>| -> Result<Vec<i64>> {
        match c {
            Some(c) => {
                let df = column(c)?;
                if df.width() == 0 {
                    Ok(vec![NULL_ID; height])
                } else {
                    id_column(&df, c, path)
                }
            }
            None => Ok(vec![NULL_ID; height]),
        }
    };
    let start = {
        let df = column(spec.start)?;
        if df.width() == 0 {
            vec![NULL_DAY; height]
        } else {
            day_column(&df, spec.start, path)?
        }
    };
    let id = plain_ids(Some(spec.id))?;
    let concept = plain_ids(spec.concept)?;
    if start.len() != height || id.len() != height || concept.len() != height {
        return Err(cdm_err(path, "columns differ in length"));
    }

    // Keep rows of known persons with a start date, ordered by concept, person, start, id:
    // a counting sort by concept (stable, so each cluster keeps the file's order, which is
    // often already by person), then each cluster sorted on its own, in parallel.
    let pidx: Vec<u32> = pid
        .par_iter()
        .zip(start.par_iter())
        .map(|(p, &s)| {
            if s == NULL_DAY {
                return u32::MAX;
            }
            persons.binary_search(p).map_or(u32::MAX, |i| i as u32)
        })
        .collect();
    drop(pid);
    let clock = std::time::Instant::now();
    let mut clusters: Vec<i64> = (0..height)
        .filter(|&i| pidx[i] != u32::MAX)
        .map(|i| concept[i])
        .collect();
    clusters.par_sort_unstable();
    clusters.dedup();
    let rank: Vec<u32> = (0..height)
        .into_par_iter()
        .map(|i| {
            if pidx[i] == u32::MAX {
                u32::MAX
            } else {
                clusters
                    .binary_search(&concept[i])
                    .map_or(u32::MAX, |c| c as u32)
            }
        })
        .collect();
    drop(concept);
    let mut bounds = vec![0u32; clusters.len() + 1];
    for &r in &rank {
        if r != u32::MAX {
            bounds[r as usize + 1] += 1;
        }
    }
    for c in 0..clusters.len() {
        bounds[c + 1] += bounds[c];
    }
    let mut order = vec![0u32; bounds[clusters.len()] as usize];
    let mut fill = bounds.clone();
    for (i, &r) in rank.iter().enumerate() {
        if r != u32::MAX {
            order[fill[r as usize] as usize] = i as u32;
            fill[r as usize] += 1;
        }
    }
    drop((rank, fill));
    {
        let mut parts: Vec<&mut [u32]> = Vec::with_capacity(clusters.len());
        let mut rest = order.as_mut_slice();
        for c in 0..clusters.len() {
            let (part, tail) = rest.split_at_mut((bounds[c + 1] - bounds[c]) as usize);
            parts.push(part);
            rest = tail;
        }
        parts.into_par_iter().for_each(|part| {
            part.sort_unstable_by_key(|&i| {
                let i = i as usize;
                (pidx[i], start[i], id[i], i)
            })
        });
    }
    tracing::trace!(seconds = clock.elapsed().as_secs_f64(), "rows sorted");
    let person: Vec<u32> = order.par_iter().map(|&i| pidx[i as usize]).collect();
    drop(pidx);
    let offsets = if single_cluster {
        let mut offsets = vec![0u32; n_persons + 1];
        for &p in &person {
            offsets[p as usize + 1] += 1;
        }
        for p in 0..n_persons {
            offsets[p + 1] += offsets[p];
        }
        offsets
    } else {
        Vec::new()
    };
    let start_col = Days::encode(&permute(&start, &order));
    drop(start);
    let id_col = Ids::encode(&permute(&id, &order));
    drop(id);

    let ids = |c: Option<&str>| -> Result<Ids> {
        let Some(c) = c else {
            return Ok(Ids::Const(NULL_ID));
        };
        if !present(c)? {
            return Ok(Ids::Const(NULL_ID));
        }
        let df = read_table(path, &[c])?.unwrap_or_default();
        let raw = id_column(&df, c, path)?;
        drop(df);
        Ok(Ids::encode(&permute(&raw, &order)))
    };
    let end = match spec.end {
        Some(c) if present(c)? => {
            let df = read_table(path, &[c])?.unwrap_or_default();
            let raw = day_column(&df, c, path)?;
            drop(df);
            Days::encode(&permute(&raw, &order))
        }
        _ => Days::Null,
    };
    // The rows whose source concept differs from their concept, by source concept.
    let (source, cross_sources, cross_bounds, cross_rows) = match spec.source {
        Some(c) if present(c)? => {
            let df = read_table(path, &[c])?.unwrap_or_default();
            let raw = id_column(&df, c, path)?;
            drop(df);
            let sorted = permute(&raw, &order);
            drop(raw);
            let mut cross: Vec<(i64, u32)> = Vec::new();
            for (k, cluster) in clusters.iter().enumerate() {
                for row in bounds[k]..bounds[k + 1] {
                    let s = sorted[row as usize];
                    if s != NULL_ID && s != *cluster {
                        cross.push((s, row));
                    }
                }
            }
            cross.par_sort_unstable();
            let mut sources = Vec::new();
            let mut sbounds = vec![0u32];
            for (k, &(s, _)) in cross.iter().enumerate() {
                if sources.last() != Some(&s) {
                    if !sources.is_empty() {
                        sbounds.push(k as u32);
                    }
                    sources.push(s);
                }
            }
            if !sources.is_empty() {
                sbounds.push(cross.len() as u32);
            }
            let rows = cross.into_iter().map(|(_, r)| r).collect();
            (Ids::encode(&sorted), sources, sbounds, rows)
        }
        _ => (Ids::Const(NULL_ID), Vec::new(), vec![0], Vec::new()),
    };
    let type_concept = ids(spec.type_concept)?;
    let visit = ids(spec.visit)?;
    let provider = ids(spec.provider)?;
    let mut extras = HashMap::new();
    for (e, c, kind) in spec.extras {
        let col = match kind {
            Kind::Id => ExtraColumn::Id(ids(Some(c))?),
            Kind::Num => {
                if present(c)? {
                    let df = read_table(path, &[c])?.unwrap_or_default();
                    let raw = num_column(&df, c, path)?;
                    drop(df);
                    ExtraColumn::Num(Nums::encode(permute(&raw, &order)))
                } else {
                    ExtraColumn::Num(Nums::default())
                }
            }
            Kind::Text => {
                if present(c)? {
                    let df = read_table(path, &[c])?.unwrap_or_default();
                    let values = text_column(&df, c, path)?;
                    drop(df);
                    let values = values.rechunk();
                    ExtraColumn::Text(Texts::encode(order.iter().map(|&i| values.get(i as usize))))
                } else {
                    ExtraColumn::Text(Texts::default())
                }
            }
        };
        extras.insert(*e, col);
    }
    Ok(EventTable {
        person,
        clusters,
        bounds,
        offsets,
        id: id_col,
        start: start_col,
        end,
        source,
        type_concept,
        visit,
        provider,
        extras,
        cross_sources,
        cross_bounds,
        cross_rows,
    })
}

/// `values[order[i]]` for each `i`, gathered in parallel.
fn permute<T: Copy + Send + Sync>(values: &[T], order: &[u32]) -> Vec<T> {
    order.par_iter().map(|&i| values[i as usize]).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn round_trip(values: &[i64]) -> Ids {
        let enc = Ids::encode(values);
        assert!(enc.is_consistent());
        for (r, &v) in values.iter().enumerate() {
            assert_eq!(enc.get(r), v, "row {r} of {enc:?}");
        }
        enc
    }

    #[test]
    fn id_columns_choose_the_smallest_encoding() {
        assert_eq!(round_trip(&[7; 5000]), Ids::Const(7));
        let concepts: Vec<i64> = (0..5000)
            .map(|i| [201_826, 4_329_847, NULL_ID][i % 3])
            .collect();
        assert!(matches!(round_trip(&concepts), Ids::Dict { .. }));
        let ids: Vec<i64> = (0..100_000).map(|i| 1_000_000 + i * 3).collect();
        assert!(matches!(round_trip(&ids), Ids::Blocked { ref wide, .. } if wide.is_empty()));
        let random: Vec<i64> = (0..100_000i64)
            .map(|i| i.wrapping_mul(0x3E37_79B9_7F4A_7C15))
            .collect();
        assert!(matches!(round_trip(&random), Ids::Plain(_)));
    }

    /// Ids of two ranges 10^10 apart meeting inside one block (as in a CDM
    /// assembled from several sources) used to turn the whole column into
    /// plain 64-bit values; now only that block is stored wide.
    #[test]
    fn a_block_spanning_two_id_ranges_stays_compact() {
        let mut ids: Vec<i64> = (0..200_000).map(|i| 5 + i).collect();
        ids.extend((0..200_000).map(|i| 10_000_000_000 + i));
        ids[1000] = NULL_ID;
        let enc = round_trip(&ids);
        let Ids::Blocked { wide, .. } = &enc else {
            panic!("expected a blocked column, got {enc:?}");
        };
        assert!(wide.len() <= ID_BLOCK);
        assert!(enc.heap_bytes() < ids.len() * 5);
    }

    #[test]
    fn dates_are_stored_as_offsets_within_blocks() {
        let days: Vec<Day> = (0..10_000).map(|i| 10_000 + (i * 7) % 3000).collect();
        let enc = Days::encode(&days);
        assert!(matches!(enc, Days::Blocked { .. }));
        assert!(enc.is_consistent());
        assert!(days.iter().enumerate().all(|(r, &d)| enc.get(r) == d));
        let mut with_null = days.clone();
        with_null[3] = NULL_DAY;
        let enc = Days::encode(&with_null);
        assert_eq!(enc.get(3), NULL_DAY);
        assert_eq!(enc.get(4), days[4]);
        // Two centuries apart in one block: plain values.
        let far = vec![-25_000, 50_000, 0];
        let enc = Days::encode(&far);
        assert_eq!(enc, Days::Plain(far));
        assert_eq!(Days::encode(&[NULL_DAY; 4]), Days::Null);
    }

    #[test]
    fn matchers_answer_like_a_binary_search() {
        let set = Arc::new(vec![3, 9, 12]);
        for values in [
            vec![3, 4, 9, NULL_ID, 12, 13],
            (0..70_000).map(|i| i % 20).collect::<Vec<_>>(),
            vec![9; 10],
        ] {
            let col = Ids::encode(&values);
            let m = Matcher::new(&col, &set);
            for (r, &v) in values.iter().enumerate() {
                assert_eq!(m.test(&col, r), set.contains(&v), "row {r} of {col:?}");
            }
        }
    }
}
