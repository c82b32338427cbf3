//! The context reader: JSON bytes straight into [`Value`]s (no intermediate
//! tree), under [`ContextLimits`], with object keys interned per document and
//! records of a list sharing one key shape.
//! Also [`from_json_value`], the same mapping from a `serde_json::Value`.

use super::scan::scan_plain;
use crate::error_code::ErrorCode;
use crate::units;
use crate::value::{Object, Shape, Value};
use std::sync::Arc;

/// Why a context could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContextError {
    #[error("the context is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the context must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("the context is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the context is nested deeper than the limit of {0} levels")]
    TooDeep(usize),
    #[error("the context has more than the limit of {0} keys and elements")]
    TooManyItems(usize),
}

impl ContextError {
    /// The error code a caller receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            ContextError::InvalidJson(_) | ContextError::NotAnObject(_) => {
                ErrorCode::InvalidContext
            }
            ContextError::TooLarge(_) | ContextError::TooManyItems(_) => ErrorCode::ContextTooLarge,
            ContextError::TooDeep(_) => ErrorCode::ContextTooDeep,
        }
    }
}

pub use crate::limits::ContextLimits;

/// A parsed request context: always a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub root: Arc<Object>,
}

impl Context {
    pub fn empty() -> Context {
        Context {
            root: Arc::new(Object::new()),
        }
    }

    /// Parses JSON text under the limits, straight into `Value`s.
    ///
    /// A hand-written parser (RFC 8259, as strict as `serde_json`): object
    /// keys are interned per document, so the 50 objects of a list that
    /// share five keys allocate five keys, not 250; entries and elements are
    /// gathered on reused stacks and moved into exactly sized vectors.
    pub fn from_json(bytes: &[u8], limits: &ContextLimits) -> Result<Context, ContextError> {
        if bytes.len() > limits.max_bytes {
            return Err(ContextError::TooLarge(limits.max_bytes));
        }
        // A UTF-8 byte-order mark (which some editors write) is not JSON
        // but says nothing either: skip it, so line 1's columns in errors
        // count from the first character an editor shows.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // JSON text is UTF-8 (RFC 8259); checked once for the whole document,
        // so strings are slices of it without a check of their own.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let mut p = Parser::new("", limits);
                p.b = bytes;
                p.i = e.valid_up_to();
                return Err(p.syntax());
            }
        };
        let mut p = Parser::new(text, limits);
        p.skip_ws();
        let v = p.value()?;
        p.skip_ws();
        if p.i < bytes.len() {
            return Err(p.syntax());
        }
        match v {
            Value::Obj(root) => Ok(Context { root }),
            other => Err(ContextError::NotAnObject(match other {
                Value::List(_) => "a list",
                Value::Str(_) => "a string",
                Value::Num(_) => "a number",
                Value::Bool(_) => "a bool",
                _ => "null",
            })),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }
}

/// Nesting beyond this is refused whatever the configured depth (the
/// recursion bound of the parser, as `serde_json`'s was).
const MAX_NESTING: usize = 127;

/// JSON whitespace, for bytes up to `b' '`.
const WS: [bool; 33] = {
    let mut t = [false; 33];
    t[b' ' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\t' as usize] = true;
    t
};

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
    max_depth: usize,
    items: usize,
    max_items: usize,
    limit_depth: usize,
    /// Every key went through the interner (so equal keys are the same `Arc`).
    all_interned: bool,
    m: Buffers,
}

/// What a parse needs besides the input, kept per thread between parses
/// (a worker parses one context per request): the stacks keep their
/// capacity and the interner keeps the keys it has seen.
#[derive(Default)]
struct Buffers {
    /// Object keys and short strings.
    keys: Interner,
    /// Entries of the objects being parsed, innermost last.
    names: Vec<Arc<str>>,
    /// Values of the objects being parsed, innermost last (one per key
    /// in `names`, except while an object's keys match the predicted shape:
    /// those keys are not pushed).
    fields: Vec<Value>,
    /// Elements of the lists being parsed, innermost last.
    elements: Vec<Value>,
    /// Unescaped text of a string with escapes.
    scratch: Vec<u8>,
    /// Shared by all empty lists.
    empty_list: Option<Arc<Vec<Value>>>,
    /// By depth: the shape of the last object parsed there.
    shapes: Vec<Option<Arc<Shape>>>,
}

thread_local! {
    static BUFFERS: std::cell::Cell<Option<Box<Buffers>>> = const { std::cell::Cell::new(None) };
}

