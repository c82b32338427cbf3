//! The rule and expression parser (`docs/language.md#rules`) over the tokens of one
//! RULE section. Recursive descent with precedence levels; every recursion is
//! counted, so nesting past the limits is a diagnostic, never a stack
//! overflow. After an error the parser skips to the next rule item and keeps
//! going, so one pass reports every broken rule; a `recovering` flag silences
//! the follow-on errors of the same item.

use crate::ast::*;
use crate::diagnostics::{suggest_keyword, Code, Diagnostic};
use crate::lexer::{Keyword, Tok, Token};
use crate::span::Span;
use std::sync::Arc;

pub use crate::limits::NestingLimits;

pub struct Parser<'a> {
    src: &'a str,
    toks: &'a [Token],
    pos: usize,
    diags: &'a mut Vec<Diagnostic>,
    limits: NestingLimits,
    expr_depth: usize,
    block_depth: usize,
    recovering: bool,
    next_top_id: &'a mut u32,
    /// Open `(` and `[` in the current expression: inside them line breaks
    /// are insignificant, so a condition may span lines.
    group_depth: usize,
}

type PResult<T> = Result<T, ()>;

impl<'a> Parser<'a> {
    pub fn new(
        src: &'a str,
        toks: &'a [Token],
        diags: &'a mut Vec<Diagnostic>,
        limits: NestingLimits,
        next_top_id: &'a mut u32,
    ) -> Parser<'a> {
        Parser {
            src,
            toks,
            pos: 0,
            diags,
            limits,
            expr_depth: 0,
            block_depth: 0,
            recovering: false,
            next_top_id,
            group_depth: 0,
        }
    }

    // ----- token helpers -------------------------------------------------

    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }
    fn peek_tok(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }
    fn span(&self) -> Span {
        self.peek_tok().span
    }
    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1).min(self.toks.len() - 1)].span
    }
    fn bump(&mut self) -> Token {
        let t = self.peek_tok().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        if self.group_depth > 0 {
            self.skip_newlines();
        }
        t
    }

    fn open_group(&mut self) {
        self.group_depth += 1;
        self.skip_newlines();
    }

    /// Consumes the closing token of a group, if it is next.
    fn close_group(&mut self, close: &Tok) -> bool {
        if self.at(close) {
            self.group_depth = self.group_depth.saturating_sub(1);
            self.bump();
            true
        } else {
            false
        }
    }
    fn at(&self, t: &Tok) -> bool {
        self.peek() == t
    }
    fn at_kw(&self, k: Keyword) -> bool {
        matches!(self.peek(), Tok::Kw(x) if *x == k)
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.at(t) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn skip_newlines(&mut self) {
        while self.at(&Tok::Newline) {
            self.bump();
        }
    }

    fn error(&mut self, code: Code, span: Span, msg: impl Into<String>) -> Option<&mut Diagnostic> {
        if self.recovering {
            return None;
        }
        self.recovering = true;
        self.diags.push(Diagnostic::new(code, span, msg));
        self.diags.last_mut()
    }

    fn unexpected(&mut self, expected: &str) {
        let t = self.peek_tok().clone();
        let msg = format!("expected {expected}, found {}", t.tok.describe());
        let span = if t.tok == Tok::Newline || t.tok == Tok::Eof {
            // Point just after the previous token: that is where something is missing.
            let p = self.prev_span();
            let prev_is_newline = self.pos > 0 && self.toks[self.pos - 1].tok == Tok::Newline;
            if prev_is_newline || self.pos == 0 {
                Span::new(p.start as usize, p.start as usize, p.line, p.column)
            } else {
                let width = self
                    .src
                    .get(p.range())
                    .map(|t| t.chars().count())
                    .unwrap_or(0) as u32;
                Span::new(p.end as usize, p.end as usize, p.line, p.column + width)
            }
        } else {
            t.span
        };
        let hint = space_before_unit_hint(&self.toks[..=self.pos.min(self.toks.len() - 1)]);
        let toks = self.toks;
        let prev = self.pos.checked_sub(1).and_then(|i| toks.get(i));
        if let Some(d) = self.error(Code::UnexpectedToken, span, msg) {
            if let Some((code, h)) = hint {
                d.code = code;
                d.message = "a unit must follow its number directly".into();
                d.hint = Some(h);
            } else if let Tok::Ident(word) = &t.tok {
                // A word where a keyword could go is most often a misspelt one.
                if let Some(k) = suggest_keyword(word, Keyword::NAMES, expected) {
                    d.hint = Some(format!("did you mean {k}?"));
                }
            }
            // A misspelt keyword before it was read as a name (`MACTH x {`).
            if let (
                None,
                Some(Token {
                    tok: Tok::Ident(word),
                    ..
                }),
            ) = (&d.hint, prev)
            {
                if let Some(k) = suggest_keyword(word, Keyword::NAMES, "") {
                    d.hint = Some(format!("did you mean {k}? (`{word}` reads as a name)"));
                }
            }
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> PResult<Span> {
        if self.at(t) {
            Ok(self.bump().span)
        } else {
            self.unexpected(what);
            Err(())
        }
    }

    /// Skips the rest of the line. A `{` left open on it means a block whose
    /// body follows: it is parsed and discarded so its `}` is not stray.
    fn skip_line(&mut self) {
        self.group_depth = 0;
        let mut open: i64 = 0;
        loop {
            match self.peek() {
                Tok::Newline | Tok::Eof => break,
                Tok::LBrace => open += 1,
                Tok::RBrace => {
                    if open == 0 {
                        break;
                    }
                    open -= 1
                }
                _ => {}
            }
            self.bump();
        }
        for _ in 0..open {
            if self.at(&Tok::Eof) {
                break;
            }
            let mut sink = Vec::new();
            let saved = self.block_depth;
            // Parsing the discarded body with the same machinery keeps nested
            // braces balanced; depth is bounded because each level consumes a `{`.
            self.block_depth = self.limits.block_depth;
            let _ = self.block_items(&mut sink, "", true);
            self.block_depth = saved;
        }
    }

    // ----- rules ---------------------------------------------------------

    /// Parses the whole RULE section.
    pub(crate) fn parse_section(&mut self) -> Vec<Rule> {
        let mut rules = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek().clone() {
                Tok::Eof => break,
                Tok::RBrace => {
                    self.recovering = false;
                    let sp = self.span();
                    self.error(Code::UnexpectedToken, sp, "this `}` closes no block");
                    self.bump();
                    self.recovering = false;
                }
                _ => self.item(&mut rules, None),
            }
        }
        rules
    }

    fn next_id(&mut self, parent: Option<&str>, index: usize) -> Arc<str> {
        match parent {
            Some(p) => Arc::from(format!("{p}.{}", index + 1)),
            None => {
                *self.next_top_id += 1;
                Arc::from(format!("R{}", self.next_top_id))
            }
        }
    }

    /// One rule item (with or without its dash) at the current level.
    fn item(&mut self, out: &mut Vec<Rule>, parent: Option<&str>) {
        self.recovering = false;
        self.group_depth = 0;
        if !self.eat(&Tok::ItemDash) {
            match self.peek() {
                Tok::Kw(Keyword::If | Keyword::For | Keyword::While) => {
                    let sp = self.span();
                    self.diags.push(
                        Diagnostic::new(Code::NotAnItem, sp, "a rule must start a line with `-`")
                            .with_hint("write `- IF …` on its own line"),
                    );
                }
                _ => {
                    self.unexpected("a rule item starting with `-`");
                    self.skip_line();
                    return;
                }
            }
        }
        let id = self.next_id(parent, out.len());
        match self.rule(id) {
            Ok(rule) => {
                out.push(rule);
                match self.peek() {
                    Tok::Newline | Tok::Eof | Tok::RBrace => {}
                    _ => {
                        self.unexpected("the end of the rule");
                        self.skip_line();
                    }
                }
            }
            Err(()) => self.skip_line(),
        }
    }

    fn rule(&mut self, id: Arc<str>) -> PResult<Rule> {
        let start = self.span();
        match self.peek() {
            Tok::Kw(Keyword::If) => self.if_rule(id, start),
            Tok::Kw(Keyword::For) => self.for_rule(id, start),
            Tok::Kw(Keyword::While) => self.while_rule(id, start),
            Tok::Kw(Keyword::Then) => {
                let sp = self.span();
                if let Some(d) = self.error(Code::UnexpectedToken, sp, "THEN without an IF") {
                    d.hint = Some("a `- THEN` line must follow an `- IF` line".into());
                }
                Err(())
            }
            _ => {
                self.unexpected("IF, FOR or WHILE");
                Err(())
            }
        }
    }

    fn if_rule(&mut self, id: Arc<str>, start: Span) -> PResult<Rule> {
        self.bump();
        let cond = self.expr()?;
        let mut legacy = false;
        if !self.at_kw(Keyword::Then) {
            // Legacy two-line form: `- IF cond` NL `- THEN actions`.
            let save = self.pos;
            self.skip_newlines();
            if self.at(&Tok::ItemDash) && matches!(self.peek_at(1), Tok::Kw(Keyword::Then)) {
                self.bump();
                legacy = true;
                let sp = self.span();
                self.diags.push(
                    Diagnostic::new(
                        Code::LegacyTwoLineIf,
                        sp,
                        "legacy two-line IF: THEN is on its own item",
                    )
                    .with_hint("write `- IF condition THEN actions` on one line"),
                );
            } else {
                self.pos = save;
                self.unexpected("THEN");
                return Err(());
            }
        }
        self.bump(); // THEN
        let then_actions = self.actions()?;
        let mut else_actions = Vec::new();
        if self.at_kw(Keyword::Else) {
            self.bump();
            else_actions = self.actions()?;
        } else {
            // Legacy: ELSE may also sit on its own item line.
            let save = self.pos;
            self.skip_newlines();
            if legacy
                && self.at(&Tok::ItemDash)
                && matches!(self.peek_at(1), Tok::Kw(Keyword::Else))
            {
                self.bump();
                self.bump();
                else_actions = self.actions()?;
            } else {
                self.pos = save;
            }
        }
        let span = start.to(self.prev_span());
        Ok(Rule {
            id,
            index: 0,
            span,
            kind: RuleKind::If {
                cond,
                then_actions,
                else_actions,
                legacy_two_line: legacy,
            },
        })
    }

    fn actions(&mut self) -> PResult<Vec<Action>> {
        let mut out = Vec::new();
        loop {
            let t = self.peek_tok().clone();
            let name = match &t.tok {
                Tok::Ident(n) => n.clone(),
                _ => {
                    self.unexpected("an action name");
                    return Err(());
                }
            };
            self.bump();
            let mut args = Vec::new();
            match self.peek().clone() {
                Tok::Str(s) => {
                    let sp = self.bump().span;
                    args.push(Expr {
                        kind: ExprKind::Literal(Literal::Str(s)),
                        span: sp,
                    });
                }
                Tok::LParen => {
                    self.bump();
                    args = self.expr_list(&Tok::RParen, "`)` after the action's arguments")?;
                }
                _ => {}
            }
            out.push(Action {
                name,
                args,
                span: t.span.to(self.prev_span()),
            });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    fn for_rule(&mut self, id: Arc<str>, start: Span) -> PResult<Rule> {
        self.bump();
        let (var, var_span) = match self.peek().clone() {
            Tok::Ident(n) => (n, self.bump().span),
            _ => {
                self.unexpected("a loop variable name");
                return Err(());
            }
        };
        if !self.at_kw(Keyword::In) {
            self.unexpected("IN");
            return Err(());
        }
        self.bump();
        let iterable = self.expr()?;
        let header = start.to(self.prev_span());
        let mut body = Vec::new();
        let braceless;
        if self.at(&Tok::LBrace) {
            braceless = false;
            self.block(&mut body, &id)?;
        } else if self.at(&Tok::Newline) || self.at(&Tok::Eof) {
            // Legacy: the body is the rest of the section (or enclosing block).
            braceless = true;
            self.diags.push(
                Diagnostic::new(
                    Code::LegacyBracelessFor,
                    header,
                    "legacy FOR without braces: its body is the rest of the section",
                )
                .with_hint("wrap the loop body in `{` … `}`"),
            );
            loop {
                self.skip_newlines();
                match self.peek() {
                    Tok::Eof | Tok::RBrace => break,
                    _ => self.item(&mut body, Some(&id)),
                }
            }
        } else {
            self.unexpected("`{` to start the loop body");
            return Err(());
        }
        Ok(Rule {
            id,
            index: 0,
            span: header,
            kind: RuleKind::For {
                var,
                var_span,
                slot: 0,
                label: Arc::from(""),
                iterable,
                body,
                braceless,
            },
        })
    }

    fn while_rule(&mut self, id: Arc<str>, start: Span) -> PResult<Rule> {
        self.bump();
        let cond = self.expr()?;
        let header = start.to(self.prev_span());
        let mut body = Vec::new();
        if !self.at(&Tok::LBrace) {
            self.unexpected("`{` to start the WHILE body");
            return Err(());
        }
        self.block(&mut body, &id)?;
        Ok(Rule {
            id,
            index: 0,
            span: header,
            kind: RuleKind::While { cond, body },
        })
    }

    /// `{` NL items `}`.
    fn block(&mut self, out: &mut Vec<Rule>, parent: &str) -> PResult<()> {
        self.block_items(out, parent, false)
    }

    fn block_items(&mut self, out: &mut Vec<Rule>, parent: &str, discard: bool) -> PResult<()> {
        let open = self.bump().span; // `{`
        self.block_depth += 1;
        let too_deep = self.block_depth > self.limits.block_depth;
        if too_deep && !discard {
            self.recovering = false;
            if let Some(d) = self.error(
                Code::NestingTooDeep,
                open,
                format!(
                    "blocks are nested more than {} deep",
                    self.limits.block_depth
                ),
            ) {
                d.hint = Some("split the policy into flatter rules".into());
            }
        }
        if too_deep {
            // Skip to the matching `}` without recursing.
            let mut depth = 1usize;
            loop {
                match self.peek() {
                    Tok::Eof => break,
                    Tok::LBrace => depth += 1,
                    Tok::RBrace => {
                        depth -= 1;
                        if depth == 0 {
                            self.bump();
                            break;
                        }
                    }
                    _ => {}
                }
                self.bump();
            }
            self.block_depth -= 1;
            return if discard { Ok(()) } else { Err(()) };
        }
        let mut closed = false;
        loop {
            self.skip_newlines();
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    closed = true;
                    break;
                }
                Tok::Eof => break,
                _ => {
                    if discard {
                        self.recovering = true;
                        let mut sink = Vec::new();
                        self.item_discard(&mut sink);
                    } else {
                        self.item(out, Some(parent));
                    }
                }
            }
        }
        self.block_depth -= 1;
        if !closed && !discard {
            self.recovering = false;
            if let Some(d) = self.error(Code::UnclosedDelimiter, open, "this block is never closed")
            {
                d.hint = Some("add a line with `}` after the block's rules".into());
            }
            return Err(());
        }
        Ok(())
    }

    fn item_discard(&mut self, sink: &mut Vec<Rule>) {
        let rec = self.recovering;
        self.item(sink, Some("_"));
        self.recovering = rec;
    }

    // ----- expressions ---------------------------------------------------

    fn enter(&mut self) -> PResult<()> {
        self.expr_depth += 1;
        if self.expr_depth > self.limits.expr_depth {
            let sp = self.span();
            if let Some(d) = self.error(
                Code::NestingTooDeep,
                sp,
                format!(
                    "expression nested more than {} deep",
                    self.limits.expr_depth
                ),
            ) {
                d.hint = Some("split the condition into simpler parts".into());
            }
            self.expr_depth -= 1;
            return Err(());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.expr_depth -= 1;
    }

    /// Chains (`a + b + c`, `A.b.c`, `A[0][1]`) nest one level per link
    /// (they are left-associated), so each link counts like a parenthesis:
    /// a long chain gets E0106 at its start instead of building a tree too
    /// deep for the checker, evaluator and formatter. The chain functions
    /// note the depth they started at and restore it on every exit, without
    /// a helper frame: this recursion is what the limit protects, and every
    /// frame per level counts.
    fn unlink(&mut self, base: usize, r: PResult<Expr>) -> PResult<Expr> {
        self.expr_depth = base;
        r
    }

    /// One more link of a chain that started at `start`.
    fn link(&mut self, start: Span) -> PResult<()> {
        self.expr_depth += 1;
        if self.expr_depth > self.limits.expr_depth {
            self.nesting_error(start);
            return Err(());
        }
        Ok(())
    }

    fn nesting_error(&mut self, at: Span) {
        let limit = self.limits.expr_depth;
        if let Some(d) = self.error(
            Code::NestingTooDeep,
            at,
            format!("expression nested more than {limit} deep (each operator, `.` and `[…]` of a chain counts)"),
        ) {
            d.hint = Some(
                "split the condition into simpler parts; a long list of alternatives reads better as `x IN [a, b, c]`"
                    .into(),
            );
        }
    }

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        let top = self.expr_depth == 0;
        self.enter()?;
        let r = self.or_expr();
        self.leave();
        let e = r?;
        if top {
            // The links of a chain are counted as they are read, but an
            // operand read early ends up deeper than the count said (in
            // `(x + y + z) + b + c` the parenthesis sits three levels down):
            // measure the finished tree once.
            if let Some(at) = first_too_deep(&e, self.limits.expr_depth) {
                self.nesting_error(at);
                return Err(());
            }
        }
        Ok(e)
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let base = self.expr_depth;
        let mut lhs = self.and_expr()?;
        while self.at_kw(Keyword::Or) {
            if self.link(lhs.span).is_err() {
                return self.unlink(base, Err(()));
            }
            self.bump();
            match self.and_expr() {
                Ok(rhs) => lhs = bin(BinOp::Or, lhs, rhs),
                Err(()) => return self.unlink(base, Err(())),
            }
        }
        self.unlink(base, Ok(lhs))
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let base = self.expr_depth;
        let mut lhs = self.not_expr()?;
        while self.at_kw(Keyword::And) {
            if self.link(lhs.span).is_err() {
                return self.unlink(base, Err(()));
            }
            self.bump();
            match self.not_expr() {
                Ok(rhs) => lhs = bin(BinOp::And, lhs, rhs),
                Err(()) => return self.unlink(base, Err(())),
            }
        }
        self.unlink(base, Ok(lhs))
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.at_kw(Keyword::Not) {
            let start = self.bump().span;
            self.enter()?;
            let inner = self.not_expr();
            self.leave();
            let inner = inner?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.cmp_expr()
    }

    fn cmp_op(&self) -> Option<CmpOp> {
        Some(match self.peek() {
            Tok::EqEq => CmpOp::Bin(BinOp::Eq),
            Tok::Assign => CmpOp::LegacyEq,
            Tok::Ne => CmpOp::Bin(BinOp::Ne),
            Tok::Lt => CmpOp::Bin(BinOp::Lt),
            Tok::Le => CmpOp::Bin(BinOp::Le),
            Tok::Gt => CmpOp::Bin(BinOp::Gt),
            Tok::Ge => CmpOp::Bin(BinOp::Ge),
            Tok::Kw(Keyword::In) => CmpOp::In(false),
            Tok::Kw(Keyword::Not) if matches!(self.peek_at(1), Tok::Kw(Keyword::In)) => {
                CmpOp::In(true)
            }
            _ => return None,
        })
    }

    fn cmp_expr(&mut self) -> PResult<Expr> {
        let lhs = self.add_expr()?;
        let Some(op) = self.cmp_op() else {
            return Ok(lhs);
        };
        let op_tok = self.bump();
        if matches!(op, CmpOp::In(true)) {
            self.bump();
        }
        if matches!(op, CmpOp::LegacyEq) {
            self.diags.push(
                Diagnostic::new(
                    Code::LegacyAssign,
                    op_tok.span,
                    "`=` in a condition is the legacy spelling of `==`",
                )
                .with_hint("write `==`"),
            );
        }
        let rhs = self.add_expr()?;
        if self.cmp_op().is_some() {
            let sp = self.span();
            if let Some(d) = self.error(Code::UnexpectedToken, sp, "comparisons cannot be chained")
            {
                d.hint = Some("combine comparisons with AND, e.g. `a < b AND b < c`".into());
            }
            return Err(());
        }
        let span = lhs.span.to(rhs.span);
        let kind = match op {
            CmpOp::Bin(b) => ExprKind::Binary(b, Box::new(lhs), Box::new(rhs)),
            CmpOp::LegacyEq => ExprKind::Binary(BinOp::Eq, Box::new(lhs), Box::new(rhs)),
            CmpOp::In(negated) => ExprKind::In {
                negated,
                item: Box::new(lhs),
                collection: Box::new(rhs),
            },
        };
        Ok(Expr { kind, span })
    }

    fn add_expr(&mut self) -> PResult<Expr> {
        let base = self.expr_depth;
        let mut lhs = self.mul_expr()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => break,
            };
            if self.link(lhs.span).is_err() {
                return self.unlink(base, Err(()));
            }
            self.bump();
            match self.mul_expr() {
                Ok(rhs) => lhs = bin(op, lhs, rhs),
                Err(()) => return self.unlink(base, Err(())),
            }
        }
        self.unlink(base, Ok(lhs))
    }

    fn mul_expr(&mut self) -> PResult<Expr> {
        let base = self.expr_depth;
        let mut lhs = self.unary_expr()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => break,
            };
            if self.link(lhs.span).is_err() {
                return self.unlink(base, Err(()));
            }
            self.bump();
            match self.unary_expr() {
                Ok(rhs) => lhs = bin(op, lhs, rhs),
                Err(()) => return self.unlink(base, Err(())),
            }
        }
        self.unlink(base, Ok(lhs))
    }

    fn unary_expr(&mut self) -> PResult<Expr> {
        if self.at(&Tok::Minus) {
            let start = self.bump().span;
            self.enter()?;
            let inner = self.unary_expr();
            self.leave();
            let inner = inner?;
            let span = start.to(inner.span);
            // Fold `-5`, `-5C` into literals.
            let kind = match inner.kind {
                ExprKind::Literal(Literal::Number(v)) => ExprKind::Literal(Literal::Number(-v)),
                ExprKind::Literal(Literal::Quantity(v, u)) => {
                    ExprKind::Literal(Literal::Quantity(-v, u))
                }
                other => ExprKind::Neg(Box::new(Expr {
                    kind: other,
                    span: inner.span,
                })),
            };
            return Ok(Expr { kind, span });
        }
        self.postfix_expr()
    }

    fn postfix_expr(&mut self) -> PResult<Expr> {
        // Parentheses, `match` and calls recurse through `primary`: keep that
        // path free of the chain's own frame.
        let e = self.primary()?;
        if !matches!(self.peek(), Tok::Dot | Tok::LBracket | Tok::LParen) {
            return Ok(e);
        }
        let base = self.expr_depth;
        let r = self.postfix_links(e);
        self.unlink(base, r)
    }

    fn postfix_links(&mut self, mut e: Expr) -> PResult<Expr> {
        loop {
            if matches!(self.peek(), Tok::Dot | Tok::LBracket) {
                self.link(e.span)?;
            }
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let t = self.peek_tok().clone();
                    let name: Arc<str> = match &t.tok {
                        Tok::Ident(n) => n.clone(),
                        // Keywords are fields too (`Obj.In`): keep the spelling as written.
                        Tok::Kw(_) => Arc::from(self.src.get(t.span.range()).unwrap_or("")),
                        _ => {
                            self.unexpected("a field name after `.`");
                            return Err(());
                        }
                    };
                    self.bump();
                    let span = e.span.to(t.span);
                    e = Expr {
                        kind: ExprKind::Member(Box::new(e), name),
                        span,
                    };
                }
                Tok::LBracket => {
                    self.bump();
                    self.open_group();
                    let idx = self.expr()?;
                    let close = self.span();
                    if !self.close_group(&Tok::RBracket) {
                        self.unexpected("`]`");
                        return Err(());
                    }
                    let span = e.span.to(close);
                    e = Expr {
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                        span,
                    };
                }
                Tok::LParen => {
                    let sp = self.span();
                    if let Some(d) =
                        self.error(Code::UnexpectedToken, sp, "only functions can be called")
                    {
                        d.hint = Some("call a function by name, e.g. `avg(xs)`".into());
                    }
                    return Err(());
                }
                _ => break,
            }
        }
        Ok(e)
    }

    /// A comma-separated list after its opening token, through `close`.
    fn expr_list(&mut self, close: &Tok, what: &str) -> PResult<Vec<Expr>> {
        let mut items = Vec::new();
        self.open_group();
        if self.close_group(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat(&Tok::Comma) {
                if self.close_group(close) {
                    break;
                }
                continue;
            }
            if self.close_group(close) {
                break;
            }
            self.unexpected(what);
            return Err(());
        }
        Ok(items)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek_tok().clone();
        let lit = |l| {
            Ok(Expr {
                kind: ExprKind::Literal(l),
                span: t.span,
            })
        };
        match &t.tok {
            Tok::Num(v, unit) => {
                self.bump();
                if unit.is_none() {
                    self.check_space_before_unit(&t);
                }
                match unit {
                    Some(u) => lit(Literal::Quantity(*v, *u)),
                    None => lit(Literal::Number(*v)),
                }
            }
            Tok::Str(s) => {
                self.bump();
                lit(Literal::Str(s.clone()))
            }
            Tok::Kw(Keyword::True) => {
                self.bump();
                lit(Literal::Bool(true))
            }
            Tok::Kw(Keyword::False) => {
                self.bump();
                lit(Literal::Bool(false))
            }
            Tok::Kw(Keyword::Null) => {
                self.bump();
                lit(Literal::Null)
            }
            Tok::Dollar => {
                self.bump();
                Ok(Expr {
                    kind: ExprKind::Root,
                    span: t.span,
                })
            }
            Tok::Ident(name) => {
                self.bump();
                let mut full = name.to_string();
                let mut end = t.span;
                let mut qualified = false;
                while self.at(&Tok::ColonColon) {
                    self.bump();
                    match self.peek().clone() {
                        Tok::Ident(n) => {
                            full.push_str("::");
                            full.push_str(&n);
                            end = self.bump().span;
                            qualified = true;
                        }
                        _ => {
                            self.unexpected("a name after `::`");
                            return Err(());
                        }
                    }
                }
                let name_span = t.span.to(end);
                if self.at(&Tok::LParen) {
                    self.bump();
                    let args = self.expr_list(&Tok::RParen, "`,` or `)` in the argument list")?;
                    let span = name_span.to(self.prev_span());
                    return Ok(Expr {
                        kind: ExprKind::Call {
                            name: Arc::from(full),
                            name_span,
                            func: None,
                            args,
                        },
                        span,
                    });
                }
                if qualified {
                    self.unexpected("`(` after the function name");
                    return Err(());
                }
                Ok(Expr {
                    kind: ExprKind::Name {
                        name: name.clone(),
                        resolved: NameRef::Unresolved,
                    },
                    span: t.span,
                })
            }
            Tok::LParen => {
                self.bump();
                self.open_group();
                let inner = self.expr()?;
                let close = self.span();
                if !self.close_group(&Tok::RParen) {
                    self.unexpected("`)`");
                    return Err(());
                }
                Ok(Expr {
                    kind: inner.kind,
                    span: t.span.to(close),
                })
            }
            Tok::LBracket => {
                self.bump();
                let items = self.expr_list(&Tok::RBracket, "`,` or `]` in the list")?;
                Ok(Expr {
                    kind: ExprKind::List(items),
                    span: t.span.to(self.prev_span()),
                })
            }
            Tok::Pipe => self.lambda(),
            Tok::Kw(Keyword::Match) => self.match_expr(),
            _ => {
                self.unexpected("a value, a name or `(`");
                Err(())
            }
        }
    }

    /// `2 m` is the number 2 and the name `m`: say so with a hint.
    fn check_space_before_unit(&mut self, num: &Token) {
        let next = self.peek_tok().clone();
        if let Tok::Ident(n) = &next.tok {
            if next.space_before
                && next.span.line == num.span.line
                && crate::units::lookup(n).is_some()
                && !matches!(self.peek_at(1), Tok::LParen | Tok::ColonColon)
            {
                let span = num.span.to(next.span);
                self.recovering = false;
                let _ = self.error(
                    Code::SpaceBeforeUnit,
                    span,
                    "a unit must follow its number directly",
                );
                if let Some(d) = self.diags.last_mut() {
                    d.hint = Some(format!("write {}{n}, without a space", fmt_num_token(num)));
                }
            }
        }
    }

    fn lambda(&mut self) -> PResult<Expr> {
        let start = self.bump().span; // `|`
        let mut params = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::Ident(n) => {
                    let sp = self.bump().span;
                    params.push((n, sp));
                }
                Tok::Pipe if params.is_empty() => break,
                _ => {
                    self.unexpected("a parameter name");
                    return Err(());
                }
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::Pipe, "`|` after the lambda's parameters")?;
        let body = self.expr()?;
        let span = start.to(body.span);
        Ok(Expr {
            kind: ExprKind::Lambda(Box::new(Lambda {
                params,
                first_slot: 0,
                body,
            })),
            span,
        })
    }

    fn pattern(&mut self) -> PResult<Option<Literal>> {
        let t = self.peek_tok().clone();
        let neg = matches!(t.tok, Tok::Minus);
        if neg {
            self.bump();
        }
        let t2 = self.peek_tok().clone();
        let sign = if neg { -1.0 } else { 1.0 };
        let l = match &t2.tok {
            Tok::Num(v, None) => Literal::Number(sign * v),
            Tok::Num(v, Some(u)) => Literal::Quantity(sign * v, *u),
            Tok::Str(s) if !neg => Literal::Str(s.clone()),
            Tok::Kw(Keyword::True) if !neg => Literal::Bool(true),
            Tok::Kw(Keyword::False) if !neg => Literal::Bool(false),
            Tok::Kw(Keyword::Null) if !neg => Literal::Null,
            Tok::Ident(n) if !neg && &**n == "_" => {
                self.bump();
                return Ok(None);
            }
            _ => {
                self.unexpected("a literal pattern or `_`");
                return Err(());
            }
        };
        self.bump();
        Ok(Some(l))
    }

    fn match_expr(&mut self) -> PResult<Expr> {
        let start = self.bump().span;
        let scrutinee = self.expr()?;
        self.skip_newlines();
        self.expect(&Tok::LBrace, "`{` after the matched value")?;
        let mut arms = Vec::new();
        loop {
            self.skip_newlines();
            if self.at(&Tok::RBrace) {
                break;
            }
            let arm_start = self.span();
            let mut patterns = Vec::new();
            let mut wildcard = false;
            loop {
                match self.pattern()? {
                    Some(l) => patterns.push(l),
                    None => wildcard = true,
                }
                if !self.eat(&Tok::Pipe) {
                    break;
                }
            }
            self.expect(&Tok::FatArrow, "`=>` after the pattern")?;
            self.skip_newlines();
            let body = self.expr()?;
            let span = arm_start.to(body.span);
            arms.push(MatchArm {
                patterns,
                wildcard,
                body,
                span,
            });
            self.skip_newlines();
            if !self.eat(&Tok::Comma) {
                self.skip_newlines();
                break;
            }
        }
        if !self.at(&Tok::RBrace) {
            self.unexpected("`,` or `}` in the match");
            return Err(());
        }
        let close = self.bump().span;
        Ok(Expr {
            kind: ExprKind::Match {
                scrutinee: Box::new(scrutinee),
                arms,
            },
            span: start.to(close),
        })
    }
}

