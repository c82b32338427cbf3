//! Diagnostics: the stable code catalogue, the `Diagnostic` type, and its
//! human (source line + caret, via `codespan-reporting`) and JSON renderings.
//!
//! Codes never change meaning once published; `docs/diagnostics.md` has one
//! entry per code. The letter is the code's family, not its severity: the
//! conformance family `W04xx` is an error under the strict profile.

use crate::span::{LineIndex, Span};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// Every diagnostic the front end can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    UnexpectedToken,
    UnterminatedString,
    InvalidNumber,
    UnknownUnit,
    SpaceBeforeUnit,
    NestingTooDeep,
    UnclosedDelimiter,
    InvalidEscape,
    InvalidCharacter,
    UnknownSection,
    MissingSection,
    SectionOrder,
    DuplicateSection,
    EmptySection,
    ContentBeforeHeader,
    LegacyAssign,
    LegacyBracelessFor,
    LegacyTwoLineIf,
    UnknownActorKind,
    PrimaryActor,
    ItemWithoutKind,
    NotAnItem,
    DimensionMismatch,
    TypeMismatch,
    TemperatureArithmetic,
    WrongArity,
    UnknownFunction,
    DeniedIo,
    FeatureDisabled,
    InvalidRegex,
    MisplacedLambda,
    InvalidTimestamp,
    InvalidArgument,
    InvalidDeclaration,
    UndeclaredField,
    MatchWithoutWildcard,
    EmptyLoopBody,
    BareNumberUnit,
}

impl Code {
    pub const ALL: &'static [Code] = &[
        Code::UnexpectedToken,
        Code::UnterminatedString,
        Code::InvalidNumber,
        Code::UnknownUnit,
        Code::SpaceBeforeUnit,
        Code::NestingTooDeep,
        Code::UnclosedDelimiter,
        Code::InvalidEscape,
        Code::InvalidCharacter,
        Code::UnknownSection,
        Code::MissingSection,
        Code::SectionOrder,
        Code::DuplicateSection,
        Code::EmptySection,
        Code::ContentBeforeHeader,
        Code::LegacyAssign,
        Code::LegacyBracelessFor,
        Code::LegacyTwoLineIf,
        Code::UnknownActorKind,
        Code::PrimaryActor,
        Code::ItemWithoutKind,
        Code::NotAnItem,
        Code::DimensionMismatch,
        Code::TypeMismatch,
        Code::TemperatureArithmetic,
        Code::WrongArity,
        Code::UnknownFunction,
        Code::DeniedIo,
        Code::FeatureDisabled,
        Code::InvalidRegex,
        Code::MisplacedLambda,
        Code::InvalidTimestamp,
        Code::InvalidArgument,
        Code::InvalidDeclaration,
        Code::UndeclaredField,
        Code::MatchWithoutWildcard,
        Code::EmptyLoopBody,
        Code::BareNumberUnit,
    ];

    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnexpectedToken => "E0101",
            Code::UnterminatedString => "E0102",
            Code::InvalidNumber => "E0103",
            Code::UnknownUnit => "E0104",
            Code::SpaceBeforeUnit => "E0105",
            Code::NestingTooDeep => "E0106",
            Code::UnclosedDelimiter => "E0107",
            Code::InvalidEscape => "E0108",
            Code::InvalidCharacter => "E0109",
            Code::UnknownSection => "E0201",
            Code::MissingSection => "W0401",
            Code::SectionOrder => "W0402",
            Code::DuplicateSection => "W0403",
            Code::EmptySection => "W0404",
            Code::ContentBeforeHeader => "W0405",
            Code::LegacyAssign => "W0406",
            Code::LegacyBracelessFor => "W0407",
            Code::LegacyTwoLineIf => "W0408",
            Code::UnknownActorKind => "W0409",
            Code::PrimaryActor => "W0410",
            Code::ItemWithoutKind => "W0411",
            Code::NotAnItem => "W0412",
            Code::DimensionMismatch => "E0301",
            Code::TypeMismatch => "E0302",
            Code::TemperatureArithmetic => "E0303",
            Code::WrongArity => "E0304",
            Code::UnknownFunction => "E0305",
            Code::DeniedIo => "E0306",
            Code::FeatureDisabled => "E0307",
            Code::InvalidRegex => "E0308",
            Code::MisplacedLambda => "E0309",
            Code::InvalidTimestamp => "E0310",
            Code::InvalidArgument => "E0311",
            Code::InvalidDeclaration => "E0312",
            Code::UndeclaredField => "E0313",
            Code::MatchWithoutWildcard => "W0501",
            Code::EmptyLoopBody => "W0502",
            Code::BareNumberUnit => "I0501",
        }
    }

    /// A short title used in documentation.
    pub fn title(self) -> &'static str {
        match self {
            Code::UnexpectedToken => "unexpected token",
            Code::UnterminatedString => "unterminated string",
            Code::InvalidNumber => "invalid number",
            Code::UnknownUnit => "unknown unit suffix",
            Code::SpaceBeforeUnit => "space between a number and its unit",
            Code::NestingTooDeep => "nesting too deep",
            Code::UnclosedDelimiter => "unclosed delimiter",
            Code::InvalidEscape => "invalid escape in string",
            Code::InvalidCharacter => "invalid character",
            Code::UnknownSection => "unknown section",
            Code::MissingSection => "missing section",
            Code::SectionOrder => "section out of canonical order",
            Code::DuplicateSection => "duplicate section",
            Code::EmptySection => "empty section",
            Code::ContentBeforeHeader => "content before the first section",
            Code::LegacyAssign => "legacy `=` in a condition",
            Code::LegacyBracelessFor => "legacy FOR without braces",
            Code::LegacyTwoLineIf => "legacy two-line IF",
            Code::UnknownActorKind => "unknown ACTOR kind",
            Code::PrimaryActor => "ACTOR needs exactly one Primary",
            Code::ItemWithoutKind => "item without a kind",
            Code::NotAnItem => "line is not an item",
            Code::DimensionMismatch => "dimension mismatch",
            Code::TypeMismatch => "type mismatch",
            Code::TemperatureArithmetic => "arithmetic on temperatures",
            Code::WrongArity => "wrong number of arguments",
            Code::UnknownFunction => "unknown function",
            Code::DeniedIo => "denied: no I/O in policies",
            Code::FeatureDisabled => "feature disabled",
            Code::InvalidRegex => "invalid regular expression",
            Code::MisplacedLambda => "lambda outside a higher-order function",
            Code::InvalidTimestamp => "invalid timestamp",
            Code::InvalidArgument => "invalid argument",
            Code::InvalidDeclaration => "invalid type declaration",
            Code::UndeclaredField => "field not in its declared type",
            Code::MatchWithoutWildcard => "match without `_`",
            Code::EmptyLoopBody => "empty loop body",
            Code::BareNumberUnit => "bare number adopts a unit",
        }
    }

    /// Severity before the profile is applied.
    pub fn base_severity(self) -> Severity {
        match self.as_str().as_bytes()[0] {
            b'E' => Severity::Error,
            b'W' => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// Conformance problems: errors under strict, warnings under lenient.
    pub fn is_conformance(self) -> bool {
        matches!(
            self,
            Code::MissingSection
                | Code::SectionOrder
                | Code::DuplicateSection
                | Code::EmptySection
                | Code::ContentBeforeHeader
                | Code::LegacyAssign
                | Code::NotAnItem
        )
    }

    pub fn from_str_code(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

/// One problem found in a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.base_severity(),
            message: message.into(),
            span,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The JSON shape of `docs/api.md#endpoints`.
    pub fn to_json(&self, source: &str, index: &LineIndex) -> DiagnosticJson {
        let (end_line, end_column) = index.line_col(source, self.span.end as usize);
        DiagnosticJson {
            code: self.code.as_str(),
            severity: self.severity,
            message: self.message.clone(),
            line: self.span.line,
            column: self.span.column,
            end_line,
            end_column,
            hint: self.hint.clone(),
        }
    }
}

/// A diagnostic as it appears in JSON output and in the service's responses.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticJson {
    #[serde(deserialize_with = "static_code::deserialize")]
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            _ => Err(serde::de::Error::custom("unknown severity")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Code::from_str_code(&s).ok_or_else(|| serde::de::Error::custom("unknown code"))
    }
}

/// Deserializing a `&'static str` code goes through the catalogue.
pub(crate) mod static_code {
    use super::Code;
    use serde::Deserialize;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        Code::deserialize(d).map(|c| c.as_str())
    }
}

