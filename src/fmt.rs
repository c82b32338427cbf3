//! The canonical layout of a policy (what `omni fmt` prints).
//!
//! The formatter works from the checked policy, not from the text alone: the
//! rules are printed from their syntax tree, and the metadata sections from
//! their items. Whole-line comments and single blank lines are kept at their
//! place between the items and rules around them. The layout:
//!
//! * sections in canonical order (a stable sort: repeated `RULE` sections keep
//!   their order, so rule ids do not change), headers in upper case;
//! * one item or rule per line, `- Kind: text` with one space after the colon;
//! * the keywords `IF THEN ELSE FOR WHILE IN NOT AND OR` in upper case and
//!   `match true false null` in lower case, as the specification writes them;
//! * blocks indented by four spaces per level, `}` under the rule's keyword;
//! * one space around binary operators, after commas, `=>` and lambda
//!   parameters; none inside brackets; parentheses where precedence needs them
//!   and where the author grouped a compound expression.
//!
//! Legacy forms (two-line IF, braceless FOR, `=`) are kept in their legacy
//! spelling unless [`FmtOptions::upgrade`] is set, which rewrites them into the
//! modern forms (their meaning is the same).
//!
//! Line endings are kept: a file whose first line ends in `\r\n` is written
//! back with `\r\n` throughout.
//!
//! Formatting never changes meaning: [`format_policy`] checks the formatted
//! text again and compares both compiled policies with [`same_policy`], and
//! returns an error rather than a text that would behave differently.

use crate::ast::{rule_eq, Action, BinOp, Expr, ExprKind, Literal, MatchArm, Rule, RuleKind};
use crate::checker::{compile, Compiled};
use crate::document::{context_value, SectionKind};
use crate::lexer::{lex, Tok};
use crate::options::{CheckOptions, Profile};
use crate::parser::{NestingLimits, Parser};
use crate::policy::{CompiledPolicy, PolicyDefault};

/// How to format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FmtOptions {
    /// The profile the policy is checked with before formatting. Lenient by
    /// default: conformance problems do not stop the formatter.
    pub profile: Profile,
    /// Rewrite legacy forms: `=` → `==`, two-line IF → one line, braceless
    /// FOR → braces.
    pub upgrade: bool,
}

impl Default for FmtOptions {
    fn default() -> Self {
        FmtOptions {
            profile: Profile::Lenient,
            upgrade: false,
        }
    }
}

/// Why a policy was not formatted.
#[derive(Debug)]
pub enum FmtError {
    /// The policy has errors (the diagnostics are in the result of `compile`).
    Invalid(Box<Compiled>),
    /// The formatted text would not be the same policy. This is a bug of the
    /// formatter; the text is not written.
    Changed(String),
}

impl std::fmt::Display for FmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FmtError::Invalid(c) => {
                let n = c.errors().count();
                write!(f, "the policy has {n} error(s); it is not formatted")
            }
            FmtError::Changed(why) => write!(
                f,
                "internal error: formatting would change the policy ({why}); the file is left as it is"
            ),
        }
    }
}

fn check_options(profile: Profile) -> CheckOptions {
    CheckOptions {
        profile,
        ..CheckOptions::default()
    }
}

/// Formats a policy. The result, checked again, is the same policy.
pub fn format_policy(src: &str, opts: &FmtOptions) -> Result<String, FmtError> {
    let check = check_options(opts.profile);
    let before = compile(src, &check);
    let Some(policy) = before.policy.clone() else {
        return Err(FmtError::Invalid(Box::new(before)));
    };
    let text = layout(src, &policy, opts.upgrade);
    // The layout is written with `\n`; a file written with `\r\n` (judged by
    // its first line) keeps them.
    let text = if src.find('\n').is_some_and(|i| src[..i].ends_with('\r')) {
        text.replace('\n', "\r\n")
    } else {
        text
    };
    let after = compile(&text, &check);
    match &after.policy {
        Some(p) => same_policy(&policy, p).map_err(FmtError::Changed)?,
        None => {
            let first = after
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .map(|d| format!("{} at line {}", d.message, d.span.line))
                .unwrap_or_default();
            return Err(FmtError::Changed(format!(
                "the formatted text does not compile: {first}"
            )));
        }
    }
    Ok(text)
}

