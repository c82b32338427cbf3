//! `std::list`: count, any, all, map, filter, reduce (the higher-order ones,
//! which run a lambda per element through [`CallContext`]), first, last,
//! distinct, sort.

use super::{
    bad_arg, equals, func, order_values, tri_value, ApplyFn, Args, CallContext, FuncDef,
    HigherOrder, Returns, R,
};
use crate::ast::{Expr, Lambda};
use crate::types::Ty;
use crate::value::Value;
use std::cmp::Ordering;
use std::sync::Arc;

const LIST: &[&str] = &["list"];

/// A lambda of `params` parameters as argument `arg`.
const fn lambda(arg: usize, params: usize, apply: ApplyFn) -> Option<HigherOrder> {
    Some(HigherOrder { arg, params, apply })
}

pub(super) static FUNCTIONS: &[FuncDef] = &[
    FuncDef {
        returns: Returns::Is(Ty::Num),
        lambda: lambda(1, 1, count_where),
        ..func("count", LIST, 1, 2, "count(xs) or count(xs, |x| …)", count)
    },
    FuncDef {
        returns: Returns::Is(Ty::Bool),
        lambda: lambda(1, 1, any),
        ..func("any", LIST, 2, 2, "any(xs, |x| …)", no_lambda)
    },
    FuncDef {
        returns: Returns::Is(Ty::Bool),
        lambda: lambda(1, 1, all),
        ..func("all", LIST, 2, 2, "all(xs, |x| …)", no_lambda)
    },
    FuncDef {
        returns: Returns::Is(Ty::List),
        lambda: lambda(1, 1, map),
        ..func("map", LIST, 2, 2, "map(xs, |x| …)", no_lambda)
    },
    FuncDef {
        returns: Returns::Is(Ty::List),
        lambda: lambda(1, 1, filter),
        ..func("filter", LIST, 2, 2, "filter(xs, |x| …)", no_lambda)
    },
    FuncDef {
        lambda: lambda(1, 2, reduce),
        ..func(
            "reduce",
            LIST,
            3,
            3,
            "reduce(xs, |acc, x| …, init)",
            no_lambda,
        )
    },
    func("first", LIST, 1, 1, "first(xs)", first),
    func("last", LIST, 1, 1, "last(xs)", last),
    FuncDef {
        returns: Returns::Is(Ty::List),
        ..func("distinct", LIST, 1, 1, "distinct(xs)", distinct)
    },
    FuncDef {
        returns: Returns::Is(Ty::List),
        ..func("sort", LIST, 1, 1, "sort(xs)", sort)
    },
];

/// A higher-order function whose lambda argument is not a lambda: the
/// checker refused it, so this never decides anything.
fn no_lambda(_: &mut dyn CallContext, _: Args) -> R<Value> {
    Ok(Value::Missing)
}

fn count(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match &a.v0() {
        Value::List(l) => Value::Num(l.len() as f64),
        other => bad_arg(cx, "count", a.a0(), other, "a list"),
    })
}

/// The list a lambda runs over and its first parameter's slot; `Err` holds
/// the call's value when there is nothing to run it on.
type Items = Result<(Arc<Vec<Value>>, usize), Value>;

fn items(cx: &mut dyn CallContext, name: &str, args: &[Expr], lam: &Lambda) -> R<Items> {
    let xs = cx.eval(&args[0])?;
    let items = match &xs {
        Value::List(l) => l.clone(),
        Value::Missing => return Ok(Err(Value::Missing)),
        other => return Ok(Err(bad_arg(cx, name, &args[0], other, "a list"))),
    };
    cx.check_list_len(items.len())?;
    let slot = lam.first_slot as usize;
    if slot + lam.params.len() > cx.local_slots() {
        return Ok(Err(Value::Missing));
    }
    Ok(Ok((items, slot)))
}

fn reduce(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    let (items, slot) = match items(cx, "reduce", args, lam)? {
        Ok(x) => x,
        Err(v) => return Ok(v),
    };
    let mut acc = cx.eval(&args[2])?;
    for x in items.iter() {
        cx.set_local(slot, acc);
        cx.set_local(slot + 1, x.clone());
        acc = cx.eval(&lam.body)?;
    }
    cx.set_local(slot, Value::Missing);
    cx.set_local(slot + 1, Value::Missing);
    Ok(acc)
}

