//! Equality of syntax trees by meaning: rules, actions and expressions
//! compared while ignoring source positions, the iterable's source text kept
//! for binding paths, and legacy spellings. The formatter uses it to prove
//! that its output is the same policy (`crate::fmt::same_policy`).

use super::{Action, Expr, ExprKind, Rule, RuleKind};

/// Compares two rules for meaning. `Err` describes the first difference.
pub fn rule_eq(a: &Rule, b: &Rule) -> Result<(), String> {
    let differ = |what: &str| {
        Err(format!(
            "rule {} (line {}): {what} differs",
            a.id, a.span.line
        ))
    };
    if a.id != b.id || a.index != b.index {
        return differ("the id");
    }
    match (&a.kind, &b.kind) {
        (
            RuleKind::If {
                cond: c1,
                then_actions: t1,
                else_actions: e1,
                ..
            },
            RuleKind::If {
                cond: c2,
                then_actions: t2,
                else_actions: e2,
                ..
            },
        ) => {
            if !expr_eq(c1, c2) {
                return differ("the condition");
            }
            if !actions_eq(t1, t2) || !actions_eq(e1, e2) {
                return differ("an action");
            }
        }
        (
            RuleKind::For {
                var: v1,
                slot: s1,
                iterable: i1,
                body: b1,
                ..
            },
            RuleKind::For {
                var: v2,
                slot: s2,
                iterable: i2,
                body: b2,
                ..
            },
        ) => {
            if v1 != v2 || s1 != s2 || !expr_eq(i1, i2) {
                return differ("the loop header");
            }
            if b1.len() != b2.len() {
                return differ("the loop body");
            }
            for (x, y) in b1.iter().zip(b2) {
                rule_eq(x, y)?;
            }
        }
        (RuleKind::While { cond: c1, body: b1 }, RuleKind::While { cond: c2, body: b2 }) => {
            if !expr_eq(c1, c2) {
                return differ("the WHILE condition");
            }
            if b1.len() != b2.len() {
                return differ("the WHILE body");
            }
            for (x, y) in b1.iter().zip(b2) {
                rule_eq(x, y)?;
            }
        }
        _ => return differ("the kind"),
    }
    Ok(())
}

fn actions_eq(a: &[Action], b: &[Action]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.args.len() == y.args.len()
                && x.args.iter().zip(&y.args).all(|(p, q)| expr_eq(p, q))
        })
}

fn exprs_eq(a: &[Expr], b: &[Expr]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| expr_eq(x, y))
}

/// Structural equality of two expressions, ignoring spans.
pub fn expr_eq(a: &Expr, b: &Expr) -> bool {
    use ExprKind as K;
    match (&a.kind, &b.kind) {
        (K::Literal(x), K::Literal(y)) => x == y,
        (
            K::Name {
                name: n1,
                resolved: r1,
            },
            K::Name {
                name: n2,
                resolved: r2,
            },
        ) => n1 == n2 && r1 == r2,
        (K::Root, K::Root) | (K::Error, K::Error) => true,
        (K::List(x), K::List(y)) => exprs_eq(x, y),
        (K::Member(b1, n1), K::Member(b2, n2)) => n1 == n2 && expr_eq(b1, b2),
        (K::Index(b1, i1), K::Index(b2, i2)) => expr_eq(b1, b2) && expr_eq(i1, i2),
        (
            K::Call {
                name: n1,
                func: f1,
                args: a1,
                ..
            },
            K::Call {
                name: n2,
                func: f2,
                args: a2,
                ..
            },
        ) => n1 == n2 && f1 == f2 && exprs_eq(a1, a2),
        (K::Not(x), K::Not(y)) | (K::Neg(x), K::Neg(y)) => expr_eq(x, y),
        (K::Binary(o1, l1, r1), K::Binary(o2, l2, r2)) => {
            o1 == o2 && expr_eq(l1, l2) && expr_eq(r1, r2)
        }
        (
            K::In {
                negated: n1,
                item: i1,
                collection: c1,
            },
            K::In {
                negated: n2,
                item: i2,
                collection: c2,
            },
        ) => n1 == n2 && expr_eq(i1, i2) && expr_eq(c1, c2),
        (
            K::Match {
                scrutinee: s1,
                arms: a1,
            },
            K::Match {
                scrutinee: s2,
                arms: a2,
            },
        ) => {
            expr_eq(s1, s2)
                && a1.len() == a2.len()
                && a1.iter().zip(a2).all(|(x, y)| {
                    x.patterns == y.patterns
                        && x.wildcard == y.wildcard
                        && expr_eq(&x.body, &y.body)
                })
        }
        (K::Lambda(x), K::Lambda(y)) => {
            x.first_slot == y.first_slot
                && x.params.len() == y.params.len()
                && x.params.iter().zip(&y.params).all(|(p, q)| p.0 == q.0)
                && expr_eq(&x.body, &y.body)
        }
        _ => false,
    }
}
