//! The standard library of LANGUAGE.md §7: the function table the checker
//! resolves names against, and the functions that need no evaluator. The
//! higher-order functions (which call lambdas) live in `eval`.

use crate::units::{approx_eq, Dimension};
use crate::value::{Timestamp, Value};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FuncId {
    Abs,
    Min,
    Max,
    Sum,
    Avg,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Pow,
    Clamp,
    Len,
    Lower,
    Upper,
    Trim,
    Contains,
    StartsWith,
    EndsWith,
    Split,
    Matches,
    Count,
    Any,
    All,
    Map,
    Filter,
    Reduce,
    First,
    Last,
    Distinct,
    Sort,
    Now,
    Time,
    Since,
    Between,
    DatePart,
    NowUnixMillis,
    DurationBetweenMs,
    Has,
    Keys,
    Get,
}

/// One stdlib function.
#[derive(Debug, Clone, Copy)]
pub struct FuncDef {
    pub id: FuncId,
    pub name: &'static str,
    /// Modules it may be qualified with (`len` is in `str` and `list`).
    pub modules: &'static [&'static str],
    pub min_args: usize,
    pub max_args: usize,
    /// Argument index that must be a lambda, and its parameter count.
    pub lambda: Option<(usize, usize)>,
    pub signature: &'static str,
}

const VARIADIC: usize = usize::MAX;

macro_rules! f {
    ($id:ident, $name:expr, $mods:expr, $min:expr, $max:expr, $lam:expr, $sig:expr) => {
        FuncDef {
            id: FuncId::$id,
            name: $name,
            modules: $mods,
            min_args: $min,
            max_args: $max,
            lambda: $lam,
            signature: $sig,
        }
    };
}

pub static FUNCTIONS: &[FuncDef] = &[
    f!(Abs, "abs", &["math"], 1, 1, None, "abs(x)"),
    f!(
        Min,
        "min",
        &["math"],
        1,
        VARIADIC,
        None,
        "min(list) or min(a, b, …)"
    ),
    f!(
        Max,
        "max",
        &["math"],
        1,
        VARIADIC,
        None,
        "max(list) or max(a, b, …)"
    ),
    f!(
        Sum,
        "sum",
        &["math"],
        1,
        VARIADIC,
        None,
        "sum(list) or sum(a, b, …)"
    ),
    f!(
        Avg,
        "avg",
        &["math"],
        1,
        VARIADIC,
        None,
        "avg(list) or avg(a, b, …)"
    ),
    f!(
        Round,
        "round",
        &["math"],
        1,
        2,
        None,
        "round(x) or round(x, digits)"
    ),
    f!(Floor, "floor", &["math"], 1, 1, None, "floor(x)"),
    f!(Ceil, "ceil", &["math"], 1, 1, None, "ceil(x)"),
    f!(Sqrt, "sqrt", &["math"], 1, 1, None, "sqrt(x)"),
    f!(Pow, "pow", &["math"], 2, 2, None, "pow(x, y)"),
    f!(Clamp, "clamp", &["math"], 3, 3, None, "clamp(x, lo, hi)"),
    f!(Len, "len", &["str", "list"], 1, 1, None, "len(x)"),
    f!(Lower, "lower", &["str"], 1, 1, None, "lower(s)"),
    f!(Upper, "upper", &["str"], 1, 1, None, "upper(s)"),
    f!(Trim, "trim", &["str"], 1, 1, None, "trim(s)"),
    f!(
        Contains,
        "contains",
        &["str", "list"],
        2,
        2,
        None,
        "contains(s, part) or contains(xs, x)"
    ),
    f!(
        StartsWith,
        "starts_with",
        &["str"],
        2,
        2,
        None,
        "starts_with(s, prefix)"
    ),
    f!(
        EndsWith,
        "ends_with",
        &["str"],
        2,
        2,
        None,
        "ends_with(s, suffix)"
    ),
    f!(Split, "split", &["str"], 2, 2, None, "split(s, sep)"),
    f!(
        Matches,
        "matches",
        &["str"],
        2,
        2,
        None,
        "matches(s, \"regex\")"
    ),
    f!(
        Count,
        "count",
        &["list"],
        1,
        2,
        Some((1, 1)),
        "count(xs) or count(xs, |x| …)"
    ),
    f!(Any, "any", &["list"], 2, 2, Some((1, 1)), "any(xs, |x| …)"),
    f!(All, "all", &["list"], 2, 2, Some((1, 1)), "all(xs, |x| …)"),
    f!(Map, "map", &["list"], 2, 2, Some((1, 1)), "map(xs, |x| …)"),
    f!(
        Filter,
        "filter",
        &["list"],
        2,
        2,
        Some((1, 1)),
        "filter(xs, |x| …)"
    ),
    f!(
        Reduce,
        "reduce",
        &["list"],
        3,
        3,
        Some((1, 2)),
        "reduce(xs, |acc, x| …, init)"
    ),
    f!(First, "first", &["list"], 1, 1, None, "first(xs)"),
    f!(Last, "last", &["list"], 1, 1, None, "last(xs)"),
    f!(Distinct, "distinct", &["list"], 1, 1, None, "distinct(xs)"),
    f!(Sort, "sort", &["list"], 1, 1, None, "sort(xs)"),
    f!(Now, "now", &["time"], 0, 0, None, "now()"),
    f!(
        Time,
        "time",
        &["time"],
        1,
        1,
        None,
        "time(\"2026-01-01T00:00:00Z\")"
    ),
    f!(Since, "since", &["time"], 1, 1, None, "since(ts)"),
    f!(Between, "between", &["time"], 2, 2, None, "between(a, b)"),
    f!(
        DatePart,
        "date_part",
        &["time"],
        2,
        2,
        None,
        "date_part(ts, \"hour\")"
    ),
    f!(
        NowUnixMillis,
        "now_unix_millis",
        &["time"],
        0,
        0,
        None,
        "now_unix_millis()"
    ),
    f!(
        DurationBetweenMs,
        "duration_between_ms",
        &["time"],
        2,
        2,
        None,
        "duration_between_ms(a, b)"
    ),
    f!(Has, "has", &["json"], 2, 2, None, "has(obj, \"key\")"),
    f!(Keys, "keys", &["json"], 1, 1, None, "keys(obj)"),
    f!(Get, "get", &["json"], 2, 2, None, "get(obj, \"a.b[0]\")"),
];

