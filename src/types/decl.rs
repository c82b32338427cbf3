//! Typed context declarations (the optional `SCHEMA:` section, see
//! docs/language.md "Typed context declarations"): the declared type of a
//! context field, the item syntax `- path: type` read into it, its canonical
//! text (what `omni fmt` prints), and the static [`Ty`] it gives the checker.
//! The runtime check of a context against it is in `eval/schema.rs`.

use super::Ty;
use crate::units::{self, Dimension, UnitId};
use crate::value::Value;
use std::sync::Arc;

/// What a policy declares a context value to be.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclType {
    Any,
    Number,
    Text,
    Bool,
    Timestamp,
    /// A quantity of one dimension; `unit` is the unit a bare number in the
    /// context is read in (`ratio in %`).
    Quantity {
        dim: Dimension,
        unit: Option<UnitId>,
    },
    /// `list` or `list of T`.
    List(Option<Box<DeclType>>),
    Object(ObjDecl),
}

/// The declared fields of an object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjDecl {
    pub fields: Vec<FieldDecl>,
    /// `{ … }` names every field a rule may read (closed); `object`, and the
    /// objects made by dotted paths (`zone.humidity: ratio`), leave the other
    /// fields undeclared (open).
    pub open: bool,
}

impl ObjDecl {
    pub fn field(&self, name: &str) -> Option<&FieldDecl> {
        self.fields.iter().find(|f| &*f.name == name)
    }
}

/// One declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub name: Arc<str>,
    pub ty: DeclType,
    /// Written `name?`: the context may leave it out without a warning.
    pub optional: bool,
    /// The line of the declaration (runtime warnings point at it).
    pub line: u32,
}

/// Every declaration of a policy: the fields of the context's root object.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub root: DeclType,
}

impl Default for Schema {
    fn default() -> Self {
        Schema {
            root: DeclType::Object(ObjDecl {
                fields: Vec::new(),
                open: true,
            }),
        }
    }
}

/// One step of a declared path: a key, or `[]` (each element of a list).
#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    Key(Arc<str>),
    Each,
}

/// One `SCHEMA` item, read: `path?: type`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclItem {
    pub path: Vec<PathStep>,
    pub optional: bool,
    pub ty: DeclType,
}

/// A problem in a declaration: byte offsets in the item text, a message and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclError {
    pub start: usize,
    pub end: usize,
    pub message: String,
    pub hint: Option<String>,
}

const SCALARS: &[&str] = &[
    "any",
    "number",
    "text",
    "string",
    "bool",
    "boolean",
    "timestamp",
    "time",
    "list",
    "object",
];

const DIMENSIONS: &[(&str, Option<Dimension>)] = &[
    ("ratio", Some(Dimension::Ratio)),
    ("length", Some(Dimension::Length)),
    ("duration", Some(Dimension::Duration)),
    ("temperature", Some(Dimension::Temperature)),
    ("speed", Some(Dimension::Speed)),
    ("mass", Some(Dimension::Mass)),
    ("pressure", Some(Dimension::Pressure)),
    ("voltage", Some(Dimension::Voltage)),
    ("current", Some(Dimension::Current)),
    ("power", Some(Dimension::Power)),
    ("energy", Some(Dimension::Energy)),
    ("frequency", Some(Dimension::Frequency)),
    ("data", Some(Dimension::Data)),
    // Each currency is its own dimension: `currency in USD`.
    ("currency", None),
];

fn dim_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Currency(_) => "currency",
        _ => DIMENSIONS
            .iter()
            .find(|(_, x)| *x == Some(d))
            .map(|(n, _)| *n)
            .unwrap_or("any"),
    }
}

impl DeclType {
    /// The static type the checker gives a value declared this way.
    pub fn ty(&self) -> Ty {
        match self {
            DeclType::Any => Ty::Any,
            DeclType::Number => Ty::Num,
            DeclType::Text => Ty::Str,
            DeclType::Bool => Ty::Bool,
            DeclType::Timestamp => Ty::Time,
            DeclType::Quantity { dim, .. } => Ty::Qty(*dim),
            DeclType::List(_) => Ty::List,
            DeclType::Object(_) => Ty::Obj,
        }
    }

