//! The regular expressions of `matches`: how one is compiled (with size
//! limits), what compiling a policy's patterns may cost (a check budget, a
//! pattern count and a byte total, see [`RegexLimits`]), and what one search
//! costs in fuel.
//!
//! Every cost here is computed from the pattern alone, so it is the same on
//! every machine: the limits are deterministic like the others. The figures
//! behind the constants are in `docs/security.md#regex-budgets`.

use crate::limits::RegexLimits;
use regex_syntax::hir::{Class, Hir, HirKind};
use std::collections::HashMap;
use std::sync::Arc;

/// The compiled program of one pattern, in bytes (`RegexBuilder::size_limit`).
/// The largest patterns that fit (e.g. `\pL{20}`, `\w{10}`) take 10–30 ms
/// to compile; the check budget bounds how many of those one policy has.
pub const SIZE_LIMIT: usize = 1 << 20;
/// The lazy DFA's cache (`RegexBuilder::dfa_size_limit`). Smaller caches
/// made `\w{10}z` fall back to the slow engine (165 ns/byte at 64 KiB
/// against 2 ns/byte at 1 MiB); larger ones did not lower the worst case.
pub const DFA_SIZE_LIMIT: usize = 1 << 20;
/// Nesting of groups and repetitions in one pattern.
pub const NEST_LIMIT: u32 = 64;
/// Bytes of one pattern: translating a pattern (e.g. case folding `\pL`)
/// can cost ~100 µs a byte, and a pattern is measured only once it has
/// been translated, so one pattern can overshoot the budget by at most this.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Fuel per byte of input for each position of the pattern: the slowest
/// searches measured (a lazy DFA that thrashes, the PikeVM checking a
/// Unicode `\b` over non-ASCII text) took up to ~80 ns per position and
/// byte, and a unit of fuel stands for at most ~100 ns.
pub const FUEL_PER_POSITION: u64 = 2;
/// The most fuel one byte of input costs (on top of the base of 1/32): the
/// slowest search measured, whatever its size, took ~1.4 µs a byte.
pub const MAX_FUEL_PER_BYTE: u64 = 32;

/// A pattern compiled by the checker, with what a search costs.
#[derive(Debug)]
pub struct CompiledRegex {
    regex: regex::Regex,
    /// Fuel per byte of input beyond the base `len/32`: 0 for literal
    /// searches, else [`FUEL_PER_POSITION`] per position of the pattern, at
    /// most [`MAX_FUEL_PER_BYTE`].
    fuel_per_byte: u64,
}

