//! Document structure (`docs/language.md#document-structure`): splits the text into sections by
//! header lines, reads the metadata items and CONTEXT defaults, hands each
//! RULE section to the lexer and parser, and reports conformance problems.

use crate::ast::{ExprKind, Literal, Rule};
use crate::diagnostics::{suggest, Code, Diagnostic};
use crate::lexer::{lex, Tok};
use crate::parser::{NestingLimits, Parser};
use crate::policy::{Item, Metadata, PolicyDefault};
use crate::span::Span;
use crate::types::Schema;
use crate::value::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Intent,
    Actor,
    Context,
    Schema,
    Assumption,
    Rule,
    Constraint,
    Impact,
    Trace,
    Review,
}

/// Canonical order, names and whether each section is required.
pub const SECTIONS: &[(SectionKind, &str, bool)] = &[
    (SectionKind::Intent, "INTENT", true),
    (SectionKind::Actor, "ACTOR", true),
    (SectionKind::Context, "CONTEXT", true),
    (SectionKind::Schema, "SCHEMA", false),
    (SectionKind::Assumption, "ASSUMPTION", false),
    (SectionKind::Rule, "RULE", true),
    (SectionKind::Constraint, "CONSTRAINT", true),
    (SectionKind::Impact, "IMPACT", true),
    (SectionKind::Trace, "TRACE", true),
    (SectionKind::Review, "REVIEW", false),
];

impl SectionKind {
    pub fn order(self) -> usize {
        SECTIONS
            .iter()
            .position(|(k, _, _)| *k == self)
            .unwrap_or(0)
    }
    pub fn name(self) -> &'static str {
        SECTIONS[self.order()].1
    }
    pub(crate) fn from_name(s: &str) -> Option<SectionKind> {
        SECTIONS
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(s))
            .map(|(k, _, _)| *k)
    }
}

/// A parsed document, before static checks.
#[derive(Debug, Default)]
pub struct Document {
    pub metadata: Metadata,
    pub defaults: Vec<PolicyDefault>,
    /// The typed context declarations (the `SCHEMA` section).
    pub schema: Schema,
    pub rules: Vec<Rule>,
}

struct Line<'a> {
    start: usize,
    text: &'a str,
    number: u32,
}

struct Header {
    kind: Option<SectionKind>,
    name: String,
    span: Span,
    /// Byte offset just after the `:`.
    after_colon: usize,
    after_colon_col: u32,
    inline: Option<(String, Span)>,
}

struct RawItem {
    text: String,
    span: Span,
}

struct Section {
    header: Header,
    first_line: usize,
    end_line: usize,
}

fn column_of(text: &str, byte: usize) -> u32 {
    text.get(..byte).map(|s| s.chars().count()).unwrap_or(byte) as u32 + 1
}

/// Where a header line's parts are: byte offsets in the line of the name's
/// start and end and of the text after the colon. The one definition of a
/// header, shared by the reader and the formatter.
pub(crate) struct HeaderLine {
    pub indent: usize,
    pub name_len: usize,
    pub after_colon: usize,
}

/// `NAME:` at the start of a line (leading blanks allowed; not `NAME::`).
pub(crate) fn header_line(text: &str) -> Option<HeaderLine> {
    let indent = text.len() - text.trim_start().len();
    let rest = &text[indent..];
    if !rest.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let after_name = &rest[name_len..];
    let ws = after_name.len() - after_name.trim_start_matches([' ', '\t']).len();
    let colon_part = &after_name[ws..];
    if !colon_part.starts_with(':') || colon_part.starts_with("::") {
        return None;
    }
    Some(HeaderLine {
        indent,
        name_len,
        after_colon: indent + name_len + ws + 1,
    })
}