    /// The declared type in words, for messages: "a ratio in %".
    pub fn describe(&self) -> String {
        match self {
            DeclType::Any => "any value".into(),
            DeclType::Number => "a number".into(),
            DeclType::Text => "text".into(),
            DeclType::Bool => "a bool".into(),
            DeclType::Timestamp => "a timestamp".into(),
            DeclType::Quantity { .. } => format!("a {}", self.canonical()),
            DeclType::List(None) => "a list".into(),
            DeclType::List(Some(t)) => format!("a list of {}", t.canonical()),
            DeclType::Object(_) => "an object".into(),
        }
    }

    /// The canonical text of the type, as `omni fmt` prints it.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match self {
            DeclType::Any => out.push_str("any"),
            DeclType::Number => out.push_str("number"),
            DeclType::Text => out.push_str("text"),
            DeclType::Bool => out.push_str("bool"),
            DeclType::Timestamp => out.push_str("timestamp"),
            DeclType::Quantity { dim, unit } => {
                out.push_str(dim_name(*dim));
                if let Some(u) = unit {
                    out.push_str(" in ");
                    out.push_str(u.suffix());
                }
            }
            DeclType::List(None) => out.push_str("list"),
            DeclType::List(Some(t)) => {
                out.push_str("list of ");
                t.write(out);
            }
            DeclType::Object(o) if o.open && o.fields.is_empty() => out.push_str("object"),
            DeclType::Object(o) => {
                if o.fields.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push_str("{ ");
                for (i, f) in o.fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_key(&f.name, out);
                    if f.optional {
                        out.push('?');
                    }
                    out.push_str(": ");
                    f.ty.write(out);
                }
                out.push_str(" }");
            }
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_key(k: &str, out: &mut String) {
    if is_ident(k) {
        out.push_str(k);
    } else {
        out.push_str(&crate::fmt::fmt_string(k));
    }
}

impl DeclItem {
    /// The canonical text of the item (without the leading `- `).
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        for (i, step) in self.path.iter().enumerate() {
            match step {
                PathStep::Key(k) => {
                    if i > 0 {
                        s.push('.');
                    }
                    write_key(k, &mut s);
                }
                PathStep::Each => s.push_str("[]"),
            }
        }
        if self.optional {
            s.push('?');
        }
        s.push_str(": ");
        self.ty.write(&mut s);
        s
    }
}

// ----- values against declarations ----------------------------------------

/// How a value fits its declaration (the value itself; the elements of a
/// list and the fields of an object are checked one by one by the caller).
#[derive(Debug, Clone, PartialEq)]
pub enum Fit {
    Yes,
    /// A bare number where a quantity `in` a unit is declared: read in that unit.
    Convert(UnitId),
    No(Misfit),
}

/// A value that contradicts its declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// The value is a quantity of another dimension (E0301, not E0302).
    pub dimension: bool,
    /// What the value is, in words: "a mass (`\"15kg\"`)".
    pub received: String,
}

/// Checks one value against a declaration.
pub fn fit(v: &Value, t: &DeclType) -> Fit {
    let ok = match (t, v) {
        (_, Value::Missing) | (DeclType::Any, _) => true,
        (DeclType::Number, Value::Num(_)) => true,
        (DeclType::Text, Value::Str(_)) => true,
        (DeclType::Bool, Value::Bool(_)) => true,
        // Sensor flags: 1 and 0 are true and false (`docs/language.md#unknown-values-and-three-valued-logic`).
        (DeclType::Bool, Value::Num(n)) => *n == 0.0 || *n == 1.0,
        (DeclType::Timestamp, Value::Time(_)) => true,
        (DeclType::Timestamp, Value::Str(s)) => crate::timefmt::parse_rfc3339(s).is_some(),
        (DeclType::Quantity { unit, .. }, Value::Num(_)) => {
            return match unit {
                Some(u) => Fit::Convert(*u),
                None => Fit::Yes,
            }
        }
        (DeclType::Quantity { dim, .. }, Value::Qty(_, u)) => {
            return dimension_fit(*dim, u.dim(), v);
        }
        (DeclType::Quantity { dim, .. }, Value::Str(s)) => match units::parse_quantity_str(s) {
            Some((_, u)) => return dimension_fit(*dim, u.dim(), v),
            None => false,
        },
        (DeclType::List(_), Value::List(_)) => true,
        (DeclType::Object(_), Value::Obj(_)) => true,
        _ => false,
    };
    if ok {
        Fit::Yes
    } else {
        Fit::No(Misfit {
            dimension: false,
            received: describe_value(v),
        })
    }
}