fn map(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    let (items, slot) = match items(cx, "map", args, lam)? {
        Ok(x) => x,
        Err(v) => return Ok(v),
    };
    let mut out = Vec::with_capacity(items.len());
    for x in items.iter() {
        cx.set_local(slot, x.clone());
        out.push(cx.eval(&lam.body)?);
    }
    cx.set_local(slot, Value::Missing);
    Ok(Value::List(Arc::new(out)))
}

fn count_where(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    predicate(cx, Test::Count, "count", args, lam)
}

fn any(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    predicate(cx, Test::Any, "any", args, lam)
}

fn all(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    predicate(cx, Test::All, "all", args, lam)
}

fn filter(cx: &mut dyn CallContext, args: &[Expr], lam: &Lambda) -> R<Value> {
    predicate(cx, Test::Filter, "filter", args, lam)
}

/// What a predicate lambda's answers make.
#[derive(Clone, Copy, PartialEq)]
enum Test {
    Count,
    Any,
    All,
    Filter,
}

/// Runs a predicate over the list: `any` stops at the first true, `all`
/// at the first false; an unknown answer makes `any`/`all` unknown unless
/// that decides them.
fn predicate(
    cx: &mut dyn CallContext,
    f: Test,
    name: &str,
    args: &[Expr],
    lam: &Lambda,
) -> R<Value> {
    let (items, slot) = match items(cx, name, args, lam)? {
        Ok(x) => x,
        Err(v) => return Ok(v),
    };
    let mut kept = Vec::new();
    let (mut trues, mut unknown) = (0usize, false);
    for x in items.iter() {
        cx.set_local(slot, x.clone());
        let v = cx.eval(&lam.body)?;
        match cx.truth(&v, &lam.body) {
            Some(true) => {
                trues += 1;
                if f == Test::Filter {
                    kept.push(x.clone());
                }
                if f == Test::Any {
                    break;
                }
            }
            Some(false) => {
                if f == Test::All {
                    cx.set_local(slot, Value::Missing);
                    return Ok(Value::Bool(false));
                }
            }
            None => unknown = true,
        }
    }
    cx.set_local(slot, Value::Missing);
    Ok(match f {
        Test::Any => tri_value(if trues > 0 {
            Some(true)
        } else if unknown {
            None
        } else {
            Some(false)
        }),
        Test::All => tri_value(if unknown { None } else { Some(true) }),
        Test::Count => Value::Num(trues as f64),
        Test::Filter => Value::List(Arc::new(kept)),
    })
}

fn first(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    end(cx, a, "first", |l| l.first())
}

fn last(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    end(cx, a, "last", |l| l.last())
}

/// One end of a list; unknown when the list is empty.
fn end(
    cx: &mut dyn CallContext,
    a: Args,
    name: &str,
    pick: fn(&[Value]) -> Option<&Value>,
) -> R<Value> {
    let a0 = a.a0();
    Ok(match &a.v0() {
        Value::List(l) => match pick(l) {
            Some(v) => v.clone(),
            None => {
                let msg = format!("`{}` is an empty list", cx.text(a0.span));
                cx.cause("missing", msg);
                Value::Missing
            }
        },
        other => bad_arg(cx, name, a0, other, "a list"),
    })
}

fn distinct(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match &a.v0() {
        Value::List(l) => {
            let n = l.len() as u64;
            cx.charge(n.saturating_mul(n) / 16 + n)?;
            let mut out: Vec<Value> = Vec::new();
            for x in l.iter() {
                if !out.iter().any(|y| equals(x, y) == Some(true)) {
                    out.push(x.clone());
                }
            }
            Value::List(Arc::new(out))
        }
        other => bad_arg(cx, "distinct", a.a0(), other, "a list"),
    })
}

fn sort(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let a0 = a.a0();
    Ok(match &a.v0() {
        Value::List(l) => {
            let n = l.len() as u64;
            cx.charge(n * (64 - n.leading_zeros() as u64 + 1))?;
            let mut out: Vec<Value> = l.as_ref().clone();
            let mut comparable = true;
            out.sort_by(|a, b| {
                order_values(a, b).unwrap_or_else(|| {
                    comparable = false;
                    Ordering::Equal
                })
            });
            if comparable {
                Value::List(Arc::new(out))
            } else {
                let msg = format!(
                    "`{}` holds values that cannot be ordered together",
                    cx.text(a0.span)
                );
                cx.cause("type_mismatch", msg);
                Value::Missing
            }
        }
        other => bad_arg(cx, "sort", a0, other, "a list"),
    })
}