/// Renders diagnostics for a terminal: `error[E0101]: message`, the source
/// line, a caret under the span, and the hint.
pub fn render_human(file_name: &str, source: &str, diags: &[Diagnostic], color: bool) -> String {
    use codespan_reporting::diagnostic::{Diagnostic as CsDiag, Label};
    use codespan_reporting::files::SimpleFile;
    use codespan_reporting::term::{self, termcolor};

    let file = SimpleFile::new(file_name, source);
    let config = term::Config::default();
    let mut buf = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    for d in diags {
        let cs = match d.severity {
            Severity::Error => CsDiag::error(),
            Severity::Warning => CsDiag::warning(),
            Severity::Info => CsDiag::note(),
        };
        let mut range = d.span.range();
        range.end = range.end.min(source.len());
        range.start = range.start.min(range.end);
        let mut notes = Vec::new();
        if let Some(h) = &d.hint {
            notes.push(format!("hint: {h}"));
        }
        let cs = cs
            .with_code(d.code.as_str())
            .with_message(format!(
                "{} (line {}, column {})",
                d.message, d.span.line, d.span.column
            ))
            .with_labels(vec![Label::primary((), range)])
            .with_notes(notes);
        // Rendering into an in-memory buffer cannot fail for a valid span.
        let _ = term::emit_to_write_style(&mut buf, &config, &file, &cs);
    }
    String::from_utf8_lossy(buf.as_slice()).into_owned()
}

/// Orders diagnostics by position, then severity, and drops exact repeats.
pub fn sort_and_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (a.span.start, a.severity, a.code.as_str()).cmp(&(
            b.span.start,
            b.severity,
            b.code.as_str(),
        ))
    });
    diags.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Edit distance where swapping two neighbouring letters counts once
/// (`ADN` is one step from `AND`), for keyword suggestions.
pub fn transposition_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The keyword a misspelt word most likely meant: one edit (a swap of two
/// neighbours counts as one) for words of up to four letters, two for
/// longer ones. `preferred` keywords win ties (those the parser expected).
pub fn suggest_keyword(
    word: &str,
    keywords: &[&'static str],
    preferred: &str,
) -> Option<&'static str> {
    let n = word.chars().count();
    if n > 12 {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    let limit = if n <= 4 { 1 } else { 2 };
    keywords
        .iter()
        .filter(|k| **k != upper)
        .map(|k| {
            let d = transposition_distance(&upper, k);
            (d, !preferred.contains(*k), *k)
        })
        .filter(|(d, _, _)| *d <= limit)
        .min_by_key(|(d, not_preferred, _)| (*d, *not_preferred))
        .map(|(_, _, k)| k)
}

/// The closest candidate within a distance proportional to the word length.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