// ----- the document -------------------------------------------------------

struct SrcLine<'a> {
    start: usize,
    text: &'a str,
}

impl SrcLine<'_> {
    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }
    fn is_comment(&self) -> bool {
        let t = self.text.trim_start();
        t.starts_with("//") || t.starts_with('#')
    }
}

fn split_lines(src: &str) -> Vec<SrcLine<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in src.split('\n') {
        out.push(SrcLine {
            start,
            text: raw.strip_suffix('\r').unwrap_or(raw),
        });
        start += raw.len() + 1;
    }
    out
}

/// A header line (as `document::header_of` reads it): the section, the byte
/// offset (in the line) just after the colon, and the inline content.
fn header_of(text: &str) -> Option<(Option<SectionKind>, usize, Option<String>)> {
    let h = crate::document::header_line(text)?;
    let kind = SectionKind::from_name(&text[h.indent..h.indent + h.name_len]);
    let after_colon = h.after_colon;
    let inline = text[after_colon..].trim();
    Some((
        kind,
        after_colon,
        (!inline.is_empty()).then(|| inline.to_string()),
    ))
}

struct Section {
    kind: SectionKind,
    inline: Option<String>,
    /// Line index of the header.
    header: usize,
    /// Line indices of the body: `header + 1 .. end`.
    end: usize,
    /// Byte offset just after the colon.
    after_colon: usize,
}

/// The output, line by line.
struct Out {
    s: String,
    /// The last line opened a container (a section or a block): no blank
    /// line goes right after it.
    fresh: bool,
}

impl Out {
    fn line(&mut self, indent: usize, text: &str, blank: bool) {
        if blank && !self.fresh && !self.s.is_empty() {
            self.s.push('\n');
        }
        for _ in 0..indent {
            self.s.push(' ');
        }
        self.s.push_str(text.trim_end());
        self.s.push('\n');
        self.fresh = false;
    }
    fn open(&mut self, indent: usize, text: &str, blank: bool) {
        self.line(indent, text, blank);
        self.fresh = true;
    }
}

/// The canonical text of a policy that compiled as `policy`.
fn layout(src: &str, policy: &CompiledPolicy, upgrade: bool) -> String {
    let lines = split_lines(src);
    // A trailing newline leaves an empty last "line"; it is not content.
    let n = if src.ends_with('\n') {
        lines.len() - 1
    } else {
        lines.len()
    };
    let mut sections: Vec<Section> = Vec::new();
    for (i, line) in lines[..n].iter().enumerate() {
        if line.is_blank() || line.is_comment() {
            continue;
        }
        if let Some((kind, after, inline)) = header_of(line.text) {
            if let Some(last) = sections.last_mut() {
                last.end = i;
            }
            sections.push(Section {
                // Unknown sections are errors, so a checked policy has none.
                kind: kind.unwrap_or(SectionKind::Assumption),
                inline,
                header: i,
                end: n,
                after_colon: line.start + after,
            });
        }
    }
    let blank_before = |i: usize| i > 0 && lines[i - 1].is_blank();
    let mut out = Out {
        s: String::new(),
        fresh: false,
    };

    // Text before the first header stays where it is.
    let first = sections.first().map_or(n, |s| s.header);
    for (i, line) in lines[..first].iter().enumerate() {
        if !line.is_blank() {
            out.line(0, line.text.trim(), blank_before(i));
        }
    }

    let pr = Printer { src, upgrade };
    let mut order: Vec<usize> = (0..sections.len()).collect();
    order.sort_by_key(|&i| sections[i].kind.order());
    let mut rules = policy.rules.iter().peekable();
    // Top-level rules by section, in document order.
    let mut by_section: Vec<Vec<&Rule>> = Vec::with_capacity(sections.len());
    for (si, sec) in sections.iter().enumerate() {
        let end = sections
            .get(si + 1)
            .map_or(src.len(), |s| lines[s.header].start);
        let mut mine = Vec::new();
        if sec.kind == SectionKind::Rule {
            while let Some(r) = rules.peek() {
                let at = r.span.start as usize;
                if at >= sec.after_colon && at < end {
                    mine.push(rules.next().expect("peeked"));
                } else {
                    break;
                }
            }
        }
        by_section.push(mine);
    }

    for &si in &order {
        let sec = &sections[si];
        let name = sec.kind.name();
        let head = match (&sec.inline, sec.kind) {
            (Some(t), SectionKind::Schema) => {
                format!("{name}: {}", item_text(&pr, SectionKind::Schema, t))
            }
            (Some(t), k) if k != SectionKind::Rule => format!("{name}: {t}"),
            _ => format!("{name}:"),
        };
        if sec.inline.is_some() && sec.kind != SectionKind::Rule {
            out.line(0, &head, blank_before(sec.header));
        } else {
            out.open(0, &head, blank_before(sec.header));
        }
        if sec.kind == SectionKind::Rule {
            rule_section(&mut out, &pr, &lines, sec, &by_section[si]);
        } else {
            meta_section(&mut out, &pr, &lines, sec);
        }
    }
    out.s
}

