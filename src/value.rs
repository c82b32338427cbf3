//! Runtime values. They are immutable and shared: lists, objects and strings
//! sit behind `Arc`, so copying a list or the whole context is O(1) and
//! memory follows the fuel bound. Contexts are parsed straight from JSON
//! bytes into `Value` (no intermediate tree), keeping object key order.

use crate::units::{self, UnitId};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A name or path that is not there, or a result that is unknown.
    Missing,
    Null,
    Bool(bool),
    Num(f64),
    /// A number in the unit it was written in.
    Qty(f64, UnitId),
    Str(Arc<str>),
    List(Arc<Vec<Value>>),
    Obj(Arc<Object>),
    Time(Timestamp),
}

impl Value {
    pub fn type_name(&self) -> String {
        match self {
            Value::Missing => "missing".into(),
            Value::Null => "null".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Num(_) => "a number".into(),
            Value::Qty(_, u) => format!("a {}", u.dim()),
            Value::Str(_) => "a string".into(),
            Value::List(_) => "a list".into(),
            Value::Obj(_) => "an object".into(),
            Value::Time(_) => "a timestamp".into(),
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Value::Missing)
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
}

/// An object that keeps its keys in the order they were written. Small
/// objects are scanned; larger ones get a hash index on first build.
#[derive(Debug, Clone, Default)]
pub struct Object {
    entries: Vec<(Arc<str>, Value)>,
    index: Option<std::collections::HashMap<Arc<str>, u32, rustc_hash::FxBuildHasher>>,
}

const INDEX_THRESHOLD: usize = 12;

impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        self.entries == other.entries
    }
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    /// Builds from entries; a repeated key keeps its first position and its
    /// last value (as JSON parsers commonly do).
    pub fn from_entries(entries: Vec<(Arc<str>, Value)>) -> Object {
        let mut obj = Object {
            entries: Vec::with_capacity(entries.len()),
            index: None,
        };
        for (k, v) in entries {
            obj.insert(k, v);
        }
        obj.build_index();
        obj
    }

    fn insert(&mut self, k: Arc<str>, v: Value) {
        if let Some(i) = self.position(&k) {
            self.entries[i].1 = v;
            return;
        }
        if let Some(ix) = &mut self.index {
            ix.insert(k.clone(), self.entries.len() as u32);
        }
        self.entries.push((k, v));
        if self.index.is_none() && self.entries.len() > INDEX_THRESHOLD {
            self.build_index();
        }
    }

    fn build_index(&mut self) {
        if self.entries.len() > INDEX_THRESHOLD {
            let mut ix = std::collections::HashMap::with_capacity_and_hasher(
                self.entries.len(),
                rustc_hash::FxBuildHasher,
            );
            for (i, (k, _)) in self.entries.iter().enumerate() {
                ix.insert(k.clone(), i as u32);
            }
            self.index = Some(ix);
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(key).map(|&i| i as usize),
            // Length and first byte filter before the byte comparison.
            None => {
                let kb = key.as_bytes();
                self.entries.iter().position(|(k, _)| {
                    let b = k.as_bytes();
                    b.len() == kb.len() && b.first() == kb.first() && b == kb
                })
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The `i`-th entry in written order.
    pub fn entry(&self, i: usize) -> Option<(&Arc<str>, &Value)> {
        self.entries.get(i).map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(k, _)| k)
    }
}

/// Formats a number the way a person writes it: `15`, `0.5`, `1e21`.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => f.write_str("unknown"),
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Num(n) => f.write_str(&format_number(*n)),
            Value::Qty(n, u) => write!(f, "{}{}", format_number(*n), u.suffix()),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Time(t) => f.write_str(&crate::timefmt::format_rfc3339(*t)),
            Value::List(_) | Value::Obj(_) => {
                f.write_str(&serde_json::to_string(self).unwrap_or_default())
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Missing | Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Num(n) => serialize_number(*n, s),
            Value::Qty(n, u) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("value", &Num(*n))?;
                m.serialize_entry("unit", u.suffix())?;
                m.end()
            }
            Value::Str(st) => s.serialize_str(st),
            Value::Time(t) => s.serialize_str(&crate::timefmt::format_rfc3339(*t)),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items.iter() {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Obj(o) => {
                let mut m = s.serialize_map(Some(o.len()))?;
                for (k, v) in o.iter() {
                    m.serialize_entry(&**k, v)?;
                }
                m.end()
            }
        }
    }
}

