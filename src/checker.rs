//! The checker: resolves names and functions, checks static types and unit
//! dimensions, feature flags and the stdlib's rules, adds notes and warnings,
//! applies the profile, and builds the `CompiledPolicy`.

use crate::ast::*;
use crate::diagnostics::{sort_and_dedup, Code, Diagnostic, Severity};
use crate::document::parse_document;
use crate::options::{CheckOptions, Profile};
use crate::policy::{policy_id, CompiledPolicy, PolicyDefault};
use crate::span::{LineIndex, Span};
use crate::stdlib::{self, ArgTypes, CheckContext, FuncDef, Resolution, VARIADIC};
use crate::types::{DeclType, Schema, Ty};
use crate::units::Dimension;
use crate::value::Value;
use std::sync::Arc;

/// The result of checking: every diagnostic, and the policy when there was no error.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub diagnostics: Vec<Diagnostic>,
    pub policy: Option<Arc<CompiledPolicy>>,
    pub line_index: LineIndex,
    /// Time spent parsing (sections, lexing, rules).
    pub parse_time: std::time::Duration,
    /// Time spent checking and building the compiled policy.
    pub check_time: std::time::Duration,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }

    /// The diagnostics that are errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Parses and checks a policy.
pub fn compile(source: &str, opts: &CheckOptions) -> Compiled {
    let started = std::time::Instant::now();
    let mut diags = Vec::new();
    let mut doc = parse_document(source, opts.nesting(), &mut diags);
    let parse_time = started.elapsed();
    let mut ck = Checker {
        src: source,
        opts,
        diags: &mut diags,
        scopes: Vec::new(),
        max_slots: 0,
        regexes: stdlib::RegexBudget::new(opts.regex),
        defaults: &doc.defaults,
        noted_rule: false,
        next_index: 0,
        schema: &doc.schema,
        decls: Decls::default(),
    };
    ck.defaults_fit_declarations();
    ck.rules(&mut doc.rules);
    let max_slots = ck.max_slots;
    let regexes = ck.regexes.take_compiled();
    let rule_count = ck.next_index as usize;
    for d in diags.iter_mut() {
        if d.code.is_conformance() {
            d.severity = match opts.profile {
                Profile::Strict => Severity::Error,
                Profile::Lenient => Severity::Warning,
            };
        }
    }
    sort_and_dedup(&mut diags);
    let line_index = LineIndex::new(source);
    let has_errors = diags.iter().any(|d| d.is_error());
    let policy = (!has_errors).then(|| {
        Arc::new(CompiledPolicy {
            policy_id: Arc::from(policy_id(source.as_bytes())),
            source: Arc::from(source),
            line_index: line_index.clone(),
            metadata: Arc::new(doc.metadata),
            defaults: doc.defaults,
            schema: doc.schema,
            rules: doc.rules,
            regexes,
            max_slots,
            rule_count,
        })
    });
    Compiled {
        diagnostics: diags,
        policy,
        line_index,
        parse_time,
        check_time: started.elapsed().saturating_sub(parse_time),
    }
}

/// A type and whether it is a bare number written as a literal.
#[derive(Clone, Copy)]
struct TyInfo {
    ty: Ty,
    bare_literal: bool,
}

fn info(ty: Ty) -> TyInfo {
    TyInfo {
        ty,
        bare_literal: false,
    }
}

struct Checker<'a> {
    src: &'a str,
    opts: &'a CheckOptions,
    diags: &'a mut Vec<Diagnostic>,
    /// Names bound by FOR and lambdas, innermost last, with their slots.
    scopes: Vec<Arc<str>>,
    max_slots: u32,
    regexes: stdlib::RegexBudget,
    defaults: &'a [PolicyDefault],
    /// The bare-number note was given for the current rule.
    noted_rule: bool,
    next_index: u32,
    /// The typed context declarations (`SCHEMA`).
    schema: &'a Schema,
    decls: Decls<'a>,
}

/// What the checker knows from the declarations while it walks an
/// expression: kept beside the types (not in [`TyInfo`]) so that the type
/// rules stay as they are.
#[derive(Default)]
struct Decls<'a> {
    /// The declaration of the expression `expr` just checked, if it is a
    /// declared path (`zone.humidity`, `d.battery`, `drones[0]`).
    last: Option<&'a DeclType>,
    /// Set by an expression's own arm, taken by [`Checker::expr`].
    pending: Option<&'a DeclType>,
    /// The declared type of each local slot (FOR variables, lambda parameters).
    slots: Vec<Option<&'a DeclType>>,
    /// The declaration the next local slot gets.
    next_slot: Option<&'a DeclType>,
    /// The element declaration of the list a lambda's last parameter walks.
    lambda_elem: Option<&'a DeclType>,
}

