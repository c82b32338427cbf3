//! Expressions: the general evaluation of every AST kind, with Kleene
//! three-valued logic (`eval_tri`, `eval_inner`), comparison, arithmetic with
//! units and timestamps, `IN`, indexing; and the [`CallContext`] through which
//! the stdlib calls back in.

use super::err::ValueKind;
use super::{EvalError, Evaluator, Tri, R};
use crate::ast::*;
use crate::span::Span;
use crate::stdlib::{self, as_time, equals, order_values, tri_value, CallContext};
use crate::units::{Dimension, UnitId};
use crate::value::{format_number, Timestamp, Value};
use std::cmp::Ordering;
use std::sync::Arc;

impl<'p> Evaluator<'p> {
    /// Evaluates a condition straight to three-valued truth. Same results
    /// and step costs as `truth(eval(e))`, without building `Value::Bool`s.
    pub(super) fn eval_tri(&mut self, e: &Expr) -> R<Tri> {
        if self.tracer.on {
            let v = self.eval(e)?;
            return Ok(self.truth(&v, e));
        }
        match &e.kind {
            ExprKind::Binary(BinOp::And, l, r) => {
                self.budget.charge(1)?;
                let lt = self.eval_tri(l)?;
                if lt == Some(false) {
                    return Ok(Some(false));
                }
                let rt = self.eval_tri(r)?;
                Ok(match (lt, rt) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            }
            ExprKind::Binary(BinOp::Or, l, r) => {
                self.budget.charge(1)?;
                let lt = self.eval_tri(l)?;
                if lt == Some(true) {
                    return Ok(Some(true));
                }
                let rt = self.eval_tri(r)?;
                Ok(match (lt, rt) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            }
            ExprKind::Not(inner) => {
                self.budget.charge(1)?;
                Ok(self.eval_tri(inner)?.map(|b| !b))
            }
            ExprKind::Binary(op, l, r) if op.is_comparison() => {
                self.budget.charge(1)?;
                if let Some(t) = self.compare_path_literal(*op, l, r)? {
                    return Ok(t);
                }
                let lv = self.eval(l)?;
                let rv = self.eval(r)?;
                Ok(self.compare(*op, &lv, &rv, l, r))
            }
            _ => {
                let v = self.eval(e)?;
                Ok(self.truth(&v, e))
            }
        }
    }

    pub(super) fn eval_inner(&mut self, e: &Expr) -> R<Value> {
        self.budget.charge(1)?;
        match &e.kind {
            ExprKind::Literal(l) => Ok(match l {
                Literal::Number(n) => Value::Num(*n),
                Literal::Quantity(n, u) => Value::Qty(*n, *u),
                Literal::Str(s) => Value::Str(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Null => Value::Null,
            }),
            ExprKind::Name { name, resolved } => Ok(match resolved {
                NameRef::Local(slot) => self
                    .scope
                    .locals
                    .get(*slot as usize)
                    .cloned()
                    .unwrap_or(Value::Missing),
                _ => self.global(name),
            }),
            ExprKind::Root => Ok(Value::Obj(self.ctx.root.clone())),
            ExprKind::List(items) => {
                self.budget.check_list_len(items.len())?;
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Ok(Value::List(Arc::new(out)))
            }
            ExprKind::Member(base, key) => {
                if !self.tracer.on {
                    if let Some(v) = self.fast_path(e)? {
                        return Ok(v);
                    }
                }
                let b = self.eval(base)?;
                Ok(match &b {
                    Value::Obj(o) => match o.get(key) {
                        Some(v) => v.clone(),
                        None => {
                            let msg = format!("`{}` is missing", self.text(e.span));
                            self.cause("missing", msg);
                            Value::Missing
                        }
                    },
                    Value::Missing => Value::Missing,
                    other => {
                        let msg = format!(
                            "`{}` is {}, which has no field `{key}`",
                            self.text(base.span),
                            other.type_name()
                        );
                        self.cause("type_mismatch", msg);
                        Value::Missing
                    }
                })
            }
            ExprKind::Index(base, idx) => {
                let b = self.eval(base)?;
                let i = self.eval(idx)?;
                Ok(self.index(e, &b, &i))
            }
            ExprKind::Call { func, args, .. } => match func {
                Some(f) => stdlib::call(self, *f, args, e),
                None => Ok(Value::Missing),
            },
            ExprKind::Not(inner) => {
                let v = self.eval(inner)?;
                Ok(tri_value(self.truth(&v, inner).map(|b| !b)))
            }
            ExprKind::Neg(inner) => {
                let v = self.eval(inner)?;
                Ok(match numeric_operand(&v) {
                    Some((n, None)) if !matches!(v, Value::Str(_)) => Value::Num(-n),
                    Some((n, Some(u))) if u.dim() != Dimension::Temperature => Value::Qty(-n, u),
                    _ if v.is_missing() => Value::Missing,
                    _ => {
                        let msg = format!(
                            "cannot negate `{}` ({})",
                            self.text(inner.span),
                            v.type_name()
                        );
                        self.cause("type_mismatch", msg);
                        Value::Missing
                    }
                })
            }
            ExprKind::Binary(op, l, r) => match op {
                BinOp::And => {
                    let lv = self.eval(l)?;
                    let lt = self.truth(&lv, l);
                    if lt == Some(false) {
                        return Ok(Value::Bool(false));
                    }
                    let rv = self.eval(r)?;
                    let rt = self.truth(&rv, r);
                    Ok(tri_value(match (lt, rt) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    }))
                }
                BinOp::Or => {
                    let lv = self.eval(l)?;
                    let lt = self.truth(&lv, l);
                    if lt == Some(true) {
                        return Ok(Value::Bool(true));
                    }
                    let rv = self.eval(r)?;
                    let rt = self.truth(&rv, r);
                    Ok(tri_value(match (lt, rt) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    }))
                }
                _ if op.is_comparison() => {
                    if !self.tracer.on {
                        if let Some(t) = self.compare_path_literal(*op, l, r)? {
                            return Ok(tri_value(t));
                        }
                    }
                    let lv = self.eval(l)?;
                    let rv = self.eval(r)?;
                    Ok(tri_value(self.compare(*op, &lv, &rv, l, r)))
                }
                _ => {
                    let lv = self.eval(l)?;
                    let rv = self.eval(r)?;
                    self.arith(*op, lv, rv, l, r)
                }
            },
            ExprKind::In {
                negated,
                item,
                collection,
            } => {
                if !self.tracer.on {
                    if let Some(t) = self.literal_in_path(item, collection)? {
                        return Ok(tri_value(if *negated { t.map(|b| !b) } else { t }));
                    }
                }
                let iv = self.eval(item)?;
                let cv = self.eval(collection)?;
                let t = self.contains(&cv, &iv, item, collection)?;
                Ok(tri_value(if *negated { t.map(|b| !b) } else { t }))
            }
            ExprKind::Match { scrutinee, arms } => {
                let v = self.eval(scrutinee)?;
                if v.is_missing() {
                    return Ok(Value::Missing);
                }
                for arm in arms {
                    self.budget.charge(1)?;
                    let hit = arm.wildcard
                        || arm
                            .patterns
                            .iter()
                            .any(|p| equals(&v, &literal_value(p)) == Some(true));
                    if hit {
                        return self.eval(&arm.body);
                    }
                }
                let msg = format!(
                    "no arm of the match on `{}` fits its value",
                    self.text(scrutinee.span)
                );
                self.cause("no_match", msg);
                Ok(Value::Missing)
            }
            ExprKind::Lambda(_) | ExprKind::Error => Ok(Value::Missing),
        }
    }

    fn global(&mut self, name: &Arc<str>) -> Value {
        if let Some(v) = self.ctx.get(name) {
            return v.clone();
        }
        if let Some(v) = self.p.default_value(name) {
            if !self.out.defaults_used.iter().any(|d| d == name) {
                self.out.defaults_used.push(name.clone());
            }
            return v.clone();
        }
        self.cause("missing", format!("`{name}` is missing from the context"));
        Value::Missing
    }

    fn index(&mut self, e: &Expr, b: &Value, i: &Value) -> Value {
        match (b, i) {
            (Value::Missing, _) | (_, Value::Missing) => Value::Missing,
            (Value::List(items), Value::Num(n)) => {
                if n.fract() == 0.0 && *n >= 0.0 && (*n as usize) < items.len() {
                    items[*n as usize].clone()
                } else {
                    let msg = format!(
                        "`{}` is missing (no element {})",
                        self.text(e.span),
                        format_number(*n)
                    );
                    self.cause("missing", msg);
                    Value::Missing
                }
            }
            (Value::Obj(o), Value::Str(k)) => match o.get(k) {
                Some(v) => v.clone(),
                None => {
                    let msg = format!("`{}` is missing", self.text(e.span));
                    self.cause("missing", msg);
                    Value::Missing
                }
            },
            _ => {
                let msg = format!(
                    "`{}` cannot be indexed by {}",
                    self.text(e.span),
                    i.type_name()
                );
                self.cause("type_mismatch", msg);
                Value::Missing
            }
        }
    }

    /// Truth of a condition value: bool, non-zero number, else unknown.
    pub(super) fn truth(&mut self, v: &Value, e: &Expr) -> Tri {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Num(n) => Some(*n != 0.0),
            Value::Missing => None,
            other => {
                let msg = format!(
                    "`{}` is {}, not true or false",
                    self.text(e.span),
                    other.type_name()
                );
                self.cause("type_mismatch", msg);
                None
            }
        }
    }