impl CompiledRegex {
    /// The fuel a search of `len` bytes costs: charged before it runs.
    pub fn fuel(&self, len: usize) -> u64 {
        let len = len as u64;
        (len / 32 + 1).saturating_add(len.saturating_mul(self.fuel_per_byte))
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// Why a pattern was not compiled: the message of its E0308.
pub type Refusal = String;

/// The patterns of one policy being checked: each distinct pattern is
/// compiled once, and the policy's count, bytes and compile work are
/// limited by [`RegexLimits`].
#[derive(Debug)]
pub struct RegexBudget {
    limits: RegexLimits,
    cache: HashMap<Box<str>, Result<Arc<CompiledRegex>, Refusal>>,
    patterns: usize,
    bytes: usize,
    work: u64,
    /// A policy-wide limit was reported: later patterns are not compiled
    /// (and not reported again; the policy already has an error).
    spent: bool,
    /// The compiled patterns, by the byte offset of their call.
    compiled: Vec<(u32, Arc<CompiledRegex>)>,
}

/// What [`RegexBudget::compile`] says of a pattern.
pub enum Outcome {
    Compiled(Arc<CompiledRegex>),
    /// The pattern (or the policy's patterns) is refused with this message.
    Refused(Refusal),
    /// A policy-wide limit was already reported: nothing to add.
    Skipped,
}

impl RegexBudget {
    pub fn new(limits: RegexLimits) -> Self {
        RegexBudget {
            limits,
            cache: HashMap::new(),
            patterns: 0,
            bytes: 0,
            work: 0,
            spent: false,
            compiled: Vec::new(),
        }
    }

    /// The compiled patterns, by call offset, for the compiled policy.
    pub fn take_compiled(&mut self) -> Vec<(u32, Arc<CompiledRegex>)> {
        std::mem::take(&mut self.compiled)
    }

    /// The compile work spent so far, in units (see [`work_units`]).
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Counts the pattern of the call at `offset` against the policy's
    /// limits and compiles it (once per distinct pattern).
    pub fn compile(&mut self, offset: u32, pattern: &str) -> Outcome {
        if self.spent {
            return Outcome::Skipped;
        }
        self.patterns += 1;
        self.bytes = self.bytes.saturating_add(pattern.len());
        let l = self.limits;
        if self.patterns > l.max_patterns {
            self.spent = true;
            return Outcome::Refused(format!(
                "the policy has more than {} regular expressions (limit `max_regex_patterns`)",
                l.max_patterns
            ));
        }
        if self.bytes > l.max_pattern_bytes {
            self.spent = true;
            return Outcome::Refused(format!(
                "the policy's regular expressions exceed {} bytes in total (limit `max_regex_bytes`)",
                l.max_pattern_bytes
            ));
        }
        let cached = match self.cache.get(pattern) {
            Some(c) => c.clone(),
            None => {
                let r = self.build(pattern);
                if self.spent {
                    // The budget ran out on this pattern: not cached, so
                    // nothing later is compiled either.
                    return match r {
                        Err(m) => Outcome::Refused(m),
                        Ok(_) => Outcome::Skipped,
                    };
                }
                self.cache.insert(pattern.into(), r.clone());
                r
            }
        };
        match cached {
            Ok(re) => {
                self.compiled.push((offset, re.clone()));
                Outcome::Compiled(re)
            }
            Err(m) => Outcome::Refused(m),
        }
    }

    /// Parses, measures, charges and compiles one distinct pattern.
    fn build(&mut self, pattern: &str) -> Result<Arc<CompiledRegex>, Refusal> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "invalid regular expression: the pattern is longer than {MAX_PATTERN_BYTES} bytes"
            ));
        }
        let hir = regex_syntax::ParserBuilder::new()
            .nest_limit(NEST_LIMIT)
            .build()
            .parse(pattern)
            .map_err(|e| refusal(&e.to_string()))?;
        let cost = measure(&hir);
        let units = work_units(pattern, cost);
        self.work = self.work.saturating_add(units);
        if units > self.limits.compile_budget {
            self.spent = true;
            return Err(format!(
                "invalid regular expression: the pattern is too large (compiling it needs more than the check budget of {} units)",
                self.limits.compile_budget
            ));
        }
        if self.work > self.limits.compile_budget {
            self.spent = true;
            return Err(format!(
                "compiling the policy's regular expressions needs more than the check budget of {} units (limit `regex_compile_budget`)",
                self.limits.compile_budget
            ));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .nest_limit(NEST_LIMIT)
            .build()
            .map_err(|e| refusal(&e.to_string()))?;
        let literal = hir.properties().is_literal() || hir.properties().is_alternation_literal();
        let fuel_per_byte = if literal {
            0
        } else {
            cost.positions
                .saturating_mul(FUEL_PER_POSITION)
                .clamp(1, MAX_FUEL_PER_BYTE)
        };
        Ok(Arc::new(CompiledRegex {
            regex,
            fuel_per_byte,
        }))
    }
}

/// The E0308 message for an error of the `regex` crate: its last `error:`
/// line, which says what is wrong without the pattern's ASCII art.
fn refusal(err: &str) -> Refusal {
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| "the pattern is too large".into());
    format!("invalid regular expression: {line}")
}