impl<'a> Checker<'a> {
    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.range()).unwrap_or("")
    }

    fn err(&mut self, code: Code, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::new(code, span, msg));
        let n = self.diags.len() - 1;
        &mut self.diags[n]
    }

    fn push_scope(&mut self, name: Arc<str>) -> u32 {
        let slot = self.scopes.len() as u32;
        self.scopes.push(name);
        self.decls.slots.truncate(slot as usize);
        self.decls.slots.push(self.decls.next_slot.take());
        self.max_slots = self.max_slots.max(self.scopes.len() as u32);
        slot
    }

    fn rules(&mut self, rules: &mut [Rule]) {
        for r in rules.iter_mut() {
            self.rule(r);
        }
    }

    fn rule(&mut self, r: &mut Rule) {
        r.index = self.next_index;
        self.next_index += 1;
        self.noted_rule = false;
        match &mut r.kind {
            RuleKind::If {
                cond,
                then_actions,
                else_actions,
                ..
            } => {
                self.condition(cond);
                for a in then_actions.iter_mut().chain(else_actions.iter_mut()) {
                    for arg in a.args.iter_mut() {
                        self.expr(arg);
                    }
                }
                if !else_actions.is_empty() && !self.opts.features.else_branch {
                    let sp = else_actions[0].span;
                    self.err(
                        Code::FeatureDisabled,
                        sp,
                        "ELSE is disabled in this deployment (feature flag `else`)",
                    )
                    .hint = Some("write a second rule with the negated condition".into());
                }
            }
            RuleKind::For {
                var,
                slot,
                label,
                iterable,
                body,
                ..
            } => {
                *label = Arc::from(self.text(iterable.span));
                self.expr(iterable);
                self.decls.next_slot = element_decl(self.decls.last);
                if body.is_empty() {
                    let sp = r.span;
                    self.err(
                        Code::EmptyLoopBody,
                        sp,
                        "this FOR loop has no rules in its body",
                    )
                    .hint = Some("add rules between `{` and `}`, or remove the loop".into());
                }
                *slot = self.push_scope(var.clone());
                self.rules(body);
                self.scopes.pop();
            }
            RuleKind::While { cond, body } => {
                self.condition(cond);
                if body.is_empty() {
                    let sp = r.span;
                    self.err(
                        Code::EmptyLoopBody,
                        sp,
                        "this WHILE loop has no rules in its body",
                    )
                    .hint = Some("add rules between `{` and `}`, or remove the loop".into());
                }
                self.rules(body);
            }
        }
    }

    fn condition(&mut self, e: &mut Expr) {
        let t = self.expr(e);
        match t.ty {
            Ty::Any | Ty::Bool | Ty::Num => {}
            other => {
                let sp = e.span;
                let msg = format!(
                    "a condition must be true or false, but `{}` is {}",
                    self.text(sp),
                    other.describe()
                );
                self.err(Code::TypeMismatch, sp, msg).hint =
                    Some("compare it with something, e.g. `X == \"value\"`".into());
            }
        }
    }

    fn bare_note(&mut self, bare: &Expr, unit_side: Ty, span: Span) {
        if self.noted_rule {
            return;
        }
        if let Ty::Qty(d) = unit_side {
            self.noted_rule = true;
            let msg = format!(
                "the bare number `{}` is read in the unit of the {} it meets",
                self.text(bare.span),
                d
            );
            self.err(Code::BareNumberUnit, span, msg).hint =
                Some("write the unit to make it explicit, e.g. `20%` or `2m`".into());
        }
    }

    /// The type of `e`; its declaration, when it has one, is then in `self.decls.last`.
    fn expr(&mut self, e: &mut Expr) -> TyInfo {
        self.decls.pending = None;
        let t = self.expr_kind(e);
        self.decls.last = self.decls.pending.take();
        t
    }

    fn expr_kind(&mut self, e: &mut Expr) -> TyInfo {
        let span = e.span;
        match &mut e.kind {
            ExprKind::Literal(l) => match l {
                Literal::Number(_) => TyInfo {
                    ty: Ty::Num,
                    bare_literal: true,
                },
                Literal::Quantity(_, u) => info(Ty::Qty(u.dim())),
                Literal::Str(s) => info(Ty::of_value(&Value::Str(s.clone()))),
                Literal::Bool(_) => info(Ty::Bool),
                Literal::Null => info(Ty::Null),
            },
            ExprKind::Name { name, resolved } => {
                if let Some(pos) = self.scopes.iter().rposition(|n| n == name) {
                    *resolved = NameRef::Local(pos as u32);
                    let d = self.decls.slots.get(pos).copied().flatten();
                    self.decls.pending = d;
                    return info(d.map_or(Ty::Any, DeclType::ty));
                }
                *resolved = NameRef::Global;
                if let Some(f) = self.schema.get(name) {
                    self.decls.pending = Some(&f.ty);
                    return info(f.ty.ty());
                }
                match self.defaults.iter().find(|d| d.name == *name) {
                    Some(d) => info(Ty::of_value(&d.value)),
                    None => info(Ty::Any),
                }
            }
            ExprKind::Root => {
                self.decls.pending = (!self.schema.is_empty()).then_some(&self.schema.root);
                info(Ty::Obj)
            }
            ExprKind::List(items) => {
                for i in items.iter_mut() {
                    self.expr(i);
                }
                info(Ty::List)
            }
            ExprKind::Member(base, key) => {
                let b = self.expr(base);
                if let Some(DeclType::Object(o)) = self.decls.last {
                    if let Some(t) = self.declared_field(o, base, key, span) {
                        return t;
                    }
                }
                if !matches!(b.ty, Ty::Any | Ty::Obj) {
                    let bs = base.span;
                    let msg = format!(
                        "`{}` is {}, which has no fields",
                        self.text(bs),
                        b.ty.describe()
                    );
                    self.err(Code::TypeMismatch, span, msg);
                }
                info(Ty::Any)
            }
            ExprKind::Index(base, idx) => {
                let b = self.expr(base);
                let elem = element_decl(self.decls.last);
                let i = self.expr(idx);
                if let Some(d) = elem {
                    self.decls.pending = Some(d);
                    return info(d.ty());
                }
                if !matches!(b.ty, Ty::Any | Ty::Obj | Ty::List) {
                    let bs = base.span;
                    let msg = format!(
                        "`{}` is {}, which cannot be indexed",
                        self.text(bs),
                        b.ty.describe()
                    );
                    self.err(Code::TypeMismatch, span, msg);
                } else if !matches!(i.ty, Ty::Any | Ty::Num | Ty::Str) {
                    let is = idx.span;
                    let msg = format!(
                        "an index must be a number or a string, not {}",
                        i.ty.describe()
                    );
                    self.err(Code::TypeMismatch, is, msg);
                }
                info(Ty::Any)
            }
            ExprKind::Call { .. } => self.call(e),
            ExprKind::Not(inner) => {
                let t = self.expr(inner);
                self.logic_operand(t.ty, inner.span, "NOT");
                info(Ty::Bool)
            }
            ExprKind::Neg(inner) => {
                let t = self.expr(inner);
                match t.ty {
                    Ty::Qty(Dimension::Temperature) => {
                        self.err(
                            Code::TemperatureArithmetic,
                            span,
                            "temperatures can be compared, not negated",
                        )
                        .hint =
                            Some("compare with a negative literal instead, e.g. `T < -5C`".into());
                        info(Ty::Any)
                    }
                    Ty::Num | Ty::Qty(_) | Ty::Any => info(t.ty),
                    other => {
                        let msg = format!("cannot negate {}", other.describe());
                        self.err(Code::TypeMismatch, span, msg);
                        info(Ty::Any)
                    }
                }
            }
            ExprKind::Binary(op, l, r) => {
                let op = *op;
                let lt = self.expr(l);
                let rt = self.expr(r);
                match op {
                    BinOp::And | BinOp::Or => {
                        self.logic_operand(lt.ty, l.span, op.symbol());
                        self.logic_operand(rt.ty, r.span, op.symbol());
                        info(Ty::Bool)
                    }
                    _ if op.is_comparison() => {
                        self.comparison(op, l, lt, r, rt, span);
                        info(Ty::Bool)
                    }
                    _ => self.arithmetic(op, l, lt, r, rt, span),
                }
            }
            ExprKind::In {
                item, collection, ..
            } => {
                let it = self.expr(item);
                let ct = self.expr(collection);
                match ct.ty {
                    Ty::Any | Ty::List | Ty::Obj => {}
                    Ty::Str => {
                        if !matches!(it.ty, Ty::Any | Ty::Str) {
                            let msg = format!(
                                "`IN` on a string tests for a substring, but `{}` is {}",
                                self.text(item.span),
                                it.ty.describe()
                            );
                            self.err(Code::TypeMismatch, span, msg);
                        }
                    }
                    other => {
                        let cs = collection.span;
                        let msg = format!(
                            "`IN` needs a list, a string or an object, but `{}` is {}",
                            self.text(cs),
                            other.describe()
                        );
                        self.err(Code::TypeMismatch, cs, msg);
                    }
                }
                if let (Ty::Qty(_), true) = (ct.ty, it.bare_literal) {
                    self.bare_note(item, ct.ty, span);
                }
                info(Ty::Bool)
            }
            ExprKind::Match { scrutinee, arms } => {
                if !self.opts.features.match_expr {
                    self.err(
                        Code::FeatureDisabled,
                        span,
                        "`match` is disabled in this deployment (feature flag `match`)",
                    )
                    .hint = Some("use IF rules with `==` comparisons instead".into());
                }
                self.expr(scrutinee);
                let mut tys = Vec::new();
                let mut has_wild = false;
                for a in arms.iter_mut() {
                    has_wild |= a.wildcard;
                    tys.push(self.expr(&mut a.body).ty);
                }
                if !has_wild {
                    let sp = Span::new(
                        span.start as usize,
                        span.start as usize + 5,
                        span.line,
                        span.column,
                    );
                    self.err(
                        Code::MatchWithoutWildcard,
                        sp,
                        "this match has no `_` arm: a value no arm matches makes it unknown",
                    )
                    .hint = Some("add a last arm `_ => …`".into());
                }
                let first = tys.first().copied().unwrap_or(Ty::Any);
                info(if tys.iter().all(|t| *t == first) {
                    first
                } else {
                    Ty::Any
                })
            }
            ExprKind::Lambda(_) => {
                self.err(
                    Code::MisplacedLambda,
                    span,
                    "a lambda can only be an argument of map, filter, any, all, count or reduce",
                )
                .hint = Some("for example `any(xs, |x| x > 3)`".into());
                info(Ty::Any)
            }
            ExprKind::Error => info(Ty::Any),
        }
    }

    fn logic_operand(&mut self, t: Ty, span: Span, op: &str) {
        if !matches!(t, Ty::Any | Ty::Bool | Ty::Num) {
            let msg = format!(
                "`{op}` needs true or false, but `{}` is {}",
                self.text(span),
                t.describe()
            );
            self.err(Code::TypeMismatch, span, msg);
        }
    }

    fn comparison(&mut self, op: BinOp, l: &Expr, lt: TyInfo, r: &Expr, rt: TyInfo, span: Span) {
        use Ty::*;
        let ordering = !matches!(op, BinOp::Eq | BinOp::Ne);
        let describe =
            |c: &Checker, e: &Expr, t: Ty| format!("`{}` ({})", c.text(e.span), t.describe());
        let mismatch = |c: &mut Checker, code: Code| {
            let msg = format!(
                "cannot compare {} with {}",
                describe(c, l, lt.ty),
                describe(c, r, rt.ty)
            );
            let hint = match code {
                Code::DimensionMismatch => {
                    "quantities compare only within one dimension (e.g. length with length)"
                }
                _ => "compare values of the same kind",
            };
            c.err(code, span, msg).hint = Some(hint.into());
        };
        match (lt.ty, rt.ty) {
            (Any, _) | (_, Any) => {}
            (Num, Qty(_)) => {
                if lt.bare_literal {
                    self.bare_note(l, rt.ty, span)
                }
            }
            (Qty(_), Num) => {
                if rt.bare_literal {
                    self.bare_note(r, lt.ty, span)
                }
            }
            (Qty(a), Qty(b)) => {
                if a != b {
                    mismatch(self, Code::DimensionMismatch)
                }
            }
            (Num, Num) | (Str, Str) | (Time, Time) => {}
            (Time, Str) | (Str, Time) => {}
            (Bool, Bool) | (Bool, Num) | (Num, Bool) | (Null, _) | (_, Null) if !ordering => {}
            (List, List) | (Obj, Obj) if !ordering => {}
            _ => mismatch(self, Code::TypeMismatch),
        }
    }

    fn arithmetic(
        &mut self,
        op: BinOp,
        l: &Expr,
        lt: TyInfo,
        r: &Expr,
        rt: TyInfo,
        span: Span,
    ) -> TyInfo {
        use Ty::*;
        let temp = |t: Ty| t == Qty(Dimension::Temperature);
        if (temp(lt.ty) || temp(rt.ty)) && !matches!((lt.ty, rt.ty), (Any, _) | (_, Any)) {
            self.err(
                Code::TemperatureArithmetic,
                span,
                format!(
                    "temperatures can be compared but not used with `{}`",
                    op.symbol()
                ),
            )
            .hint = Some("compare temperatures directly, e.g. `Temperature > 45C`".into());
            return info(Any);
        }
        let bad = |c: &mut Checker, code: Code, what: &str| {
            let msg = format!(
                "cannot {what} `{}` ({}) and `{}` ({})",
                c.text(l.span),
                lt.ty.describe(),
                c.text(r.span),
                rt.ty.describe()
            );
            c.err(code, span, msg);
            info(Any)
        };
        let verb = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            BinOp::Mul => "multiply",
            _ => "divide",
        };
        match (op, lt.ty, rt.ty) {
            // `+`/`-` with a quantity on one side is a quantity of that
            // dimension whatever the other side holds (a value of another
            // kind makes it unknown at run time, never another dimension).
            // A duration is left out: next to a timestamp it gives one.
            (BinOp::Add | BinOp::Sub, Any, Qty(d)) | (BinOp::Add | BinOp::Sub, Qty(d), Any)
                if d != Dimension::Duration =>
            {
                info(Qty(d))
            }
            (BinOp::Sub, Qty(Dimension::Duration), Any) => info(Qty(Dimension::Duration)),
            (BinOp::Add, Str, Str) => info(Str),
            (BinOp::Add, Str, Any) | (BinOp::Add, Any, Str) => info(Any),
            (_, Any, t) | (_, t, Any) => {
                if t.numeric() || t == Time || (t == Str && op == BinOp::Add) {
                    info(Any)
                } else {
                    bad(self, Code::TypeMismatch, verb)
                }
            }
            (_, Num, Num) => TyInfo {
                ty: Num,
                bare_literal: lt.bare_literal && rt.bare_literal,
            },
            (BinOp::Add | BinOp::Sub, Qty(d), Num) => {
                if rt.bare_literal {
                    self.bare_note(r, lt.ty, span)
                }
                info(Qty(d))
            }
            (BinOp::Add | BinOp::Sub, Num, Qty(d)) => {
                if lt.bare_literal {
                    self.bare_note(l, rt.ty, span)
                }
                info(Qty(d))
            }
            (BinOp::Add | BinOp::Sub, Qty(a), Qty(b)) => {
                if a == b {
                    info(Qty(a))
                } else {
                    bad(self, Code::DimensionMismatch, verb)
                }
            }
            (BinOp::Mul, Qty(d), Num) | (BinOp::Mul, Num, Qty(d)) | (BinOp::Div, Qty(d), Num) => {
                info(Qty(d))
            }
            // A ratio scales a quantity.
            (BinOp::Mul, Qty(d), Qty(Dimension::Ratio))
            | (BinOp::Mul, Qty(Dimension::Ratio), Qty(d))
            | (BinOp::Div, Qty(d), Qty(Dimension::Ratio))
                if d != Dimension::Ratio =>
            {
                info(Qty(d))
            }
            (BinOp::Div, Qty(a), Qty(b)) if a == b => info(Num),
            (BinOp::Mul | BinOp::Div, Qty(_), Qty(_)) | (BinOp::Div, Num, Qty(_)) => {
                bad(self, Code::DimensionMismatch, verb)
            }
            (BinOp::Add, Time, Qty(Dimension::Duration))
            | (BinOp::Add, Qty(Dimension::Duration), Time) => info(Time),
            (BinOp::Sub, Time, Qty(Dimension::Duration)) => info(Time),
            (BinOp::Sub, Time, Time) => info(Qty(Dimension::Duration)),
            (BinOp::Add | BinOp::Sub, Time, Qty(_)) => bad(self, Code::DimensionMismatch, verb),
            _ => bad(self, Code::TypeMismatch, verb),
        }
    }

    /// A stdlib call: gating (module, feature flags), arity and lambdas here;
    /// the argument and return types and the literal checks from its entry.
    fn call(&mut self, e: &mut Expr) -> TyInfo {
        let span = e.span;
        let ExprKind::Call {
            name,
            name_span,
            func,
            args,
        } = &mut e.kind
        else {
            return info(Ty::Any);
        };
        let name_span = *name_span;
        let id = match stdlib::resolve(name) {
            Resolution::Found(id, module) => {
                self.gate(id.def(), name, module.unwrap_or("math"), name_span);
                id
            }
            Resolution::Denied(module) => {
                let msg =
                    format!("denied: no I/O in policies (`{name}` is in the `{module}` module)");
                self.err(Code::DeniedIo, name_span, msg).hint = Some(
                    "a policy reads only its request context: pass the data in the context instead"
                        .into(),
                );
                for a in args.iter_mut() {
                    self.expr_allow_lambda(a, None);
                }
                return info(Ty::Any);
            }
            Resolution::Unknown(suggestion) => {
                let msg = format!("unknown function `{name}`");
                let hint = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "see the standard library in docs/language.md".into(),
                };
                self.err(Code::UnknownFunction, name_span, msg).hint = Some(hint);
                for a in args.iter_mut() {
                    self.expr_allow_lambda(a, None);
                }
                return info(Ty::Any);
            }
        };
        *func = Some(id);
        let def = id.def();
        self.arity(def, args.len(), span);
        let mut tys = Vec::with_capacity(args.len());
        let mut first_decl = None;
        for (i, a) in args.iter_mut().enumerate() {
            let lam = def.lambda.filter(|h| h.arg == i).map(|h| h.params);
            // A lambda's last parameter walks the elements of the first argument.
            self.decls.lambda_elem = lam.and(element_decl(first_decl));
            tys.push(self.expr_allow_lambda(a, lam).ty);
            self.decls.lambda_elem = None;
            if i == 0 {
                first_decl = self.decls.last;
            }
            if lam.is_some() && !matches!(a.kind, ExprKind::Lambda(_)) {
                let msg = format!("the argument {} of `{}` must be a lambda", i + 1, def.name);
                self.err(Code::InvalidArgument, a.span, msg).hint =
                    Some(format!("call it as {}", def.signature));
            }
        }
        self.check_arg_types(def, args, &tys);
        if let Some(check) = def.check {
            check(self, args, span);
        }
        info(def.returns.of(&tys))
    }

    /// The module allow-list, the `time` flag, and the function's own flag.
    fn gate(&mut self, def: &FuncDef, name: &str, module: &str, name_span: Span) {
        let features = &self.opts.features;
        if !features.module_allowed(module) {
            let msg = format!(
                "`{}` is in the module `std::{module}`, which is disabled in this deployment (module allow-list)",
                name
            );
            self.err(Code::FeatureDisabled, name_span, msg);
        } else if module == "time" && !features.time {
            let msg = format!("`{name}` is disabled in this deployment (feature flag `time`)");
            self.err(Code::FeatureDisabled, name_span, msg);
        } else if let Some(flag) = def.flag.filter(|f| !(f.enabled)(features)) {
            let msg = format!(
                "`{}` is disabled in this deployment (feature flag `{}`)",
                def.name, flag.name
            );
            self.err(Code::FeatureDisabled, name_span, msg).hint = Some(flag.hint.into());
        }
    }

    fn arity(&mut self, def: &FuncDef, given: usize, span: Span) {
        if given >= def.min_args && given <= def.max_args {
            return;
        }
        let expected = if def.max_args == VARIADIC {
            format!("at least {}", def.min_args)
        } else if def.min_args == def.max_args {
            format!("{}", def.min_args)
        } else {
            format!("{} or {}", def.min_args, def.max_args)
        };
        let msg = format!(
            "`{}` takes {expected} argument{}, but {} {} given",
            def.name,
            if expected == "1" || expected == "at least 1" {
                ""
            } else {
                "s"
            },
            given,
            if given == 1 { "was" } else { "were" }
        );
        self.err(Code::WrongArity, span, msg).hint = Some(format!("call it as {}", def.signature));
    }

    fn expr_allow_lambda(&mut self, a: &mut Expr, params: Option<usize>) -> TyInfo {
        let span = a.span;
        match (&mut a.kind, params) {
            (ExprKind::Lambda(lam), Some(n)) => {
                if !self.opts.features.lambdas {
                    self.err(
                        Code::FeatureDisabled,
                        span,
                        "lambdas are disabled in this deployment (feature flag `lambdas`)",
                    );
                }
                if lam.params.len() != n {
                    let msg = format!(
                        "this lambda takes {} parameter{}, but {} expected here",
                        lam.params.len(),
                        if lam.params.len() == 1 { "" } else { "s" },
                        if n == 1 { "one is" } else { "two are" }
                    );
                    self.err(Code::WrongArity, span, msg);
                }
                lam.first_slot = self.scopes.len() as u32;
                let elem = self.decls.lambda_elem.take();
                for (i, (p, _)) in lam.params.iter().enumerate() {
                    if i + 1 == lam.params.len() {
                        self.decls.next_slot = elem;
                    }
                    self.push_scope(p.clone());
                }
                self.expr(&mut lam.body);
                for _ in &lam.params {
                    self.scopes.pop();
                }
                info(Ty::Any)
            }
            _ => self.expr(a),
        }
    }

    fn check_arg_types(&mut self, def: &FuncDef, args: &[Expr], tys: &[Ty]) {
        let want_str = def.args == ArgTypes::Strings;
        let want_num = def.args == ArgTypes::Numbers;
        for (a, t) in args.iter().zip(tys) {
            let bad = (want_str && !matches!(t, Ty::Any | Ty::Str)) || (want_num && !t.numeric());
            if bad {
                let msg = format!(
                    "`{}` expects {}, but `{}` is {}",
                    def.name,
                    if want_str { "strings" } else { "numbers" },
                    self.text(a.span),
                    t.describe()
                );
                self.err(Code::TypeMismatch, a.span, msg).hint =
                    Some(format!("call it as {}", def.signature));
            }
        }
    }
}

