//! The lexer for rule text (`docs/language.md#literals`). It works on a byte range of the
//! document (one RULE section), so spans are positions in the whole policy.
//! It never fails: bad input becomes a diagnostic and lexing goes on.

use crate::diagnostics::{suggest, Code, Diagnostic};
use crate::span::Span;
use crate::units::{self, UnitId};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    If,
    Then,
    Else,
    For,
    While,
    In,
    Not,
    And,
    Or,
    Match,
    True,
    False,
    Null,
}

impl Keyword {
    /// Every keyword as written in messages, for "did you mean" hints.
    pub const NAMES: &'static [&'static str] = &[
        "IF", "THEN", "ELSE", "FOR", "WHILE", "IN", "NOT", "AND", "OR", "MATCH", "TRUE", "FALSE",
        "NULL",
    ];

    fn from_ident(s: &str) -> Option<Keyword> {
        if s.len() > 5 {
            return None;
        }
        let mut buf = [0u8; 5];
        for (i, b) in s.bytes().enumerate() {
            buf[i] = b.to_ascii_uppercase();
        }
        Some(match &buf[..s.len()] {
            b"IF" => Keyword::If,
            b"THEN" => Keyword::Then,
            b"ELSE" => Keyword::Else,
            b"FOR" => Keyword::For,
            b"WHILE" => Keyword::While,
            b"IN" => Keyword::In,
            b"NOT" => Keyword::Not,
            b"AND" => Keyword::And,
            b"OR" => Keyword::Or,
            b"MATCH" => Keyword::Match,
            b"TRUE" => Keyword::True,
            b"FALSE" => Keyword::False,
            b"NULL" => Keyword::Null,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::If => "IF",
            Keyword::Then => "THEN",
            Keyword::Else => "ELSE",
            Keyword::For => "FOR",
            Keyword::While => "WHILE",
            Keyword::In => "IN",
            Keyword::Not => "NOT",
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Match => "MATCH",
            Keyword::True => "TRUE",
            Keyword::False => "FALSE",
            Keyword::Null => "NULL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(Arc<str>),
    Kw(Keyword),
    Num(f64, Option<UnitId>),
    Str(Arc<str>),
    Dollar,
    ColonColon,
    EqEq,
    Assign,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Pipe,
    FatArrow,
    /// A `-` that starts a line: an item marker.
    ItemDash,
    Newline,
    Eof,
}

impl Tok {
    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Kw(k) => format!("`{}`", k.as_str()),
            Tok::Num(..) => "a number".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Dollar => "`$`".into(),
            Tok::ColonColon => "`::`".into(),
            Tok::EqEq => "`==`".into(),
            Tok::Assign => "`=`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Pipe => "`|`".into(),
            Tok::FatArrow => "`=>`".into(),
            Tok::ItemDash => "a new item (`-`)".into(),
            Tok::Newline => "the end of the line".into(),
            Tok::Eof => "the end of the section".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// Whitespace separates this token from the previous one on the same line.
    pub space_before: bool,
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    line: u32,
    col: u32,
    at_line_start: bool,
    tokens: Vec<Token>,
    diags: &'a mut Vec<Diagnostic>,
}

/// Lexes `src[start..end]`; `line`/`col` are the position of `start`.
pub fn lex(
    src: &str,
    start: usize,
    end: usize,
    line: u32,
    col: u32,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: start,
        end: end.min(src.len()),
        line,
        col,
        at_line_start: col == 1,
        tokens: Vec::with_capacity((end - start) / 4 + 1),
        diags,
    };
    lx.run();
    lx.tokens
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.bytes[self.pos])
    }
    fn peek_at(&self, n: usize) -> Option<u8> {
        (self.pos + n < self.end).then(|| self.bytes[self.pos + n])
    }

    /// Advances one character, keeping line and column.
    fn bump(&mut self) -> Option<char> {
        let c = self.src[self.pos..self.end].chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn span_from(&self, start: usize, line: u32, col: u32) -> Span {
        Span::new(start, self.pos, line, col)
    }

    fn push(&mut self, tok: Tok, span: Span, space_before: bool) {
        self.tokens.push(Token {
            tok,
            span,
            space_before,
        });
    }

    fn error(&mut self, code: Code, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::new(code, span, msg));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn run(&mut self) {
        let mut space_before = false;
        while let Some(b) = self.peek() {
            let (start, line, col) = (self.pos, self.line, self.col);
            if b == b'\n' {
                self.bump();
                if !matches!(
                    self.tokens.last(),
                    Some(Token {
                        tok: Tok::Newline,
                        ..
                    }) | None
                ) {
                    self.push(Tok::Newline, self.span_from(start, line, col), false);
                }
                self.at_line_start = true;
                space_before = false;
                continue;
            }
            if b == b' ' || b == b'\t' || b == b'\r' {
                self.bump();
                space_before = true;
                continue;
            }
            if self.at_line_start && (b == b'#' || (b == b'/' && self.peek_at(1) == Some(b'/'))) {
                // Whole-line comment.
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.bump();
                }
                continue;
            }
            let line_start = self.at_line_start;
            self.at_line_start = false;
            let sb = space_before;
            space_before = false;
            match b {
                b'0'..=b'9' => self.number(start, line, col, sb),
                b'"' => self.string(start, line, col, sb),
                b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                    while let Some(c) = self.peek() {
                        if c.is_ascii_alphanumeric() || c == b'_' {
                            self.pos += 1;
                            self.col += 1;
                        } else {
                            break;
                        }
                    }
                    if self.peek().is_some_and(|c| c >= 0x80) && self.word_goes_on() {
                        self.non_ascii_word(start, line, col, sb);
                        continue;
                    }
                    let text = &self.src[start..self.pos];
                    let tok = match Keyword::from_ident(text) {
                        Some(k) => Tok::Kw(k),
                        None => Tok::Ident(Arc::from(text)),
                    };
                    self.push(tok, self.span_from(start, line, col), sb);
                }
                0x80.. if self.word_goes_on() => self.non_ascii_word(start, line, col, sb),
                _ => {
                    let two = self.peek_at(1);
                    let (tok, len) = match (b, two) {
                        (b'=', Some(b'=')) => (Some(Tok::EqEq), 2),
                        (b'=', Some(b'>')) => (Some(Tok::FatArrow), 2),
                        (b'=', _) => (Some(Tok::Assign), 1),
                        (b'!', Some(b'=')) => (Some(Tok::Ne), 2),
                        (b'<', Some(b'=')) => (Some(Tok::Le), 2),
                        (b'<', _) => (Some(Tok::Lt), 1),
                        (b'>', Some(b'=')) => (Some(Tok::Ge), 2),
                        (b'>', _) => (Some(Tok::Gt), 1),
                        (b':', Some(b':')) => (Some(Tok::ColonColon), 2),
                        (b'+', _) => (Some(Tok::Plus), 1),
                        (b'-', _) if line_start => (Some(Tok::ItemDash), 1),
                        (b'-', _) => (Some(Tok::Minus), 1),
                        (b'*', _) => (Some(Tok::Star), 1),
                        (b'/', _) => (Some(Tok::Slash), 1),
                        (b'(', _) => (Some(Tok::LParen), 1),
                        (b')', _) => (Some(Tok::RParen), 1),
                        (b'[', _) => (Some(Tok::LBracket), 1),
                        (b']', _) => (Some(Tok::RBracket), 1),
                        (b'{', _) => (Some(Tok::LBrace), 1),
                        (b'}', _) => (Some(Tok::RBrace), 1),
                        (b',', _) => (Some(Tok::Comma), 1),
                        (b'.', _) => (Some(Tok::Dot), 1),
                        (b'|', _) => (Some(Tok::Pipe), 1),
                        (b'$', _) => (Some(Tok::Dollar), 1),
                        _ => (None, 1),
                    };
                    for _ in 0..len {
                        self.bump();
                    }
                    let span = self.span_from(start, line, col);
                    match tok {
                        Some(t) => self.push(t, span, sb),
                        None => self.invalid_char(span, sb),
                    }
                }
            }
        }
        let span = Span::new(self.pos, self.pos, self.line, self.col);
        self.push(Tok::Eof, span, false);
    }

    /// The character at the position is a letter or digit outside ASCII.
    fn word_goes_on(&self) -> bool {
        self.src[self.pos..self.end]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
    }

    /// A word with letters outside ASCII (`Größe`): names are ASCII, so this
    /// is one error for the whole word, which then stands as a name so the
    /// rest of the rule parses without a cascade of errors.
    fn non_ascii_word(&mut self, start: usize, line: u32, col: u32, sb: bool) {
        while let Some(c) = self.src[self.pos..self.end].chars().next() {
            if c.is_alphanumeric() || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
        let span = self.span_from(start, line, col);
        let word = &self.src[span.range()];
        let first = word.chars().find(|c| !c.is_ascii()).unwrap_or('?');
        let after_dot = matches!(self.tokens.last(), Some(Token { tok: Tok::Dot, .. }));
        let quoted = crate::fmt::fmt_string(word);
        let hint = if after_dot {
            format!("names are ASCII letters, digits and `_`; read this field with an index: `[{quoted}]` in place of `.{word}`")
        } else {
            format!(
                "names are ASCII letters, digits and `_`; read this context key as `$[{quoted}]`"
            )
        };
        self.error(
            Code::InvalidCharacter,
            span,
            format!("`{word}` is not a valid name: `{first}` is not an ASCII letter"),
        )
        .hint = Some(hint);
        self.push(Tok::Ident(Arc::from(word)), span, sb);
    }

    fn invalid_char(&mut self, span: Span, space_before: bool) {
        let text = &self.src[span.range()];
        let after_number = matches!(
            self.tokens.last(),
            Some(Token {
                tok: Tok::Num(_, None),
                ..
            })
        );
        if text == "%" && after_number && space_before {
            let prev = self.tokens.last().map(|t| t.span);
            let num = prev.map(|p| &self.src[p.range()]).unwrap_or("20");
            let hint = format!("write {num}%, without a space");
            self.error(
                Code::SpaceBeforeUnit,
                span,
                "a unit must follow its number directly",
            )
            .hint = Some(hint);
            return;
        }
        let shown = text.chars().next().map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        });
        let msg = format!(
            "unexpected character `{}` in a rule",
            shown.unwrap_or_default()
        );
        let d = self.error(Code::InvalidCharacter, span, msg);
        if text == "'" {
            d.hint = Some("strings use double quotes: \"text\"".into());
        } else if text == "&" || text == "!" {
            d.hint = Some("use AND, OR and NOT for logic".into());
        }
    }

    fn number(&mut self, start: usize, line: u32, col: u32, sb: bool) {
        let digits = |lx: &mut Lexer| {
            while let Some(b'0'..=b'9') = lx.peek() {
                lx.pos += 1;
                lx.col += 1;
            }
        };
        digits(self);
        if self.peek() == Some(b'.') && matches!(self.peek_at(1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.col += 1;
            digits(self);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let sign = matches!(self.peek_at(1), Some(b'+' | b'-'));
            let d = self.peek_at(if sign { 2 } else { 1 });
            if matches!(d, Some(b'0'..=b'9')) {
                self.pos += if sign { 2 } else { 1 };
                self.col += if sign { 2 } else { 1 };
                digits(self);
            }
        }
        let num_end = self.pos;
        let value: f64 = self.src[start..num_end].parse().unwrap_or(f64::NAN);
        // Unit suffix: `%` or a run of letters, immediately after the number.
        let suffix_start = self.pos;
        if self.peek() == Some(b'%') {
            self.pos += 1;
            self.col += 1;
        } else {
            while let Some(c) = self.peek() {
                if c.is_ascii_alphabetic() {
                    self.pos += 1;
                    self.col += 1;
                } else {
                    break;
                }
            }
        }
        // Digits or `_` glued to the suffix make the whole thing malformed.
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' {
                self.pos += 1;
                self.col += 1;
            } else {
                break;
            }
        }
        let span = self.span_from(start, line, col);
        let suffix = &self.src[suffix_start..self.pos];
        if !value.is_finite() {
            self.error(Code::InvalidNumber, span, "this number is too large");
            self.push(Tok::Num(0.0, None), span, sb);
            return;
        }
        if suffix.is_empty() {
            self.push(Tok::Num(value, None), span, sb);
            return;
        }
        match units::lookup(suffix) {
            Some(u) => self.push(Tok::Num(value, Some(u)), span, sb),
            None => {
                let msg = format!("unknown unit `{suffix}` after the number");
                let cands: Vec<&str> = units::all_suffixes().collect();
                let hint = match suggest(suffix, cands.iter().copied()) {
                    Some(s) => format!("did you mean `{}{}`?", &self.src[start..num_end], s),
                    None => {
                        "units are written right after the number, e.g. 20%, 2m, 48h, 45C, 10000USD"
                            .into()
                    }
                };
                self.error(Code::UnknownUnit, span, msg).hint = Some(hint);
                self.push(Tok::Num(value, None), span, sb);
            }
        }
    }

    fn string(&mut self, start: usize, line: u32, col: u32, sb: bool) {
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                let span = Span::new(start, start + 1, line, col);
                self.error(
                    Code::UnterminatedString,
                    span,
                    "this string is never closed",
                )
                .hint = Some("add a closing `\"` on the same line".into());
                break;
            };
            if c == b'\n' {
                let span = Span::new(start, start + 1, line, col);
                self.error(
                    Code::UnterminatedString,
                    span,
                    "this string is never closed",
                )
                .hint = Some("add a closing `\"` on the same line".into());
                break;
            }
            if c == b'"' {
                self.bump();
                break;
            }
            if c == b'\\' {
                let (esc_start, el, ec) = (self.pos, self.line, self.col);
                self.bump();
                match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('u') if self.peek() == Some(b'{') => {
                        self.bump();
                        let hex_start = self.pos;
                        while let Some(h) = self.peek() {
                            if h.is_ascii_hexdigit() && self.pos - hex_start < 6 {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                        let hex = &self.src[hex_start..self.pos];
                        let closed = self.peek() == Some(b'}');
                        if closed {
                            self.bump();
                        }
                        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) if closed => out.push(ch),
                            _ => {
                                let span = Span::new(esc_start, self.pos, el, ec);
                                self.error(Code::InvalidEscape, span, "invalid unicode escape")
                                    .hint = Some(
                                    "write \\u{...} with 1 to 6 hex digits of a valid character"
                                        .into(),
                                );
                            }
                        }
                    }
                    other => {
                        let span = Span::new(esc_start, self.pos, el, ec);
                        let shown = other.map(|c| c.to_string()).unwrap_or_default();
                        self.error(
                            Code::InvalidEscape,
                            span,
                            format!("unknown escape `\\{shown}` in a string"),
                        )
                        .hint = Some("the escapes are \\\" \\\\ \\n \\t \\u{...}".into());
                    }
                }
                continue;
            }
            if let Some(ch) = self.bump() {
                out.push(ch);
            }
        }
        let span = self.span_from(start, line, col);
        self.push(Tok::Str(Arc::from(out)), span, sb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> (Vec<Tok>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let t = lex(s, 0, s.len(), 1, 1, &mut d);
        (t.into_iter().map(|t| t.tok).collect(), d)
    }

    #[test]
    fn numbers_with_units() {
        let (t, d) = toks("20% 2m 48h 45C 10000USD 0.5m 1e3");
        assert!(d.is_empty(), "{d:?}");
        assert!(matches!(t[0], Tok::Num(v, Some(u)) if v == 20.0 && u.suffix() == "%"));
        assert!(matches!(t[4], Tok::Num(v, Some(u)) if v == 10000.0 && u.suffix() == "USD"));
        assert!(matches!(t[6], Tok::Num(v, None) if v == 1000.0));
    }

    #[test]
    fn item_dash_only_at_line_start() {
        let (t, _) = toks("- IF a - b > 0 THEN X\n  - IF c THEN Y");
        assert_eq!(t[0], Tok::ItemDash);
        assert_eq!(t[3], Tok::Minus);
        assert!(t.contains(&Tok::Newline));
        assert_eq!(t.iter().filter(|t| **t == Tok::ItemDash).count(), 2);
    }

    #[test]
    fn keywords_case_insensitive() {
        let (t, _) = toks("If True and not x");
        assert_eq!(t[0], Tok::Kw(Keyword::If));
        assert_eq!(t[1], Tok::Kw(Keyword::True));
        assert_eq!(t[2], Tok::Kw(Keyword::And));
    }

    #[test]
    fn unterminated_string_points_at_quote() {
        let (_, d) = toks("- IF a == \"abc THEN x");
        assert_eq!(d[0].code, Code::UnterminatedString);
        assert_eq!(d[0].span.column, 11);
    }
}
