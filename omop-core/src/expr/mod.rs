//! The mapping expression language: parsing and compilation to polars.

mod compile;
mod parse;

pub use compile::{
    Check, CompileError, Compiler, FUNCTIONS, JoinKind, JoinRequest, case_when, parse_date,
    parse_datetime,
};
pub use parse::{Ast, BinOp, Lit, ParseError, parse};
