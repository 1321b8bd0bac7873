//! Parser of the mapping expression language.
//!
//! The language is small on purpose: column names, literals, arithmetic,
//! comparisons, `and`/`or`/`not`, `is [not] null`, `in [...]`, function calls and
//! `{key: value}` maps (for `map(...)`). Column names that are not plain
//! identifiers are written in backticks.

use std::fmt;

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A floating point literal.
    Float(f64),
    /// A string literal in single quotes.
    Str(String),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `==` or `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    /// A column of the source table.
    Column(String),
    /// A literal.
    Lit(Lit),
    /// `-x`
    Neg(Box<Ast>),
    /// `not x`
    Not(Box<Ast>),
    /// A binary operation.
    Binary(BinOp, Box<Ast>, Box<Ast>),
    /// `x is null` (`negated` for `is not null`).
    IsNull {
        /// The tested expression.
        expr: Box<Ast>,
        /// `is not null`.
        negated: bool,
    },
    /// `x in [a, b, ...]` (`negated` for `not in`).
    In {
        /// The tested expression.
        expr: Box<Ast>,
        /// The literal list.
        list: Vec<Lit>,
        /// `not in`.
        negated: bool,
    },
    /// `name(args...)`
    Call(String, Vec<Ast>),
    /// `{k: v, ...}`, only valid as an argument of `map`.
    Map(Vec<(Lit, Lit)>),
}

/// A syntax error with its character offset inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character offset.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Int(i64),
    Float(f64),
    Sym(&'static str),
}

const SYMBOLS: [&str; 19] = [
    "==", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",", "[", "]", "{", "}",
    ":",
];

fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '\'' || c == '`' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ParseError {
                            offset: start,
                            message: format!("unterminated {quote}...{quote}"),
                        });
                    }
                    Some(&ch) if ch == quote => {
                        // A doubled quote stands for one quote character.
                        if chars.get(i + 1) == Some(&quote) {
                            s.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((
                start,
                if quote == '`' {
                    Tok::Quoted(s)
                } else {
                    Tok::Str(s)
                },
            ));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let tok = if let Ok(v) = text.parse::<i64>() {
                Tok::Int(v)
            } else if let Ok(v) = text.parse::<f64>() {
                Tok::Float(v)
            } else {
                return Err(ParseError {
                    offset: start,
                    message: format!("invalid number `{text}`"),
                });
            };
            out.push((start, tok));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                Some(sym) => {
                    i += sym.len();
                    out.push((start, Tok::Sym(sym)));
                }
                None => {
                    return Err(ParseError {
                        offset: start,
                        message: format!("unexpected character `{c}`"),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Parses one expression.
pub fn parse(src: &str) -> Result<Ast, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.chars().count(),
    };
    let ast = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(p.error("end of expression"));
    }
    Ok(ast)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

/// Nesting bound: deeper expressions are rejected instead of overflowing the stack.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn error(&self, expected: &str) -> ParseError {
        let found = match self.peek() {
            None => "the end".to_string(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Quoted(s)) => format!("`{s}`"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Int(v)) => v.to_string(),
            Some(Tok::Float(v)) => v.to_string(),
            Some(Tok::Sym(s)) => format!("`{s}`"),
        };
        ParseError {
            offset: self.offset(),
            message: format!("expected {expected}, found {found}"),
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.error(&format!("`{sym}`")))
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Ast, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError {
                offset: self.offset(),
                message: "expression nested too deeply".into(),
            });
        }
        self.or(depth + 1)
    }

    fn or(&mut self, d: usize) -> Result<Ast, ParseError> {
        let mut lhs = self.and(d)?;
        while self.eat_kw("or") {
            let rhs = self.and(d)?;
            lhs = Ast::Binary(BinOp::Or, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn and(&mut self, d: usize) -> Result<Ast, ParseError> {
        let mut lhs = self.not(d)?;
        while self.eat_kw("and") {
            let rhs = self.not(d)?;
            lhs = Ast::Binary(BinOp::And, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn not(&mut self, d: usize) -> Result<Ast, ParseError> {
        if self.eat_kw("not") {
            if d > MAX_DEPTH {
                return Err(ParseError {
                    offset: self.offset(),
                    message: "expression nested too deeply".into(),
                });
            }
            return Ok(Ast::Not(Box::new(self.not(d + 1)?)));
        }
        self.comparison(d)
    }

    fn comparison(&mut self, d: usize) -> Result<Ast, ParseError> {
        let lhs = self.additive(d)?;
        if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            if !self.eat_kw("null") {
                return Err(self.error("`null`"));
            }
            return Ok(Ast::IsNull {
                expr: Box::new(lhs),
                negated,
            });
        }
        let save = self.pos;
        let negated = self.eat_kw("not");
        if self.eat_kw("in") {
            self.expect_sym("[")?;
            let mut list = Vec::new();
            if !self.eat_sym("]") {
                loop {
                    list.push(self.literal()?);
                    if self.eat_sym("]") {
                        break;
                    }
                    self.expect_sym(",")?;
                }
            }
            return Ok(Ast::In {
                expr: Box::new(lhs),
                list,
                negated,
            });
        }
        self.pos = save;
        let op = match self.peek() {
            Some(Tok::Sym("==" | "=")) => BinOp::Eq,
            Some(Tok::Sym("!=")) => BinOp::Ne,
            Some(Tok::Sym("<")) => BinOp::Lt,
            Some(Tok::Sym("<=")) => BinOp::Le,
            Some(Tok::Sym(">")) => BinOp::Gt,
            Some(Tok::Sym(">=")) => BinOp::Ge,
            _ => return Ok(lhs),
        };
        self.pos += 1;
        let rhs = self.additive(d)?;
        Ok(Ast::Binary(op, Box::new(lhs), Box::new(rhs)))
    }

    fn additive(&mut self, d: usize) -> Result<Ast, ParseError> {
        let mut lhs = self.multiplicative(d)?;
        loop {
            let op = if self.eat_sym("+") {
                BinOp::Add
            } else if self.eat_sym("-") {
                BinOp::Sub
            } else {
                return Ok(lhs);
            };
            let rhs = self.multiplicative(d)?;
            lhs = Ast::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn multiplicative(&mut self, d: usize) -> Result<Ast, ParseError> {
        let mut lhs = self.unary(d)?;
        loop {
            let op = if self.eat_sym("*") {
                BinOp::Mul
            } else if self.eat_sym("/") {
                BinOp::Div
            } else {
                return Ok(lhs);
            };
            let rhs = self.unary(d)?;
            lhs = Ast::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self, d: usize) -> Result<Ast, ParseError> {
        if self.eat_sym("-") {
            if d > MAX_DEPTH {
                return Err(ParseError {
                    offset: self.offset(),
                    message: "expression nested too deeply".into(),
                });
            }
            return Ok(match self.unary(d + 1)? {
                Ast::Lit(Lit::Int(v)) => Ast::Lit(Lit::Int(-v)),
                Ast::Lit(Lit::Float(v)) => Ast::Lit(Lit::Float(-v)),
                other => Ast::Neg(Box::new(other)),
            });
        }
        self.primary(d)
    }

    fn literal(&mut self) -> Result<Lit, ParseError> {
        let negative = self.eat_sym("-");
        let lit = match self.peek().cloned() {
            Some(Tok::Int(v)) => Lit::Int(if negative { -v } else { v }),
            Some(Tok::Float(v)) => Lit::Float(if negative { -v } else { v }),
            Some(Tok::Str(s)) if !negative => Lit::Str(s),
            Some(Tok::Ident(s)) if !negative && s.eq_ignore_ascii_case("null") => Lit::Null,
            Some(Tok::Ident(s)) if !negative && s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Some(Tok::Ident(s)) if !negative && s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            _ => return Err(self.error("a literal (number, 'string', true, false or null)")),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn primary(&mut self, d: usize) -> Result<Ast, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Int(_) | Tok::Float(_) | Tok::Str(_)) => Ok(Ast::Lit(self.literal()?)),
            Some(Tok::Quoted(name)) => {
                self.pos += 1;
                Ok(Ast::Column(name))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                match name.to_ascii_lowercase().as_str() {
                    "null" => return Ok(Ast::Lit(Lit::Null)),
                    "true" => return Ok(Ast::Lit(Lit::Bool(true))),
                    "false" => return Ok(Ast::Lit(Lit::Bool(false))),
                    _ => {}
                }
                if !self.eat_sym("(") {
                    return Ok(Ast::Column(name));
                }
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        args.push(self.expr(d + 1)?);
                        if self.eat_sym(")") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                Ok(Ast::Call(name.to_ascii_lowercase(), args))
            }
            Some(Tok::Sym("(")) => {
                self.pos += 1;
                let inner = self.expr(d + 1)?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Some(Tok::Sym("{")) => {
                self.pos += 1;
                let mut pairs = Vec::new();
                if !self.eat_sym("}") {
                    loop {
                        let k = self.literal()?;
                        if !self.eat_sym(":") && !self.eat_sym("=") {
                            return Err(self.error("`:` between a map key and its value"));
                        }
                        let v = self.literal()?;
                        pairs.push((k, v));
                        if self.eat_sym("}") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                Ok(Ast::Map(pairs))
            }
            _ => Err(self.error("a column, literal, function call or `(`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_calls() {
        let ast = parse("a + 2 * b = 7 and not c is null").unwrap();
        let Ast::Binary(BinOp::And, lhs, rhs) = ast else {
            panic!("expected and")
        };
        assert!(matches!(*lhs, Ast::Binary(BinOp::Eq, _, _)));
        assert!(matches!(*rhs, Ast::Not(_)));
        assert_eq!(
            parse("date(`START DATE`)").unwrap(),
            Ast::Call("date".into(), vec![Ast::Column("START DATE".into())])
        );
    }

    #[test]
    fn lists_maps_and_quotes() {
        assert_eq!(
            parse("x not in ['a', 'it''s', -1]").unwrap(),
            Ast::In {
                expr: Box::new(Ast::Column("x".into())),
                list: vec![Lit::Str("a".into()), Lit::Str("it's".into()), Lit::Int(-1)],
                negated: true
            }
        );
        assert_eq!(
            parse("map(g, {'M': 8507, 'F' = 8532}, 0)").unwrap(),
            Ast::Call(
                "map".into(),
                vec![
                    Ast::Column("g".into()),
                    Ast::Map(vec![
                        (Lit::Str("M".into()), Lit::Int(8507)),
                        (Lit::Str("F".into()), Lit::Int(8532))
                    ]),
                    Ast::Lit(Lit::Int(0))
                ]
            )
        );
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse("a + ").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("expected a column"), "{e}");
        let e = parse("f(a b)").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(parse("'open").unwrap_err().message.contains("unterminated"));
        assert!(
            parse(&"(".repeat(500))
                .unwrap_err()
                .message
                .contains("deeply")
        );
        assert!(
            parse(&"-".repeat(500))
                .unwrap_err()
                .message
                .contains("deeply")
        );
        assert!(
            parse(&"not ".repeat(500))
                .unwrap_err()
                .message
                .contains("deeply")
        );
    }
}
