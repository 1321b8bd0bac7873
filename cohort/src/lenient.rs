//! Field readers that accept what Circe's JSON reader (Jackson) accepts.
//!
//! ATLAS exports are not always typed consistently: numbers arrive as strings,
//! booleans as `"true"`, integers as `2.0`. Jackson coerces these, so these
//! readers do too. Anything Jackson would reject (an object where a number is
//! expected, a non-numeric string) is an error; serde_json attaches the line
//! and column.

use serde::de::{Deserialize, Deserializer, Error};
use serde_json::Value;

/// A JSON number as Circe keeps it (`java.lang.Number`): either integral or
/// floating point. Integer comparisons truncate floats, decimal comparisons
/// use the value rounded to four places, as Circe's generated SQL does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integral JSON number or numeric string.
    Int(i64),
    /// A JSON number or numeric string with a fraction or exponent.
    Float(f64),
}

impl Number {
    /// `Number.intValue()`: floats truncate toward zero and saturate.
    pub fn int_value(self) -> i64 {
        match self {
            Number::Int(v) => i64::from(v as i32),
            Number::Float(d) if d.is_nan() => 0,
            Number::Float(d) => {
                if d >= f64::from(i32::MAX) {
                    i64::from(i32::MAX)
                } else if d <= f64::from(i32::MIN) {
                    i64::from(i32::MIN)
                } else {
                    d.trunc() as i64
                }
            }
        }
    }

    /// The value as `double`.
    pub fn double_value(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Float(d) => d,
        }
    }

    /// The value as Circe writes it into SQL with `%.4f`.
    pub fn decimal4(self) -> f64 {
        let d = self.double_value();
        let s = format!("{d:.4}");
        s.parse().unwrap_or(d)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_int_text<E: Error>(text: &str, lo: i64, hi: i64) -> Result<Option<i64>, E> {
    let t = text.trim();
    if t.is_empty() || t == "null" {
        return Ok(None);
    }
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(E::custom(format!("expected an integer, found \"{text}\"")));
    }
    let v: i64 = t
        .parse()
        .map_err(|_| E::custom(format!("integer \"{text}\" is out of range")))?;
    if v < lo || v > hi {
        return Err(E::custom(format!("integer {v} is out of range")));
    }
    Ok(Some(v))
}

fn int_in<E: Error>(v: &Value, lo: i64, hi: i64) -> Result<Option<i64>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i < lo || i > hi {
                    return Err(E::custom(format!("integer {i} is out of range")));
                }
                Ok(Some(i))
            } else if let Some(f) = n.as_f64() {
                if f.is_nan() {
                    return Ok(Some(0));
                }
                if f < lo as f64 || f > hi as f64 + 0.999_999 {
                    return Err(E::custom(format!("number {f} is out of range")));
                }
                Ok(Some(f.trunc() as i64))
            } else {
                Err(E::custom("integer is out of range"))
            }
        }
        Value::String(s) => parse_int_text(s, lo, hi),
        other => Err(E::custom(format!(
            "expected an integer, found {}",
            kind(other)
        ))),
    }
}

/// An optional 32-bit integer (`Integer`): null, number, float (truncated) or
/// numeric string; an empty string is null.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    int_in(&v, i64::from(i32::MIN), i64::from(i32::MAX))
}

/// A primitive 32-bit integer (`int`): like [`opt_int`], null becomes 0.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_int(d)?.unwrap_or(0))
}

/// An optional 64-bit integer (`Long`), used for concept ids.
pub fn opt_long<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    int_in(&v, i64::MIN, i64::MAX)
}

/// An optional boolean (`Boolean`): also accepts numbers (non-zero is true)
/// and the strings `true` / `false` in any of Jackson's spellings.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) => Ok(Some(n.as_f64().is_some_and(|f| f != 0.0))),
        Value::String(s) => match s.trim() {
            "true" | "True" | "TRUE" => Ok(Some(true)),
            "false" | "False" | "FALSE" => Ok(Some(false)),
            "" | "null" => Ok(None),
            other => Err(D::Error::custom(format!(
                "expected a boolean, found \"{other}\""
            ))),
        },
        other => Err(D::Error::custom(format!(
            "expected a boolean, found {}",
            kind(other)
        ))),
    }
}

/// A primitive boolean: like [`opt_bool`], null becomes false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

/// An optional string: numbers and booleans are written out as text.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(D::Error::custom(format!(
            "expected a string, found {}",
            kind(&other)
        ))),
    }
}

/// An optional number (`java.lang.Number`), integral or floating point.
pub fn opt_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Number>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(Number::Int(i)))
            } else {
                Ok(n.as_f64().map(Number::Float))
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || t == "null" {
                return Ok(None);
            }
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            if !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && let Ok(i) = t.parse::<i64>()
            {
                return Ok(Some(Number::Int(i)));
            }
            t.parse::<f64>()
                .map(|f| Some(Number::Float(f)))
                .map_err(|_| D::Error::custom(format!("expected a number, found \"{s}\"")))
        }
        other => Err(D::Error::custom(format!(
            "expected a number, found {}",
            kind(other)
        ))),
    }
}

/// An optional array whose `null` means absent.
pub fn opt_vec<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(d)
}

/// An array whose `null` means empty.
pub fn vec_or_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_value_truncates_and_wraps_like_java() {
        assert_eq!(Number::Float(2.9).int_value(), 2);
        assert_eq!(Number::Float(-2.9).int_value(), -2);
        assert_eq!(Number::Float(1e12).int_value(), i64::from(i32::MAX));
        assert_eq!(Number::Int(1 << 32).int_value(), 0);
        assert_eq!(Number::Float(0.123_45).decimal4(), 0.1235);
    }
}
