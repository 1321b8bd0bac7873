//! # omop-core
//!
//! The heart of omopkit's ETL: the OMOP CDM model generated from the official
//! specification ([`cdm`]), the mapping pack format ([`mapping`]), the small
//! expression language used inside packs ([`expr`]) and the engine that runs a
//! pack over source files with polars and writes CDM tables as Parquet
//! ([`engine`]).
//!
//! A pack is data, not code: YAML rules checked against a JSON Schema and
//! linted against the CDM spec before anything runs. The engine turns each rule
//! into one lazy polars plan, joins codes against the vocabulary, routes rows by
//! the domain of their standard concept, and accounts for every source row:
//! written, rejected (kept in a quarantine file with the reason) or filtered by
//! an explicit rule. Output is written to a staging folder and swapped in only
//! when the whole run succeeded.

pub mod cdm;
pub mod engine;
pub mod expr;
pub mod mapping;
pub mod packtest;
