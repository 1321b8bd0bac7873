//! Tables derived from the written CDM rows: observation periods and eras.

use super::{EtlError, polars_err};
use polars::prelude::*;

/// Days since the epoch, for date arithmetic.
fn days(e: Expr) -> Expr {
    e.cast(DataType::Date).cast(DataType::Int32)
}

/// Merges intervals per `group`: a row starts a new interval when its start is more than
/// `gap` days after the largest end seen so far in the group. Adds the column `__grp`.
fn merge_intervals(
    lf: LazyFrame,
    group: &[&str],
    start: &str,
    end: &str,
    gap: i32,
) -> Result<LazyFrame, EtlError> {
    let err = |e| polars_err("era building", e);
    let by: Vec<Expr> = group.iter().map(|g| col(*g)).collect();
    let mut order: Vec<PlSmallStr> = group.iter().map(|g| PlSmallStr::from(*g)).collect();
    order.push(start.into());
    order.push(end.into());
    Ok(lf
        .sort(
            order,
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .with_column(
            days(col(end))
                .cum_max(false)
                .shift(lit(1))
                .over(by.clone())
                .map_err(err)?
                .alias("__prev_end"),
        )
        .with_column(
            days(col(start))
                .gt(col("__prev_end") + lit(gap))
                .fill_null(lit(true))
                .cast(DataType::UInt32)
                .cum_sum(false)
                .over(by)
                .map_err(err)?
                .alias("__grp"),
        ))
}

/// Observation periods: per person, the earliest start and the latest end over `spans`
/// (frames with `person_id`, `start`, `end`).
pub fn observation_period(
    spans: Vec<LazyFrame>,
    period_type_concept_id: i32,
) -> Result<DataFrame, EtlError> {
    let all =
        concat(spans, UnionArgs::default()).map_err(|e| polars_err("observation_period", e))?;
    all.filter(col("start").is_not_null())
        .group_by([col("person_id")])
        .agg([
            col("start").min(),
            coalesce(&[col("end"), col("start")]).max().alias("end"),
        ])
        .sort(["person_id"], SortMultipleOptions::default())
        .with_row_index("observation_period_id", Some(1))
        .select([
            col("observation_period_id").cast(DataType::Int64),
            col("person_id"),
            col("start").alias("observation_period_start_date"),
            col("end").alias("observation_period_end_date"),
            lit(period_type_concept_id).alias("period_type_concept_id"),
        ])
        .collect()
        .map_err(|e| polars_err("observation_period", e))
}

/// condition_era from condition occurrences (`person_id`, `concept_id`, `start`, `end`), as in
/// OHDSI's ETL-CMS: a missing end is start + 1 day, and occurrences whose start is at most
/// `gap_days` after the era's latest end extend the era.
pub fn condition_era(occ: LazyFrame, gap_days: i32) -> Result<DataFrame, EtlError> {
    let lf = occ
        .filter(
            col("concept_id")
                .neq(lit(0))
                .and(col("start").is_not_null()),
        )
        .with_column(
            coalesce(&[
                col("end"),
                (days(col("start")) + lit(1)).cast(DataType::Date),
            ])
            .alias("end"),
        );
    merge_intervals(lf, &["person_id", "concept_id"], "start", "end", gap_days)?
        .group_by([col("person_id"), col("concept_id"), col("__grp")])
        .agg([
            col("start").min(),
            col("end").max(),
            len().cast(DataType::Int32).alias("n"),
        ])
        .sort(
            ["person_id", "concept_id", "start"],
            SortMultipleOptions::default(),
        )
        .with_row_index("condition_era_id", Some(1))
        .select([
            col("condition_era_id").cast(DataType::Int64),
            col("person_id"),
            col("concept_id").alias("condition_concept_id"),
            col("start").alias("condition_era_start_date"),
            col("end").alias("condition_era_end_date"),
            col("n").alias("condition_occurrence_count"),
        ])
        .collect()
        .map_err(|e| polars_err("condition_era", e))
}

/// drug_era from drug exposures (`person_id`, `concept_id`, `start`, `end`, `days_supply`) rolled
/// up to ingredients with `ingredients` (`descendant_concept_id`, `ingredient_concept_id`), as in
/// OHDSI's ETL-CMS (non-stockpiling): overlapping exposures form sub-exposures, and
/// sub-exposures at most `gap_days` apart form eras; `gap_days` of an era is its length minus
/// the days covered by its sub-exposures.
pub fn drug_era(
    exp: LazyFrame,
    ingredients: LazyFrame,
    gap_days: i32,
) -> Result<DataFrame, EtlError> {
    let end = coalesce(&[
        col("end"),
        when(col("days_supply").gt(lit(0)))
            .then(
                (days(col("start")) + col("days_supply").cast(DataType::Int32))
                    .cast(DataType::Date),
            )
            .otherwise(lit(NULL).cast(DataType::Date)),
        (days(col("start")) + lit(1)).cast(DataType::Date),
    ]);
    let lf = exp
        .filter(
            col("concept_id")
                .neq(lit(0))
                .and(col("start").is_not_null())
                .and(col("days_supply").fill_null(lit(0)).gt_eq(lit(0))),
        )
        .join(
            ingredients,
            [col("concept_id")],
            [col("descendant_concept_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([
            col("person_id"),
            col("ingredient_concept_id").alias("ingredient"),
            col("start"),
            end.alias("end"),
        ]);
    let subs = merge_intervals(lf, &["person_id", "ingredient"], "start", "end", 0)?
        .group_by([col("person_id"), col("ingredient"), col("__grp")])
        .agg([
            col("start").min(),
            col("end").max(),
            len().cast(DataType::Int32).alias("n"),
        ])
        .drop(cols(["__grp"]))
        .with_column((days(col("end")) - days(col("start"))).alias("exposed"));
    merge_intervals(subs, &["person_id", "ingredient"], "start", "end", gap_days)?
        .group_by([col("person_id"), col("ingredient"), col("__grp")])
        .agg([
            col("start").min(),
            col("end").max(),
            col("n").sum().alias("n"),
            col("exposed").sum().alias("exposed"),
        ])
        .sort(
            ["person_id", "ingredient", "start"],
            SortMultipleOptions::default(),
        )
        .with_row_index("drug_era_id", Some(1))
        .select([
            col("drug_era_id").cast(DataType::Int64),
            col("person_id"),
            col("ingredient").alias("drug_concept_id"),
            col("start").alias("drug_era_start_date"),
            col("end").alias("drug_era_end_date"),
            col("n").cast(DataType::Int32).alias("drug_exposure_count"),
            (days(col("end")) - days(col("start")) - col("exposed"))
                .cast(DataType::Int32)
                .alias("gap_days"),
        ])
        .collect()
        .map_err(|e| polars_err("drug_era", e))
}