/// A number serialized as an integer when it is one (so `15` stays `15`).
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

fn serialize_number<S: Serializer>(n: f64, s: S) -> Result<S::Ok, S::Error> {
    if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
        s.serialize_i64(n as i64)
    } else if n.is_finite() {
        s.serialize_f64(n)
    } else {
        s.serialize_unit()
    }
}

// ----- context parsing ----------------------------------------------------

/// Why a context could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContextError {
    #[error("the context is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the context must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("the context is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the context is nested deeper than the limit of {0} levels")]
    TooDeep(usize),
    #[error("the context has more than the limit of {0} keys and elements")]
    TooManyItems(usize),
}

impl ContextError {
    /// The error code of LANGUAGE.md §8 / SERVICE.md §2.
    pub fn code(&self) -> &'static str {
        match self {
            ContextError::InvalidJson(_) | ContextError::NotAnObject(_) => "invalid_context",
            ContextError::TooLarge(_) | ContextError::TooManyItems(_) => "context_too_large",
            ContextError::TooDeep(_) => "context_too_deep",
        }
    }
}

/// Limits on a context document.
#[derive(Debug, Clone, Copy)]
pub struct ContextLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_items: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits {
            max_bytes: 100 * 1024,
            max_depth: 64,
            max_items: 100_000,
        }
    }
}

/// A parsed request context: always a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub root: Arc<Object>,
}

impl Context {
    pub fn empty() -> Context {
        Context {
            root: Arc::new(Object::new()),
        }
    }

    /// Parses JSON text under the limits.
    pub fn from_json(bytes: &[u8], limits: &ContextLimits) -> Result<Context, ContextError> {
        if bytes.len() > limits.max_bytes {
            return Err(ContextError::TooLarge(limits.max_bytes));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        // Our own depth check runs first; serde_json's guard stays as a backstop.
        let mut state = ParseState {
            depth: 0,
            items: 0,
            limits: *limits,
            failure: None,
        };
        let v = ValueSeed { st: &mut state }.deserialize(&mut de);
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                if let Some(f) = state.failure {
                    return Err(f);
                }
                if e.to_string().contains("recursion limit") {
                    return Err(ContextError::TooDeep(limits.max_depth));
                }
                return Err(ContextError::InvalidJson(json_error_text(&e)));
            }
        };
        if let Err(e) = de.end() {
            return Err(ContextError::InvalidJson(json_error_text(&e)));
        }
        match v {
            Value::Obj(root) => Ok(Context { root }),
            other => Err(ContextError::NotAnObject(match other {
                Value::List(_) => "a list",
                Value::Str(_) => "a string",
                Value::Num(_) => "a number",
                Value::Bool(_) => "a bool",
                _ => "null",
            })),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }
}

/// serde_json's message without its internal wording.
fn json_error_text(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

struct ParseState {
    depth: usize,
    items: usize,
    limits: ContextLimits,
    failure: Option<ContextError>,
}

struct ValueSeed<'s> {
    st: &'s mut ParseState,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { st: self.st })
    }
}

struct ValueVisitor<'s> {
    st: &'s mut ParseState,
}