/// Past these sizes the per-thread state is dropped after a parse, so one
/// large context does not pin its memory.
const KEEP_STACK: usize = 4096;
const KEEP_INTERNED: usize = 8192;
const KEEP_INTERNED_BYTES: usize = 256 * 1024;

/// An interning table: open addressing, keyed by the text, with a
/// per-thread random seed and a bounded probe, so crafted keys cannot make
/// it quadratic (a key that finds no slot soon is simply not interned).
/// Texts of up to 16 bytes are compared as two words held in the slot.
#[derive(Default)]
struct Interner {
    slots: Vec<Option<Slot>>,
    len: usize,
    bytes: usize,
    seed: u64,
}

struct Slot {
    hash: u64,
    /// The first 16 bytes, zero-padded (zero for longer texts).
    w0: u64,
    w1: u64,
    text: Arc<str>,
}

const MAX_PROBE: usize = 16;
/// The table stops taking new texts at this size (within one parse).
const MAX_INTERNER_ENTRIES: usize = 1 << 16;
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Eight bytes as a word.
#[inline]
fn word(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&c[..8]);
    u64::from_le_bytes(w)
}

/// `b[start..start + len]` (`len` ≤ 16) as two zero-padded words.
#[inline]
fn words16(b: &[u8], start: usize, len: usize) -> (u64, u64) {
    let mask = |n: usize| {
        if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        }
    };
    if start + 16 <= b.len() {
        let w0 = word(&b[start..]) & mask(len);
        let w1 = if len > 8 {
            word(&b[start + 8..]) & mask(len - 8)
        } else {
            0
        };
        (w0, w1)
    } else {
        let mut w = [0u8; 16];
        w[..len].copy_from_slice(&b[start..start + len]);
        (word(&w[..8]), word(&w[8..]))
    }
}

impl Interner {
    fn long_hash(&self, b: &[u8]) -> u64 {
        let mut h = self.seed ^ (b.len() as u64).wrapping_mul(K);
        for c in b.chunks(8) {
            let mut x = 0u64;
            for (j, &c) in c.iter().enumerate() {
                x |= (c as u64) << (8 * j);
            }
            h = (h ^ x).wrapping_mul(K).rotate_left(26);
        }
        h ^ (h >> 29)
    }

    #[inline]
    fn short_hash(&self, len: usize, w0: u64, w1: u64) -> u64 {
        let h = (self.seed ^ (len as u64).wrapping_mul(K) ^ w0).wrapping_mul(K);
        let h = (h.rotate_left(26) ^ w1).wrapping_mul(K);
        h ^ (h >> 29)
    }

    /// The shared `Arc` for the text `b[start..start + s.len()]` (which is
    /// `s`), or `None` when its probe sequence is full.
    #[inline]
    fn intern(&mut self, s: &str, b: &[u8], start: usize) -> Option<Arc<str>> {
        if self.slots.is_empty() {
            use std::hash::BuildHasher;
            self.seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
            self.slots = (0..256).map(|_| None).collect();
        }
        let len = s.len();
        let (hash, w0, w1) = if len <= 16 {
            let (w0, w1) = words16(b, start, len);
            (self.short_hash(len, w0, w1), w0, w1)
        } else {
            (self.long_hash(s.as_bytes()), 0, 0)
        };
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        for _ in 0..MAX_PROBE {
            match &self.slots[i] {
                Some(x)
                    if x.hash == hash
                        && x.w0 == w0
                        && x.w1 == w1
                        && x.text.len() == len
                        && (len <= 16 || *x.text == *s) =>
                {
                    return Some(x.text.clone())
                }
                Some(_) => i = (i + 1) & mask,
                None if self.len < MAX_INTERNER_ENTRIES => {
                    return Some(self.insert(i, s, hash, w0, w1))
                }
                None => return None,
            }
        }
        None
    }