/// Modules whose every call is refused: policies have no I/O.
pub const DENIED_MODULES: &[&str] = &[
    "io", "web", "net", "http", "https", "fs", "file", "env", "process", "os", "sys", "exec",
    "socket", "db", "sql", "shell", "cmd", "fetch", "url",
];

pub fn def(id: FuncId) -> &'static FuncDef {
    FUNCTIONS
        .iter()
        .find(|f| f.id == id)
        .unwrap_or(&FUNCTIONS[0])
}

/// How a written function name resolves.
pub enum Resolution {
    Found(&'static FuncDef, Option<&'static str>),
    Denied(String),
    Unknown(Option<String>),
}

pub fn resolve(name: &str) -> Resolution {
    let parts: Vec<&str> = name.split("::").collect();
    let (module, fname) = match parts.as_slice() {
        [f] => (None, *f),
        ["std", m, f] | [m, f] => (Some(*m), *f),
        _ => (None, ""),
    };
    if let Some(m) = module {
        if DENIED_MODULES.contains(&m.to_ascii_lowercase().as_str()) {
            return Resolution::Denied(m.to_string());
        }
    }
    let found = FUNCTIONS
        .iter()
        .find(|f| f.name == fname && module.is_none_or(|m| f.modules.contains(&m)));
    if let Some(f) = found {
        let m = module
            .and_then(|m| f.modules.iter().copied().find(|x| *x == m))
            .or(Some(f.modules[0]));
        return Resolution::Found(f, m);
    }
    // Suggest: the qualified spellings when qualified, else the bare names.
    let mut cands: Vec<String> = Vec::new();
    for f in FUNCTIONS {
        if module.is_some() {
            for m in f.modules {
                cands.push(format!("std::{m}::{}", f.name));
            }
        } else {
            cands.push(f.name.to_string());
        }
    }
    let written = if module.is_some() && !name.starts_with("std::") {
        format!("std::{name}")
    } else {
        name.to_string()
    };
    // Right function, wrong module (`std::math::len`) first, then the nearest name.
    let best = FUNCTIONS
        .iter()
        .find(|f| f.name == fname)
        .map(|f| format!("std::{}::{}", f.modules[0], f.name))
        .or_else(|| {
            crate::diagnostics::suggest(&written, cands.iter().map(|s| s.as_str()))
                .map(str::to_string)
        });
    Resolution::Unknown(best)
}

// ----- pure helpers used by the evaluator ----------------------------------

/// Numeric view of a value: plain number, or a quantity with its unit.
pub fn as_number(v: &Value) -> Option<(f64, Option<crate::units::UnitId>)> {
    match v {
        Value::Num(n) => Some((*n, None)),
        Value::Qty(n, u) => Some((*n, Some(*u))),
        Value::Str(s) => crate::units::parse_quantity_str(s).map(|(n, u)| (n, Some(u))),
        _ => None,
    }
}

