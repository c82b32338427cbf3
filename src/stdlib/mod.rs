//! The standard library (docs/language.md, "Standard library"): one table
//! of functions, each entry holding its name, modules, arity, type rule and
//! implementation. The checker gates, types and checks a call from its entry
//! ([`FuncDef`]); the evaluator runs its `eval` (or its lambda form).
//!
//! One file per family (`math`, `str`, `list`, `time`, `json`), each with a
//! `FUNCTIONS` slice; [`FAMILIES`] lists them, in table order.
//! **Adding a function** touches its family's file (an entry and its
//! implementation) and `docs/language.md` (tests/docs.rs checks every
//! function is documented there); nothing else.
//!
//! Implementations see the evaluator only through [`CallContext`] and the
//! checker only through [`CheckContext`]. Through them they charge fuel
//! before the work it pays for, record why a value is unknown, and run
//! lambdas. The one thing taken from `eval` is its error type (`eval/err.rs`,
//! a leaf), so a limit hit inside a function stops the evaluation.

mod json;
mod list;
mod math;
mod pattern;
// `mod str` would shadow the primitive type in this module.
#[path = "str.rs"]
mod strings;
mod time;

use crate::ast::{Expr, Lambda};
use crate::diagnostics::{Code, Diagnostic};
use crate::limits::EvalError;
use crate::options::Features;
use crate::span::Span;
use crate::types::Ty;
use crate::units::{approx_eq, Dimension};
use crate::value::{Timestamp, Value};
use std::cmp::Ordering;
use std::sync::Arc;

pub use pattern::{CompiledRegex, Outcome as RegexOutcome, RegexBudget};

type R<T> = Result<T, EvalError>;

/// One stdlib function: everything the checker and the evaluator know of it.
pub struct FuncDef {
    pub name: &'static str,
    /// Modules it may be qualified with (`len` is in `str` and `list`).
    pub modules: &'static [&'static str],
    pub min_args: usize,
    /// [`VARIADIC`] when there is no maximum.
    pub max_args: usize,
    /// How to call it, for hints.
    pub signature: &'static str,
    /// A feature flag it needs beyond its module's.
    pub flag: Option<Flag>,
    /// What every argument must be statically.
    pub args: ArgTypes,
    pub returns: Returns,
    /// Compile-time checks of literal arguments (a pattern, a timestamp).
    pub check: Option<CheckFn>,
    /// The lambda argument, when it takes one.
    pub lambda: Option<HigherOrder>,
    /// The implementation, given the evaluated arguments. A higher-order
    /// function called without a lambda gets here too.
    pub eval: EvalFn,
}

impl std::fmt::Debug for FuncDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuncDef").field("name", &self.name).finish()
    }
}

/// A compile-time check of a call's arguments, given the call's span.
pub type CheckFn = fn(&mut dyn CheckContext, &[Expr], Span);
/// An implementation over evaluated arguments.
pub type EvalFn = fn(&mut dyn CallContext, Args) -> R<Value>;
/// An implementation over the argument expressions and the lambda.
pub type ApplyFn = fn(&mut dyn CallContext, &[Expr], &Lambda) -> R<Value>;

/// A per-function feature flag (`matches` needs `regex`).
#[derive(Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub enabled: fn(&Features) -> bool,
    pub hint: &'static str,
}

/// What the checker requires of every argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgTypes {
    Any,
    Strings,
    Numbers,
}

/// The static return type.
#[derive(Debug, Clone, Copy)]
pub enum Returns {
    Is(Ty),
    /// The first argument's number or quantity type (`abs`, `round`).
    LikeFirstNumber,
    /// A number when given several plain numbers (`min(a, b)`).
    NumberIfAllNumbers,
}

impl Returns {
    pub fn of(self, args: &[Ty]) -> Ty {
        match self {
            Returns::Is(t) => t,
            Returns::LikeFirstNumber => match args.first().copied().unwrap_or(Ty::Any) {
                Ty::Qty(d) => Ty::Qty(d),
                Ty::Num => Ty::Num,
                _ => Ty::Any,
            },
            Returns::NumberIfAllNumbers => {
                if args.len() > 1 && args.iter().all(|t| *t == Ty::Num) {
                    Ty::Num
                } else {
                    Ty::Any
                }
            }
        }
    }
}

/// The lambda argument of a higher-order function.
#[derive(Clone, Copy)]
pub struct HigherOrder {
    /// Its argument index.
    pub arg: usize,
    /// Its parameter count.
    pub params: usize,
    /// Runs the call with the argument expressions and the lambda.
    pub apply: ApplyFn,
}

/// The evaluated arguments of a call, with their expressions (for messages).
pub struct Args<'a> {
    pub vals: Vec<Value>,
    pub exprs: &'a [Expr],
    /// The call itself: stands in for a missing first argument.
    pub call: &'a Expr,
}

