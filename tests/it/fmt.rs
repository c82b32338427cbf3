//! `omni fmt` is idempotent and never changes meaning.
//!
//! For every policy of `examples/`, of the compatibility corpus (lenient) and
//! of the benchmark, and for generated policies (random rules with random
//! spacing, keyword case, header case, comments, blank lines and legacy
//! forms), formatting twice gives the text of formatting once, and the
//! formatted text compiles to the same policy (`omni::fmt::same_policy`) and
//! decides the same (actions and rule outcomes for a context). The same holds
//! with `--upgrade`. And every example is already formatted.

// The `omni` binary's diff, to show what is not formatted.
#[path = "../../src/bin/omni/diff.rs"]
mod diff;

use crate::common::shared::shared_dir;
use omni::fmt::{format_policy, same_policy, FmtOptions};
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions, Profile};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn omni_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "omni"))
        .collect();
    v.sort();
    v
}

/// The corpus: (name, text, needs the lenient profile). Without `../shared`
/// it is the examples alone, and `test` says so once (`crate::common::shared`).
fn corpus(test: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for p in omni_files(EXAMPLES) {
        let text = std::fs::read_to_string(&p).expect("read");
        let lenient = text.starts_with("// profile: lenient");
        out.push((p.display().to_string(), text, lenient));
    }
    // One note per test when ../shared is absent: the benchmark is looked
    // for only once the compat corpus was found.
    let what = format!("{test} (its ../shared part; the examples still run)");
    let Some(compat) = shared_dir("compat/omnilang-v1", &what) else {
        return out;
    };
    let Some(bench) = shared_dir("bench", &what) else {
        return out;
    };
    for p in omni_files(&compat.display().to_string()) {
        out.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).expect("read"),
            true,
        ));
    }
    let bench = Path::new(&bench).join("drone_ops.omni");
    out.push((
        bench.display().to_string(),
        std::fs::read_to_string(&bench).expect("read"),
        false,
    ));
    assert!(out.len() > 18 + 20, "the corpus is missing files");
    out
}

const CONTEXT: &str = r#"{"a": 2, "b": "x", "c": 1.5, "s": "hello world", "flag": true,
  "xs": [1, 2, {"v": 3, "w": [4]}], "obj": {"v": 2, "w": [1, 2], "k": "x", "In": 1},
  "k-1": 5, "Battery": 15, "Drones": [{"id": "d1", "battery": 10, "status": "ready"}]}"#;

/// What a decision says, without positions: fired actions and rule outcomes.
fn decide(src: &str, profile: Profile, ctx: &str) -> Result<String, String> {
    let opts = CheckOptions {
        profile,
        ..CheckOptions::default()
    };
    let policy = compile(src, &opts).policy.ok_or("does not compile")?;
    let ctx = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("context");
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    match evaluate(&policy, &ctx, now, &EvalOptions::default()) {
        Ok(d) => {
            let rules: Vec<String> = d
                .rules
                .iter()
                .map(|r| format!("{}:{:?}:{}:{}", r.id, r.outcome, r.evaluations, r.fired))
                .collect();
            // Warnings quote the source text and are given once per distinct
            // cause in a decision: after formatting, two spellings of one
            // path are one cause, reported at its first rule. Compare the
            // kinds of warning.
            let warnings: std::collections::BTreeSet<&str> =
                d.warnings.iter().map(|w| w.code).collect();
            Ok(format!(
                "actions {:?}\nrules {rules:?}\nwarnings {warnings:?}",
                d.action_strings()
            ))
        }
        Err(e) => Ok(format!("error {}", e.code())),
    }
}