/// The header on `line`, with its positions in the document.
fn header_of(line: &Line) -> Option<Header> {
    let HeaderLine {
        indent,
        name_len,
        after_colon: colon_end,
    } = header_line(line.text)?;
    let rest = &line.text[indent..];
    let name = rest[..name_len].to_string();
    let name_start = line.start + indent;
    let after_colon = line.start + colon_end;
    let inline_raw = &line.text[colon_end..];
    let inline_trim = inline_raw.trim();
    let inline = if inline_trim.is_empty() {
        None
    } else {
        let lead = inline_raw.len() - inline_raw.trim_start().len();
        let off = colon_end + lead;
        Some((
            inline_trim.to_string(),
            Span::new(
                line.start + off,
                line.start + off + inline_trim.len(),
                line.number,
                column_of(line.text, off),
            ),
        ))
    };
    Some(Header {
        kind: SectionKind::from_name(&name),
        span: Span::new(
            name_start,
            name_start + name_len,
            line.number,
            column_of(line.text, indent),
        ),
        name,
        after_colon,
        after_colon_col: column_of(line.text, colon_end),
        inline,
    })
}

fn is_blank_or_comment(text: &str) -> bool {
    let t = text.trim_start();
    t.is_empty() || t.starts_with("//") || t.starts_with('#')
}