fn dimension_fit(want: Dimension, got: Dimension, v: &Value) -> Fit {
    if want == got {
        Fit::Yes
    } else {
        Fit::No(Misfit {
            dimension: true,
            received: describe_value(v),
        })
    }
}

/// `Some` when `v` contradicts `t` (its own kind; not its elements or fields).
pub fn value_misfit(v: &Value, t: &DeclType) -> Option<Misfit> {
    match fit(v, t) {
        Fit::No(m) => Some(m),
        _ => None,
    }
}

/// A context value in words, with the value itself when it is short.
pub fn describe_value(v: &Value) -> String {
    let shown = |text: String| {
        if text.chars().count() <= 40 {
            format!(" (`{text}`)")
        } else {
            String::new()
        }
    };
    match v {
        Value::Str(s) => match units::parse_quantity_str(s) {
            Some((_, u)) => format!("a {}{}", u.dim(), shown(format!("{:?}", &**s))),
            None => format!("a string{}", shown(format!("{:?}", &**s))),
        },
        Value::Num(_) | Value::Qty(..) | Value::Bool(_) | Value::Time(_) => {
            format!("{}{}", v.type_name(), shown(v.to_string()))
        }
        other => other.type_name(),
    }
}

// ----- reading an item ----------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    Punct(char),
    End,
}

struct Lexed<'a> {
    toks: Vec<(Tok<'a>, usize, usize)>,
}

fn lex(text: &str) -> Result<Lexed<'_>, DeclError> {
    let mut toks = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'%' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'%') {
                i += 1;
            }
            toks.push((Tok::Word(&text[s..i]), s, i));
        } else if c == b'"' {
            let s = i;
            i += 1;
            let mut out = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        // The escaped character, whatever its length.
                        let ch = text[i + 1..].chars().next().unwrap_or('\\');
                        out.push(ch);
                        i += 1 + ch.len_utf8();
                    }
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or(' ');
                        out.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                return Err(DeclError {
                    start: s,
                    end: text.len(),
                    message: "this quoted name is not closed".into(),
                    hint: Some("end it with `\"`".into()),
                });
            }
            toks.push((Tok::Str(out), s, i));
        } else if b"{}[],:?.".contains(&c) {
            toks.push((Tok::Punct(c as char), i, i + 1));
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(DeclError {
                start: i,
                end: i + ch.len_utf8(),
                message: format!("unexpected `{ch}` in a declaration"),
                hint: Some(SYNTAX_HINT.into()),
            });
        }
    }
    toks.push((Tok::End, text.len(), text.len()));
    Ok(Lexed { toks })
}

const SYNTAX_HINT: &str =
    "a declaration is `- name: type`, e.g. `- Battery: ratio in %` or `- drones: list of { id: text, battery: ratio }`";

struct Reader<'a> {
    toks: Vec<(Tok<'a>, usize, usize)>,
    pos: usize,
    line: u32,
    depth: usize,
}

/// Declared types nest at most this deep (far beyond any real context).
const MAX_DEPTH: usize = 32;