/// Formats `src` (with and without `--upgrade`) and checks idempotence and
/// meaning; returns the formatted text.
fn check_formatting(name: &str, src: &str, profile: Profile, contexts: &[&str]) -> String {
    let opts = CheckOptions {
        profile,
        ..CheckOptions::default()
    };
    let original = compile(src, &opts);
    let original = original.policy.unwrap_or_else(|| {
        panic!(
            "{name} does not compile: {:?}\n{src}",
            original
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| (d.code.as_str(), d.span.line, &d.message))
                .collect::<Vec<_>>()
        )
    });
    let mut first = String::new();
    for upgrade in [false, true] {
        let fo = FmtOptions { profile, upgrade };
        let once = format_policy(src, &fo)
            .unwrap_or_else(|e| panic!("{name} (upgrade {upgrade}): {e}\n{src}"));
        let twice = format_policy(&once, &fo)
            .unwrap_or_else(|e| panic!("{name} formatted (upgrade {upgrade}): {e}\n{once}"));
        assert_eq!(
            once, twice,
            "{name}: formatting is not idempotent (upgrade {upgrade})\n--- source ---\n{src}"
        );
        let formatted = compile(&once, &opts)
            .policy
            .unwrap_or_else(|| panic!("{name}: the formatted text does not compile\n{once}"));
        if let Err(e) = same_policy(&original, &formatted) {
            panic!(
                "{name} (upgrade {upgrade}): {e}\n--- source ---\n{src}\n--- formatted ---\n{once}"
            );
        }
        for ctx in contexts {
            assert_eq!(
                decide(src, profile, ctx),
                decide(&once, profile, ctx),
                "{name} (upgrade {upgrade}) decides differently after formatting\n--- formatted ---\n{once}"
            );
        }
        if !upgrade {
            first = once;
        }
    }
    first
}

#[test]
fn every_example_is_already_formatted() {
    for p in omni_files(EXAMPLES) {
        let src = std::fs::read_to_string(&p).expect("read");
        let formatted = format_policy(&src, &FmtOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            formatted == src,
            "{} is not formatted; run `omni fmt --write {}`\n{}",
            p.display(),
            p.display(),
            diff::unified_diff(&src, &formatted, "now", "formatted")
        );
    }
}

#[test]
fn corpus_formatting_is_idempotent_and_keeps_meaning() {
    for (name, src, lenient) in corpus("corpus_formatting_is_idempotent_and_keeps_meaning") {
        let profile = if lenient {
            Profile::Lenient
        } else {
            Profile::Strict
        };
        // The policy's own context when there is one.
        let own = PathBuf::from(name.replace(".omni", ".context.json"));
        let own = std::fs::read_to_string(own).unwrap_or_else(|_| "{}".into());
        check_formatting(&name, &src, profile, &["{}", CONTEXT, &own]);
    }
}

// ----- perturbed corpus ---------------------------------------------------

/// Changes that keep a policy's meaning: header case, indentation of items,
/// trailing blanks, extra blank and comment lines.
fn perturb(src: &str, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    for line in src.lines() {
        let t = line.trim_start();
        let is_header = t.split_once(':').is_some_and(|(h, rest)| {
            !h.is_empty()
                && h.chars().all(|c| c.is_ascii_alphabetic())
                && !rest.starts_with(':')
                && !t.starts_with('-')
        });
        match rng.below(8) {
            0 => out.push('\n'),
            1 => out.push_str(&format!(
                "{}// note {}\n",
                " ".repeat(rng.below(5) as usize),
                rng.below(100)
            )),
            2 => out.push_str("#\n"),
            _ => {}
        }
        if is_header {
            let (h, rest) = t.split_once(':').expect("header");
            let h = match rng.below(3) {
                0 => h.to_ascii_lowercase(),
                1 => h.to_ascii_uppercase(),
                _ => h.to_string(),
            };
            out.push_str(&format!(
                "{h}{}:{rest}",
                if rng.below(4) == 0 { " " } else { "" }
            ));
        } else if t.starts_with('-') {
            out.push_str(&" ".repeat(rng.below(3) as usize));
            out.push_str(line);
        } else {
            out.push_str(line);
        }
        if rng.below(4) == 0 {
            out.push_str("  ");
        }
        out.push('\n');
    }
    out
}

// ----- generated policies -------------------------------------------------

/// A small deterministic generator for the rendering choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

#[derive(Debug, Clone)]
enum Lit {
    Num(f64),
    Qty(f64, &'static str),
    Str(&'static str),
    Bool(bool),
    Null,
}

const UNITS: &[&str] = &[
    "%", "m", "km", "s", "min", "h", "C", "kmh", "kph", "kg", "bar", "V", "kW", "kWh", "Hz", "GB",
    "USD", "EUR", "pct", "ms",
];
const NUMBERS: &[f64] = &[
    0.0, 1.0, 2.0, 15.0, 0.5, 2.25, 100.0, 1e21, 1.5e-7, 12345.678, 1000.0, 7.0,
];
const STRINGS: &[&str] = &[
    "x",
    "hello world",
    "quote\"d",
    "back\\slash",
    "tab\tbed",
    "caf\u{e9}",
    "new\nline",
    "Ready",
    "A",
];

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        (prop::sample::select(NUMBERS), any::<bool>()).prop_map(|(v, neg)| Lit::Num(if neg {
            -v
        } else {
            v
        })),
        (prop::sample::select(NUMBERS), prop::sample::select(UNITS))
            .prop_map(|(v, u)| Lit::Qty(v, u)),
        prop::sample::select(STRINGS).prop_map(Lit::Str),
        any::<bool>().prop_map(Lit::Bool),
        Just(Lit::Null),
    ]
}