/// Parses the document; diagnostics are appended to `diags`.
pub fn parse_document(src: &str, nesting: NestingLimits, diags: &mut Vec<Diagnostic>) -> Document {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, raw) in src.split('\n').enumerate() {
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        // A leading byte-order mark (some editors write one) is not text: the
        // first line starts after it, so its offsets stay those of `src` and
        // its columns count from the first character an editor shows.
        let (line_start, text) = match text.strip_prefix('\u{feff}') {
            Some(rest) if i == 0 => (start + '\u{feff}'.len_utf8(), rest),
            _ => (start, text),
        };
        lines.push(Line {
            start: line_start,
            text,
            number: i as u32 + 1,
        });
        start += raw.len() + 1;
    }

    // Split into sections.
    let mut sections: Vec<Section> = Vec::new();
    let mut reported_before_header = false;
    for (i, line) in lines.iter().enumerate() {
        if is_blank_or_comment(line.text) {
            continue;
        }
        if let Some(h) = header_of(line) {
            if let Some(last) = sections.last_mut() {
                last.end_line = i;
            }
            sections.push(Section {
                header: h,
                first_line: i + 1,
                end_line: lines.len(),
            });
        } else if sections.is_empty() && !reported_before_header {
            reported_before_header = true;
            let indent = line.text.len() - line.text.trim_start().len();
            let span = Span::new(
                line.start + indent,
                line.start + line.text.trim_end().len(),
                line.number,
                column_of(line.text, indent),
            );
            diags.push(
                Diagnostic::new(
                    Code::ContentBeforeHeader,
                    span,
                    "text before the first section header",
                )
                .with_hint(
                    "start the policy with `INTENT: …`, or make this line a comment with `//`",
                ),
            );
        }
    }

    let mut doc = Document::default();
    let mut next_rule_id = 0u32;
    let mut seen: Vec<SectionKind> = Vec::new();
    let mut max_order = 0usize;
    let mut max_name = "";

    for sec in &sections {
        let h = &sec.header;
        let (kind, misspelt) = match h.kind {
            Some(kind) => (kind, false),
            None => {
                let known = SECTIONS.iter().map(|(_, n, _)| *n);
                let singular = h.name.trim_end_matches(['s', 'S']);
                let meant = SectionKind::from_name(singular)
                    .or_else(|| suggest(&h.name, known).and_then(SectionKind::from_name));
                // A misspelt `RULE:` header would hide every error of the
                // rules under it: they are parsed and checked as if it were
                // `RULE:` (the policy still fails on the header).
                let as_rule = meant == Some(SectionKind::Rule);
                let hint = match meant {
                    Some(k) if as_rule => format!(
                        "did you mean `{}:`? Its rules are checked as if it were",
                        k.name()
                    ),
                    Some(k) => format!("did you mean `{}:`?", k.name()),
                    None => "the sections are INTENT, ACTOR, CONTEXT, SCHEMA, ASSUMPTION, RULE, CONSTRAINT, IMPACT, TRACE and REVIEW".into(),
                };
                let msg = match meant {
                    Some(k) => format!("unknown section `{}` (a misspelt `{}`?)", h.name, k.name()),
                    None => format!("unknown section `{}`", h.name),
                };
                diags.push(Diagnostic::new(Code::UnknownSection, h.span, msg).with_hint(hint));
                if !as_rule {
                    continue;
                }
                (SectionKind::Rule, true)
            }
        };

        // Conformance: order and duplicates.
        if seen.contains(&kind) && kind != SectionKind::Rule {
            diags.push(
                Diagnostic::new(
                    Code::DuplicateSection,
                    h.span,
                    format!("section `{}` appears more than once", kind.name()),
                )
                .with_hint("merge the items into the first one"),
            );
        } else if !misspelt && kind.order() < max_order {
            diags.push(
                Diagnostic::new(
                    Code::SectionOrder,
                    h.span,
                    format!("section `{}` should come before `{}`", kind.name(), max_name),
                )
                .with_hint("the order is INTENT, ACTOR, CONTEXT, SCHEMA, ASSUMPTION, RULE, CONSTRAINT, IMPACT, TRACE, REVIEW"),
            );
        }
        if kind.order() >= max_order {
            max_order = kind.order();
            max_name = kind.name();
        }
        seen.push(kind);

        let body = &lines[sec.first_line.min(lines.len())..sec.end_line.min(lines.len())];
        let empty = if kind == SectionKind::Rule {
            let rules_before = doc.rules.len();
            // From after the colon (inline rule text counts) to the section's end.
            let header_end = lines
                .get(sec.first_line.saturating_sub(1))
                .map(|l| l.start + l.text.len())
                .unwrap_or(h.after_colon);
            let end = body
                .last()
                .map(|l| l.start + l.text.len())
                .unwrap_or(header_end)
                .max(header_end)
                .max(h.after_colon);
            let mut lex_diags = Vec::new();
            let toks = lex(
                src,
                h.after_colon,
                end,
                h.span.line,
                h.after_colon_col,
                &mut lex_diags,
            );
            diags.append(&mut lex_diags);
            let only_layout = toks
                .iter()
                .all(|t| matches!(t.tok, Tok::Newline | Tok::Eof));
            if !only_layout {
                let mut p = Parser::new(src, &toks, diags, nesting, &mut next_rule_id);
                let mut rules = p.parse_section();
                doc.rules.append(&mut rules);
            }
            only_layout && doc.rules.len() == rules_before
        } else {
            let mut items = collect_items(body, diags);
            let empty = items.is_empty() && h.inline.is_none();
            // `ACTOR: Primary: Ops` / `CONTEXT: Domain: X`: the inline text is an item.
            if let (
                SectionKind::Actor | SectionKind::Context | SectionKind::Schema,
                Some((text, span)),
            ) = (kind, &h.inline)
            {
                items.insert(
                    0,
                    RawItem {
                        text: text.clone(),
                        span: *span,
                    },
                );
            }
            read_section(kind, h, items, &mut doc, diags);
            empty
        };
        if empty && !misspelt {
            diags.push(
                Diagnostic::new(
                    Code::EmptySection,
                    h.span,
                    format!("section `{}` is empty", kind.name()),
                )
                .with_hint("add items, or remove the section"),
            );
        }
    }

    // Conformance: required sections.
    let end_span = {
        let last = lines.last();
        let (off, line, col) = match last {
            Some(l) => (
                l.start + l.text.len(),
                l.number,
                column_of(l.text, l.text.len()),
            ),
            None => (0, 1, 1),
        };
        Span::new(off, off, line, col)
    };
    for (kind, name, required) in SECTIONS {
        if !required || seen.contains(kind) {
            continue;
        }
        let at = sections
            .iter()
            .find(|s| s.header.kind.is_some_and(|k| k.order() > kind.order()))
            .map(|s| s.header.span)
            .unwrap_or(end_span);
        let hint = match kind {
            SectionKind::Intent => "add `INTENT: <the purpose of the policy>` as the first line",
            SectionKind::Actor => "add `ACTOR:` with a `- Primary: Name` item",
            SectionKind::Context => "add `CONTEXT:` with items such as `- Domain: Logistics`",
            SectionKind::Rule => {
                "add `RULE:` with items such as `- IF Battery < 20% THEN ReturnToHome`"
            }
            SectionKind::Constraint => "add `CONSTRAINT:` with items such as `- Legal: …`",
            SectionKind::Impact => "add `IMPACT:` with items such as `- Benefit: …`",
            _ => "add `TRACE:` with items such as `- Evidence: …`",
        };
        diags.push(
            Diagnostic::new(
                Code::MissingSection,
                at,
                format!("missing required section `{name}`"),
            )
            .with_hint(hint),
        );
    }
    doc
}