    fn mismatch(&mut self, what: &str, l: &Value, r: &Value, le: &Expr, re: &Expr) {
        let code = match (numeric_operand(l), numeric_operand(r)) {
            (Some((_, Some(a))), Some((_, Some(b)))) if a.dim() != b.dim() => "dimension_mismatch",
            _ => "type_mismatch",
        };
        let msg = format!(
            "cannot {what} `{}` ({}) and `{}` ({})",
            self.text(le.span),
            describe(l),
            self.text(re.span),
            describe(r)
        );
        self.cause(code, msg);
    }

    pub(super) fn compare(&mut self, op: BinOp, l: &Value, r: &Value, le: &Expr, re: &Expr) -> Tri {
        if l.is_missing() || r.is_missing() {
            return None;
        }
        if matches!(op, BinOp::Eq | BinOp::Ne) {
            let eq = equals(l, r);
            if eq.is_none() {
                self.mismatch("compare", l, r, le, re);
            }
            return eq.map(|b| if op == BinOp::Eq { b } else { !b });
        }
        let ord = self.order(l, r);
        let Some(ord) = ord else {
            self.mismatch("compare", l, r, le, re);
            return None;
        };
        Some(match op {
            BinOp::Lt => ord == Ordering::Less,
            BinOp::Le => ord != Ordering::Greater,
            BinOp::Gt => ord == Ordering::Greater,
            _ => ord != Ordering::Less,
        })
    }