impl<'a> Reader<'a> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn at(&self) -> (usize, usize) {
        let t = &self.toks[self.pos.min(self.toks.len() - 1)];
        (t.1, t.2)
    }
    fn bump(&mut self) -> Tok<'a> {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn error(&self, message: impl Into<String>, hint: Option<String>) -> DeclError {
        let (start, end) = self.at();
        DeclError {
            start,
            end,
            message: message.into(),
            hint,
        }
    }
    fn expect(&mut self, c: char, what: &str) -> Result<(), DeclError> {
        if *self.peek() == Tok::Punct(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(
                format!("expected `{c}` {what}, found {}", self.found()),
                Some(SYNTAX_HINT.into()),
            ))
        }
    }
    fn found(&self) -> String {
        match self.peek() {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::End => "the end of the item".into(),
        }
    }

    fn key(&mut self) -> Result<Arc<str>, DeclError> {
        match self.bump() {
            Tok::Word(w) if is_ident(w) => Ok(Arc::from(w)),
            Tok::Str(s) => Ok(Arc::from(s.as_str())),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.error(
                    format!("expected a field name, found {}", self.found()),
                    Some("a name is letters, digits and `_`, or a quoted string".into()),
                ))
            }
        }
    }

    fn item(&mut self) -> Result<DeclItem, DeclError> {
        let mut path = vec![PathStep::Key(self.key()?)];
        loop {
            match self.peek() {
                Tok::Punct('.') => {
                    self.bump();
                    path.push(PathStep::Key(self.key()?));
                }
                Tok::Punct('[') => {
                    self.bump();
                    self.expect(']', "after `[` (`[]` means each element of a list)")?;
                    path.push(PathStep::Each);
                }
                _ => break,
            }
        }
        let optional = self.optional();
        self.expect(':', "after the declared name")?;
        let ty = self.ty()?;
        if *self.peek() != Tok::End {
            return Err(self.error(
                format!("unexpected {} after the type", self.found()),
                Some(SYNTAX_HINT.into()),
            ));
        }
        Ok(DeclItem { path, optional, ty })
    }

    fn optional(&mut self) -> bool {
        if *self.peek() == Tok::Punct('?') {
            self.bump();
            true
        } else {
            false
        }
    }

    fn ty(&mut self) -> Result<DeclType, DeclError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(
                format!("a declared type nests more than {MAX_DEPTH} levels deep"),
                None,
            ));
        }
        let t = self.ty_inner();
        self.depth -= 1;
        t
    }

    fn ty_inner(&mut self) -> Result<DeclType, DeclError> {
        let (start, end) = self.at();
        match self.bump() {
            Tok::Punct('{') => self.object(),
            Tok::Word(w) => match w {
                "any" => Ok(DeclType::Any),
                "number" => Ok(DeclType::Number),
                "text" | "string" => Ok(DeclType::Text),
                "bool" | "boolean" => Ok(DeclType::Bool),
                "timestamp" | "time" => Ok(DeclType::Timestamp),
                "object" => Ok(DeclType::Object(ObjDecl {
                    fields: Vec::new(),
                    open: true,
                })),
                "list" => {
                    if *self.peek() == Tok::Word("of") {
                        self.bump();
                        Ok(DeclType::List(Some(Box::new(self.ty()?))))
                    } else {
                        Ok(DeclType::List(None))
                    }
                }
                _ => self.quantity(w, start, end),
            },
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.error(
                    format!("expected a type, found {}", self.found()),
                    Some(SYNTAX_HINT.into()),
                ))
            }
        }
    }

    fn quantity(&mut self, w: &str, start: usize, end: usize) -> Result<DeclType, DeclError> {
        let Some((_, dim)) = DIMENSIONS.iter().find(|(n, _)| *n == w) else {
            // A unit where a dimension belongs: `Battery: %` → `ratio in %`.
            let hint = match units::lookup(w) {
                Some(u) => format!("`{w}` is a unit: write `{} in {w}`", dim_name(u.dim())),
                None => {
                    let names = SCALARS.iter().chain(DIMENSIONS.iter().map(|(n, _)| n));
                    match crate::diagnostics::suggest(w, names.copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "the types are any, number, text, bool, timestamp, list, list of T, object, { field: T, … }, and the dimensions ratio, length, duration, temperature, speed, mass, pressure, voltage, current, power, energy, frequency, data, currency".into(),
                    }
                }
            };
            return Err(DeclError {
                start,
                end,
                message: format!("unknown type `{w}`"),
                hint: Some(hint),
            });
        };
        let unit = if *self.peek() == Tok::Word("in") {
            self.bump();
            let (us, ue) = self.at();
            let Tok::Word(u) = self.bump() else {
                return Err(DeclError {
                    start: us,
                    end: ue,
                    message: "expected a unit after `in`".into(),
                    hint: Some(format!("e.g. `{w} in {}`", example_unit(*dim))),
                });
            };
            let Some(id) = units::lookup(u) else {
                let hint = match crate::diagnostics::suggest(u, units::all_suffixes()) {
                    Some(s) => format!("did you mean `{s}`? (suffixes are case-sensitive)"),
                    None => "see the table of units in docs/language.md".into(),
                };
                return Err(DeclError {
                    start: us,
                    end: ue,
                    message: format!("unknown unit `{u}`"),
                    hint: Some(hint),
                });
            };
            if let Some(d) = dim {
                if id.dim() != *d {
                    return Err(DeclError {
                        start: us,
                        end: ue,
                        message: format!("`{u}` is a unit of {}, not of {}", id.dim(), d),
                        hint: Some(format!(
                            "write `{} in {u}`, or a {d} unit",
                            dim_name(id.dim())
                        )),
                    });
                }
            } else if !matches!(id, UnitId::Currency(_)) {
                return Err(DeclError {
                    start: us,
                    end: ue,
                    message: format!("`{u}` is a unit of {}, not a currency", id.dim()),
                    hint: Some("write a currency code, e.g. `currency in EUR`".into()),
                });
            }
            Some(id)
        } else {
            None
        };
        match (dim, unit) {
            (Some(d), unit) => Ok(DeclType::Quantity { dim: *d, unit }),
            (None, Some(u)) => Ok(DeclType::Quantity {
                dim: u.dim(),
                unit: Some(u),
            }),
            (None, None) => Err(DeclError {
                start,
                end,
                message: "a currency needs its code".into(),
                hint: Some(
                    "each currency is its own dimension: write e.g. `currency in USD`".into(),
                ),
            }),
        }
    }

    fn object(&mut self) -> Result<DeclType, DeclError> {
        let mut fields: Vec<FieldDecl> = Vec::new();
        loop {
            if *self.peek() == Tok::Punct('}') {
                self.bump();
                break;
            }
            let (ks, ke) = self.at();
            let name = self.key()?;
            let optional = self.optional();
            self.expect(':', "after the field name")?;
            let ty = self.ty()?;
            if fields.iter().any(|f| f.name == name) {
                return Err(DeclError {
                    start: ks,
                    end: ke,
                    message: format!("the field `{name}` is declared twice"),
                    hint: Some("keep one declaration".into()),
                });
            }
            fields.push(FieldDecl {
                name,
                ty,
                optional,
                line: self.line,
            });
            match self.peek() {
                Tok::Punct(',') => {
                    self.bump();
                }
                Tok::Punct('}') => {}
                _ => {
                    return Err(self.error(
                        format!("expected `,` or `}}`, found {}", self.found()),
                        Some(
                            "separate the fields with commas: `{ id: text, battery: ratio }`"
                                .into(),
                        ),
                    ))
                }
            }
        }
        Ok(DeclType::Object(ObjDecl {
            fields,
            open: false,
        }))
    }
}

