//! The syntax tree of rules and expressions. Every node carries its `Span`.
//! The checker fills in resolution (`NameRef`, `FuncId`) in place, so the same
//! tree is what the evaluator runs.

use crate::span::Span;
use crate::stdlib::FuncId;
use crate::units::UnitId;
use std::sync::Arc;

mod eq;
pub use eq::{expr_eq, rule_eq};

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Quantity(f64, UnitId),
    Str(Arc<str>),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "OR",
            BinOp::And => "AND",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// How a name is found at run time (set by the checker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRef {
    /// Not yet resolved (parser output).
    Unresolved,
    /// A loop variable or lambda parameter: a slot of the local stack.
    Local(u32),
    /// The request context, then the policy's CONTEXT defaults.
    Global,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    Name {
        name: Arc<str>,
        resolved: NameRef,
    },
    /// `$`, the request context root.
    Root,
    List(Vec<Expr>),
    Member(Box<Expr>, Arc<str>),
    Index(Box<Expr>, Box<Expr>),
    Call {
        /// The name as written (`avg`, `std::math::avg`).
        name: Arc<str>,
        name_span: Span,
        func: Option<FuncId>,
        args: Vec<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    In {
        negated: bool,
        item: Box<Expr>,
        collection: Box<Expr>,
    },
    Match {
        scrutinee: Box<Expr>,
        arms: Vec<MatchArm>,
    },
    Lambda(Box<Lambda>),
    /// Placeholder left by error recovery; never reaches the evaluator.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lambda {
    pub params: Vec<(Arc<str>, Span)>,
    /// Local slot of the first parameter (set by the checker).
    pub first_slot: u32,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MatchArm {
    /// Empty means `_`.
    pub patterns: Vec<Literal>,
    pub wildcard: bool,
    pub body: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: Arc<str>,
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `R3`, nested `R9.2`.
    pub id: Arc<str>,
    /// Position in a depth-first walk of all rules (set by the checker).
    pub index: u32,
    pub span: Span,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    If {
        cond: Expr,
        then_actions: Vec<Action>,
        else_actions: Vec<Action>,
        legacy_two_line: bool,
    },
    For {
        var: Arc<str>,
        var_span: Span,
        slot: u32,
        /// The iterable's source text, for binding paths (set by the checker).
        label: Arc<str>,
        iterable: Expr,
        body: Vec<Rule>,
        braceless: bool,
    },
    While {
        cond: Expr,
        body: Vec<Rule>,
    },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::If { .. } => "if",
            RuleKind::For { .. } => "for",
            RuleKind::While { .. } => "while",
        }
    }
}

/// Visits every rule, depth first, in source order.
pub fn walk_rules<'a>(rules: &'a [Rule], f: &mut dyn FnMut(&'a Rule, usize)) {
    fn go<'a>(rules: &'a [Rule], depth: usize, f: &mut dyn FnMut(&'a Rule, usize)) {
        for r in rules {
            f(r, depth);
            match &r.kind {
                RuleKind::For { body, .. } | RuleKind::While { body, .. } => go(body, depth + 1, f),
                RuleKind::If { .. } => {}
            }
        }
    }
    go(rules, 0, f)
}