    fn order(&self, l: &Value, r: &Value) -> Option<Ordering> {
        order_values(l, r)
    }

    fn arith(&mut self, op: BinOp, l: Value, r: Value, le: &Expr, re: &Expr) -> R<Value> {
        use Value::*;
        if l.is_missing() || r.is_missing() {
            return Ok(Missing);
        }
        let verb = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            BinOp::Mul => "multiply",
            _ => "divide",
        };
        // Timestamps first: a timestamp string plus a duration string is a
        // timestamp, not a join.
        if let Some(v) = self.time_arith(op, &l, &r) {
            return Ok(v.unwrap_or_else(|| {
                self.mismatch(verb, &l, &r, le, re);
                Missing
            }));
        }
        // `+` joins text only when neither string is a quantity: two
        // quantity strings add as quantities below (`"6GB" + "5GB"`), and a
        // quantity string next to other text is a mismatch, never a join.
        // The join is charged against the value budget.
        if let (BinOp::Add, Str(a), Str(b)) = (op, &l, &r) {
            let qa = crate::units::parse_quantity_str(a).is_some();
            let qb = crate::units::parse_quantity_str(b).is_some();
            if qa != qb {
                self.mismatch(verb, &l, &r, le, re);
                return Ok(Missing);
            }
            if !qa {
                let len = a.len() + b.len();
                if len > self.budget.limits.max_string_bytes {
                    return Err(EvalError::ValueTooLarge(
                        ValueKind::String,
                        self.budget.limits.max_string_bytes as u64,
                    ));
                }
                self.budget.charge(len as u64 / 64)?;
                let mut s = String::with_capacity(len);
                s.push_str(a);
                s.push_str(b);
                return Ok(Value::Str(Arc::from(s)));
            }
        }
        let (Some((a, ua)), Some((b, ub))) = (numeric_operand(&l), numeric_operand(&r)) else {
            self.mismatch(verb, &l, &r, le, re);
            return Ok(Missing);
        };
        if stdlib::is_temperature(ua) || stdlib::is_temperature(ub) {
            let msg = format!(
                "temperatures cannot be used with `{}` (`{}`)",
                op.symbol(),
                self.text(le.span.to(re.span))
            );
            self.cause("type_mismatch", msg);
            return Ok(Missing);
        }
        let result = match (op, ua, ub) {
            (_, None, None) => {
                if op == BinOp::Div && b == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Num(apply(op, a, b))
            }
            (BinOp::Add | BinOp::Sub, Some(u), None) => Qty(apply(op, a, b), u),
            (BinOp::Add | BinOp::Sub, None, Some(u)) => Qty(apply(op, a, b), u),
            (BinOp::Add | BinOp::Sub, Some(u), Some(w)) => {
                if u.dim() != w.dim() {
                    self.mismatch(verb, &l, &r, le, re);
                    return Ok(Missing);
                }
                let b_in_u = u.unit().from_base(w.unit().to_base(b));
                Qty(apply(op, a, b_in_u), u)
            }
            (BinOp::Mul, Some(u), None) | (BinOp::Mul, None, Some(u)) => Qty(a * b, u),
            // A ratio is dimensionless: it scales a quantity (`x * 110%`).
            (BinOp::Mul, Some(u), Some(w)) if w.dim() == Dimension::Ratio => {
                Qty(a * w.unit().to_base(b), u)
            }
            (BinOp::Mul, Some(w), Some(u)) if w.dim() == Dimension::Ratio => {
                Qty(b * w.unit().to_base(a), u)
            }
            (BinOp::Div, Some(u), Some(w))
                if w.dim() == Dimension::Ratio && u.dim() != Dimension::Ratio =>
            {
                let d = w.unit().to_base(b);
                if d == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Qty(a / d, u)
            }
            (BinOp::Div, Some(u), None) => {
                if b == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Qty(a / b, u)
            }
            (BinOp::Div, Some(u), Some(w)) if u.dim() == w.dim() => {
                let d = w.unit().to_base(b);
                if d == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Num(u.unit().to_base(a) / d)
            }
            _ => {
                self.mismatch(verb, &l, &r, le, re);
                return Ok(Missing);
            }
        };
        Ok(match result {
            Num(n) | Qty(n, _) if !n.is_finite() => {
                let msg = format!(
                    "`{}` is not a finite number",
                    self.text(le.span.to(re.span))
                );
                self.cause("invalid_number", msg);
                Missing
            }
            v => v,
        })
    }

    fn div_zero(&mut self, re: &Expr) -> Value {
        let msg = format!("division by zero (`{}` is 0)", self.text(re.span));
        self.cause("division_by_zero", msg);
        Value::Missing
    }

    /// `Some(None)`: a time operation that does not type; `None`: not a time operation.
    fn time_arith(&self, op: BinOp, l: &Value, r: &Value) -> Option<Option<Value>> {
        let is_duration = |v: &Value| matches!(numeric_operand(v), Some((_, Some(u))) if u.dim() == Dimension::Duration);
        // An RFC 3339 string next to a duration is read as a timestamp.
        let as_ts = |v: &Value, other: &Value| match v {
            Value::Str(s) if is_duration(other) => {
                crate::timefmt::parse_rfc3339(s).map(Value::Time)
            }
            _ => None,
        };
        if let Some(t) = as_ts(l, r) {
            return self.time_arith(op, &t, r);
        }
        if op == BinOp::Add {
            if let Some(t) = as_ts(r, l) {
                return self.time_arith(op, l, &t);
            }
        }
        let lt = matches!(l, Value::Time(_));
        let rt = matches!(r, Value::Time(_));
        if !lt && !rt {
            return None;
        }
        let dur = |v: &Value| match numeric_operand(v) {
            Some((n, Some(u))) if u.dim() == Dimension::Duration => Some(u.unit().to_base(n)),
            _ => None,
        };
        let add = |t: Timestamp, secs: f64, sign: f64| -> Option<Value> {
            let ns = (secs * sign * 1e9).round();
            if !ns.is_finite() || ns.abs() > 9.2e18 {
                return None;
            }
            t.0.checked_add(ns as i64)
                .map(|x| Value::Time(Timestamp(x)))
        };
        Some(match (op, l, r) {
            (BinOp::Add, Value::Time(t), d) | (BinOp::Add, d, Value::Time(t)) => {
                dur(d).and_then(|s| add(*t, s, 1.0))
            }
            (BinOp::Sub, Value::Time(t), Value::Time(u)) => {
                Some(stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9))
            }
            (BinOp::Sub, Value::Time(t), other) => match dur(other) {
                Some(s) => add(*t, s, -1.0),
                None => as_time(other).map(|u| stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9)),
            },
            (BinOp::Sub, other, Value::Time(u)) => {
                as_time(other).map(|t| stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9))
            }
            _ => None,
        })
    }

    /// `item IN collection`.
    pub(super) fn contains(&mut self, c: &Value, item: &Value, ie: &Expr, ce: &Expr) -> R<Tri> {
        if c.is_missing() || item.is_missing() {
            return Ok(None);
        }
        match c {
            Value::List(xs) => {
                self.budget.charge(xs.len() as u64)?;
                let mut unknown = false;
                for x in xs.iter() {
                    match equals(item, x) {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    let msg = format!(
                        "`{}` cannot be compared with some elements of `{}`",
                        self.text(ie.span),
                        self.text(ce.span)
                    );
                    self.cause("type_mismatch", msg);
                    return Ok(None);
                }
                Ok(Some(false))
            }
            Value::Str(s) => match item {
                Value::Str(x) => {
                    self.budget.charge(s.len() as u64 / 64)?;
                    Ok(Some(s.contains(&**x)))
                }
                other => {
                    let msg = format!(
                        "`IN` on the string `{}` needs a string, but `{}` is {}",
                        self.text(ce.span),
                        self.text(ie.span),
                        other.type_name()
                    );
                    self.cause("type_mismatch", msg);
                    Ok(None)
                }
            },
            Value::Obj(o) => match item {
                Value::Str(k) => Ok(Some(o.get(k).is_some())),
                other => {
                    let msg = format!(
                        "`IN` on the object `{}` tests for a key, but `{}` is {}",
                        self.text(ce.span),
                        self.text(ie.span),
                        other.type_name()
                    );
                    self.cause("type_mismatch", msg);
                    Ok(None)
                }
            },
            other => {
                let msg = format!(
                    "`{}` is {}: `IN` needs a list, a string or an object",
                    self.text(ce.span),
                    other.type_name()
                );
                self.cause("type_mismatch", msg);
                Ok(None)
            }
        }
    }
}

