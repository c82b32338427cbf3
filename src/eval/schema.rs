//! The request context against the policy's typed declarations (`SCHEMA`),
//! before any rule runs: a value that contradicts its declaration (another
//! type, another dimension) or a declared field that is missing gives a
//! runtime warning naming the field, the declared and the received type.
//!
//! A contradicting value is then *not used*: the rules see it as missing (a
//! top-level name falls back to its CONTEXT default, if it has one), so a
//! wrong value can never fire an action. A bare number declared `in` a unit
//! is read in that unit. Only the parts that change are copied; a context
//! that fits is used as it is. Policies that declare nothing skip all this.

use crate::decision::RuntimeWarning;
use crate::policy::PolicyDefault;
use crate::types::{fit, DeclType, Fit, ObjDecl, Schema};
use crate::value::{Context, Object, Value};
use std::sync::Arc;

/// What becomes of one value.
enum Change {
    Keep,
    Replace(Value),
    /// Contradicts its declaration: rules see it as missing.
    Drop,
}

/// One warning, and how many more values had the same cause.
struct Report {
    key: (usize, &'static str),
    message: String,
    line: u32,
    more: usize,
}

/// Where a value is in the context, rendered only for a warning.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(Path::Root, k) => k.to_string(),
            Path::Key(p, k) => format!("{}.{k}", p.render()),
            Path::Index(p, i) => format!("{}[{i}]", p.render()),
        }
    }
}

#[derive(Default)]
struct Walker {
    reports: Vec<Report>,
}

/// Checks `ctx` against `schema`. Returns the context the rules should see
/// when it differs from `ctx`, and the warnings.
pub(super) fn check_context(
    schema: &Schema,
    ctx: &Context,
    defaults: &[PolicyDefault],
) -> (Option<Context>, Vec<RuntimeWarning>) {
    let mut w = Walker::default();
    let root = match &schema.root {
        DeclType::Object(o) => w.object(o, &ctx.root, Path::Root, Some(defaults)),
        _ => None,
    };
    let label: Arc<str> = Arc::from("SCHEMA");
    let warnings = w
        .reports
        .into_iter()
        .map(|r| RuntimeWarning {
            code: r.key.1,
            message: if r.more > 0 {
                format!("{} (and {} more like it)", r.message, r.more)
            } else {
                r.message
            },
            rule: label.clone(),
            line: r.line,
        })
        .collect();
    (root.map(|o| Context { root: Arc::new(o) }), warnings)
}

impl Walker {
    /// One warning per cause: the same declaration failing again (in the
    /// next element of a list) is counted, not repeated.
    fn report(&mut self, key: (usize, &'static str), line: u32, message: impl FnOnce() -> String) {
        if let Some(r) = self.reports.iter_mut().find(|r| r.key == key) {
            r.more += 1;
            return;
        }
        self.reports.push(Report {
            key,
            message: message(),
            line,
            more: 0,
        });
    }

    fn value(&mut self, v: &Value, t: &DeclType, path: Path, line: u32) -> Change {
        match fit(v, t) {
            Fit::No(m) => {
                let key = (t as *const DeclType as usize, "declared_type");
                self.report(key, line, || {
                    format!(
                        "`{}` is declared {}, but the context has {}: it is treated as missing",
                        path.render(),
                        t.describe(),
                        m.received
                    )
                });
                Change::Drop
            }
            Fit::Convert(u) => match v {
                Value::Num(n) => Change::Replace(Value::Qty(*n, u)),
                _ => Change::Keep,
            },
            Fit::Yes => match (t, v) {
                (DeclType::List(Some(e)), Value::List(items)) => {
                    let mut out: Option<Vec<Value>> = None;
                    for (i, x) in items.iter().enumerate() {
                        let change = self.value(x, e, Path::Index(&path, i), line);
                        let new = match change {
                            Change::Keep => {
                                if let Some(o) = out.as_mut() {
                                    o.push(x.clone());
                                }
                                continue;
                            }
                            Change::Replace(r) => r,
                            Change::Drop => Value::Missing,
                        };
                        out.get_or_insert_with(|| items[..i].to_vec()).push(new);
                    }
                    out.map_or(Change::Keep, |o| Change::Replace(Value::List(Arc::new(o))))
                }
                (DeclType::Object(o), Value::Obj(obj)) => match self.object(o, obj, path, None) {
                    Some(new) => Change::Replace(Value::Obj(Arc::new(new))),
                    None => Change::Keep,
                },
                _ => Change::Keep,
            },
        }
    }

    /// The declared fields of one object; `Some` when the object changes.
    /// `defaults` is given for the root: a missing name with a default is
    /// not a warning (the default applies).
    fn object(
        &mut self,
        o: &ObjDecl,
        obj: &Object,
        path: Path,
        defaults: Option<&[PolicyDefault]>,
    ) -> Option<Object> {
        let mut changes: Vec<(&str, Change)> = Vec::new();
        for f in &o.fields {
            let field_path = Path::Key(&path, &f.name);
            match obj.get(&f.name) {
                None | Some(Value::Missing) => {
                    let has_default =
                        defaults.is_some_and(|ds| ds.iter().any(|d| d.name == f.name));
                    if !f.optional && !has_default {
                        let key = (f as *const _ as usize, "declared_missing");
                        self.report(key, f.line, || {
                            format!(
                                "`{}` is declared {}, but it is missing from the context",
                                field_path.render(),
                                f.ty.describe()
                            )
                        });
                    }
                }
                // An optional field may also be `null`.
                Some(Value::Null) if f.optional => {}
                Some(v) => match self.value(v, &f.ty, field_path, f.line) {
                    Change::Keep => {}
                    c => changes.push((&f.name, c)),
                },
            }
        }
        if changes.is_empty() {
            return None;
        }
        let entries = obj
            .iter()
            .filter_map(
                |(k, v)| match changes.iter_mut().find(|(name, _)| *name == &**k) {
                    None => Some((k.clone(), v.clone())),
                    Some((_, Change::Drop)) => None,
                    Some((_, Change::Replace(r))) => {
                        Some((k.clone(), std::mem::replace(r, Value::Missing)))
                    }
                    Some((_, Change::Keep)) => Some((k.clone(), v.clone())),
                },
            )
            .collect();
        Some(Object::from_entries(entries))
    }
}