enum MetaElem {
    Item { text: String, blank: bool },
    Comment { text: String, blank: bool },
}

fn meta_section(out: &mut Out, pr: &Printer, lines: &[SrcLine], sec: &Section) {
    let mut elems: Vec<MetaElem> = Vec::new();
    let mut last_item: Option<usize> = None;
    for i in sec.header + 1..sec.end {
        let line = &lines[i];
        if line.is_blank() {
            continue;
        }
        let blank = lines[i - 1].is_blank();
        let t = line.text.trim();
        if line.is_comment() {
            elems.push(MetaElem::Comment {
                text: t.to_string(),
                blank,
            });
        } else if let Some(after) = t.strip_prefix('-') {
            last_item = Some(elems.len());
            elems.push(MetaElem::Item {
                text: after.trim().to_string(),
                blank,
            });
        } else if let Some(MetaElem::Item { text, .. }) = last_item.and_then(|i| elems.get_mut(i)) {
            // A continuation line.
            text.push(' ');
            text.push_str(t);
        } else {
            // Not an item (W0412): the same text, now as an item.
            last_item = Some(elems.len());
            elems.push(MetaElem::Item {
                text: t.to_string(),
                blank,
            });
        }
    }
    for e in elems {
        match e {
            MetaElem::Comment { text, blank } => out.line(0, &text, blank),
            MetaElem::Item { text, blank } => {
                let body = item_text(pr, sec.kind, &text);
                let line = if body.is_empty() {
                    "-".to_string()
                } else {
                    format!("- {body}")
                };
                out.line(0, &line, blank);
            }
        }
    }
}

use crate::document::split_kind;

/// The canonical text of one metadata item.
fn item_text(pr: &Printer, kind: SectionKind, text: &str) -> String {
    match kind {
        SectionKind::Intent | SectionKind::Assumption | SectionKind::Rule => text.to_string(),
        // A declaration in its canonical spelling (`ratio in %`, `{ a: text }`).
        SectionKind::Schema => {
            crate::types::canonical_item(text).unwrap_or_else(|| text.to_string())
        }
        _ => match split_kind(text) {
            None => text.to_string(),
            Some((key, value)) => {
                let value = if kind == SectionKind::Context {
                    pr.context_value(value).unwrap_or_else(|| value.to_string())
                } else {
                    value.to_string()
                };
                if value.is_empty() {
                    format!("{key}:")
                } else {
                    format!("{key}: {value}")
                }
            }
        },
    }
}

struct Comment {
    offset: usize,
    text: String,
    blank: bool,
}

struct Rules<'a, 'p> {
    pr: &'p Printer<'a>,
    lines: &'p [SrcLine<'a>],
    comments: Vec<Comment>,
    next: usize,
    /// `{` offset → its `}` offset, sorted by the `{`.
    braces: Vec<(usize, usize)>,
}

