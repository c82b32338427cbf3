//! `std::time` (behind the `time` feature flag): now, time, since, between,
//! date_part, now_unix_millis, duration_between_ms. `now` is the request's,
//! so a decision is a function of its inputs.

use super::{
    as_time, bad_arg, func, seconds, Args, CallContext, CheckContext, FuncDef, Returns, R,
};
use crate::ast::{Expr, ExprKind, Literal};
use crate::diagnostics::Code;
use crate::span::Span;
use crate::types::Ty;
use crate::units::Dimension;
use crate::value::Value;

const TIME: &[&str] = &["time"];

pub(super) static FUNCTIONS: &[FuncDef] = &[
    FuncDef {
        returns: Returns::Is(Ty::Time),
        ..func("now", TIME, 0, 0, "now()", now)
    },
    FuncDef {
        returns: Returns::Is(Ty::Time),
        check: Some(check_timestamp),
        ..func("time", TIME, 1, 1, "time(\"2026-01-01T00:00:00Z\")", time)
    },
    FuncDef {
        returns: Returns::Is(Ty::Qty(Dimension::Duration)),
        ..func("since", TIME, 1, 1, "since(ts)", since)
    },
    FuncDef {
        returns: Returns::Is(Ty::Qty(Dimension::Duration)),
        ..func("between", TIME, 2, 2, "between(a, b)", between)
    },
    FuncDef {
        returns: Returns::Is(Ty::Num),
        check: Some(check_date_part),
        ..func(
            "date_part",
            TIME,
            2,
            2,
            "date_part(ts, \"hour\")",
            date_part,
        )
    },
    FuncDef {
        returns: Returns::Is(Ty::Num),
        ..func(
            "now_unix_millis",
            TIME,
            0,
            0,
            "now_unix_millis()",
            now_unix_millis,
        )
    },
    FuncDef {
        returns: Returns::Is(Ty::Num),
        ..func(
            "duration_between_ms",
            TIME,
            2,
            2,
            "duration_between_ms(a, b)",
            duration_between_ms,
        )
    },
];

fn now(cx: &mut dyn CallContext, _: Args) -> R<Value> {
    Ok(Value::Time(cx.now()))
}

fn time(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let a0 = a.a0();
    Ok(match &a.v0() {
        Value::Str(s) => match crate::timefmt::parse_rfc3339(s) {
            Some(t) => Value::Time(t),
            None => {
                let msg = format!("`{}` is not an RFC 3339 timestamp", cx.text(a0.span));
                cx.cause("invalid_time", msg);
                Value::Missing
            }
        },
        Value::Time(t) => Value::Time(*t),
        other => bad_arg(cx, "time", a0, other, "an RFC 3339 string"),
    })
}

fn since(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let v0 = a.v0();
    Ok(match as_time(&v0) {
        Some(t) => seconds((cx.now().0 as f64 - t.0 as f64) / 1e9),
        None => bad_arg(cx, "since", a.a0(), &v0, "a timestamp"),
    })
}

fn between(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let (v0, v1) = (a.v0(), a.v1());
    Ok(match (as_time(&v0), as_time(&v1)) {
        (Some(x), Some(y)) => seconds((y.0 as f64 - x.0 as f64) / 1e9),
        (None, _) => bad_arg(cx, "between", a.a0(), &v0, "a timestamp"),
        (_, None) => bad_arg(cx, "between", &a.exprs[1], &v1, "a timestamp"),
    })
}

fn date_part(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let name = "date_part";
    let (v0, v1) = (a.v0(), a.v1());
    Ok(match (as_time(&v0), &v1) {
        (Some(t), Value::Str(part)) => match crate::timefmt::date_part(t, part) {
            Some(n) => Value::Num(n),
            None => {
                let msg = format!("`{part}` is not a date part");
                cx.cause("invalid_argument", msg);
                Value::Missing
            }
        },
        (None, _) => bad_arg(cx, name, a.a0(), &v0, "a timestamp"),
        (_, other) => bad_arg(cx, name, &a.exprs[1], other, "a date part name"),
    })
}

fn now_unix_millis(cx: &mut dyn CallContext, _: Args) -> R<Value> {
    Ok(Value::Num((cx.now().0 / 1_000_000) as f64))
}

fn duration_between_ms(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let name = "duration_between_ms";
    let (v0, v1) = (a.v0(), a.v1());
    let ms = |v: &Value| match v {
        Value::Num(n) => Some(*n),
        other => as_time(other).map(|t| (t.0 / 1_000_000) as f64),
    };
    Ok(match (ms(&v0), ms(&v1)) {
        (Some(x), Some(y)) => Value::Num(y - x),
        (None, _) => bad_arg(cx, name, a.a0(), &v0, "a timestamp or milliseconds"),
        (_, None) => bad_arg(cx, name, &a.exprs[1], &v1, "a timestamp or milliseconds"),
    })
}

/// A literal timestamp must parse.
fn check_timestamp(ck: &mut dyn CheckContext, args: &[Expr], _: Span) {
    if let Some(Expr {
        kind: ExprKind::Literal(Literal::Str(s)),
        span: sp,
    }) = args.first()
    {
        if crate::timefmt::parse_rfc3339(s).is_none() {
            ck.error(
                Code::InvalidTimestamp,
                *sp,
                format!("`{s}` is not an RFC 3339 timestamp"),
            )
            .hint = Some("write it like \"2026-01-31T08:00:00Z\"".into());
        }
    }
}

/// A literal date part must be one of the known names.
fn check_date_part(ck: &mut dyn CheckContext, args: &[Expr], _: Span) {
    if let Some(Expr {
        kind: ExprKind::Literal(Literal::Str(s)),
        span: sp,
    }) = args.get(1)
    {
        if !crate::timefmt::DATE_PARTS.contains(&&**s) {
            ck.error(
                Code::InvalidArgument,
                *sp,
                format!("`{s}` is not a date part"),
            )
            .hint = Some(format!(
                "use one of {}",
                crate::timefmt::DATE_PARTS.join(", ")
            ));
        }
    }
}