fn num_lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        prop::sample::select(NUMBERS).prop_map(Lit::Num),
        (prop::sample::select(NUMBERS), prop::sample::select(UNITS))
            .prop_map(|(v, u)| Lit::Qty(v, u)),
    ]
}

/// A value that is not statically typed: a name or a path into the context.
#[derive(Debug, Clone)]
enum Operand {
    Path(&'static str),
    Arith(&'static str, &'static str, Lit),
    Neg(&'static str),
    Call(&'static str, &'static str),
}

const PATHS: &[&str] = &[
    "a",
    "b",
    "c",
    "s",
    "flag",
    "obj.v",
    "obj.w[0]",
    "obj[\"k\"]",
    "$.a",
    "$[\"k-1\"]",
    "xs[2].v",
    "obj.In",
    "x",
    "x.v",
];

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        4 => prop::sample::select(PATHS).prop_map(Operand::Path),
        // `+`/`-` with a quantity other than a duration has that quantity's
        // dimension statically (a duration may meet a timestamp): keep the
        // operand untyped with a plain number there.
        1 => (prop::sample::select(PATHS), prop::sample::select(&["+", "-", "*", "/"][..]), num_lit())
            .prop_map(|(p, o, l)| match l {
                Lit::Qty(v, u) if matches!(o, "+" | "-") && !matches!(u, "s" | "min" | "h" | "ms") => {
                    Operand::Arith(p, o, Lit::Num(v))
                }
                l => Operand::Arith(p, o, l),
            }),
        1 => prop::sample::select(PATHS).prop_map(Operand::Neg),
        1 => (prop::sample::select(&["abs", "round", "floor", "ceil", "std::math::abs"][..]), prop::sample::select(PATHS))
            .prop_map(|(f, p)| Operand::Call(f, p)),
    ]
}

#[derive(Debug, Clone)]
enum Cond {
    Cmp(Operand, &'static str, Lit),
    In(Operand, bool, Vec<Lit>),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Match(Operand, Vec<(Vec<Lit>, Cond)>, Box<Cond>),
    Hof(&'static str, Box<Cond>),
    Reduce(Lit),
    Bare(&'static str),
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        4 => (operand(), prop::sample::select(&["==", "!=", "<", "<=", ">", ">=", "="][..]), lit())
            .prop_map(|(o, op, l)| Cond::Cmp(o, op, l)),
        2 => (operand(), any::<bool>(), prop::collection::vec(lit(), 0..4))
            .prop_map(|(o, n, l)| Cond::In(o, n, l)),
        1 => prop::sample::select(&["flag", "a", "x.v"][..]).prop_map(Cond::Bare),
        1 => num_lit().prop_map(Cond::Reduce),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            (
                operand(),
                prop::collection::vec((prop::collection::vec(lit(), 1..3), inner.clone()), 0..3),
                inner.clone()
            )
                .prop_map(|(o, arms, w)| Cond::Match(o, arms, Box::new(w))),
            (
                prop::sample::select(&["any", "all", "count", "filter"][..]),
                inner
            )
                .prop_map(|(f, c)| Cond::Hof(f, Box::new(c))),
        ]
    })
}

#[derive(Debug, Clone)]
enum Arg {
    Lit(Lit),
    Op(Operand),
}