fn rule_section(out: &mut Out, pr: &Printer, lines: &[SrcLine], sec: &Section, rules: &[&Rule]) {
    let end = lines
        .get(sec.end)
        .map_or(pr.src.len(), |l| l.start.saturating_sub(1))
        .max(sec.after_colon);
    let mut comments = Vec::new();
    for i in sec.header + 1..sec.end {
        if lines[i].is_comment() {
            comments.push(Comment {
                offset: lines[i].start,
                text: lines[i].text.trim().to_string(),
                blank: lines[i - 1].is_blank(),
            });
        }
    }
    let mut diags = Vec::new();
    let toks = lex(pr.src, sec.after_colon, end, 1, 2, &mut diags);
    let mut braces = Vec::new();
    let mut stack = Vec::new();
    for t in &toks {
        match t.tok {
            Tok::LBrace => stack.push(t.span.start as usize),
            Tok::RBrace => {
                if let Some(open) = stack.pop() {
                    braces.push((open, t.span.start as usize));
                }
            }
            _ => {}
        }
    }
    braces.sort_unstable();
    let mut rs = Rules {
        pr,
        lines,
        comments,
        next: 0,
        braces,
    };
    for r in rules {
        rs.rule(out, r, 0, end + 1);
    }
    rs.flush(out, 0, usize::MAX);
}

impl Rules<'_, '_> {
    fn flush(&mut self, out: &mut Out, depth: usize, before: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.offset >= before {
                break;
            }
            out.line(depth * 4, &c.text, c.blank);
            self.next += 1;
        }
    }

    /// Comments inside a rule's own text go just before it; the first one
    /// takes the rule's blank line.
    fn interior(&mut self, out: &mut Out, depth: usize, before: usize, blank: &mut bool) {
        while let Some(c) = self.comments.get(self.next) {
            if c.offset >= before {
                break;
            }
            out.line(depth * 4, &c.text, *blank);
            *blank = false;
            self.next += 1;
        }
    }

    fn blank_before_line(&self, line: u32) -> bool {
        let i = line as usize;
        i >= 2 && self.lines.get(i - 2).is_some_and(SrcLine::is_blank)
    }

    fn close_of(&self, header_end: usize) -> Option<usize> {
        let i = self.braces.partition_point(|(o, _)| *o < header_end);
        self.braces.get(i).map(|(_, c)| *c)
    }

    fn block(&mut self, out: &mut Out, rules: &[Rule], depth: usize, end: usize) {
        for r in rules {
            self.rule(out, r, depth, end);
        }
        self.flush(out, depth, end);
    }

    /// One rule at `depth`; `end` bounds the enclosing block (a braceless FOR
    /// runs to it).
    fn rule(&mut self, out: &mut Out, r: &Rule, depth: usize, end: usize) {
        self.flush(out, depth, r.span.start as usize);
        let mut blank = self.blank_before_line(r.span.line);
        self.interior(out, depth, r.span.end as usize, &mut blank);
        let ind = depth * 4;
        let pr = self.pr;
        match &r.kind {
            RuleKind::If {
                cond,
                then_actions,
                else_actions,
                legacy_two_line,
            } => {
                let mut acts = pr.actions(then_actions);
                if !else_actions.is_empty() {
                    acts.push_str(" ELSE ");
                    acts.push_str(&pr.actions(else_actions));
                }
                let cond = pr.expr(cond, 0);
                if *legacy_two_line && !pr.upgrade {
                    out.line(ind, &format!("- IF {cond}"), blank);
                    out.line(ind, &format!("- THEN {acts}"), false);
                } else {
                    out.line(ind, &format!("- IF {cond} THEN {acts}"), blank);
                }
            }
            RuleKind::For {
                var,
                iterable,
                body,
                braceless,
                ..
            } => {
                let head = format!("- FOR {var} IN {}", pr.expr(iterable, 0));
                if *braceless {
                    if pr.upgrade {
                        out.open(ind, &format!("{head} {{"), blank);
                        self.block(out, body, depth + 1, end);
                        out.line(ind + 2, "}", false);
                    } else {
                        out.line(ind, &head, blank);
                        self.block(out, body, depth + 1, end);
                    }
                } else {
                    out.open(ind, &format!("{head} {{"), blank);
                    let close = self.close_of(r.span.end as usize).unwrap_or(end);
                    self.block(out, body, depth + 1, close);
                    out.line(ind + 2, "}", false);
                }
            }
            RuleKind::While { cond, body } => {
                out.open(ind, &format!("- WHILE {} {{", pr.expr(cond, 0)), blank);
                let close = self.close_of(r.span.end as usize).unwrap_or(end);
                self.block(out, body, depth + 1, close);
                out.line(ind + 2, "}", false);
            }
        }
    }
}

