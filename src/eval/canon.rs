//! The canonical form of the expressions a runtime warning quotes, so that a
//! warning is keyed by its cause and not by how the policy spells it:
//! `(O.q)` and `O.q`, `a+b` and `a + b`, `x = 1` and `x == 1` are one cause,
//! and `omni fmt` (which only changes spelling) never changes the warnings.
//!
//! A warning's message is built with the source text of the expressions it
//! names, between backticks. Before a warning is recorded, each quoted piece
//! that parses as a whole expression is replaced by its canonical print: the
//! syntax tree printed with minimal parentheses (plus parentheses around
//! `AND` inside `OR`, for the reader), one space around binary operators,
//! keywords in upper case, `true`/`false`/`null` and `match` in lower case,
//! and literals as the formatter prints them. Quoted pieces that are not an
//! expression (an operator, a path string) are kept as they are.

use crate::ast::{BinOp, Expr, ExprKind, Literal, MatchArm};
use crate::diagnostics::Code;
use crate::fmt::{fmt_string, literal_number, prec};
use crate::lexer::lex;
use crate::parser::{NestingLimits, Parser};

/// `message` with every backtick-quoted expression in canonical form.
pub(super) fn canonical_message(message: &str) -> String {
    let parts: Vec<&str> = message.split('`').collect();
    // An odd number of backticks: the quotes do not pair up (a backtick in a
    // quoted string); keep the message as it is.
    if parts.len().is_multiple_of(2) {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            match canonical_source(part) {
                Some(c) => out.push_str(&c),
                None => out.push_str(part),
            }
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The canonical print of `text` when all of it is one expression.
pub(super) fn canonical_source(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut diags = Vec::new();
    let toks = lex(trimmed, 0, trimmed.len(), 1, 2, &mut diags);
    if !diags.is_empty() {
        return None;
    }
    let mut id = 0;
    let mut pd = Vec::new();
    let mut p = Parser::new(trimmed, &toks, &mut pd, NestingLimits::default(), &mut id);
    let e = p.expr().ok()?;
    // The whole text, not a prefix of it (`x y` is not an expression).
    let all = e.span.end as usize == trimmed.len() || ends_in_closing_parens(trimmed, &e);
    // The legacy `=` is a conformance note, not a failure: it reads as `==`.
    let failed = pd.iter().any(|d| d.code != Code::LegacyAssign);
    if failed || !all {
        return None;
    }
    let mut out = String::with_capacity(trimmed.len());
    print(&e, 0, &mut out);
    Some(out)
}

/// An expression's span may leave out the parentheses around it.
fn ends_in_closing_parens(text: &str, e: &Expr) -> bool {
    text.get(e.span.end as usize..)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c == ')' || c == ' '))
}

fn literal(l: &Literal, out: &mut String) {
    match l {
        Literal::Number(v) => out.push_str(&literal_number(*v)),
        Literal::Quantity(v, u) => {
            out.push_str(&literal_number(*v));
            out.push_str(u.suffix());
        }
        Literal::Str(s) => out.push_str(&fmt_string(s)),
        Literal::Bool(true) => out.push_str("true"),
        Literal::Bool(false) => out.push_str("false"),
        Literal::Null => out.push_str("null"),
    }
}

fn print(e: &Expr, min: u8, out: &mut String) {
    let paren = prec(e) < min;
    if paren {
        out.push('(');
    }
    kind(e, out);
    if paren {
        out.push(')');
    }
}

fn list(items: &[Expr], out: &mut String) {
    for (i, a) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        print(a, 0, out);
    }
}

fn kind(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Literal(l) => literal(l, out),
        ExprKind::Name { name, .. } => out.push_str(name),
        ExprKind::Root => out.push('$'),
        ExprKind::List(items) => {
            out.push('[');
            list(items, out);
            out.push(']');
        }
        ExprKind::Member(base, name) => {
            print(base, 8, out);
            out.push('.');
            out.push_str(name);
        }
        ExprKind::Index(base, idx) => {
            print(base, 8, out);
            out.push('[');
            print(idx, 0, out);
            out.push(']');
        }
        ExprKind::Call { name, args, .. } => {
            out.push_str(name);
            out.push('(');
            list(args, out);
            out.push(')');
        }
        ExprKind::Not(inner) => {
            out.push_str("NOT ");
            print(inner, 3, out);
        }
        ExprKind::Neg(inner) => {
            out.push('-');
            let min = if matches!(inner.kind, ExprKind::Neg(_)) {
                8
            } else {
                7
            };
            print(inner, min, out);
        }
        ExprKind::Binary(op, l, r) => {
            let (lmin, rmin) = match op {
                // `AND` inside `OR` is parenthesised for the reader.
                BinOp::Or => (3, 3),
                BinOp::And => (2, 3),
                BinOp::Add | BinOp::Sub => (5, 6),
                BinOp::Mul | BinOp::Div => (6, 7),
                _ => (5, 5),
            };
            print(l, lmin, out);
            out.push(' ');
            out.push_str(op.symbol());
            out.push(' ');
            print(r, rmin, out);
        }
        ExprKind::In {
            negated,
            item,
            collection,
        } => {
            print(item, 5, out);
            out.push_str(if *negated { " NOT IN " } else { " IN " });
            print(collection, 5, out);
        }
        ExprKind::Match { scrutinee, arms } => {
            out.push_str("match ");
            print(scrutinee, 1, out);
            if arms.is_empty() {
                out.push_str(" {}");
                return;
            }
            out.push_str(" { ");
            for (i, arm) in arms.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match_arm(arm, out);
            }
            out.push_str(" }");
        }
        ExprKind::Lambda(lam) => {
            out.push('|');
            for (i, (p, _)) in lam.params.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(p);
            }
            out.push_str("| ");
            print(&lam.body, 0, out);
        }
        ExprKind::Error => {}
    }
}

fn match_arm(arm: &MatchArm, out: &mut String) {
    for (i, p) in arm.patterns.iter().enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        literal(p, out);
    }
    if arm.wildcard {
        if !arm.patterns.is_empty() {
            out.push_str(" | ");
        }
        out.push('_');
    }
    out.push_str(" => ");
    print(&arm.body, 0, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_expression_print_alike() {
        let same = [
            ("(O.q)", "O.q"),
            ("((O).q)", "O.q"),
            ("a+b*2", "a + b * 2"),
            ("x = 1", "x == 1"),
            ("not  A and b", "NOT A AND b"),
            ("A OR B AND C", "A OR (B AND C)"),
            ("TRUE", "true"),
            ("1.50m", "1.5m"),
            ("xs[ 0 ]", "xs[0]"),
            ("(a + b) * 2", "(a + b) * 2"),
        ];
        for (a, b) in same {
            assert_eq!(canonical_source(a), canonical_source(b), "{a} vs {b}");
        }
        assert_eq!(
            canonical_source("A OR B AND C").as_deref(),
            Some("A OR (B AND C)")
        );
        assert_eq!(canonical_source("+"), None);
        assert_eq!(canonical_source("x y"), None);
        assert_eq!(canonical_message("`(O.q)` is missing"), "`O.q` is missing");
        assert_eq!(
            canonical_message("cannot add `a+1` (a string) and `+`"),
            "cannot add `a + 1` (a string) and `+`"
        );
        assert_eq!(canonical_message("odd ` quote"), "odd ` quote");
    }
}