    #[cold]
    fn insert(&mut self, i: usize, s: &str, hash: u64, w0: u64, w1: u64) -> Arc<str> {
        let text: Arc<str> = Arc::from(s);
        self.slots[i] = Some(Slot {
            hash,
            w0,
            w1,
            text: text.clone(),
        });
        self.len += 1;
        self.bytes += s.len();
        if self.len * 2 > self.slots.len() {
            let old = std::mem::take(&mut self.slots);
            self.slots = (0..old.len() * 2).map(|_| None).collect();
            let mask = self.slots.len() - 1;
            for x in old.into_iter().flatten() {
                let mut j = x.hash as usize & mask;
                while self.slots[j].is_some() {
                    j = (j + 1) & mask;
                }
                self.slots[j] = Some(x);
            }
        }
        text
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        let mut m = std::mem::take(&mut self.m);
        m.names.clear();
        m.fields.clear();
        m.elements.clear();
        if m.names.capacity() > KEEP_STACK
            || m.fields.capacity() > KEEP_STACK
            || m.elements.capacity() > KEEP_STACK
        {
            m.names = Vec::new();
            m.fields = Vec::new();
            m.elements = Vec::new();
        }
        if m.scratch.capacity() > KEEP_STACK {
            m.scratch = Vec::new();
        }
        if m.keys.len > KEEP_INTERNED || m.keys.bytes > KEEP_INTERNED_BYTES {
            m.keys = Interner::default();
            m.shapes.clear();
        }
        if m.shapes.len() > 8 || m.shapes.iter().flatten().any(|s| s.len() > 64) {
            m.shapes.clear();
        }
        BUFFERS.with(|b| b.set(Some(Box::new(m))));
    }
}

type PResult<T> = Result<T, ContextError>;

impl<'a> Parser<'a> {
    fn new(s: &'a str, limits: &ContextLimits) -> Parser<'a> {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
            depth: 0,
            max_depth: limits.max_depth.min(MAX_NESTING),
            items: 0,
            max_items: limits.max_items,
            limit_depth: limits.max_depth,
            m: BUFFERS.with(|b| b.take()).map(|b| *b).unwrap_or_default(),
            all_interned: true,
        }
    }