impl Args<'_> {
    /// The first value, `Missing` when there is none.
    fn v0(&self) -> Value {
        self.vals.first().cloned().unwrap_or(Value::Missing)
    }

    /// The second value, `Missing` when there is none.
    fn v1(&self) -> Value {
        self.vals.get(1).cloned().unwrap_or(Value::Missing)
    }

    /// The first argument's expression (the call when there is none).
    fn a0(&self) -> &Expr {
        self.exprs.first().unwrap_or(self.call)
    }
}

/// What an implementation may ask of the evaluator.
pub trait CallContext {
    /// Evaluates an expression (a lambda body, an accumulator's start).
    fn eval(&mut self, e: &Expr) -> R<Value>;
    /// Truth of a condition value; records a cause when it is not one.
    fn truth(&mut self, v: &Value, e: &Expr) -> Option<bool>;
    fn charge(&mut self, steps: u64) -> R<()>;
    /// Charges for, and limits, a produced list of `n` elements.
    fn check_list_len(&mut self, n: usize) -> R<()>;
    /// Charges for, and limits, a produced string of `n` bytes.
    fn check_str_len(&mut self, n: usize) -> R<()>;
    /// Records why a value is unknown.
    fn cause(&mut self, code: &'static str, message: String);
    /// The source text of a span.
    fn text(&self, span: Span) -> &str;
    fn now(&self) -> Timestamp;
    /// The regex the checker compiled for the call at this offset.
    fn regex_at(&self, offset: u32) -> Option<&CompiledRegex>;
    /// `item IN collection`, as the operator does it.
    fn contains(&mut self, c: &Value, item: &Value, ie: &Expr, ce: &Expr) -> R<Option<bool>>;
    /// How many local slots there are (lambda parameters live in them).
    fn local_slots(&self) -> usize;
    fn set_local(&mut self, slot: usize, v: Value);
}

/// What a compile-time check may ask of the checker.
pub trait CheckContext {
    fn error(&mut self, code: Code, span: Span, message: String) -> &mut Diagnostic;
    /// The policy's patterns: compiles them within the policy's limits and
    /// keeps them by the offset of their call.
    fn regexes(&mut self) -> &mut RegexBudget;
}

/// Every function, family by family.
pub static FAMILIES: &[&[FuncDef]] = &[
    math::FUNCTIONS,
    strings::FUNCTIONS,
    list::FUNCTIONS,
    time::FUNCTIONS,
    json::FUNCTIONS,
];

/// Every function, in table order: `for f in FUNCTIONS { … }`.
pub const FUNCTIONS: Functions = Functions;

/// The iterable of [`FUNCTIONS`].
#[derive(Clone, Copy)]
pub struct Functions;

impl IntoIterator for Functions {
    type Item = &'static FuncDef;
    type IntoIter =
        std::iter::Flatten<std::iter::Copied<std::slice::Iter<'static, &'static [FuncDef]>>>;
    fn into_iter(self) -> Self::IntoIter {
        FAMILIES.iter().copied().flatten()
    }
}

/// A resolved function, as the checker stores it in the AST.
#[derive(Clone, Copy)]
pub struct FuncId(&'static FuncDef);

impl FuncId {
    pub fn def(self) -> &'static FuncDef {
        self.0
    }
}

// Each entry is a `static` item, so its address identifies it.
impl PartialEq for FuncId {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for FuncId {}

impl std::hash::Hash for FuncId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::ptr::hash(self.0, h)
    }
}

impl std::fmt::Debug for FuncId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuncId({})", self.0.name)
    }
}

pub const VARIADIC: usize = usize::MAX;

/// Runs a call: the lambda form when its lambda is there, else the
/// implementation with every argument evaluated in order.
pub(crate) fn call(cx: &mut dyn CallContext, f: FuncId, args: &[Expr], call: &Expr) -> R<Value> {
    let def = f.def();
    // Higher-order functions evaluate their lambda per element.
    if let Some(h) = &def.lambda {
        if let Some(Expr {
            kind: crate::ast::ExprKind::Lambda(lam),
            ..
        }) = args.get(h.arg)
        {
            return (h.apply)(cx, args, lam);
        }
    }
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(cx.eval(a)?);
    }
    (def.eval)(
        cx,
        Args {
            vals,
            exprs: args,
            call,
        },
    )
}

/// Records that an argument has the wrong type (unless it is unknown).
fn bad_arg(cx: &mut dyn CallContext, f: &str, e: &Expr, v: &Value, wanted: &str) -> Value {
    if !v.is_missing() {
        let msg = format!(
            "`{f}` needs {wanted}, but `{}` is {}",
            cx.text(e.span),
            v.type_name()
        );
        cx.cause("type_mismatch", msg);
    }
    Value::Missing
}

/// Modules whose every call is refused: policies have no I/O.
pub const DENIED_MODULES: &[&str] = &[
    "io", "web", "net", "http", "https", "fs", "file", "env", "process", "os", "sys", "exec",
    "socket", "db", "sql", "shell", "cmd", "fetch", "url",
];