fn example_unit(d: Option<Dimension>) -> &'static str {
    match d {
        Some(Dimension::Ratio) => "%",
        Some(Dimension::Length) => "m",
        Some(Dimension::Duration) => "s",
        Some(Dimension::Temperature) => "C",
        Some(Dimension::Mass) => "kg",
        None => "USD",
        _ => "…",
    }
}

/// Reads one `SCHEMA` item (`path?: type`, without the `- `).
pub fn parse_item(text: &str, line: u32) -> Result<DeclItem, DeclError> {
    let lexed = lex(text)?;
    let mut r = Reader {
        toks: lexed.toks,
        pos: 0,
        line,
        depth: 0,
    };
    r.item()
}

/// The canonical text of a `SCHEMA` item, or `None` when it does not read.
pub fn canonical_item(text: &str) -> Option<String> {
    parse_item(text, 0).ok().map(|i| i.canonical())
}

impl Schema {
    pub fn is_empty(&self) -> bool {
        matches!(&self.root, DeclType::Object(o) if o.fields.is_empty())
    }

    /// The root's declared fields.
    pub fn fields(&self) -> &[FieldDecl] {
        match &self.root {
            DeclType::Object(o) => &o.fields,
            _ => &[],
        }
    }

    /// The declaration of a top-level name.
    pub fn get(&self, name: &str) -> Option<&FieldDecl> {
        self.fields().iter().find(|f| &*f.name == name)
    }