    /// `serde_json`'s wording: "syntax error at line L column C", where C
    /// counts the bytes of the line up to and including the offending one.
    #[cold]
    #[inline(never)]
    fn error_at(&self, eof: bool) -> ContextError {
        let end = if eof {
            self.b.len()
        } else {
            (self.i + 1).min(self.b.len())
        };
        let before = &self.b[..end];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let column = end
            - before
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |p| p + 1);
        let what = if eof {
            "unexpected end of input"
        } else {
            "syntax error"
        };
        ContextError::InvalidJson(format!("{what} at line {line} column {column}"))
    }

    /// A syntax error at the current byte, or the end of input when there is none.
    #[cold]
    fn syntax(&self) -> ContextError {
        self.error_at(self.i >= self.b.len())
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !WS[c as usize] {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn count(&mut self) -> PResult<()> {
        self.items += 1;
        if self.items > self.max_items {
            return Err(ContextError::TooManyItems(self.max_items));
        }
        Ok(())
    }

    fn descend(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ContextError::TooDeep(self.limit_depth));
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8], v: Value) -> PResult<Value> {
        for &w in word {
            match self.peek() {
                Some(c) if c == w => self.i += 1,
                _ => return Err(self.syntax()),
            }
        }
        Ok(v)
    }

    /// One value; whitespace before it is already skipped.
    fn value(&mut self) -> PResult<Value> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.list(),
            Some(b'"') => {
                self.i += 1;
                let s = self.string()?;
                // Short strings repeat (states, flags, units): share them.
                Ok(Value::Str(self.text(s, MAX_INTERNED)?))
            }
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn list(&mut self) -> PResult<Value> {
        self.descend()?;
        self.i += 1;
        let start = self.m.elements.len();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                let v = self.value()?;
                self.count()?;
                self.m.elements.push(v);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.skip_ws();
                    }
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.syntax()),
                }
            }
        }
        self.depth -= 1;
        if self.m.elements.len() == start {
            let empty = self
                .m
                .empty_list
                .get_or_insert_with(|| Arc::new(Vec::new()));
            return Ok(Value::List(empty.clone()));
        }
        let items: Vec<Value> = self.m.elements.drain(start..).collect();
        Ok(Value::List(Arc::new(items)))
    }

    fn object(&mut self) -> PResult<Value> {
        self.descend()?;
        self.i += 1;
        let names_start = self.m.names.len();
        let start = self.m.fields.len();
        // Objects in a list tend to repeat the keys of the one before: the
        // shape of the last object at this depth is tried first (a byte
        // comparison instead of a table lookup), and while its keys match
        // they are not even cloned; an object that matches it whole shares
        // it. Taken out while this object is parsed (nested objects are
        // deeper) and put back after.
        let depth = self.depth;
        if self.m.shapes.len() <= depth {
            self.m.shapes.resize_with(depth + 1, || None);
        }
        let predicted = self.m.shapes[depth].take();
        let predicted_keys: &[Arc<str>] = predicted.as_deref().map_or(&[], |p| &p.keys);
        // Keys matched against `predicted` so far, before any mismatch.
        let mut matching = true;
        let mut j = 0;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.syntax());
                }
                self.i += 1;
                let s = self.string()?;
                let hit = matching
                    && match (s, predicted_keys.get(j)) {
                        (Str::Input(a, b), Some(k)) => k.as_bytes() == &self.b[a..b],
                        _ => false,
                    };
                if !hit {
                    if matching {
                        // The keys matched so far are needed after all.
                        matching = false;
                        self.m.names.extend(predicted_keys[..j].iter().cloned());
                    }
                    let key = self.text(s, usize::MAX)?;
                    self.m.names.push(key);
                }
                j += 1;
                self.count()?;
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(self.syntax());
                }
                self.i += 1;
                self.skip_ws();
                let v = self.value()?;
                self.m.fields.push(v);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.skip_ws();
                    }
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.syntax()),
                }
            }
        }
        self.depth -= 1;
        let shape = if matching && j == predicted_keys.len() && j > 0 {
            predicted.clone()
        } else {
            if matching {
                self.m.names.extend(predicted_keys[..j].iter().cloned());
            }
            None
        };
        // `{"value": 250, "unit": "cm"}` is a quantity (`docs/language.md#units`).
        if j == 2 {
            let keys = match &shape {
                Some(sh) => &sh.keys[..],
                None => &self.m.names[names_start..],
            };
            if let Some(q) = quantity_object(keys, &self.m.fields[start..]) {
                self.m.fields.truncate(start);
                self.m.names.truncate(names_start);
                self.m.shapes[depth] = predicted;
                return Ok(q);
            }
        }
        let values: Vec<Value> = self.m.fields.drain(start..).collect();
        let obj = match shape {
            Some(sh) => {
                self.m.shapes[depth] = predicted;
                Object::with_shape(sh, values)
            }
            None => {
                let keys: Vec<Arc<str>> = self.m.names.drain(names_start..).collect();
                let obj = Object::from_parts(keys, values, self.all_interned);
                self.m.shapes[depth] = if j > 0 {
                    Some(obj.shape.clone())
                } else {
                    predicted
                };
                obj
            }
        };
        Ok(Value::Obj(Arc::new(obj)))
    }

    /// The text of a parsed string as an `Arc`, interned when it is at
    /// most `intern_up_to` bytes long.
    #[inline(always)]
    fn text(&mut self, s: Str, intern_up_to: usize) -> PResult<Arc<str>> {
        let (text, b, start) = match s {
            // Both ends are next to an ASCII quote: char boundaries.
            Str::Input(start, end) => match self.s.get(start..end) {
                Some(t) => (t, self.b, start),
                None => return Err(self.syntax()),
            },
            Str::Scratch => match std::str::from_utf8(&self.m.scratch) {
                Ok(t) => (t, t.as_bytes(), 0),
                Err(_) => return Err(self.syntax()),
            },
        };
        if text.len() > intern_up_to {
            return Ok(Arc::from(text));
        }
        match self.m.keys.intern(text, b, start) {
            Some(k) => Ok(k),
            None => {
                if intern_up_to == usize::MAX {
                    // A key that was not interned: objects compare key text.
                    self.all_interned = false;
                }
                Ok(Arc::from(text))
            }
        }
    }

    /// A string after its opening quote; leaves `i` after the closing one.
    #[inline(always)]
    fn string(&mut self) -> PResult<Str> {
        let b = self.b;
        let start = self.i;
        let i = scan_plain(b, start);
        match b.get(i) {
            Some(b'"') => {
                self.i = i + 1;
                Ok(Str::Input(start, i))
            }
            Some(b'\\') => {
                self.m.scratch.clear();
                self.m.scratch.extend_from_slice(&b[start..i]);
                self.i = i;
                self.escaped()?;
                Ok(Str::Scratch)
            }
            Some(_) => {
                // A control character inside a string.
                self.i = i;
                Err(self.syntax())
            }
            None => {
                self.i = i;
                Err(self.error_at(true))
            }
        }
    }

    /// The rest of a string that has escapes, into `scratch`.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self) -> PResult<()> {
        let b = self.b;
        loop {
            let Some(&c) = b.get(self.i) else {
                return Err(self.error_at(true));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.i += 1;
                    let Some(&e) = b.get(self.i) else {
                        return Err(self.error_at(true));
                    };
                    let ch = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.i += 1;
                            let cp = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            self.m
                                .scratch
                                .extend_from_slice(cp.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return Err(self.syntax()),
                    };
                    self.m.scratch.push(ch);
                    self.i += 1;
                }
                0..=0x1f => return Err(self.syntax()),
                _ => {
                    let s = self.i;
                    self.i = scan_plain(b, s);
                    self.m.scratch.extend_from_slice(&b[s..self.i]);
                }
            }
        }
    }

    fn hex4(&mut self) -> PResult<u32> {
        let mut n = 0u32;
        for _ in 0..4 {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.error_at(true));
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.syntax()),
            };
            n = n * 16 + d as u32;
            self.i += 1;
        }
        Ok(n)
    }

    /// After `\u`: one code point, a surrogate pair taken whole. A lone
    /// surrogate is an error (as in `serde_json`).
    fn unicode_escape(&mut self) -> PResult<char> {
        let n = self.hex4()?;
        let cp = match n {
            0xD800..=0xDBFF => {
                if self.b.get(self.i) != Some(&b'\\') {
                    return Err(self.error_at(self.i >= self.b.len()));
                }
                self.i += 1;
                if self.b.get(self.i) != Some(&b'u') {
                    return Err(self.error_at(self.i >= self.b.len()));
                }
                self.i += 1;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    self.i -= 1;
                    return Err(self.syntax());
                }
                0x10000 + ((n - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                self.i -= 1;
                return Err(self.syntax());
            }
            n => n,
        };
        char::from_u32(cp).ok_or_else(|| self.syntax())
    }

    /// A JSON number. Integers of up to 19 digits are exact before the
    /// conversion to `f64`; anything else goes through the standard
    /// library's correctly rounded parser. Out of `f64` range is an error.
    fn number(&mut self) -> PResult<Value> {
        let b = self.b;
        let start = self.i;
        let neg = b[self.i] == b'-';
        if neg {
            self.i += 1;
        }
        let int_start = self.i;
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(self.syntax()),
        }
        let int_end = self.i;
        let mut simple = true;
        if b.get(self.i) == Some(&b'.') {
            simple = false;
            self.i += 1;
            if !matches!(b.get(self.i), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            while matches!(b.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            simple = false;
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(b.get(self.i), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            while matches!(b.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if simple && int_end - int_start <= 19 {
            let mut n: u64 = 0;
            for &d in &b[int_start..int_end] {
                n = n * 10 + (d - b'0') as u64;
            }
            let f = n as f64;
            return Ok(Value::Num(if neg { -f } else { f }));
        }
        // ASCII digits, signs, '.', 'e': valid UTF-8.
        let text = std::str::from_utf8(&b[start..self.i]).map_err(|_| self.syntax())?;
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Num(f)),
            _ => {
                self.i = start;
                Err(self.syntax())
            }
        }
    }
}

/// String values up to this length are interned like keys.
const MAX_INTERNED: usize = 16;

/// Where a parsed string's text is.
#[derive(Clone, Copy)]
enum Str {
    /// In the input, unchanged: `start..end`.
    Input(usize, usize),
    /// In the parser's scratch buffer (it had escapes).
    Scratch,
}

fn quantity_object(keys: &[Arc<str>], values: &[Value]) -> Option<Value> {
    let mut value = None;
    let mut unit = None;
    for (k, v) in keys.iter().zip(values) {
        match (&**k, v) {
            ("value", Value::Num(n)) => value = Some(*n),
            ("unit", Value::Str(s)) => unit = units::lookup(s),
            _ => return None,
        }
    }
    Some(Value::Qty(value?, unit?))
}

/// Builds a `Value` from a `serde_json::Value` (used for policy defaults in
/// tests and tools; requests use `Context::from_json`).
pub fn from_json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(a) => {
            Value::List(Arc::new(a.iter().map(from_json_value).collect()))
        }
        serde_json::Value::Object(o) => {
            let keys: Vec<Arc<str>> = o.keys().map(|k| Arc::from(k.as_str())).collect();
            let values: Vec<Value> = o.values().map(from_json_value).collect();
            if keys.len() == 2 {
                if let Some(q) = quantity_object(&keys, &values) {
                    return q;
                }
            }
            Value::Obj(Arc::new(Object::from_parts(keys, values, false)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_key_order_and_reads_quantities() {
        let c = Context::from_json(
            br#"{"b": 1, "a": {"value": 250, "unit": "cm"}, "c": [1, "x"]}"#,
            &ContextLimits::default(),
        )
        .expect("parses");
        let keys: Vec<&str> = c.root.keys().map(|k| &**k).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert!(matches!(c.get("a"), Some(Value::Qty(v, u)) if *v == 250.0 && u.suffix() == "cm"));
    }

    #[test]
    fn context_limits() {
        let lim = ContextLimits {
            max_bytes: 100,
            max_depth: 3,
            max_items: 5,
        };
        assert_eq!(
            Context::from_json(br#"{"a":{"b":{"c":{}}}}"#, &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("context_too_deep")
        );
        assert_eq!(
            Context::from_json(br#"{"a":[1,2,3,4,5,6]}"#, &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("context_too_large")
        );
        assert_eq!(
            Context::from_json(&[b' '; 101], &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("context_too_large")
        );
        assert_eq!(
            Context::from_json(b"[1]", &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("invalid_context")
        );
        assert_eq!(
            Context::from_json(b"{\"a\": ", &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("invalid_context")
        );
    }

    #[test]
    fn deep_json_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let lim = ContextLimits {
            max_bytes: 1 << 20,
            ..ContextLimits::default()
        };
        assert_eq!(
            Context::from_json(deep.as_bytes(), &lim)
                .err()
                .map(|e| e.code().as_str()),
            Some("context_too_deep")
        );
    }

    /// The old parser's results, through `serde_json::Value`.
    fn via_serde(bytes: &[u8]) -> Option<Value> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(from_json_value(&v))
    }

    fn parsed(bytes: &[u8]) -> Option<Value> {
        let lim = ContextLimits {
            max_bytes: 1 << 20,
            max_depth: 100,
            max_items: 1 << 20,
        };
        Context::from_json(bytes, &lim)
            .ok()
            .map(|c| Value::Obj(c.root))
    }

    #[test]
    fn parser_agrees_with_serde_json() {
        let ok = [
            r#"{}"#,
            r#" { "a" : [ ] , "b" : { } } "#,
            r#"{"a": 1, "b": -0, "c": 1.5e3, "d": -12.25E-2, "e": 18446744073709551615, "f": 123456789012345678901234567890}"#,
            r#"{"s": "plain", "t": "esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 end", "u": "日本"}"#,
            r#"{"k\u0065y": 1, "key": 2, "x": [true, false, null, "", [[]]]}"#,
            r#"{"q": {"value": 250, "unit": "cm"}, "r": {"unit": "kg", "value": 2}, "n": {"value": 1, "unit": "nope"}}"#,
            r#"{"dup": 1, "other": 2, "dup": 3}"#,
            r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k3":33,"k13":13}"#,
            r#"{"l": [{"a":1,"b":2},{"a":3,"b":4,"c":5},{"b":1,"a":2},{"a":1},{"a":1,"a":2},{"a":{"a":1,"b":2},"b":{"b":3}}]}"#,
            r#"{"l": [{"a":1,"b":2},{"a":1,"b":2,"a":3},{"a":1},{"a":1,"b":2},{"b":2,"a":1},{}, {"a":1,"b":2}]}"#,
            r#"{"q": [{"value":1,"unit":"cm"},{"value":2,"unit":"cm"},{"value":3,"unit":"zz"},{"value":4,"unit":"m"}]}"#,
            r#"{"a":0.1,"b":0.7,"c":1e-7,"d":5e-324,"e":1.7976931348623157e308,"f":0.30000000000000004}"#,
        ];
        for doc in ok {
            let got = parsed(doc.as_bytes());
            assert!(got.is_some(), "{doc}");
            assert_eq!(got, via_serde(doc.as_bytes()), "{doc}");
        }
        // Escaped and plain spellings of a key are one key.
        let c = parsed(br#"{"k\u0065y": 1, "key": 2}"#).unwrap();
        let Value::Obj(o) = c else { panic!() };
        assert_eq!(o.len(), 1);
        assert_eq!(o.get("key"), Some(&Value::Num(2.0)));
        let bad = [
            "",
            " ",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":+1}",
            "{\"a\":-}",
            "{\"a\":1e400}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\ud800\\u0041\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":[1,2]]}",
            "{} x",
            "{}{}",
            "[1",
            "{\"a\":\"\u{1}\"}",
        ];
        for doc in bad {
            assert_eq!(parsed(doc.as_bytes()), None, "{doc:?}");
            assert!(
                via_serde(doc.as_bytes()).is_none() || !doc.trim_start().starts_with('{'),
                "{doc:?}"
            );
        }
        // Invalid UTF-8 inside a string, and outside.
        assert_eq!(parsed(b"{\"a\":\"\xff\"}"), None);
        assert_eq!(parsed(b"{\"a\xc3\":1}"), None);
        assert!(parsed("{\"é\":\"ü\"}".as_bytes()).is_some());
        // Not objects.
        for (doc, what) in [
            ("[1]", "a list"),
            ("\"x\"", "a string"),
            ("1", "a number"),
            ("true", "a bool"),
            ("null", "null"),
        ] {
            assert_eq!(
                Context::from_json(doc.as_bytes(), &ContextLimits::default()).err(),
                Some(ContextError::NotAnObject(what))
            );
        }
        // Positions as serde_json words them.
        assert_eq!(
            Context::from_json(b"{\"a\": ", &ContextLimits::default()).err(),
            Some(ContextError::InvalidJson(
                "unexpected end of input at line 1 column 6".into()
            ))
        );
        assert_eq!(
            Context::from_json(b"{\n\"a\": x}", &ContextLimits::default()).err(),
            Some(ContextError::InvalidJson(
                "syntax error at line 2 column 6".into()
            ))
        );
    }

    #[test]
    fn parser_agrees_with_serde_json_on_generated_documents() {
        use proptest::prelude::*;
        fn leaf() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                (-1e6f64..1e6).prop_map(|f| serde_json::json!(f)),
                "[a-z\\\\\"\\n\\u{e9}\\u{1F600}]{0,12}".prop_map(serde_json::Value::String),
            ]
        }
        let tree = leaf().prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-e\\u{e9}]{1,3}", inner), 0..6)
                    .prop_map(|kv| { serde_json::Value::Object(kv.into_iter().collect()) }),
            ]
        });
        let doc = prop::collection::vec(("[a-z]{1,4}", tree), 0..8)
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect()));
        proptest!(ProptestConfig::with_cases(512), |(v in doc, pretty in any::<bool>())| {
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            prop_assert_eq!(parsed(&text), Some(from_json_value(&v)));
            // Any truncation is an error, never a panic.
            for cut in [1, text.len() / 2, text.len().saturating_sub(1)] {
                if cut > 0 && cut < text.len() {
                    prop_assert_eq!(parsed(&text[..cut]), None);
                }
            }
        });
    }

    #[test]
    fn records_of_a_list_share_one_shape() {
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let record = |n: usize| {
            let fields: Vec<String> = keys.iter().map(|k| format!("\"{k}\":{n}")).collect();
            format!("{{{}}}", fields.join(","))
        };
        let doc = format!(
            "{{\"l\":[{},{},{{\"k0\":9}},{}]}}",
            record(1),
            record(2),
            record(3)
        );
        let Some(Value::Obj(root)) = parsed(doc.as_bytes()) else {
            panic!("parses")
        };
        let Some(Value::List(l)) = root.get("l") else {
            panic!("a list")
        };
        let objs: Vec<&Object> = l
            .iter()
            .map(|v| match v {
                Value::Obj(o) => &**o,
                _ => panic!("objects"),
            })
            .collect();
        assert!(Arc::ptr_eq(&objs[0].shape, &objs[1].shape));
        assert!(!Arc::ptr_eq(&objs[1].shape, &objs[2].shape));
        // After a record with other keys the next one gets a shape of its
        // own: equal keys, not shared.
        assert!(!Arc::ptr_eq(&objs[0].shape, &objs[3].shape));
        assert_eq!(objs[0].shape.keys, objs[3].shape.keys);
        // Over the threshold the shared shape has its index, and lookups
        // find each record's own values.
        assert!(objs[1].shape.index.is_some());
        assert_eq!(objs[1].get("k19"), Some(&Value::Num(2.0)));
        assert_eq!(objs[3].get("k7"), Some(&Value::Num(3.0)));
        assert_eq!(objs[2].get("k7"), None);
        assert_eq!(*objs[0], objs[0].clone());
        assert_ne!(objs[0], objs[1]);
    }
}