impl ValueVisitor<'_> {
    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.st.items += 1;
        if self.st.items > self.st.limits.max_items {
            self.st.failure = Some(ContextError::TooManyItems(self.st.limits.max_items));
            return Err(E::custom("too many items"));
        }
        Ok(())
    }
    fn descend<E: de::Error>(&mut self) -> Result<(), E> {
        self.st.depth += 1;
        if self.st.depth > self.st.limits.max_depth {
            self.st.failure = Some(ContextError::TooDeep(self.st.limits.max_depth));
            return Err(E::custom("too deep"));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Num(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Arc::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.descend()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(ValueSeed { st: self.st })? {
            self.count()?;
            out.push(v);
        }
        self.st.depth -= 1;
        Ok(Value::List(Arc::new(out)))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.descend()?;
        let mut entries: Vec<(Arc<str>, Value)> = Vec::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            self.count()?;
            let v = map.next_value_seed(ValueSeed { st: self.st })?;
            entries.push((Arc::from(&*k), v));
        }
        self.st.depth -= 1;
        // `{"value": 250, "unit": "cm"}` is a quantity (LANGUAGE.md §5).
        if entries.len() == 2 {
            if let Some(q) = quantity_object(&entries) {
                return Ok(q);
            }
        }
        Ok(Value::Obj(Arc::new(Object::from_entries(entries))))
    }
}

fn quantity_object(entries: &[(Arc<str>, Value)]) -> Option<Value> {
    let mut value = None;
    let mut unit = None;
    for (k, v) in entries {
        match (&**k, v) {
            ("value", Value::Num(n)) => value = Some(*n),
            ("unit", Value::Str(s)) => unit = units::lookup(s),
            _ => return None,
        }
    }
    Some(Value::Qty(value?, unit?))
}

/// Builds a `Value` from a `serde_json::Value` (used for policy defaults in
/// tests and tools; requests use `Context::from_json`).
pub fn from_json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(a) => {
            Value::List(Arc::new(a.iter().map(from_json_value).collect()))
        }
        serde_json::Value::Object(o) => {
            let entries: Vec<(Arc<str>, Value)> = o
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), from_json_value(v)))
                .collect();
            if entries.len() == 2 {
                if let Some(q) = quantity_object(&entries) {
                    return q;
                }
            }
            Value::Obj(Arc::new(Object::from_entries(entries)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_key_order_and_reads_quantities() {
        let c = Context::from_json(
            br#"{"b": 1, "a": {"value": 250, "unit": "cm"}, "c": [1, "x"]}"#,
            &ContextLimits::default(),
        )
        .expect("parses");
        let keys: Vec<&str> = c.root.keys().map(|k| &**k).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert!(matches!(c.get("a"), Some(Value::Qty(v, u)) if *v == 250.0 && u.suffix() == "cm"));
    }

    #[test]
    fn context_limits() {
        let lim = ContextLimits {
            max_bytes: 100,
            max_depth: 3,
            max_items: 5,
        };
        assert_eq!(
            Context::from_json(br#"{"a":{"b":{"c":{}}}}"#, &lim)
                .err()
                .map(|e| e.code()),
            Some("context_too_deep")
        );
        assert_eq!(
            Context::from_json(br#"{"a":[1,2,3,4,5,6]}"#, &lim)
                .err()
                .map(|e| e.code()),
            Some("context_too_large")
        );
        assert_eq!(
            Context::from_json(&[b' '; 101], &lim)
                .err()
                .map(|e| e.code()),
            Some("context_too_large")
        );
        assert_eq!(
            Context::from_json(b"[1]", &lim).err().map(|e| e.code()),
            Some("invalid_context")
        );
        assert_eq!(
            Context::from_json(b"{\"a\": ", &lim)
                .err()
                .map(|e| e.code()),
            Some("invalid_context")
        );
    }

    #[test]
    fn deep_json_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let lim = ContextLimits {
            max_bytes: 1 << 20,
            ..ContextLimits::default()
        };
        assert_eq!(
            Context::from_json(deep.as_bytes(), &lim)
                .err()
                .map(|e| e.code()),
            Some("context_too_deep")
        );
    }

    #[test]
    fn numbers_serialize_as_written() {
        let v = Value::List(Arc::new(vec![Value::Num(15.0), Value::Num(0.5)]));
        assert_eq!(serde_json::to_string(&v).ok().as_deref(), Some("[15,0.5]"));
    }
}
