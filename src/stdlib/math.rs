//! `std::math`: abs, min, max, sum, avg, round, floor, ceil, sqrt, pow,
//! clamp. Numbers keep their unit; a mix of dimensions is unknown.

use super::{
    as_number, bad_arg, common_unit, func, in_unit, is_temperature, num_in, ArgTypes, Args,
    CallContext, FuncDef, Returns, R, VARIADIC,
};
use crate::ast::Expr;
use crate::types::Ty;
use crate::value::Value;

const MATH: &[&str] = &["math"];

pub(super) static FUNCTIONS: &[FuncDef] = &[
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::LikeFirstNumber,
        ..func("abs", MATH, 1, 1, "abs(x)", abs)
    },
    FuncDef {
        returns: Returns::NumberIfAllNumbers,
        ..func("min", MATH, 1, VARIADIC, "min(list) or min(a, b, …)", min)
    },
    FuncDef {
        returns: Returns::NumberIfAllNumbers,
        ..func("max", MATH, 1, VARIADIC, "max(list) or max(a, b, …)", max)
    },
    FuncDef {
        returns: Returns::NumberIfAllNumbers,
        ..func("sum", MATH, 1, VARIADIC, "sum(list) or sum(a, b, …)", sum)
    },
    FuncDef {
        returns: Returns::NumberIfAllNumbers,
        ..func("avg", MATH, 1, VARIADIC, "avg(list) or avg(a, b, …)", avg)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::LikeFirstNumber,
        ..func("round", MATH, 1, 2, "round(x) or round(x, digits)", round)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::LikeFirstNumber,
        ..func("floor", MATH, 1, 1, "floor(x)", floor)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::LikeFirstNumber,
        ..func("ceil", MATH, 1, 1, "ceil(x)", ceil)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::Is(Ty::Num),
        ..func("sqrt", MATH, 1, 1, "sqrt(x)", sqrt)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::Is(Ty::Num),
        ..func("pow", MATH, 2, 2, "pow(x, y)", pow)
    },
    FuncDef {
        args: ArgTypes::Numbers,
        returns: Returns::LikeFirstNumber,
        ..func("clamp", MATH, 3, 3, "clamp(x, lo, hi)", clamp)
    },
];

fn abs(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    unary(cx, a, "abs", f64::abs, false)
}

fn floor(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    unary(cx, a, "floor", f64::floor, false)
}

fn ceil(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    unary(cx, a, "ceil", f64::ceil, false)
}

fn sqrt(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    unary(cx, a, "sqrt", f64::sqrt, true)
}

/// A function of one number that keeps its unit (`plain`: refuses units).
fn unary(
    cx: &mut dyn CallContext,
    a: Args,
    name: &str,
    op: fn(f64) -> f64,
    plain: bool,
) -> R<Value> {
    let v0 = a.v0();
    let a0 = a.a0();
    Ok(match as_number(&v0) {
        Some((n, u)) => {
            if plain && u.is_some() {
                return Ok(bad_arg(cx, name, a0, &v0, "a plain number"));
            }
            let r = op(n);
            if r.is_nan() {
                let msg = format!("`{}` of a negative number is not defined", name);
                cx.cause("invalid_number", msg);
                Value::Missing
            } else {
                num_in(r, u)
            }
        }
        None => bad_arg(cx, name, a0, &v0, "a number"),
    })
}

fn round(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let name = "round";
    let v0 = a.v0();
    let digits = match a.vals.get(1) {
        Some(Value::Num(d)) => d.clamp(0.0, 15.0) as i32,
        Some(other) => {
            let o = other.clone();
            return Ok(bad_arg(
                cx,
                name,
                &a.exprs[1],
                &o,
                "a whole number of digits",
            ));
        }
        None => 0,
    };
    Ok(match as_number(&v0) {
        Some((n, u)) => {
            let m = 10f64.powi(digits);
            num_in((n * m).round() / m, u)
        }
        None => bad_arg(cx, name, a.a0(), &v0, "a number"),
    })
}

fn pow(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let v0 = a.v0();
    Ok(match (as_number(&v0), a.vals.get(1).and_then(as_number)) {
        (Some((x, None)), Some((y, None))) => {
            let r = x.powf(y);
            if r.is_finite() {
                Value::Num(r)
            } else {
                cx.cause("invalid_number", "`pow` gave a number out of range".into());
                Value::Missing
            }
        }
        _ => {
            let bad = if as_number(&v0).is_some_and(|x| x.1.is_none()) {
                1
            } else {
                0
            };
            let v = a.vals.get(bad).cloned().unwrap_or(Value::Missing);
            let e = &a.exprs[bad.min(a.exprs.len() - 1)];
            bad_arg(cx, "pow", e, &v, "plain numbers")
        }
    })
}

fn clamp(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let parts = a.vals.clone();
    Ok(match common_unit(&parts) {
        Ok(unit) => {
            let xs: Option<Vec<f64>> = parts.iter().map(|v| in_unit(v, unit)).collect();
            match xs {
                Some(x) if x.len() == 3 => num_in(x[0].max(x[1]).min(x[2]), unit),
                _ => Value::Missing,
            }
        }
        Err(()) => {
            if a.vals.iter().any(Value::is_missing) {
                Value::Missing
            } else {
                cx.cause(
                    "type_mismatch",
                    "`clamp` needs numbers of one dimension".into(),
                );
                Value::Missing
            }
        }
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Agg {
    Min,
    Max,
    Sum,
    Avg,
}

fn min(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    aggregate(cx, Agg::Min, "min", a.vals, a.exprs)
}

fn max(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    aggregate(cx, Agg::Max, "max", a.vals, a.exprs)
}

fn sum(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    aggregate(cx, Agg::Sum, "sum", a.vals, a.exprs)
}

fn avg(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    aggregate(cx, Agg::Avg, "avg", a.vals, a.exprs)
}

/// `f(list)` or `f(a, b, …)`: one list argument is the list of values.
fn aggregate(
    cx: &mut dyn CallContext,
    f: Agg,
    name: &str,
    vals: Vec<Value>,
    args: &[Expr],
) -> R<Value> {
    let items: Vec<Value> = if vals.len() == 1 {
        match &vals[0] {
            Value::List(l) => l.as_ref().clone(),
            Value::Missing => return Ok(Value::Missing),
            other => vec![other.clone()],
        }
    } else {
        vals
    };
    cx.charge(items.len() as u64)?;
    if items.iter().any(Value::is_missing) {
        let msg = format!("`{}` has an unknown element", cx.text(args[0].span));
        cx.cause("missing", msg);
        return Ok(Value::Missing);
    }
    let unit = match common_unit(&items) {
        Ok(u) => u,
        Err(()) => {
            let msg = format!("`{name}` needs numbers of one dimension");
            cx.cause("type_mismatch", msg);
            return Ok(Value::Missing);
        }
    };
    let xs: Vec<f64> = items.iter().filter_map(|v| in_unit(v, unit)).collect();
    if xs.is_empty() {
        if f == Agg::Sum {
            return Ok(Value::Num(0.0));
        }
        let msg = format!("`{name}` of an empty list");
        cx.cause("missing", msg);
        return Ok(Value::Missing);
    }
    // An average of temperatures is meaningful; a sum is not.
    if f == Agg::Sum && is_temperature(unit) {
        cx.cause("type_mismatch", "temperatures cannot be summed".into());
        return Ok(Value::Missing);
    }
    let r = match f {
        Agg::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::Sum => xs.iter().sum(),
        Agg::Avg => xs.iter().sum::<f64>() / xs.len() as f64,
    };
    Ok(num_in(r, unit))
}
