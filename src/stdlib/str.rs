//! `std::str`: len, lower, upper, trim, contains, starts_with, ends_with,
//! split, matches (a literal pattern the checker compiles once).

use super::{
    bad_arg, func, list_of_strs, tri_value, ArgTypes, Args, CallContext, CheckContext, Flag,
    FuncDef, RegexOutcome, Returns, R,
};
use crate::ast::{Expr, ExprKind, Literal};
use crate::diagnostics::Code;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Value;
use std::sync::Arc;

const STR: &[&str] = &["str"];
const STR_LIST: &[&str] = &["str", "list"];

pub(super) static FUNCTIONS: &[FuncDef] = &[
    FuncDef {
        returns: Returns::Is(Ty::Num),
        ..func("len", STR_LIST, 1, 1, "len(x)", len)
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Str),
        ..func("lower", STR, 1, 1, "lower(s)", lower)
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Str),
        ..func("upper", STR, 1, 1, "upper(s)", upper)
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Str),
        ..func("trim", STR, 1, 1, "trim(s)", trim)
    },
    FuncDef {
        returns: Returns::Is(Ty::Bool),
        ..func(
            "contains",
            STR_LIST,
            2,
            2,
            "contains(s, part) or contains(xs, x)",
            contains,
        )
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Bool),
        ..func(
            "starts_with",
            STR,
            2,
            2,
            "starts_with(s, prefix)",
            starts_with,
        )
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Bool),
        ..func("ends_with", STR, 2, 2, "ends_with(s, suffix)", ends_with)
    },
    FuncDef {
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::List),
        ..func("split", STR, 2, 2, "split(s, sep)", split)
    },
    FuncDef {
        flag: Some(Flag {
            name: "regex",
            enabled: |f| f.regex,
            hint: "use contains, starts_with or ends_with",
        }),
        args: ArgTypes::Strings,
        returns: Returns::Is(Ty::Bool),
        check: Some(check_pattern),
        ..func("matches", STR, 2, 2, "matches(s, \"regex\")", matches)
    },
];

fn len(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match &a.v0() {
        Value::Str(s) => Value::Num(s.chars().count() as f64),
        Value::List(l) => Value::Num(l.len() as f64),
        Value::Obj(o) => Value::Num(o.len() as f64),
        other => bad_arg(cx, "len", a.a0(), other, "a string, a list or an object"),
    })
}

fn lower(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    map_str(cx, a, "lower", |s| s.to_lowercase())
}

fn upper(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    map_str(cx, a, "upper", |s| s.to_uppercase())
}

fn trim(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    map_str(cx, a, "trim", |s| s.trim().to_string())
}

/// A string made from a string, both charged and limited.
fn map_str(cx: &mut dyn CallContext, a: Args, name: &str, op: fn(&str) -> String) -> R<Value> {
    Ok(match &a.v0() {
        Value::Str(s) => {
            cx.check_str_len(s.len())?;
            let r = op(s);
            cx.check_str_len(r.len())?;
            Value::Str(Arc::from(r))
        }
        other => bad_arg(cx, name, a.a0(), other, "a string"),
    })
}

fn contains(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let v0 = a.v0();
    let x = a.v1();
    let t = cx.contains(&v0, &x, a.exprs.get(1).unwrap_or(a.call), a.a0())?;
    Ok(tri_value(t))
}

fn starts_with(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    affix(cx, a, "starts_with", |s, p| s.starts_with(p))
}

fn ends_with(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    affix(cx, a, "ends_with", |s, p| s.ends_with(p))
}

/// A test of a string against another (`starts_with`, `ends_with`).
fn affix(cx: &mut dyn CallContext, a: Args, name: &str, test: fn(&str, &str) -> bool) -> R<Value> {
    Ok(match (&a.v0(), a.vals.get(1)) {
        (Value::Str(s), Some(Value::Str(p))) => Value::Bool(test(s, p)),
        (Value::Str(_), Some(other)) => bad_arg(cx, name, &a.exprs[1], other, "a string"),
        (other, _) => bad_arg(cx, name, a.a0(), other, "a string"),
    })
}

fn split(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match (&a.v0(), a.vals.get(1)) {
        (Value::Str(s), Some(Value::Str(sep))) => {
            let parts: Vec<String> = if sep.is_empty() {
                s.chars().map(|c| c.to_string()).collect()
            } else {
                s.split(&**sep).map(str::to_string).collect()
            };
            cx.check_list_len(parts.len())?;
            list_of_strs(parts)
        }
        (Value::Str(_), Some(other)) => {
            bad_arg(cx, "split", &a.exprs[1], other, "a separator string")
        }
        (other, _) => bad_arg(cx, "split", a.a0(), other, "a string"),
    })
}

fn matches(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match &a.v0() {
        Value::Str(s) => {
            let at = a.call.span.start;
            // Charged by what the search may cost (the pattern's own rate),
            // before it runs.
            let fuel = cx
                .regex_at(at)
                .map_or(s.len() as u64 / 32 + 1, |re| re.fuel(s.len()));
            cx.charge(fuel)?;
            match cx.regex_at(at) {
                Some(re) => Value::Bool(re.is_match(s)),
                None => Value::Missing,
            }
        }
        other => bad_arg(cx, "matches", a.a0(), other, "a string"),
    })
}

/// The pattern must be a literal: it is compiled here, once, within the
/// size limits and the policy's regex budget (`stdlib::pattern`).
fn check_pattern(ck: &mut dyn CheckContext, args: &[Expr], span: Span) {
    let Some(pat) = args.get(1) else {
        return;
    };
    match &pat.kind {
        ExprKind::Literal(Literal::Str(p)) => match ck.regexes().compile(span.start, p) {
            RegexOutcome::Compiled(_) | RegexOutcome::Skipped => {}
            RegexOutcome::Refused(msg) => {
                ck.error(Code::InvalidRegex, pat.span, msg);
            }
        },
        _ => {
            ck.error(
                Code::InvalidRegex,
                pat.span,
                "the pattern of `matches` must be a literal string".into(),
            )
            .hint = Some("write the pattern in the policy, e.g. matches(s, \"^A[0-9]+$\")".into());
        }
    }
}
