//! The FlashBlade `filter` query language, enough of it for real tooling:
//! comparisons (`=`, `!=`, `<`, `<=`, `>`, `>=`) on dotted field paths,
//! set membership `name=('a','b')`, `contains(field,'x')`, `and`, `or`,
//! `not(...)`, parentheses, a bare field for existence, and `*` wildcards in
//! quoted strings.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Vec<Lit>),
    Contains(String, String),
    Exists(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

/// Why a filter does not parse; the array answers it as "Invalid filter".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("unterminated string")]
    Unterminated,
    #[error("unexpected character {0:?}")]
    Character(char),
    /// `found` is the token seen instead, as text (None at the end).
    #[error("{context}expected {expected}, found {found}")]
    Expected {
        context: &'static str,
        expected: String,
        found: String,
    },
    #[error("unexpected {0}")]
    Trailing(String),
    #[error("bad number {0}")]
    Number(String),
}

fn expected(context: &'static str, expected: impl Into<String>, found: Option<Tok>) -> FilterError {
    FilterError::Expected {
        context,
        expected: expected.into(),
        found: format!("{found:?}"),
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, FilterError> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '\'' | '"' => {
                let q = ch;
                i += 1;
                let mut v = String::new();
                loop {
                    if i >= c.len() {
                        return Err(FilterError::Unterminated);
                    }
                    if c[i] == '\\' && i + 1 < c.len() {
                        v.push(c[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c[i] == q {
                        i += 1;
                        break;
                    }
                    v.push(c[i]);
                    i += 1;
                }
                out.push(Tok::Str(v));
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1
            }
            '!' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '<' | '>' => {
                let eq = c.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (ch, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
                i += if eq { 2 } else { 1 };
            }
            _ if ch.is_ascii_digit() || (ch == '-' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                    i += 1;
                }
                let t: String = c[start..i].iter().collect();
                out.push(Tok::Num(t.parse().map_err(|_| FilterError::Number(t.clone()))?));
            }
            _ if ch.is_ascii_alphabetic() || ch == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || matches!(c[i], '_' | '.')) {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            _ => return Err(FilterError::Character(ch)),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok) -> Result<(), FilterError> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(expected("", format!("{t:?}"), other)),
        }
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            self.expect(Tok::LParen)?;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.keyword("contains") {
            self.pos += 1;
            self.expect(Tok::LParen)?;
            let field = match self.next() {
                Some(Tok::Ident(f)) => f,
                other => return Err(expected("contains: ", "a field", other)),
            };
            self.expect(Tok::Comma)?;
            let needle = match self.next() {
                Some(Tok::Str(s)) => s,
                other => return Err(expected("contains: ", "a string", other)),
            };
            self.expect(Tok::RParen)?;
            return Ok(Expr::Contains(field, needle));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        let field = match self.next() {
            Some(Tok::Ident(f)) => f,
            other => return Err(expected("", "a field name", other)),
        };
        let op = match self.peek() {
            Some(Tok::Op(op)) => *op,
            _ => return Ok(Expr::Exists(field)),
        };
        self.pos += 1;
        let lits = if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let mut v = vec![self.lit()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                v.push(self.lit()?);
            }
            self.expect(Tok::RParen)?;
            v
        } else {
            vec![self.lit()?]
        };
        Ok(Expr::Cmp(field, op, lits))
    }
    fn lit(&mut self) -> Result<Lit, FilterError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Ident(w)) if w == "true" => Ok(Lit::Bool(true)),
            Some(Tok::Ident(w)) if w == "false" => Ok(Lit::Bool(false)),
            Some(Tok::Ident(w)) if w == "null" => Ok(Lit::Null),
            other => Err(expected("", "a value", other)),
        }
    }
}

