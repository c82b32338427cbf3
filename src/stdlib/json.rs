//! `std::json`: has, keys, get (a path like `a.b[0]` inside a value).

use super::{bad_arg, func, get_path, Args, CallContext, FuncDef, Returns, R};
use crate::types::Ty;
use crate::value::Value;
use std::sync::Arc;

const JSON: &[&str] = &["json"];

pub(super) static FUNCTIONS: &[FuncDef] = &[
    FuncDef {
        returns: Returns::Is(Ty::Bool),
        ..func("has", JSON, 2, 2, "has(obj, \"key\")", has)
    },
    FuncDef {
        returns: Returns::Is(Ty::List),
        ..func("keys", JSON, 1, 1, "keys(obj)", keys)
    },
    func("get", JSON, 2, 2, "get(obj, \"a.b[0]\")", get),
];

fn has(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match (&a.v0(), a.vals.get(1)) {
        (Value::Obj(o), Some(Value::Str(k))) => Value::Bool(o.get(k).is_some()),
        (Value::Obj(_), Some(other)) => bad_arg(cx, "has", &a.exprs[1], other, "a key string"),
        (other, _) => bad_arg(cx, "has", a.a0(), other, "an object"),
    })
}

fn keys(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    Ok(match &a.v0() {
        Value::Obj(o) => {
            cx.check_list_len(o.len())?;
            Value::List(Arc::new(o.keys().map(|k| Value::Str(k.clone())).collect()))
        }
        other => bad_arg(cx, "keys", a.a0(), other, "an object"),
    })
}

fn get(cx: &mut dyn CallContext, a: Args) -> R<Value> {
    let v0 = a.v0();
    let a0 = a.a0();
    Ok(match a.vals.get(1) {
        Some(Value::Str(path)) => {
            if v0.is_missing() {
                return Ok(Value::Missing);
            }
            cx.charge(path.len() as u64 / 8 + 1)?;
            match get_path(&v0, path) {
                Some(v) => v,
                None => {
                    let msg = format!("`{}` has no `{path}`", cx.text(a0.span));
                    cx.cause("missing", msg);
                    Value::Missing
                }
            }
        }
        Some(other) => bad_arg(cx, "get", &a.exprs[1], other, "a path string"),
        None => Value::Missing,
    })
}