// ----- expressions --------------------------------------------------------

/// Prints expressions; reads the source only for what the tree does not
/// keep (the author's parentheses, `=` versus `==`, `Name "text"`).
struct Printer<'a> {
    src: &'a str,
    upgrade: bool,
}

/// Binding strength: 0 lambda (extends to the right as far as it can),
/// 1 OR, 2 AND, 3 NOT, 4 comparisons and IN, 5 `+ -`, 6 `* /`, 7 unary minus,
/// 8 postfix and primary. The warnings' canonical printer uses it too.
pub(crate) fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Lambda(_) => 0,
        ExprKind::Binary(op, _, _) => match op {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div => 6,
            _ => 4,
        },
        ExprKind::In { .. } => 4,
        ExprKind::Not(_) => 3,
        ExprKind::Neg(_) => 7,
        ExprKind::Literal(Literal::Number(v) | Literal::Quantity(v, _)) if v.is_sign_negative() => {
            7
        }
        _ => 8,
    }
}

/// A number as the lexer reads it back to the same value.
pub fn literal_number(v: f64) -> String {
    let s = format!("{v}");
    if s.len() > 18 {
        format!("{v:e}")
    } else {
        s
    }
}

/// A string literal with the escapes of `docs/language.md#literals`.
pub fn fmt_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fmt_literal(l: &Literal) -> String {
    match l {
        Literal::Number(v) => literal_number(*v),
        Literal::Quantity(v, u) => format!("{}{}", literal_number(*v), u.suffix()),
        Literal::Str(s) => fmt_string(s),
        Literal::Bool(true) => "true".into(),
        Literal::Bool(false) => "false".into(),
        Literal::Null => "null".into(),
    }
}

