//! Runtime values. They are immutable and shared: lists, objects and strings
//! sit behind `Arc`, so copying a list or the whole context is O(1) and
//! memory follows the fuel bound. Contexts are read from JSON by
//! [`crate::json`], straight into `Value` (no intermediate tree), keeping
//! object key order.

use crate::units::UnitId;
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

// Defined beside the code that reads and writes them; named here too because
// the evaluator and tools take them from this module.
pub use crate::json::{from_json_value, Context, ContextError, ContextLimits};
pub use crate::timefmt::Timestamp;

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

/// An object that keeps its keys in the order they were written. The keys
/// live in a `Shape` that objects with the same keys in the same order
/// share (the records of a list, as the context parser finds them), so
/// making or dropping such an object touches one reference count, not one
/// per key.
#[derive(Debug, Clone)]
pub struct Object {
    pub(crate) shape: Arc<Shape>,
    values: Vec<Value>,
}

/// The keys of an object, in written order, without repeats. Small shapes
/// are scanned; larger ones carry a hash index, built once per shape.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    pub(crate) keys: Vec<Arc<str>>,
    pub(crate) index: Option<std::collections::HashMap<Arc<str>, u32, rustc_hash::FxBuildHasher>>,
}

const INDEX_THRESHOLD: usize = 12;

impl Shape {
    /// A shape of `keys`, or `None` when a key repeats. `interned`: equal
    /// texts are the same `Arc` (the parser's keys), so a pointer
    /// comparison finds repeats.
    fn new(keys: Vec<Arc<str>>, interned: bool) -> Result<Shape, Vec<Arc<str>>> {
        let n = keys.len();
        if n <= INDEX_THRESHOLD {
            let same = |a: &Arc<str>, b: &Arc<str>| {
                if interned {
                    Arc::ptr_eq(a, b)
                } else {
                    a == b
                }
            };
            if (1..n).any(|i| keys[..i].iter().any(|k| same(k, &keys[i]))) {
                return Err(keys);
            }
            return Ok(Shape { keys, index: None });
        }
        let mut ix =
            std::collections::HashMap::with_capacity_and_hasher(n, rustc_hash::FxBuildHasher);
        for (i, k) in keys.iter().enumerate() {
            if ix.insert(k.clone(), i as u32).is_some() {
                return Err(keys);
            }
        }
        Ok(Shape {
            keys,
            index: Some(ix),
        })
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(key).map(|&i| i as usize),
            // Length and first byte filter before the byte comparison.
            None => {
                let kb = key.as_bytes();
                self.keys.iter().position(|k| {
                    let b = k.as_bytes();
                    b.len() == kb.len() && b.first() == kb.first() && b == kb
                })
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        (Arc::ptr_eq(&self.shape, &other.shape) || self.shape.keys == other.shape.keys)
            && self.values == other.values
    }
}

impl Default for Object {
    fn default() -> Object {
        Object {
            shape: Arc::new(Shape::default()),
            values: Vec::new(),
        }
    }
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    /// Builds from entries; a repeated key keeps its first position and its
    /// last value (as JSON parsers commonly do).
    pub fn from_entries(entries: Vec<(Arc<str>, Value)>) -> Object {
        let (keys, values): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        Object::from_parts(keys, values, false)
    }

    /// Builds from keys and their values (same length); see
    /// [`from_entries`](Self::from_entries) for repeated keys.
    pub(crate) fn from_parts(keys: Vec<Arc<str>>, values: Vec<Value>, interned: bool) -> Object {
        debug_assert_eq!(keys.len(), values.len());
        let keys = match Shape::new(keys, interned) {
            Ok(shape) => {
                return Object {
                    shape: Arc::new(shape),
                    values,
                }
            }
            // Rare: a key repeats.
            Err(keys) => keys,
        };
        // Found through a table, so that a large object with a repeat costs
        // linear time, not quadratic.
        let mut first: std::collections::HashMap<Arc<str>, usize, rustc_hash::FxBuildHasher> =
            std::collections::HashMap::with_capacity_and_hasher(keys.len(), Default::default());
        let mut unique: Vec<Arc<str>> = Vec::with_capacity(keys.len());
        let mut kept: Vec<Value> = Vec::with_capacity(values.len());
        for (k, v) in keys.into_iter().zip(values) {
            match first.get(&k) {
                Some(&i) => kept[i] = v,
                None => {
                    first.insert(k.clone(), unique.len());
                    unique.push(k);
                    kept.push(v);
                }
            }
        }
        let shape = Shape::new(unique, false).unwrap_or_else(|keys| Shape { keys, index: None });
        Object {
            shape: Arc::new(shape),
            values: kept,
        }
    }

    /// An object of `shape` (its keys) and `values`, one per key.
    pub(crate) fn with_shape(shape: Arc<Shape>, values: Vec<Value>) -> Object {
        debug_assert_eq!(shape.keys.len(), values.len());
        Object { shape, values }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.shape.position(key)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.values[i])
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Value)> {
        self.shape.keys.iter().zip(self.values.iter())
    }

    /// The `i`-th entry in written order.
    pub fn entry(&self, i: usize) -> Option<(&Arc<str>, &Value)> {
        Some((self.shape.keys.get(i)?, self.values.get(i)?))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.shape.keys.iter()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_serialize_as_written() {
        let v = Value::List(Arc::new(vec![Value::Num(15.0), Value::Num(0.5)]));
        assert_eq!(serde_json::to_string(&v).ok().as_deref(), Some("[15,0.5]"));
    }
}
