//! Static types: what the checker can know about a value before seeing a
//! context. Shared by the checker and the stdlib's type rules, so neither
//! reaches into the other.

mod decl;
pub use decl::{
    canonical_item, describe_value, fit, parse_item, value_misfit, DeclError, DeclItem, DeclType,
    FieldDecl, Fit, Misfit, ObjDecl, PathStep, Schema,
};

use crate::units::Dimension;
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    Any,
    Num,
    Qty(Dimension),
    Bool,
    Str,
    List,
    Obj,
    Null,
    Time,
}

impl Ty {
    pub fn of_value(v: &Value) -> Ty {
        match v {
            Value::Missing => Ty::Any,
            Value::Null => Ty::Null,
            Value::Bool(_) => Ty::Bool,
            Value::Num(_) => Ty::Num,
            Value::Qty(_, u) => Ty::Qty(u.dim()),
            Value::Str(s) => {
                if crate::units::parse_quantity_str(s).is_some()
                    || crate::timefmt::parse_rfc3339(s).is_some()
                {
                    Ty::Any
                } else {
                    Ty::Str
                }
            }
            Value::List(_) => Ty::List,
            Value::Obj(_) => Ty::Obj,
            Value::Time(_) => Ty::Time,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Ty::Any => "a value".into(),
            Ty::Num => "a number".into(),
            Ty::Qty(d) => format!("a {d}"),
            Ty::Bool => "a bool".into(),
            Ty::Str => "a string".into(),
            Ty::List => "a list".into(),
            Ty::Obj => "an object".into(),
            Ty::Null => "null".into(),
            Ty::Time => "a timestamp".into(),
        }
    }

    pub fn numeric(self) -> bool {
        matches!(self, Ty::Num | Ty::Qty(_) | Ty::Any)
    }
}