impl Printer<'_> {
    fn text(&self, start: usize, end: usize) -> &str {
        self.src.get(start..end).unwrap_or("")
    }

    /// The author wrapped this expression in parentheses.
    fn had_parens(&self, e: &Expr) -> bool {
        let (s, t) = (e.span.start as usize, e.span.end as usize);
        let text = self.text(s, t);
        if !(text.starts_with('(') && text.ends_with(')')) {
            return false;
        }
        let mut d = Vec::new();
        let toks = lex(self.src, s, t, 1, 2, &mut d);
        let mut depth = 0usize;
        let real: Vec<&Tok> = toks
            .iter()
            .map(|t| &t.tok)
            .filter(|t| !matches!(t, Tok::Newline | Tok::Eof))
            .collect();
        for (i, tok) in real.iter().enumerate() {
            match tok {
                Tok::LParen => depth += 1,
                Tok::RParen => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i == real.len() - 1;
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// `=` (legacy) rather than `==` between the operands.
    fn legacy_eq(&self, l: &Expr, r: &Expr) -> bool {
        let (s, t) = (l.span.end as usize, r.span.start as usize);
        if s >= t || !self.text(s, t).contains('=') {
            return false;
        }
        let mut d = Vec::new();
        lex(self.src, s, t, 1, 2, &mut d)
            .iter()
            .any(|t| t.tok == Tok::Assign)
    }

    fn expr(&self, e: &Expr, min: u8) -> String {
        let mut s = String::new();
        self.expr_into(e, min, &mut s);
        s
    }

    fn expr_into(&self, e: &Expr, min: u8, out: &mut String) {
        let p = prec(e);
        let keep = p < 8 && !matches!(e.kind, ExprKind::Literal(_)) && self.had_parens(e);
        let paren = p < min || keep;
        if paren {
            out.push('(');
        }
        self.kind_into(e, out);
        if paren {
            out.push(')');
        }
    }

    fn list_into(&self, items: &[Expr], out: &mut String) {
        for (i, a) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.expr_into(a, 0, out);
        }
    }

    fn kind_into(&self, e: &Expr, out: &mut String) {
        match &e.kind {
            ExprKind::Literal(l) => out.push_str(&fmt_literal(l)),
            ExprKind::Name { name, .. } => out.push_str(name),
            ExprKind::Root => out.push('$'),
            ExprKind::List(items) => {
                out.push('[');
                self.list_into(items, out);
                out.push(']');
            }
            ExprKind::Member(base, name) => {
                self.expr_into(base, 8, out);
                out.push('.');
                out.push_str(name);
            }
            ExprKind::Index(base, idx) => {
                self.expr_into(base, 8, out);
                out.push('[');
                self.expr_into(idx, 0, out);
                out.push(']');
            }
            ExprKind::Call { name, args, .. } => {
                out.push_str(name);
                out.push('(');
                self.list_into(args, out);
                out.push(')');
            }
            ExprKind::Not(inner) => {
                out.push_str("NOT ");
                self.expr_into(inner, 3, out);
            }
            ExprKind::Neg(inner) => {
                out.push('-');
                // `--x` reads badly; `-(-x)` is the same tree.
                let min = if matches!(inner.kind, ExprKind::Neg(_)) {
                    8
                } else {
                    7
                };
                self.expr_into(inner, min, out);
            }
            ExprKind::Binary(op, l, r) => {
                let (lmin, rmin) = match op {
                    BinOp::Or => (1, 2),
                    BinOp::And => (2, 3),
                    BinOp::Add | BinOp::Sub => (5, 6),
                    BinOp::Mul | BinOp::Div => (6, 7),
                    _ => (5, 5),
                };
                self.expr_into(l, lmin, out);
                let sym = if *op == BinOp::Eq && !self.upgrade && self.legacy_eq(l, r) {
                    "="
                } else {
                    op.symbol()
                };
                out.push(' ');
                out.push_str(sym);
                out.push(' ');
                self.expr_into(r, rmin, out);
            }
            ExprKind::In {
                negated,
                item,
                collection,
            } => {
                self.expr_into(item, 5, out);
                out.push_str(if *negated { " NOT IN " } else { " IN " });
                self.expr_into(collection, 5, out);
            }
            ExprKind::Match { scrutinee, arms } => {
                out.push_str("match ");
                self.expr_into(scrutinee, 1, out);
                if arms.is_empty() {
                    out.push_str(" {}");
                    return;
                }
                out.push_str(" { ");
                for (i, arm) in arms.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.arm_into(arm, out);
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
                self.expr_into(&lam.body, 0, out);
            }
            ExprKind::Error => {}
        }
    }

    fn arm_into(&self, arm: &MatchArm, out: &mut String) {
        let mut pats: Vec<String> = arm.patterns.iter().map(fmt_literal).collect();
        if arm.wildcard {
            pats.push("_".into());
        }
        out.push_str(&pats.join(" | "));
        out.push_str(" => ");
        self.expr_into(&arm.body, 0, out);
    }

    fn actions(&self, acts: &[Action]) -> String {
        let mut out = String::new();
        for (i, a) in acts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&a.name);
            if a.args.is_empty() {
                continue;
            }
            let bare_string = a.args.len() == 1
                && matches!(a.args[0].kind, ExprKind::Literal(Literal::Str(_)))
                && !self
                    .text(a.span.start as usize, a.span.end as usize)
                    .ends_with(')');
            if bare_string {
                out.push(' ');
                self.expr_into(&a.args[0], 8, &mut out);
            } else {
                out.push('(');
                self.list_into(&a.args, &mut out);
                out.push(')');
            }
        }
        out
    }

    /// A CONTEXT value that is an Omni literal, printed canonically.
    fn context_value(&self, value: &str) -> Option<String> {
        if !context_value(value).1 {
            return None;
        }
        let mut d = Vec::new();
        let toks = lex(value, 0, value.len(), 1, 2, &mut d);
        let mut id = 0;
        let mut pd = Vec::new();
        let mut p = Parser::new(value, &toks, &mut pd, NestingLimits::default(), &mut id);
        let e = p.expr().ok()?;
        let inner = Printer {
            src: value,
            upgrade: self.upgrade,
        };
        Some(inner.expr(&e, 0))
    }
}