#[derive(Debug, Clone)]
enum Args {
    None,
    Empty,
    Bare(&'static str),
    List(Vec<Arg>),
}

#[derive(Debug, Clone)]
struct Act {
    name: &'static str,
    args: Args,
}

fn action() -> impl Strategy<Value = Act> {
    let arg = prop_oneof![lit().prop_map(Arg::Lit), operand().prop_map(Arg::Op)];
    let args = prop_oneof![
        3 => Just(Args::None),
        1 => Just(Args::Empty),
        1 => prop::sample::select(STRINGS).prop_map(Args::Bare),
        3 => prop::collection::vec(arg, 1..4).prop_map(Args::List),
    ];
    (
        prop::sample::select(&["Alert", "Stop", "Notify", "Log_Event", "Recall"][..]),
        args,
    )
        .prop_map(|(name, args)| Act { name, args })
}

#[derive(Debug, Clone)]
enum GRule {
    If {
        cond: Cond,
        then: Vec<Act>,
        els: Vec<Act>,
        two_line: bool,
    },
    For {
        var: &'static str,
        iter: &'static str,
        body: Vec<GRule>,
        braceless: bool,
    },
    While {
        cond: Cond,
        body: Vec<GRule>,
    },
}

fn rule() -> impl Strategy<Value = GRule> {
    let leaf = (
        cond(),
        prop::collection::vec(action(), 1..3),
        prop::collection::vec(action(), 0..2),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(cond, then, els, two_line)| GRule::If {
            cond,
            then,
            els,
            two_line,
        });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (
                prop::sample::select(&["x", "item", "y"][..]),
                prop::sample::select(&["xs", "obj.w", "obj", "Drones"][..]),
                prop::collection::vec(inner.clone(), 1..3),
                prop::bool::weighted(0.25),
            )
                .prop_map(|(var, iter, body, braceless)| GRule::For {
                    var,
                    iter,
                    body,
                    braceless,
                }),
            (cond(), prop::collection::vec(inner, 1..3))
                .prop_map(|(cond, body)| GRule::While { cond, body }),
        ]
    })
}

#[derive(Debug, Clone)]
struct GPolicy {
    sections: Vec<Vec<GRule>>,
    defaults: Vec<Lit>,
    swap: bool,
    assumption: bool,
    review: bool,
}

fn gpolicy() -> impl Strategy<Value = GPolicy> {
    (
        prop::collection::vec(prop::collection::vec(rule(), 1..4), 1..3),
        prop::collection::vec(lit(), 0..3),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(sections, defaults, swap, assumption, review)| GPolicy {
            sections,
            defaults,
            swap,
            assumption,
            review,
        })
}

/// Renders a generated policy with random layout choices.
struct Render {
    rng: Rng,
}

