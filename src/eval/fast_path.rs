//! The path fast path: `a.b.c`, `path OP literal` and `"literal" IN path`
//! looked up by reference, cloning only the leaf (or nothing).
//!
//! Contract: every function here gives **the same results and the same step
//! costs as the general path** in `expr.rs`, and records the same causes; when
//! it cannot (a default, a missing name, a quantity string, a mismatch) it
//! answers `None` and the general path runs instead, having charged nothing.
//! It is never used while tracing (the traced path must see every node).

use super::expr::{literal_value, ordering_holds};
use super::{Evaluator, Tri, R};
use crate::ast::*;
use crate::stdlib::{equals, order_values};
use crate::value::Value;
use std::sync::Arc;

/// The result of a by-reference path lookup.
enum Walk<'s, 'p> {
    Found(&'s Value),
    /// This member expression names a key the object does not have.
    Missing(&'p Expr),
    /// The base (first) is not an object (its type name is the third field).
    NotObject(&'p Expr, &'p Arc<str>, String),
    /// A part before was already missing (its cause is recorded elsewhere).
    MissingBase,
    Unsupported,
}

impl<'p> Evaluator<'p> {
    /// Looks up `a.b[0].c` by reference and clones only the leaf. `None` when
    /// the path has a part the fast path does not handle (then the general
    /// evaluation runs, with the same results and costs).
    pub(super) fn fast_path(&mut self, e: &Expr) -> R<Option<Value>> {
        let mut nodes = 0u64;
        let (result, fail) = match self.walk(e, &mut nodes) {
            Walk::Found(v) => (Some(v.clone()), None),
            Walk::Missing(at) => (Some(Value::Missing), Some((at, None))),
            Walk::NotObject(base, key, ty) => (Some(Value::Missing), Some((base, Some((key, ty))))),
            Walk::MissingBase => (Some(Value::Missing), None),
            Walk::Unsupported => (None, None),
        };
        if result.is_none() {
            return Ok(None);
        }
        // The caller already paid for `e` itself.
        self.budget.charge(nodes - 1)?;
        match fail {
            Some((at, None)) => {
                let msg = format!("`{}` is missing", self.text(at.span));
                self.cause("missing", msg);
            }
            Some((base, Some((key, ty)))) => {
                let msg = format!(
                    "`{}` is {ty}, which has no field `{key}`",
                    self.text(base.span)
                );
                self.cause("type_mismatch", msg);
            }
            None => {}
        }
        Ok(result)
    }

    fn walk<'s, 'e>(&'s self, e: &'e Expr, nodes: &mut u64) -> Walk<'s, 'e> {
        *nodes += 1;
        match &e.kind {
            ExprKind::Name {
                resolved: NameRef::Local(slot),
                ..
            } => match self.scope.locals.get(*slot as usize) {
                Some(Value::Missing) => Walk::MissingBase,
                Some(v) => Walk::Found(v),
                None => Walk::Unsupported,
            },
            ExprKind::Name {
                name,
                resolved: NameRef::Global,
            } => match self.ctx.get(name) {
                Some(v) => Walk::Found(v),
                // Defaults and missing names take the general path (it records them).
                None => Walk::Unsupported,
            },
            ExprKind::Member(base, key) => {
                let found = if let ExprKind::Root = base.kind {
                    *nodes += 1;
                    self.ctx.root.get(key)
                } else {
                    match self.walk(base, nodes) {
                        Walk::Found(Value::Obj(o)) => o.get(key),
                        Walk::Found(other) => return Walk::NotObject(base, key, other.type_name()),
                        other => return other,
                    }
                };
                match found {
                    Some(v) => Walk::Found(v),
                    None => Walk::Missing(e),
                }
            }
            _ => Walk::Unsupported,
        }
    }

    /// `path OP literal` compared by reference (no clone). `None` when the
    /// general path must run (missing values, mismatches: it records causes).
    pub(super) fn compare_path_literal(&mut self, op: BinOp, l: &Expr, r: &Expr) -> R<Option<Tri>> {
        let ExprKind::Literal(lit) = &r.kind else {
            return Ok(None);
        };
        let mut nodes = 1;
        let result = match self.walk(l, &mut nodes) {
            Walk::Found(v) => match (v, lit) {
                // A quantity-string literal may meet a quantity string: general path.
                (Value::Str(_), Literal::Str(b))
                    if crate::units::parse_quantity_str(b).is_some() =>
                {
                    None
                }
                (Value::Str(a), Literal::Str(b)) => Some(match op {
                    BinOp::Eq => a == b,
                    BinOp::Ne => a != b,
                    _ => {
                        let o = a.as_bytes().cmp(b.as_bytes());
                        ordering_holds(op, o)
                    }
                }),
                (
                    Value::Num(_) | Value::Qty(..) | Value::Bool(_),
                    Literal::Number(_) | Literal::Quantity(..) | Literal::Bool(_),
                ) => {
                    let rv = literal_value(lit);
                    if matches!(op, BinOp::Eq | BinOp::Ne) {
                        equals(v, &rv).map(|b| if op == BinOp::Eq { b } else { !b })
                    } else {
                        order_values(v, &rv).map(|o| ordering_holds(op, o))
                    }
                }
                _ => None,
            },
            _ => None,
        };
        match result {
            Some(t) => {
                self.budget.charge(nodes)?;
                Ok(Some(Some(t)))
            }
            None => Ok(None),
        }
    }

    /// `"literal" IN path` over a list of strings, by reference.
    pub(super) fn literal_in_path(&mut self, item: &Expr, collection: &Expr) -> R<Option<Tri>> {
        let ExprKind::Literal(Literal::Str(needle)) = &item.kind else {
            return Ok(None);
        };
        if crate::units::parse_quantity_str(needle).is_some() {
            return Ok(None);
        }
        let mut nodes = 1;
        let result = match self.walk(collection, &mut nodes) {
            Walk::Found(Value::List(xs)) => {
                let mut found = false;
                let mut all_strings = true;
                for x in xs.iter() {
                    match x {
                        Value::Str(s) if s == needle => {
                            found = true;
                            break;
                        }
                        Value::Str(_) => {}
                        _ => all_strings = false,
                    }
                }
                (found || all_strings).then_some((found, xs.len()))
            }
            _ => None,
        };
        match result {
            Some((found, n)) => {
                self.budget.charge(nodes + n as u64)?;
                Ok(Some(Some(found)))
            }
            None => Ok(None),
        }
    }
}