/// What a pattern costs, measured on its translated form.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Positions a search may be at at once (literals, classes and
    /// assertions, repetitions unrolled): what a byte of input costs.
    positions: u64,
    /// The program it compiles to, roughly: a class counts its ranges by
    /// their UTF-8 length, which is what compiling it costs.
    size: u64,
}

impl Cost {
    fn plus(self, o: Cost) -> Cost {
        Cost {
            positions: self.positions.saturating_add(o.positions),
            size: self.size.saturating_add(o.size),
        }
    }
}

/// Compile work in units of ~0.3 µs (measured: compiling took 70–350 ns per
/// unit of `size`, and ~15–150 µs per pattern whatever its size).
fn work_units(pattern: &str, c: Cost) -> u64 {
    c.size
        .saturating_add(pattern.len() as u64)
        .saturating_add(256)
}

/// The cost of a translated pattern. Recursion is bounded by
/// [`NEST_LIMIT`] (the parser refuses deeper patterns).
fn measure(h: &Hir) -> Cost {
    match h.kind() {
        HirKind::Empty => Cost {
            positions: 0,
            size: 1,
        },
        HirKind::Literal(l) => Cost {
            positions: l.0.len() as u64,
            size: l.0.len() as u64,
        },
        HirKind::Class(Class::Unicode(c)) => Cost {
            positions: 1,
            size: c
                .ranges()
                .iter()
                .map(|r| (r.start().len_utf8() + r.end().len_utf8()) as u64)
                .sum::<u64>()
                .max(1),
        },
        HirKind::Class(Class::Bytes(c)) => Cost {
            positions: 1,
            size: c.ranges().len().max(1) as u64,
        },
        HirKind::Look(_) => Cost {
            positions: 1,
            size: 1,
        },
        HirKind::Repetition(r) => {
            let sub = measure(&r.sub);
            // A bounded repetition is compiled as that many copies; an
            // unbounded one as its minimum and a loop (`x+` is one copy),
            // but a search may be in one more copy than that at once.
            let (copies, positions) = match r.max {
                Some(max) => (max.max(r.min), max.max(r.min)),
                None => (r.min, r.min.saturating_add(1)),
            };
            Cost {
                positions: sub.positions.saturating_mul(u64::from(positions)),
                size: sub.size.saturating_mul(u64::from(copies.max(1))),
            }
        }
        HirKind::Capture(c) => measure(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().map(measure).fold(
            Cost {
                positions: 0,
                size: v.len() as u64,
            },
            Cost::plus,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(p: &str) -> Arc<CompiledRegex> {
        match RegexBudget::new(RegexLimits::default()).compile(0, p) {
            Outcome::Compiled(re) => re,
            Outcome::Refused(m) => panic!("{p}: {m}"),
            Outcome::Skipped => panic!("{p}: skipped"),
        }
    }

    #[test]
    fn literal_searches_cost_the_base_only() {
        assert_eq!(compiled("drone").fuel(3200), 101);
        assert_eq!(compiled("ab|cd").fuel(0), 1);
    }

    #[test]
    fn searches_cost_by_positions_up_to_the_cap() {
        assert_eq!(compiled("^A[0-9]+$").fuel(100), 4 + 100 * 10);
        assert_eq!(
            compiled(r"\b(?:\w+\b\W+){10}q").fuel(1000),
            32 + 1000 * MAX_FUEL_PER_BYTE
        );
    }

    #[test]
    fn identical_patterns_compile_once() {
        let mut b = RegexBudget::new(RegexLimits::default());
        for i in 0..10 {
            assert!(matches!(b.compile(i, r"\w+x"), Outcome::Compiled(_)));
        }
        let once = b.work();
        assert!(matches!(b.compile(99, r"\w+x"), Outcome::Compiled(_)));
        assert_eq!(b.work(), once);
        assert_eq!(b.take_compiled().len(), 11);
    }
}