pub fn as_time(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Time(t) => Some(*t),
        Value::Str(s) => crate::timefmt::parse_rfc3339(s),
        _ => None,
    }
}

/// A duration quantity of `secs` seconds.
pub fn seconds(secs: f64) -> Value {
    match crate::units::lookup("s") {
        Some(u) => Value::Qty(secs, u),
        None => Value::Num(secs),
    }
}

/// Walks `a.b[0].c` inside a value; `None` when any step is missing.
pub fn get_path(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    for seg in path.split('.') {
        let (name, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !name.is_empty() {
            cur = match &cur {
                Value::Obj(o) => o.get(name)?.clone(),
                _ => return None,
            };
        }
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let idx: usize = r[..close].trim().parse().ok()?;
            cur = match &cur {
                Value::List(l) => l.get(idx)?.clone(),
                _ => return None,
            };
            rest = &r[close + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(cur)
}

/// Structural equality with the language's rules; `None` = unknown.
pub fn equals(a: &Value, b: &Value) -> Option<bool> {
    use Value::*;
    match (a, b) {
        (Missing, _) | (_, Missing) => None,
        (Null, Null) => Some(true),
        (Null, _) | (_, Null) => Some(false),
        (Bool(x), Bool(y)) => Some(x == y),
        (Bool(x), Num(n)) | (Num(n), Bool(x)) => {
            if *n == 1.0 || *n == 0.0 {
                Some(*x == (*n == 1.0))
            } else {
                Some(false)
            }
        }
        (Str(x), Str(y)) => match (
            crate::units::parse_quantity_str(x),
            crate::units::parse_quantity_str(y),
        ) {
            // Two quantity strings ("250cm", "2.5m") compare as quantities.
            (Some((a, u)), Some((b, w))) => {
                if u.dim() != w.dim() {
                    None
                } else {
                    Some(approx_eq(u.unit().to_base(a), w.unit().to_base(b)))
                }
            }
            _ => Some(x == y),
        },
        (Time(x), Time(y)) => Some(x == y),
        (Time(t), Str(s)) | (Str(s), Time(t)) => crate::timefmt::parse_rfc3339(s).map(|u| u == *t),
        (List(x), List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut unknown = false;
            for (p, q) in x.iter().zip(y.iter()) {
                match equals(p, q) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(true)
            }
        }
        (Obj(x), Obj(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut unknown = false;
            for (k, v) in x.iter() {
                match y.get(k) {
                    None => return Some(false),
                    Some(w) => match equals(v, w) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    },
                }
            }
            if unknown {
                None
            } else {
                Some(true)
            }
        }
        _ => {
            let (x, ux) = as_number(a)?;
            let (y, uy) = as_number(b)?;
            // Strings only count as numbers when they carry a unit.
            if matches!(a, Str(_)) && ux.is_none() || matches!(b, Str(_)) && uy.is_none() {
                return None;
            }
            match (ux, uy) {
                (None, None) => Some(x == y),
                (Some(u), None) => Some(approx_eq(u.unit().to_base(x), u.unit().to_base(y))),
                (None, Some(u)) => Some(approx_eq(u.unit().to_base(x), u.unit().to_base(y))),
                (Some(u), Some(w)) => {
                    if u.dim() != w.dim() {
                        None
                    } else {
                        Some(approx_eq(u.unit().to_base(x), w.unit().to_base(y)))
                    }
                }
            }
        }
    }
}

/// The dimension a list of numbers shares, if any; `Err` on a mix.
pub(crate) fn common_unit(vals: &[Value]) -> Result<Option<crate::units::UnitId>, ()> {
    let mut unit: Option<crate::units::UnitId> = None;
    for v in vals {
        match as_number(v) {
            Some((_, Some(u))) => match unit {
                None => unit = Some(u),
                Some(x) if x.dim() == u.dim() => {}
                Some(_) => return Err(()),
            },
            Some((_, None)) => {}
            None => return Err(()),
        }
    }
    Ok(unit)
}

/// Converts a numeric value into `unit` (a bare number is already in it).
pub fn in_unit(v: &Value, unit: Option<crate::units::UnitId>) -> Option<f64> {
    let (n, u) = as_number(v)?;
    match (u, unit) {
        (Some(from), Some(to)) if from != to => Some(to.unit().from_base(from.unit().to_base(n))),
        _ => Some(n),
    }
}

pub fn is_temperature(u: Option<crate::units::UnitId>) -> bool {
    u.is_some_and(|u| u.dim() == Dimension::Temperature)
}

pub fn list_of_strs(items: Vec<String>) -> Value {
    Value::List(Arc::new(
        items
            .into_iter()
            .map(|s| Value::Str(Arc::from(s)))
            .collect(),
    ))
}
