//! Event slots: generic field names that a rule with domain routing can use, and
//! the column each one becomes in every CDM table that a row may be routed to.

/// The generic slot names.
pub const SLOT_NAMES: [&str; 8] = [
    "concept_id",
    "source_concept_id",
    "source_value",
    "start_date",
    "start_datetime",
    "end_date",
    "end_datetime",
    "type_concept_id",
];

/// Columns of each table, in the order of [`SLOT_NAMES`]; `""` where the table has no such column.
const TABLE_SLOTS: &[(&str, [&str; 8])] = &[
    (
        "condition_occurrence",
        [
            "condition_concept_id",
            "condition_source_concept_id",
            "condition_source_value",
            "condition_start_date",
            "condition_start_datetime",
            "condition_end_date",
            "condition_end_datetime",
            "condition_type_concept_id",
        ],
    ),
    (
        "drug_exposure",
        [
            "drug_concept_id",
            "drug_source_concept_id",
            "drug_source_value",
            "drug_exposure_start_date",
            "drug_exposure_start_datetime",
            "drug_exposure_end_date",
            "drug_exposure_end_datetime",
            "drug_type_concept_id",
        ],
    ),
    (
        "procedure_occurrence",
        [
            "procedure_concept_id",
            "procedure_source_concept_id",
            "procedure_source_value",
            "procedure_date",
            "procedure_datetime",
            "procedure_end_date",
            "procedure_end_datetime",
            "procedure_type_concept_id",
        ],
    ),
    (
        "device_exposure",
        [
            "device_concept_id",
            "device_source_concept_id",
            "device_source_value",
            "device_exposure_start_date",
            "device_exposure_start_datetime",
            "device_exposure_end_date",
            "device_exposure_end_datetime",
            "device_type_concept_id",
        ],
    ),
    (
        "measurement",
        [
            "measurement_concept_id",
            "measurement_source_concept_id",
            "measurement_source_value",
            "measurement_date",
            "measurement_datetime",
            "",
            "",
            "measurement_type_concept_id",
        ],
    ),
    (
        "observation",
        [
            "observation_concept_id",
            "observation_source_concept_id",
            "observation_source_value",
            "observation_date",
            "observation_datetime",
            "",
            "",
            "observation_type_concept_id",
        ],
    ),
    (
        "specimen",
        [
            "specimen_concept_id",
            "",
            "specimen_source_value",
            "specimen_date",
            "specimen_datetime",
            "",
            "",
            "specimen_type_concept_id",
        ],
    ),
    (
        "visit_occurrence",
        [
            "visit_concept_id",
            "visit_source_concept_id",
            "visit_source_value",
            "visit_start_date",
            "visit_start_datetime",
            "visit_end_date",
            "visit_end_datetime",
            "visit_type_concept_id",
        ],
    ),
    (
        "visit_detail",
        [
            "visit_detail_concept_id",
            "visit_detail_source_concept_id",
            "visit_detail_source_value",
            "visit_detail_start_date",
            "visit_detail_start_datetime",
            "visit_detail_end_date",
            "visit_detail_end_datetime",
            "visit_detail_type_concept_id",
        ],
    ),
    (
        "death",
        [
            "cause_concept_id",
            "cause_source_concept_id",
            "cause_source_value",
            "death_date",
            "death_datetime",
            "",
            "",
            "death_type_concept_id",
        ],
    ),
    (
        "observation_period",
        [
            "",
            "",
            "",
            "observation_period_start_date",
            "",
            "observation_period_end_date",
            "",
            "period_type_concept_id",
        ],
    ),
];

/// The column that `slot` becomes in `table`, if the table has one.
pub fn slot_column(table: &str, slot: &str) -> Option<&'static str> {
    let idx = SLOT_NAMES.iter().position(|s| *s == slot)?;
    let (_, cols) = TABLE_SLOTS.iter().find(|(t, _)| *t == table)?;
    Some(cols[idx]).filter(|c| !c.is_empty())
}

/// Whether `name` is a slot name.
pub fn is_slot(name: &str) -> bool {
    SLOT_NAMES.contains(&name)
}

/// The column of `table` that receives the field `name`: the slot's column, or
/// `name` itself when it is an ordinary column name.
pub fn target_column<'a>(table: &str, name: &'a str) -> &'a str {
    if is_slot(name) {
        slot_column(table, name).unwrap_or("")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_resolve_per_table() {
        assert_eq!(
            slot_column("procedure_occurrence", "start_date"),
            Some("procedure_date")
        );
        assert_eq!(slot_column("measurement", "end_date"), None);
        assert_eq!(slot_column("nope", "start_date"), None);
        assert_eq!(
            target_column("measurement", "value_as_number"),
            "value_as_number"
        );
    }
}