pub(crate) fn parse(s: &str) -> Result<Expr, FilterError> {
    let mut p = Parser {
        toks: lex(s)?,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(FilterError::Trailing(format!("{:?}", p.toks[p.pos])));
    }
    Ok(e)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn cmp_one(v: Option<&Value>, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Some(Value::String(s)), Lit::Str(l)) => {
            if matches!(op, Op::Eq | Op::Ne) {
                let m = glob(l, s);
                return if op == Op::Eq { m } else { !m };
            }
            Some(s.as_str().cmp(l.as_str()))
        }
        (Some(Value::Number(n)), Lit::Num(l)) => n.as_f64().and_then(|x| x.partial_cmp(l)),
        (Some(Value::Bool(b)), Lit::Bool(l)) => Some(b.cmp(l)),
        (None | Some(Value::Null), Lit::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

/// The only values `field` can have for `e` to match, when the expression
/// pins it with `=` (no wildcard): lets callers skip building every object.
pub(crate) fn pinned_values(e: &Expr, field: &str) -> Option<Vec<String>> {
    match e {
        Expr::Cmp(f, Op::Eq, lits) if f == field => lits
            .iter()
            .map(|l| match l {
                Lit::Str(s) if !s.contains('*') => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Expr::And(a, b) => match (pinned_values(a, field), pinned_values(b, field)) {
            (Some(x), Some(y)) => Some(x.into_iter().filter(|v| y.contains(v)).collect()),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        },
        Expr::Or(a, b) => {
            let (mut x, y) = (pinned_values(a, field)?, pinned_values(b, field)?);
            x.extend(y);
            Some(x)
        }
        _ => None,
    }
}

pub(crate) fn eval(e: &Expr, item: &Value) -> bool {
    match e {
        Expr::And(a, b) => eval(a, item) && eval(b, item),
        Expr::Or(a, b) => eval(a, item) || eval(b, item),
        Expr::Not(a) => !eval(a, item),
        Expr::Exists(f) => lookup(item, f).is_some_and(|v| !v.is_null()),
        Expr::Contains(f, needle) => match lookup(item, f) {
            Some(Value::String(s)) => s.contains(needle.as_str()),
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(needle)),
            _ => false,
        },
        Expr::Cmp(f, op, lits) => {
            let v = lookup(item, f);
            if *op == Op::Ne {
                lits.iter().all(|l| cmp_one(v, Op::Ne, l))
            } else {
                lits.iter().any(|l| cmp_one(v, *op, l))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(f: &str, v: &Value) -> bool {
        eval(&parse(f).unwrap(), v)
    }

    #[test]
    fn grammar() {
        let fs = json!({"name": "k8s-pvc-1", "destroyed": false, "space": {"virtual": 20}, "source": {"name": null}});
        assert!(m("name='k8s-pvc-1'", &fs));
        assert!(!m("name='other'", &fs));
        assert!(m("name='k8s-*'", &fs));
        assert!(m("contains(name,'pvc')", &fs));
        assert!(m("contains(name, 'pvc') and not(destroyed=true)", &fs));
        assert!(m("name=('a','k8s-pvc-1')", &fs));
        assert!(!m("name=('a','b')", &fs));
        assert!(m("space.virtual>10 and space.virtual<=20", &fs));
        assert!(m("name!='x' or destroyed=true", &fs));
        assert!(m("(name='x' or name='k8s-pvc-1') and destroyed=false", &fs));
        assert!(m("space", &fs));
        assert!(!m("source.name", &fs));
        assert!(parse("name=").is_err());
        let pinned = |f: &str| pinned_values(&parse(f).unwrap(), "name");
        assert_eq!(pinned("name='a'"), Some(vec!["a".to_string()]));
        assert_eq!(
            pinned("name=('a','b') and destroyed=false"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(pinned("name='a' or name='b'"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(pinned("name='a*'"), None);
        assert_eq!(pinned("contains(name,'a')"), None);
        assert_eq!(pinned("name='a' or destroyed=true"), None);
        assert!(parse("name='x' and").is_err());
        assert!(parse("contains(name)").is_err());
        assert!(parse("name='unterminated").is_err());
    }
}