    /// Adds an item; `Err` when it contradicts an earlier one.
    pub fn insert(&mut self, item: DeclItem, line: u32) -> Result<(), String> {
        let DeclItem {
            path,
            optional,
            mut ty,
        } = item;
        if path.is_empty() {
            return Err("a declaration needs a name".into());
        }
        set_line(&mut ty, line);
        let mut cur = &mut self.root;
        let mut walked = String::new();
        let last = path.len() - 1;
        for (i, step) in path.iter().enumerate() {
            let next = path.get(i + 1);
            let placeholder = || match next {
                Some(PathStep::Each) => DeclType::List(None),
                _ => DeclType::Object(ObjDecl {
                    fields: Vec::new(),
                    open: true,
                }),
            };
            match step {
                PathStep::Key(k) => {
                    let DeclType::Object(o) = cur else {
                        return Err(format!(
                            "`{walked}` is declared {}, so it has no field `{k}`",
                            cur.describe()
                        ));
                    };
                    let pos = match o.fields.iter().position(|f| f.name == *k) {
                        Some(_) if i == last => {
                            let shown = if walked.is_empty() {
                                k.to_string()
                            } else {
                                format!("{walked}.{k}")
                            };
                            return Err(format!("`{shown}` is declared more than once"));
                        }
                        Some(p) => p,
                        None => {
                            o.fields.push(FieldDecl {
                                name: k.clone(),
                                ty: if i == last {
                                    std::mem::replace(&mut ty, DeclType::Any)
                                } else {
                                    placeholder()
                                },
                                optional: i == last && optional,
                                line,
                            });
                            o.fields.len() - 1
                        }
                    };
                    if !walked.is_empty() {
                        walked.push('.');
                    }
                    walked.push_str(k);
                    cur = &mut o.fields[pos].ty;
                }
                PathStep::Each => {
                    let DeclType::List(elem) = cur else {
                        return Err(format!(
                            "`{walked}` is declared {}, not a list",
                            cur.describe()
                        ));
                    };
                    if i == last {
                        if elem.is_some() {
                            return Err(format!(
                                "the elements of `{walked}` are declared more than once"
                            ));
                        }
                        *elem = Some(Box::new(std::mem::replace(&mut ty, DeclType::Any)));
                    } else if elem.is_none() {
                        *elem = Some(Box::new(placeholder()));
                    }
                    walked.push_str("[]");
                    match elem {
                        Some(e) => cur = e,
                        None => break,
                    }
                }
            }
        }
        Ok(())
    }
}

impl DeclType {
    /// The same declaration, wherever it is written (lines are ignored).
    pub fn same_as(&self, other: &DeclType) -> bool {
        match (self, other) {
            (DeclType::List(Some(a)), DeclType::List(Some(b))) => a.same_as(b),
            (DeclType::Object(a), DeclType::Object(b)) => {
                a.open == b.open
                    && a.fields.len() == b.fields.len()
                    && a.fields.iter().zip(&b.fields).all(|(x, y)| {
                        x.name == y.name && x.optional == y.optional && x.ty.same_as(&y.ty)
                    })
            }
            (a, b) => a == b,
        }
    }
}