/// The declaration of the elements of a declared list.
fn element_decl(d: Option<&DeclType>) -> Option<&DeclType> {
    match d {
        Some(DeclType::List(Some(e))) => Some(e),
        _ => None,
    }
}

impl<'a> Checker<'a> {
    /// `base.key` where `base` is a declared object: the field's type, or
    /// `E0313` when the object lists its fields and `key` is not one of them.
    /// `None`: an open object without this field (nothing is known).
    fn declared_field(
        &mut self,
        o: &'a crate::types::ObjDecl,
        base: &Expr,
        key: &str,
        span: Span,
    ) -> Option<TyInfo> {
        if let Some(f) = o.field(key) {
            self.decls.pending = Some(&f.ty);
            return Some(info(f.ty.ty()));
        }
        if o.open {
            return None;
        }
        let names = o.fields.iter().map(|f| &*f.name);
        let hint = match crate::diagnostics::suggest(key, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "declare the field in SCHEMA, or read one the declaration lists".into(),
        };
        let declared = o
            .fields
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "`{}` is declared with the fields {}, not `{key}`",
            self.text(base.span),
            if declared.is_empty() {
                "(none)".to_string()
            } else {
                declared
            },
        );
        self.err(Code::UndeclaredField, span, msg).hint = Some(hint);
        Some(info(Ty::Any))
    }

    /// A CONTEXT default of a declared name must fit its declaration.
    fn defaults_fit_declarations(&mut self) {
        if self.schema.is_empty() {
            return;
        }
        for d in self.defaults {
            let Some(f) = self.schema.get(&d.name) else {
                continue;
            };
            if let Some(m) = crate::types::value_misfit(&d.value, &f.ty) {
                let code = if m.dimension {
                    Code::DimensionMismatch
                } else {
                    Code::TypeMismatch
                };
                let msg = format!(
                    "the default of `{}` is {}, but `{}` is declared {}",
                    d.name,
                    m.received,
                    d.name,
                    f.ty.describe()
                );
                self.err(code, d.span, msg).hint = Some(
                    "make the default fit the declaration in SCHEMA, or change the declaration"
                        .into(),
                );
            }
        }
    }
}

impl CheckContext for Checker<'_> {
    fn error(&mut self, code: Code, span: Span, message: String) -> &mut Diagnostic {
        self.err(code, span, message)
    }

    fn regexes(&mut self) -> &mut stdlib::RegexBudget {
        &mut self.regexes
    }
}