/// Items of a non-RULE section: `-` lines, with other lines continuing the
/// previous item.
fn collect_items(body: &[Line], diags: &mut Vec<Diagnostic>) -> Vec<RawItem> {
    let mut items: Vec<RawItem> = Vec::new();
    for line in body {
        if is_blank_or_comment(line.text) {
            continue;
        }
        let indent = line.text.len() - line.text.trim_start().len();
        let rest = line.text[indent..].trim_end();
        if let Some(after) = rest.strip_prefix('-') {
            let lead = after.len() - after.trim_start().len();
            let off = indent + 1 + lead;
            let text = after.trim();
            items.push(RawItem {
                text: text.to_string(),
                span: Span::new(
                    line.start + off,
                    line.start + off + text.len(),
                    line.number,
                    column_of(line.text, off),
                ),
            });
        } else if let Some(prev) = items.last_mut() {
            prev.text.push(' ');
            prev.text.push_str(rest);
        } else {
            diags.push(
                Diagnostic::new(
                    Code::NotAnItem,
                    Span::new(
                        line.start + indent,
                        line.start + indent + rest.len(),
                        line.number,
                        column_of(line.text, indent),
                    ),
                    "a section's items start with `-`",
                )
                .with_hint("write `- ` before the text"),
            );
            items.push(RawItem {
                text: rest.to_string(),
                span: Span::new(
                    line.start + indent,
                    line.start + indent + rest.len(),
                    line.number,
                    column_of(line.text, indent),
                ),
            });
        }
    }
    items
}

/// `Key: value` when the text before the first `:` looks like a kind.
pub(crate) fn split_kind(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let key = text[..colon].trim();
    let value = &text[colon + 1..];
    if key.is_empty()
        || value.starts_with("//")
        || !key.chars().next().is_some_and(|c| c.is_alphabetic())
        || !key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == ' ')
    {
        return None;
    }
    Some((key, value.trim()))
}