/// How a written function name resolves.
pub enum Resolution {
    Found(FuncId, Option<&'static str>),
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
        .into_iter()
        .find(|f| f.name == fname && module.is_none_or(|m| f.modules.contains(&m)));
    if let Some(f) = found {
        let m = module
            .and_then(|m| f.modules.iter().copied().find(|x| *x == m))
            .or(Some(f.modules[0]));
        return Resolution::Found(FuncId(f), m);
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
        .into_iter()
        .find(|f| f.name == fname)
        .map(|f| format!("std::{}::{}", f.modules[0], f.name))
        .or_else(|| {
            crate::diagnostics::suggest(&written, cands.iter().map(|s| s.as_str()))
                .map(str::to_string)
        });
    Resolution::Unknown(best)
}

// ----- value semantics shared by the operators (`eval`) and the functions --

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

/// A number in `unit`, or a plain number.
pub(crate) fn num_in(n: f64, unit: Option<crate::units::UnitId>) -> Value {
    match unit {
        Some(u) => Value::Qty(n, u),
        None => Value::Num(n),
    }
}

/// Three-valued truth as a value: unknown is `Missing`.
pub(crate) fn tri_value(t: Option<bool>) -> Value {
    match t {
        Some(b) => Value::Bool(b),
        None => Value::Missing,
    }
}

/// Ordering of two values, if they are comparable.
pub(crate) fn order_values(l: &Value, r: &Value) -> Option<Ordering> {
    {
        use Value::*;
        match (l, r) {
            (Str(a), Str(b)) => {
                match (
                    crate::units::parse_quantity_str(a),
                    crate::units::parse_quantity_str(b),
                ) {
                    // Two quantity strings order as quantities.
                    (Some((x, u)), Some((y, w))) => {
                        if u.dim() != w.dim() {
                            return None;
                        }
                        let (x, y) = (u.unit().to_base(x), w.unit().to_base(y));
                        if approx_eq(x, y) {
                            Some(Ordering::Equal)
                        } else {
                            x.partial_cmp(&y)
                        }
                    }
                    _ => Some(a.as_bytes().cmp(b.as_bytes())),
                }
            }
            (Time(a), Time(b)) => Some(a.cmp(b)),
            (Time(a), Str(s)) => crate::timefmt::parse_rfc3339(s).map(|b| a.cmp(&b)),
            (Str(s), Time(b)) => crate::timefmt::parse_rfc3339(s).map(|a| a.cmp(b)),
            (Num(a), Num(b)) => a.partial_cmp(b),
            _ => {
                let (a, ua) = as_number(l)?;
                let (b, ub) = as_number(r)?;
                let (x, y) = match (ua, ub) {
                    (None, None) => (a, b),
                    (Some(u), None) => (u.unit().to_base(a), u.unit().to_base(b)),
                    (None, Some(u)) => (u.unit().to_base(a), u.unit().to_base(b)),
                    (Some(u), Some(w)) => {
                        if u.dim() != w.dim() {
                            return None;
                        }
                        (u.unit().to_base(a), w.unit().to_base(b))
                    }
                };
                if approx_eq(x, y) && (ua.is_some() || ub.is_some()) {
                    Some(Ordering::Equal)
                } else {
                    x.partial_cmp(&y)
                }
            }
        }
    }
}

/// An entry with no flag, no checks, no lambda, any arguments and an unknown
/// return type; entries override what they need (`..func(…)`).
const fn func(
    name: &'static str,
    modules: &'static [&'static str],
    min_args: usize,
    max_args: usize,
    signature: &'static str,
    eval: EvalFn,
) -> FuncDef {
    FuncDef {
        name,
        modules,
        min_args,
        max_args,
        signature,
        flag: None,
        args: ArgTypes::Any,
        returns: Returns::Is(Ty::Any),
        check: None,
        lambda: None,
        eval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is consistent: what the checker relies on when it gates,
    /// counts arguments and looks for a lambda.
    #[test]
    fn every_entry_is_well_formed() {
        let mut names: Vec<&str> = FUNCTIONS.into_iter().map(|f| f.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a function name is registered twice");
        for f in FUNCTIONS {
            assert!(!f.modules.is_empty(), "`{}` has no module", f.name);
            for m in f.modules {
                assert!(
                    crate::options::MODULES.contains(m),
                    "`{}`: module {m}",
                    f.name
                );
            }
            assert!(f.min_args <= f.max_args, "`{}`: arity", f.name);
            assert!(f.signature.starts_with(f.name), "`{}`: signature", f.name);
            if let Some(h) = f.lambda {
                assert!(h.arg < f.max_args, "`{}`: lambda argument", f.name);
                assert!((1..=2).contains(&h.params), "`{}`: lambda params", f.name);
            }
            assert!(matches!(resolve(f.name), Resolution::Found(id, _) if id.def().name == f.name));
        }
    }
}