pub(super) fn ordering_holds(op: BinOp, ord: Ordering) -> bool {
    match op {
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    }
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        _ => a / b,
    }
}

/// A value's kind for a message. A string that reads as a quantity says so,
/// with its text and dimension, because "a string" hides why `"9.5C"` did
/// not compare with a number of another dimension.
pub(super) fn describe(v: &Value) -> String {
    if let Value::Str(s) = v {
        if let Some((_, u)) = crate::units::parse_quantity_str(s) {
            let mut text: String = s.chars().take(40).collect();
            if text.len() < s.len() {
                text.push('…');
            }
            return format!(
                "a quantity string (`{}`, a {})",
                crate::fmt::fmt_string(&text),
                u.dim()
            );
        }
    }
    v.type_name()
}

/// A number, a quantity, or a string that is exactly a quantity (`"250cm"`).
fn numeric_operand(v: &Value) -> Option<(f64, Option<UnitId>)> {
    match v {
        Value::Num(n) => Some((*n, None)),
        Value::Qty(n, u) => Some((*n, Some(*u))),
        Value::Str(s) => crate::units::parse_quantity_str(s).map(|(n, u)| (n, Some(u))),
        _ => None,
    }
}

pub(super) fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Number(n) => Value::Num(*n),
        Literal::Quantity(n, u) => Value::Qty(*n, *u),
        Literal::Str(s) => Value::Str(s.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

/// The stdlib's view of the evaluator.
impl CallContext for Evaluator<'_> {
    fn eval(&mut self, e: &Expr) -> R<Value> {
        Evaluator::eval(self, e)
    }

    fn truth(&mut self, v: &Value, e: &Expr) -> Tri {
        Evaluator::truth(self, v, e)
    }

    fn charge(&mut self, steps: u64) -> R<()> {
        self.budget.charge(steps)
    }

    fn check_list_len(&mut self, n: usize) -> R<()> {
        self.budget.check_list_len(n)
    }

    fn check_str_len(&mut self, n: usize) -> R<()> {
        self.budget.check_str_len(n)
    }

    fn cause(&mut self, code: &'static str, message: String) {
        Evaluator::cause(self, code, message)
    }

    fn text(&self, span: Span) -> &str {
        Evaluator::text(self, span)
    }

    fn now(&self) -> Timestamp {
        self.now
    }

    fn regex_at(&self, offset: u32) -> Option<&crate::stdlib::CompiledRegex> {
        self.p.regex_at(offset)
    }

    fn contains(&mut self, c: &Value, item: &Value, ie: &Expr, ce: &Expr) -> R<Tri> {
        Evaluator::contains(self, c, item, ie, ce)
    }

    fn local_slots(&self) -> usize {
        self.scope.locals.len()
    }

    fn set_local(&mut self, slot: usize, v: Value) {
        if let Some(l) = self.scope.locals.get_mut(slot) {
            *l = v;
        }
    }
}
