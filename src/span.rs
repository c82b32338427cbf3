//! Source positions: every token, node and diagnostic carries a `Span`.
//!
//! A span holds the byte range and the 1-based line and column (in characters)
//! of its start, so diagnostics never need to re-scan the text for the start;
//! the end line/column is computed on demand with a `LineIndex`.

use serde::Serialize;

/// A byte range in the policy text with the line/column of its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
    pub line: u32,
    pub column: u32,
}

impl Span {
    pub fn new(start: usize, end: usize, line: u32, column: u32) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
            line,
            column,
        }
    }

    /// The smallest span that covers `self` and `other` (`self` must start first).
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end.max(self.end),
            line: self.line,
            column: self.column,
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Maps byte offsets to 1-based line and character column.
#[derive(Debug, Clone)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        // A leading byte-order mark is not a column (see `parse_document`).
        let first = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut line_starts = vec![first];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        LineIndex { line_starts }
    }

    /// 1-based (line, column) of a byte offset; offsets past the end clamp to it.
    pub fn line_col(&self, text: &str, offset: usize) -> (u32, u32) {
        let offset = offset.min(text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line];
        let col = text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset.saturating_sub(start));
        (line as u32 + 1, col as u32 + 1)
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }
}