enum CmpOp {
    Bin(BinOp),
    LegacyEq,
    In(bool),
}

/// The span of the first node deeper than `limit` levels, if any: measured
/// with a stack of its own, not by recursion, whatever the tree's depth.
fn first_too_deep(e: &Expr, limit: usize) -> Option<Span> {
    let mut stack: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, depth)) = stack.pop() {
        if depth > limit {
            return Some(e.span);
        }
        let mut push = |c| stack.push((c, depth + 1));
        match &e.kind {
            ExprKind::Literal(_) | ExprKind::Name { .. } | ExprKind::Root | ExprKind::Error => {}
            ExprKind::List(items) => items.iter().for_each(&mut push),
            ExprKind::Call { args, .. } => args.iter().for_each(&mut push),
            ExprKind::Member(inner, _) | ExprKind::Not(inner) | ExprKind::Neg(inner) => push(inner),
            ExprKind::Index(a, b)
            | ExprKind::Binary(_, a, b)
            | ExprKind::In {
                item: a,
                collection: b,
                ..
            } => {
                push(b);
                push(a);
            }
            ExprKind::Match { scrutinee, arms } => {
                arms.iter().for_each(|a| push(&a.body));
                push(scrutinee);
            }
            ExprKind::Lambda(l) => push(&l.body),
        }
    }
    None
}

fn bin(op: BinOp, l: Expr, r: Expr) -> Expr {
    let span = l.span.to(r.span);
    Expr {
        kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
        span,
    }
}

fn fmt_num_token(t: &Token) -> String {
    match t.tok {
        Tok::Num(v, _) => crate::value::format_number(v),
        _ => String::new(),
    }
}

/// When the offending token is a unit word after a bare number (`2 m`).
fn space_before_unit_hint(toks: &[Token]) -> Option<(Code, String)> {
    let n = toks.len();
    if n < 2 {
        return None;
    }
    let (prev, cur) = (&toks[n - 2], &toks[n - 1]);
    if let (Tok::Num(v, None), Tok::Ident(u)) = (&prev.tok, &cur.tok) {
        if cur.space_before && crate::units::lookup(u).is_some() {
            return Some((
                Code::SpaceBeforeUnit,
                format!(
                    "write {}{u}, without a space",
                    crate::value::format_number(*v)
                ),
            ));
        }
    }
    None
}