/// Canonical spelling of a known kind (case-insensitive, with aliases).
fn canonical_kind(section: SectionKind, key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase().replace([' ', '_'], "");
    let known: &[(&str, &'static str)] = match section {
        SectionKind::Actor => &[("primary", "Primary"), ("secondary", "Secondary")],
        SectionKind::Context => &[
            ("domain", "Domain"),
            ("location", "Location"),
            ("lokasi", "Location"),
            ("phase", "Phase"),
            ("fase", "Phase"),
        ],
        SectionKind::Constraint => &[
            ("legal", "Legal"),
            ("ethical", "Ethical"),
            ("technical", "Technical"),
            ("moral", "Moral"),
            ("environmental", "Environmental"),
        ],
        SectionKind::Impact => &[
            ("benefit", "Benefit"),
            ("risk", "Risk"),
            ("tradeoff", "TradeOff"),
            ("trade-off", "TradeOff"),
        ],
        SectionKind::Trace => &[
            ("regulation", "Regulation"),
            ("evidence", "Evidence"),
            ("moral", "Moral"),
        ],
        SectionKind::Review => &[("interval", "Interval"), ("criteria", "Criteria")],
        _ => &[],
    };
    known.iter().find(|(a, _)| *a == k).map(|(_, c)| *c)
}

fn read_section(
    kind: SectionKind,
    h: &Header,
    items: Vec<RawItem>,
    doc: &mut Document,
    diags: &mut Vec<Diagnostic>,
) {
    let md = &mut doc.metadata;
    match kind {
        SectionKind::Intent => {
            let mut parts: Vec<String> = Vec::new();
            if let Some((t, _)) = &h.inline {
                parts.push(t.clone());
            }
            parts.extend(items.into_iter().map(|i| i.text));
            if !md.intent.is_empty() && !parts.is_empty() {
                md.intent.push(' ');
            }
            md.intent.push_str(&parts.join(" "));
        }
        SectionKind::Assumption => {
            if let Some((t, _)) = &h.inline {
                md.assumptions.push(t.clone());
            }
            md.assumptions.extend(items.into_iter().map(|i| i.text));
        }
        SectionKind::Actor => {
            let mut primaries = 0;
            for it in items {
                match split_kind(&it.text) {
                    Some((key, value)) => match canonical_kind(kind, key) {
                        Some("Primary") => {
                            primaries += 1;
                            if md.actors.primary.is_none() {
                                md.actors.primary = Some(value.to_string());
                            } else {
                                md.actors.secondary.push(value.to_string());
                            }
                        }
                        Some(_) => md.actors.secondary.push(value.to_string()),
                        None => {
                            let hint = match suggest(key, ["Primary", "Secondary"]) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => "ACTOR items are `- Primary: Name` and `- Secondary: Name`"
                                    .into(),
                            };
                            let span = Span::new(
                                it.span.start as usize,
                                it.span.start as usize + key.len(),
                                it.span.line,
                                it.span.column,
                            );
                            diags.push(
                                Diagnostic::new(
                                    Code::UnknownActorKind,
                                    span,
                                    format!("unknown actor kind `{key}`"),
                                )
                                .with_hint(hint),
                            );
                            md.actors.other.push(Item {
                                kind: Some(key.to_string()),
                                text: value.to_string(),
                            });
                        }
                    },
                    None => {
                        diags.push(
                            Diagnostic::new(
                                Code::ItemWithoutKind,
                                it.span,
                                "this actor has no kind",
                            )
                            .with_hint("write `- Primary: Name` or `- Secondary: Name`"),
                        );
                        md.actors.other.push(Item {
                            kind: None,
                            text: it.text,
                        });
                    }
                }
            }
            if primaries != 1 {
                let msg = if primaries == 0 {
                    "ACTOR names no `Primary` actor"
                } else {
                    "ACTOR names more than one `Primary` actor"
                };
                diags.push(
                    Diagnostic::new(Code::PrimaryActor, h.span, msg)
                        .with_hint("name exactly one `- Primary: Name`; others are `Secondary`"),
                );
            }
        }
        SectionKind::Context => {
            for it in items {
                let Some((key, value)) = split_kind(&it.text) else {
                    diags.push(
                        Diagnostic::new(
                            Code::ItemWithoutKind,
                            it.span,
                            "this CONTEXT item has no name",
                        )
                        .with_hint("write `- Name: value`"),
                    );
                    continue;
                };
                let (v, literal) = context_value(value);
                let scope_text = match &v {
                    Value::Str(s) => s.to_string(),
                    other => other.to_string(),
                };
                match canonical_kind(kind, key) {
                    Some("Domain") => md.scope.domain = Some(scope_text),
                    Some("Location") => md.scope.location = Some(scope_text),
                    Some("Phase") => md.scope.phase = Some(scope_text),
                    _ => {}
                }
                let name: Arc<str> = Arc::from(key);
                doc.defaults.retain(|d| d.name != name);
                doc.defaults.push(PolicyDefault {
                    name,
                    value: v,
                    span: it.span,
                    literal,
                });
            }
        }
        SectionKind::Schema => read_schema(items, &mut doc.schema, diags),
        SectionKind::Constraint
        | SectionKind::Impact
        | SectionKind::Trace
        | SectionKind::Review => {
            let list = match kind {
                SectionKind::Constraint => &mut md.constraints,
                SectionKind::Impact => &mut md.impacts,
                SectionKind::Trace => &mut md.traces,
                _ => &mut md.review,
            };
            if let Some((t, _)) = &h.inline {
                list.push(Item {
                    kind: None,
                    text: t.clone(),
                });
            }
            for it in items {
                match split_kind(&it.text) {
                    Some((key, value)) => list.push(Item {
                        kind: Some(
                            canonical_kind(kind, key)
                                .map(str::to_string)
                                .unwrap_or_else(|| key.to_string()),
                        ),
                        text: unquote(value),
                    }),
                    None => list.push(Item {
                        kind: None,
                        text: it.text,
                    }),
                }
            }
        }
        SectionKind::Rule => {}
    }
}