fn set_line(t: &mut DeclType, line: u32) {
    match t {
        DeclType::List(Some(e)) => set_line(e, line),
        DeclType::Object(o) => {
            for f in o.fields.iter_mut() {
                f.line = line;
                set_line(&mut f.ty, line);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_item(s, 1)
            .unwrap_or_else(|e| panic!("{s}: {e:?}"))
            .canonical()
    }

    #[test]
    fn items_read_and_print_canonically() {
        assert_eq!(canon("Battery:ratio in %"), "Battery: ratio in %");
        assert_eq!(canon("zone.humidity : ratio"), "zone.humidity: ratio");
        assert_eq!(
            canon("drones: list of {id:string, battery: ratio in %, tags?: list}"),
            "drones: list of { id: text, battery: ratio in %, tags?: list }"
        );
        assert_eq!(
            canon("drones[].battery?: ratio"),
            "drones[].battery?: ratio"
        );
        assert_eq!(canon("Price: currency in USD"), "Price: currency in USD");
        assert_eq!(canon("\"x-id\": text"), "\"x-id\": text");
        assert_eq!(canon("\"a\\é\\\"b\": text"), "\"aé\\\"b\": text");
        assert_eq!(canon("Meta: object"), "Meta: object");
        assert_eq!(canon("Empty: {}"), "Empty: {}");
        for s in [
            "Battery: ratio in %",
            "drones: list of { a: { b: list of time } }",
        ] {
            let once = canon(s);
            assert_eq!(canon(&once), once);
        }
    }

    #[test]
    fn bad_items_say_why() {
        let e = |s: &str| parse_item(s, 1).expect_err(s);
        assert_eq!(
            e("Battery: ratoi").hint.as_deref(),
            Some("did you mean `ratio`?")
        );
        assert!(e("Battery: %")
            .hint
            .unwrap_or_default()
            .contains("ratio in %"));
        assert!(e("Battery: ratio in kg").message.contains("not of ratio"));
        assert!(e("Price: currency").message.contains("code"));
        assert!(e("Battery ratio").message.contains("expected `:`"));
        assert!(e("A: { b: text c: text }").message.contains("expected `,`"));
    }

    #[test]
    fn any_text_reads_without_panicking_and_depth_is_bounded() {
        let samples = [
            "drones[].battery?: list of { id: \"x\\é\", b: ratio in %, c: currency in EUR }",
            "Größe: ratio",
            "\"unterminated: text",
            "a.[]: {",
        ];
        for s in samples {
            for (i, _) in s.char_indices() {
                let _ = parse_item(&s[..i], 1);
                let _ = parse_item(&s[i..], 1);
            }
        }
        let deep = format!("A: {}text", "list of ".repeat(10_000));
        assert!(parse_item(&deep, 1).is_err());
        let deep = format!("A: {}", "{ a: ".repeat(10_000));
        assert!(parse_item(&deep, 1).is_err());
    }

    #[test]
    fn paths_merge_and_conflicts_are_refused() {
        let mut s = Schema::default();
        let mut add = |t: &str| s.insert(parse_item(t, 1).expect(t), 1);
        assert!(add("zone.humidity: ratio").is_ok());
        assert!(add("zone.temp: temperature").is_ok());
        assert!(add("drones[].battery: ratio").is_ok());
        assert!(add("drones[].id: text").is_ok());
        assert!(add("zone.humidity: ratio").is_err());
        assert!(add("Mode: text").is_ok());
        assert!(add("Mode.x: text").is_err());
        assert!(add("zone[]: text").is_err());
        let zone = s.get("zone").expect("zone");
        let DeclType::Object(o) = &zone.ty else {
            panic!("object")
        };
        assert!(o.open && o.fields.len() == 2);
        let DeclType::List(Some(e)) = &s.get("drones").expect("drones").ty else {
            panic!("list")
        };
        assert_eq!(e.canonical(), "{ battery: ratio, id: text }");
    }
}