// ----- comparing compiled policies ----------------------------------------

/// Compares two compiled policies for meaning: metadata, defaults (name,
/// value, whether a literal) and rules, ignoring source positions, the
/// iterable's source text kept for binding paths, and whether a rule used a
/// legacy spelling. `Err` describes the first difference.
pub fn same_policy(a: &CompiledPolicy, b: &CompiledPolicy) -> Result<(), String> {
    if a.metadata != b.metadata {
        return Err(format!(
            "the metadata differs: {:?} / {:?}",
            a.metadata, b.metadata
        ));
    }
    if a.defaults.len() != b.defaults.len()
        || !a
            .defaults
            .iter()
            .zip(&b.defaults)
            .all(|(x, y)| default_eq(x, y))
    {
        let names = |d: &[PolicyDefault]| {
            d.iter()
                .map(|d| format!("{}={}", d.name, d.value))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "the CONTEXT defaults differ: [{}] / [{}]",
            names(&a.defaults),
            names(&b.defaults)
        ));
    }
    if !a.schema.root.same_as(&b.schema.root) {
        return Err("the SCHEMA declarations differ".into());
    }
    if a.rule_count != b.rule_count || a.rules.len() != b.rules.len() {
        return Err(format!(
            "the number of rules differs: {} / {}",
            a.rule_count, b.rule_count
        ));
    }
    for (x, y) in a.rules.iter().zip(&b.rules) {
        rule_eq(x, y)?;
    }
    let pats = |p: &CompiledPolicy| -> Vec<String> {
        p.regexes
            .iter()
            .map(|(_, r)| r.as_str().to_string())
            .collect()
    };
    if pats(a) != pats(b) {
        return Err("the regular expressions differ".into());
    }
    if a.max_slots != b.max_slots {
        return Err("the number of local slots differs".into());
    }
    Ok(())
}

fn default_eq(a: &PolicyDefault, b: &PolicyDefault) -> bool {
    a.name == b.name && a.value == b.value && a.literal == b.literal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        format_policy(src, &FmtOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    const TAIL: &str =
        "CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: tests\n";

    fn policy(rules: &str) -> String {
        format!(
            "INTENT: test\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\nRULE:\n{rules}{TAIL}"
        )
    }

    #[test]
    fn spacing_and_case_are_normalised() {
        let src = policy("-   if  a>1 and(b<2 OR c)   then X( 1,2 ),Y \"s\"\n");
        assert_eq!(
            fmt(&src),
            policy("- IF a > 1 AND (b < 2 OR c) THEN X(1, 2), Y \"s\"\n")
        );
    }

    #[test]
    fn numbers_strings_and_negatives_round_trip() {
        assert_eq!(literal_number(1e300), "1e300");
        assert_eq!(literal_number(0.5), "0.5");
        assert_eq!(literal_number(-3.0), "-3");
        assert_eq!(fmt_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u{1}\"");
        let src = policy("- IF (-x).y == - 2 AND a - -3 > 1e300 THEN X\n");
        assert_eq!(
            fmt(&src),
            policy("- IF (-x).y == -2 AND a - -3 > 1e300 THEN X\n")
        );
    }
}