impl Render {
    /// Optional blanks between tokens.
    fn sp(&mut self) -> &'static str {
        match self.rng.below(6) {
            0 => "  ",
            1 | 2 => " ",
            _ => "",
        }
    }
    /// Required blanks between words.
    fn ws(&mut self) -> &'static str {
        match self.rng.below(8) {
            0 => "  ",
            1 => "\t",
            _ => " ",
        }
    }
    fn kw(&mut self, k: &str) -> String {
        match self.rng.below(4) {
            0 => k.to_ascii_lowercase(),
            1 => {
                let mut c = k.chars();
                let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or(' ');
                format!("{first}{}", c.as_str().to_ascii_lowercase())
            }
            _ => k.to_string(),
        }
    }

    fn number(&mut self, v: f64) -> String {
        match self.rng.below(5) {
            0 if v != 0.0 => format!("{v:e}"),
            1 if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.1}"),
            _ => format!("{v}"),
        }
    }

    fn lit(&mut self, l: &Lit) -> String {
        match l {
            Lit::Num(v) => {
                let n = self.number(v.abs());
                if v.is_sign_negative() {
                    format!("-{}{n}", self.sp())
                } else {
                    n
                }
            }
            Lit::Qty(v, u) => format!("{}{u}", self.number(*v)),
            Lit::Str(s) => {
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str(if self.rng.chance(2) { "\\t" } else { "\\u{9}" }),
                        'A' if self.rng.chance(2) => out.push_str("\\u{41}"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            Lit::Bool(b) => self.kw(if *b { "TRUE" } else { "FALSE" }),
            Lit::Null => self.kw("NULL"),
        }
    }

    /// Items of a bracketed list, sometimes over several lines (with a
    /// comment), never starting a line with `-`.
    fn items(&mut self, items: Vec<String>) -> String {
        let mut out = String::new();
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
                if !it.starts_with('-') && self.rng.chance(6) {
                    out.push('\n');
                    if self.rng.chance(2) {
                        out.push_str("  # inside a list\n");
                    }
                    out.push_str("      ");
                } else {
                    out.push_str(self.sp());
                }
            }
            out.push_str(it);
        }
        out
    }

    fn operand(&mut self, o: &Operand) -> String {
        match o {
            Operand::Path(p) => p.to_string(),
            Operand::Arith(p, op, l) => {
                let l = self.lit(l);
                format!(
                    "{p}{}{op}{}{l}",
                    self.sp(),
                    if l.starts_with('-') { " " } else { self.sp() }
                )
            }
            Operand::Neg(p) => format!("-{}{p}", self.sp()),
            Operand::Call(f, p) => format!("{f}({}{p}{})", self.sp(), self.sp()),
        }
    }

    /// `(operand)` when it is compound, as a comparison operand needs.
    fn cmp_operand(&mut self, o: &Operand) -> String {
        let s = self.operand(o);
        if matches!(o, Operand::Arith(..) | Operand::Neg(_)) && self.rng.chance(3) {
            format!("({s})")
        } else {
            s
        }
    }

    fn paren(&mut self, s: String, needed: bool) -> String {
        if needed || self.rng.chance(5) {
            format!("({}{s}{})", self.sp(), self.sp())
        } else {
            s
        }
    }

    fn cond(&mut self, c: &Cond) -> String {
        match c {
            Cond::Cmp(o, op, l) => {
                let o = self.cmp_operand(o);
                let l = self.lit(l);
                format!("{o}{}{op}{}{l}", self.sp(), self.sp())
            }
            Cond::In(o, neg, items) => {
                let o = self.cmp_operand(o);
                let items: Vec<String> = items.iter().map(|l| self.lit(l)).collect();
                let list = self.items(items);
                let not = if *neg {
                    format!("{}{}", self.kw("NOT"), self.ws())
                } else {
                    String::new()
                };
                format!(
                    "{o}{}{not}{}{}[{list}]",
                    self.ws(),
                    self.kw("IN"),
                    self.sp()
                )
            }
            Cond::Not(inner) => {
                let needed = matches!(**inner, Cond::And(..) | Cond::Or(..));
                let s = self.cond(inner);
                let s = self.paren(s, needed);
                format!("{}{}{s}", self.kw("NOT"), self.ws())
            }
            Cond::And(l, r) => {
                let ln = matches!(**l, Cond::Or(..));
                let rn = matches!(**r, Cond::Or(..) | Cond::And(..));
                let (l, r) = (self.cond(l), self.cond(r));
                let (l, r) = (self.paren(l, ln), self.paren(r, rn));
                format!("{l}{}{}{}{r}", self.ws(), self.kw("AND"), self.ws())
            }
            Cond::Or(l, r) => {
                let rn = matches!(**r, Cond::Or(..));
                let (l, r) = (self.cond(l), self.cond(r));
                let (l, r) = (self.paren(l, false), self.paren(r, rn));
                format!("{l}{}{}{}{r}", self.ws(), self.kw("OR"), self.ws())
            }
            Cond::Match(o, arms, wild) => {
                let mut parts = Vec::new();
                for (pats, body) in arms {
                    let pats: Vec<String> = pats.iter().map(|p| self.lit(p)).collect();
                    let body = self.cond(body);
                    let sep = format!("{}|{}", self.sp(), self.sp());
                    parts.push(format!(
                        "{}{}=>{}{body}",
                        pats.join(&sep),
                        self.sp(),
                        self.sp()
                    ));
                }
                let w = self.cond(wild);
                parts.push(format!("_{}=>{}{w}", self.sp(), self.sp()));
                let o = self.operand(o);
                let arms = self.items(parts);
                format!(
                    "{}{}{o}{}{{{}{arms}{}}}",
                    self.kw("match"),
                    self.ws(),
                    self.ws(),
                    self.sp(),
                    self.sp()
                )
            }
            Cond::Hof(f, body) => {
                let b = self.cond(body);
                let call = format!(
                    "{f}({}xs,{}|x|{}{b}{})",
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp()
                );
                match *f {
                    "count" => format!("{call}{}>{}1", self.sp(), self.sp()),
                    "filter" => format!("len({call}){}=={}0", self.sp(), self.sp()),
                    _ => call,
                }
            }
            Cond::Reduce(l) => {
                let l = self.lit(l);
                format!(
                    "reduce(xs,{}|acc,{}v|{}acc{}+{}v,{}0){}>{}{l}",
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp(),
                    self.sp()
                )
            }
            Cond::Bare(n) => n.to_string(),
        }
    }

    fn actions(&mut self, acts: &[Act]) -> String {
        let mut out = Vec::new();
        for a in acts {
            let s = match &a.args {
                Args::None => a.name.to_string(),
                Args::Empty => format!("{}(){}", a.name, ""),
                Args::Bare(s) => format!("{}{}{}", a.name, self.ws(), self.lit(&Lit::Str(s))),
                Args::List(args) => {
                    let items: Vec<String> = args
                        .iter()
                        .map(|x| match x {
                            Arg::Lit(l) => self.lit(l),
                            Arg::Op(o) => self.operand(o),
                        })
                        .collect();
                    format!("{}({}{})", a.name, self.sp(), self.items(items))
                }
            };
            out.push(s);
        }
        let sep = format!("{},{}", self.sp(), self.sp());
        out.join(&sep)
    }

    fn indent(&mut self, depth: usize) -> String {
        " ".repeat(depth * 4 + self.rng.below(3) as usize)
    }

    fn rules(&mut self, rules: &[GRule], depth: usize, out: &mut String) {
        for (i, r) in rules.iter().enumerate() {
            if self.rng.chance(6) {
                out.push('\n');
            }
            if self.rng.chance(5) {
                let ind = self.indent(depth);
                let mark = if self.rng.chance(2) { "//" } else { "#" };
                out.push_str(&format!("{ind}{mark} comment {i}\n"));
            }
            let ind = self.indent(depth);
            match r {
                GRule::If {
                    cond,
                    then,
                    els,
                    two_line,
                } => {
                    let c = self.cond(cond);
                    let t = self.actions(then);
                    let e = if els.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "{}{}{}{}",
                            self.ws(),
                            self.kw("ELSE"),
                            self.ws(),
                            self.actions(els)
                        )
                    };
                    if *two_line {
                        out.push_str(&format!(
                            "{ind}-{}{}{}{c}\n",
                            self.sp(),
                            self.kw("IF"),
                            self.ws()
                        ));
                        out.push_str(&format!(
                            "{ind}-{}{}{}{t}{e}\n",
                            self.sp(),
                            self.kw("THEN"),
                            self.ws()
                        ));
                    } else {
                        out.push_str(&format!(
                            "{ind}-{}{}{}{c}{}{}{}{t}{e}{}\n",
                            self.sp(),
                            self.kw("IF"),
                            self.ws(),
                            self.ws(),
                            self.kw("THEN"),
                            self.ws(),
                            self.sp()
                        ));
                    }
                }
                GRule::For {
                    var,
                    iter,
                    body,
                    braceless,
                } => {
                    // A braceless FOR takes the rest of its block: only the last rule.
                    let braceless = *braceless && i == rules.len() - 1;
                    let head = format!(
                        "{ind}-{}{}{}{var}{}{}{}{iter}",
                        self.sp(),
                        self.kw("FOR"),
                        self.ws(),
                        self.ws(),
                        self.kw("IN"),
                        self.ws()
                    );
                    if braceless {
                        out.push_str(&format!("{head}\n"));
                        self.rules(body, depth + 1, out);
                    } else {
                        out.push_str(&format!("{head}{}{{\n", self.sp()));
                        self.rules(body, depth + 1, out);
                        let ind = self.indent(depth);
                        out.push_str(&format!("{ind}}}\n"));
                    }
                }
                GRule::While { cond, body } => {
                    let c = self.cond(cond);
                    out.push_str(&format!(
                        "{ind}-{}{}{}{c}{}{{\n",
                        self.sp(),
                        self.kw("WHILE"),
                        self.ws(),
                        self.sp()
                    ));
                    self.rules(body, depth + 1, out);
                    let ind = self.indent(depth);
                    out.push_str(&format!("{ind}}}\n"));
                }
            }
        }
    }

    fn header(&mut self, name: &str) -> String {
        format!(
            "{}{}:",
            self.kw(name),
            if self.rng.chance(5) { " " } else { "" }
        )
    }

    fn policy(&mut self, p: &GPolicy) -> String {
        let mut secs: Vec<String> = Vec::new();
        secs.push(format!(
            "{}{}Keep things safe\n",
            self.header("INTENT"),
            self.sp()
        ));
        secs.push(format!(
            "{}\n-{}primary:{}Ops\n- Secondary: Audit\n",
            self.header("ACTOR"),
            self.sp(),
            self.sp()
        ));
        let mut ctx = format!(
            "{}\n- Domain:{}Test domain\n- Lokasi: Depot 7\n",
            self.header("CONTEXT"),
            self.sp()
        );
        for (i, d) in p.defaults.iter().enumerate() {
            let v = self.lit(d);
            ctx.push_str(&format!(
                "-{}D{i}{}:{}{v}{}\n",
                self.sp(),
                self.sp(),
                self.sp(),
                self.sp()
            ));
        }
        if !p.defaults.is_empty() {
            let items: Vec<String> = p.defaults.iter().map(|d| self.lit(d)).collect();
            ctx.push_str(&format!("- DList: [{}]\n", items.join(",")));
        }
        secs.push(ctx);
        if p.assumption {
            secs.push(format!(
                "{}\n- Sensors report every minute\n  and never lie\n",
                self.header("ASSUMPTION")
            ));
        }
        for rules in &p.sections {
            let mut s = format!("{}\n", self.header("RULE"));
            self.rules(rules, 0, &mut s);
            secs.push(s);
        }
        secs.push(format!(
            "{}\n- legal:{}comply\n- Technical: \"quoted\"\n",
            self.header("CONSTRAINT"),
            self.sp()
        ));
        secs.push(format!(
            "{}\n- Benefit: fewer incidents\n-   Trade-off :  speed\n",
            self.header("IMPACT")
        ));
        secs.push(format!(
            "{}\n- Evidence: https://example.org/a\n",
            self.header("TRACE")
        ));
        if p.review {
            secs.push(format!("{}\n- Interval: Yearly\n", self.header("REVIEW")));
        }
        if p.swap && secs.len() > 3 {
            secs.swap(1, 2);
        }
        let mut out = String::new();
        if self.rng.chance(3) {
            out.push_str("// generated policy\n\n");
        }
        for s in secs {
            if self.rng.chance(4) {
                out.push('\n');
            }
            out.push_str(&s);
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn generated_policies_format_idempotently_and_keep_meaning(p in gpolicy(), seed in any::<u64>()) {
        let src = Render { rng: Rng(seed) }.policy(&p);
        check_formatting("generated policy", &src, Profile::Lenient, &["{}", CONTEXT]);
    }

    #[test]
    fn perturbed_corpus_formats_idempotently_and_keeps_meaning(index in 0usize..64, seed in any::<u64>()) {
        // Read once for all cases, so a skip is noted once, not per case.
        static CORPUS: std::sync::OnceLock<Vec<(String, String, bool)>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(|| corpus("perturbed_corpus_formats_idempotently_and_keeps_meaning"));
        let (name, src, lenient) = &corpus[index % corpus.len()];
        let changed = perturb(src, seed);
        let profile = if *lenient { Profile::Lenient } else { Profile::Strict };
        // A header that comes first may now follow a comment: still a policy.
        let formatted = check_formatting(name, &changed, profile, &[CONTEXT]);
        // Layout changes alone leave the same formatted policy, apart from
        // the comment lines they add.
        let plain = |t: &str| t.lines()
            .filter(|l| !(l.trim_start().starts_with("//") || l.trim_start().starts_with('#') || l.trim().is_empty()))
            .map(str::to_string)
            .collect::<Vec<_>>();
        let original = format_policy(src, &FmtOptions { profile, upgrade: false }).expect("formats");
        prop_assert_eq!(plain(&formatted), plain(&original));
    }
}

// ----- the command --------------------------------------------------------

fn omni(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the omni binary runs")
}

#[test]
fn fmt_check_passes_on_the_examples() {
    let files: Vec<String> = omni_files(EXAMPLES)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(String::as_str));
    let o = omni(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn fmt_check_write_and_errors() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fmt_cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let messy = dir.join("messy.omni");
    let src = "intent: x\nactor:\n- Primary: A\ncontext:\n- Domain: D\nrule:\n-  if a>1 then B\nconstraint: c\nimpact: i\ntrace: t\n";
    std::fs::write(&messy, src).expect("write");
    let path = messy.to_str().expect("UTF-8 path");

    // Without flags: the formatted text on standard output, the file untouched.
    let o = omni(&["fmt", path]);
    assert_eq!(o.status.code(), Some(0));
    let formatted = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        formatted.contains("RULE:\n- IF a > 1 THEN B\n"),
        "{formatted}"
    );
    assert_eq!(std::fs::read_to_string(&messy).expect("read"), src);

    // --check: exit 1 and a diff.
    let o = omni(&["fmt", "--check", path]);
    assert_eq!(o.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.contains("--- ") && diff.contains("+++ "), "{diff}");
    assert!(diff.contains("\n--  if a>1 then B\n"), "{diff}");
    assert!(diff.contains("\n+- IF a > 1 THEN B\n"), "{diff}");

    // --write, then --check passes.
    let o = omni(&["fmt", "--write", path]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&messy).expect("read"), formatted);
    assert_eq!(omni(&["fmt", "--check", path]).status.code(), Some(0));

    // --strict refuses conformance problems; --upgrade rewrites `=`.
    let legacy = dir.join("legacy.omni");
    std::fs::write(&legacy, formatted.replace("a > 1", "a = 1")).expect("write");
    let lp = legacy.to_str().expect("UTF-8 path");
    assert_eq!(omni(&["fmt", "--check", lp]).status.code(), Some(0));
    let o = omni(&["fmt", "--strict", lp]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("W0406"));
    let o = omni(&["fmt", "--upgrade", lp]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("- IF a == 1 THEN B\n"));

    // A file with errors is not formatted.
    let broken = dir.join("broken.omni");
    let bad = formatted.replace("a > 1", "2m > 5s");
    std::fs::write(&broken, &bad).expect("write");
    let bp = broken.to_str().expect("UTF-8 path");
    let o = omni(&["fmt", "--write", bp]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("E0301") || err.contains("not formatted"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&broken).expect("read"), bad);

    // An unreadable file is exit 2.
    let o = omni(&["fmt", dir.join("missing.omni").to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fmt_keeps_crlf_line_endings() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fmt_crlf");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let lf = "intent: x\nactor:\n- Primary: A\ncontext:\n- Domain: D\nrule:\n// why\n-  if a>1 then B\nconstraint: c\nimpact: i\ntrace: t\n";
    let crlf = lf.replace('\n', "\r\n");
    let messy = dir.join("messy.omni");
    std::fs::write(&messy, &crlf).expect("write");
    let path = messy.to_str().expect("UTF-8 path");

    // The library keeps them, and the result is the LF layout with CRLF.
    let formatted = format_policy(&crlf, &FmtOptions::default()).expect("formats");
    let formatted_lf = format_policy(lf, &FmtOptions::default()).expect("formats");
    assert_eq!(formatted, formatted_lf.replace('\n', "\r\n"));
    assert!(
        !formatted.replace("\r\n", "").contains('\n'),
        "{formatted:?}"
    );

    // The command prints and writes CRLF, and `--check` then passes.
    let o = omni(&["fmt", path]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), formatted);
    let o = omni(&["fmt", "--write", path]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&messy).expect("read"), formatted);
    let o = omni(&["fmt", "--check", path]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());

    // A formatted LF file stays LF.
    let plain = dir.join("plain.omni");
    std::fs::write(&plain, &formatted_lf).expect("write");
    let o = omni(&["fmt", "--check", plain.to_str().expect("UTF-8 path")]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn fmt_takes_the_policy_size_limit_as_a_flag() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fmt_limit");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let src = format_policy(
        "intent: x\nactor:\n- Primary: A\ncontext:\n- Domain: D\nrule:\n- IF a > 1 THEN B\nconstraint: c\nimpact: i\ntrace: t\n",
        &FmtOptions::default(),
    )
    .expect("formats");
    // Over the language's 100 KB default, under the command's 10 MiB.
    let big = src.replace(
        "RULE:\n",
        &format!("RULE:\n{}", "// padding\n".repeat(12_000)),
    );
    assert!(big.len() > 100 * 1024);
    let p = dir.join("big.omni");
    std::fs::write(&p, &big).expect("write");
    let path = p.to_str().expect("UTF-8 path");
    assert_eq!(omni(&["fmt", path]).status.code(), Some(0));
    let o = omni(&["fmt", "--max-policy-bytes", "1KiB", path]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("policy_too_large") && err.contains("the limit is 1024"),
        "{err}"
    );
}