/// The `SCHEMA` items: one typed declaration each (docs/language.md, "Typed
/// context declarations").
fn read_schema(items: Vec<RawItem>, schema: &mut Schema, diags: &mut Vec<Diagnostic>) {
    for it in items {
        // Byte offsets in the item text → a span (exact on the item's first line).
        let span_of = |start: usize, end: usize| {
            let first_line = (it.span.end - it.span.start) as usize;
            if end <= first_line && it.text.is_char_boundary(start) {
                let col = it.text[..start].chars().count() as u32;
                Span::new(
                    it.span.start as usize + start,
                    it.span.start as usize + end,
                    it.span.line,
                    it.span.column + col,
                )
            } else {
                it.span
            }
        };
        match crate::types::parse_item(&it.text, it.span.line) {
            Ok(item) => {
                if let Err(msg) = schema.insert(item, it.span.line) {
                    diags.push(
                        Diagnostic::new(Code::InvalidDeclaration, it.span, msg)
                            .with_hint("declare each field once, with one type"),
                    );
                }
            }
            Err(e) => {
                let mut d = Diagnostic::new(
                    Code::InvalidDeclaration,
                    span_of(e.start, e.end.max(e.start)),
                    e.message,
                );
                d.hint = e.hint;
                diags.push(d);
            }
        }
    }
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// A CONTEXT value: an Omni literal when it is one, else the raw text.
pub fn context_value(text: &str) -> (Value, bool) {
    let mut d = Vec::new();
    // Column 2: a leading `-` is a minus sign here, not an item marker.
    let toks = lex(text, 0, text.len(), 1, 2, &mut d);
    if d.is_empty() && toks.len() > 1 {
        let mut id = 0;
        let mut pd = Vec::new();
        let mut p = Parser::new(text, &toks, &mut pd, NestingLimits::default(), &mut id);
        if let Ok(e) = p.expr() {
            let at_end = toks
                .iter()
                .rposition(|t| t.tok != Tok::Eof)
                .map(|i| toks[i].span.end as usize)
                == Some(e.span.end as usize);
            if pd.is_empty() && at_end {
                if let Some(v) = literal_value(&e.kind) {
                    return (v, true);
                }
            }
        }
    }
    (Value::str(text), false)
}

fn literal_value(e: &ExprKind) -> Option<Value> {
    match e {
        ExprKind::Literal(l) => Some(match l {
            Literal::Number(n) => Value::Num(*n),
            Literal::Quantity(n, u) => Value::Qty(*n, *u),
            Literal::Str(s) => Value::Str(s.clone()),
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Null => Value::Null,
        }),
        ExprKind::List(items) => {
            let vals: Option<Vec<Value>> = items.iter().map(|i| literal_value(&i.kind)).collect();
            vals.map(|v| Value::List(Arc::new(v)))
        }
        _ => None,
    }
}
