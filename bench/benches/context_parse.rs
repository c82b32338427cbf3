//! Candidates for turning a request's context JSON into Omni `Value`s
//! (issue 7), on the standard context (3.7 KB compact) and on generated
//! 10 KB and 100 KB contexts:
//!
//! - `serde_json_value`: a `serde_json::Value` tree, then converted;
//! - `serde_visitor`: a serde `Visitor` that builds `Value`s directly (the
//!   parser before issue 7, kept here verbatim as the baseline);
//! - `simd_json`: simd-json's borrowed tree (SIMD tokenizer), then converted;
//! - `omni`: `Context::from_json` as it is now (hand-written parser with
//!   interned keys and reused buffers).
//!
//! `cargo bench -p omni-bench --bench context_parse`; the figures are in
//! `bench/results/optimisations.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use omni::value::{from_json_value, Object};
use omni::{Context, ContextLimits, Value};
use std::hint::black_box;
use std::sync::Arc;

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "standard_3.7kb",
            omni_bench::workload::standard_context().into_bytes(),
        ),
        (
            "generated_10kb",
            omni_bench::workload::generated_context(10_000).into_bytes(),
        ),
        (
            "generated_100kb",
            omni_bench::workload::generated_context(100_000).into_bytes(),
        ),
    ]
}

fn quantity(entries: &[(Arc<str>, Value)]) -> Option<Value> {
    let mut value = None;
    let mut unit = None;
    for (k, v) in entries {
        match (&**k, v) {
            ("value", Value::Num(n)) => value = Some(*n),
            ("unit", Value::Str(s)) => unit = omni::units::lookup(s),
            _ => return None,
        }
    }
    Some(Value::Qty(value?, unit?))
}

/// The parser before issue 7: a serde visitor straight into `Value`.
mod visitor {
    use super::*;
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    pub fn parse(bytes: &[u8]) -> Option<Arc<Object>> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut st = State {
            depth: 0,
            items: 0,
            limits: ContextLimits::default(),
        };
        let v = Seed { st: &mut st }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        match v {
            Value::Obj(o) => Some(o),
            _ => None,
        }
    }

    struct State {
        depth: usize,
        items: usize,
        limits: ContextLimits,
    }

    struct Seed<'s> {
        st: &'s mut State,
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(V { st: self.st })
        }
    }

    struct V<'s> {
        st: &'s mut State,
    }

    impl V<'_> {
        fn count<E: de::Error>(&mut self) -> Result<(), E> {
            self.st.items += 1;
            if self.st.items > self.st.limits.max_items {
                return Err(E::custom("too many items"));
            }
            Ok(())
        }
        fn descend<E: de::Error>(&mut self) -> Result<(), E> {
            self.st.depth += 1;
            if self.st.depth > self.st.limits.max_depth {
                return Err(E::custom("too deep"));
            }
            Ok(())
        }
    }

    impl<'de> Visitor<'de> for V<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Num(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Num(v as f64))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::Num(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::Str(Arc::from(v)))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
            self.descend()?;
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(v) = seq.next_element_seed(Seed { st: self.st })? {
                self.count()?;
                out.push(v);
            }
            self.st.depth -= 1;
            Ok(Value::List(Arc::new(out)))
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
            self.descend()?;
            let mut entries: Vec<(Arc<str>, Value)> = Vec::new();
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                self.count()?;
                let v = map.next_value_seed(Seed { st: self.st })?;
                entries.push((Arc::from(&*k), v));
            }
            self.st.depth -= 1;
            if entries.len() == 2 {
                if let Some(q) = quantity(&entries) {
                    return Ok(q);
                }
            }
            Ok(Value::Obj(Arc::new(Object::from_entries(entries))))
        }
    }
}

/// simd-json's borrowed tree (it parses in place, so it needs a mutable
/// copy of the input), converted to `Value`s.
mod simd {
    use super::*;
    use simd_json::prelude::*;
    use simd_json::BorrowedValue as B;

    fn convert(v: &B<'_>) -> Value {
        match v {
            B::Static(s) => match s {
                simd_json::StaticNode::Null => Value::Null,
                simd_json::StaticNode::Bool(b) => Value::Bool(*b),
                _ => Value::Num(v.as_f64().unwrap_or(f64::NAN)),
            },
            B::String(s) => Value::Str(Arc::from(&**s)),
            B::Array(a) => Value::List(Arc::new(a.iter().map(convert).collect())),
            B::Object(o) => {
                let entries: Vec<(Arc<str>, Value)> = o
                    .iter()
                    .map(|(k, v)| (Arc::from(&**k), convert(v)))
                    .collect();
                if entries.len() == 2 {
                    if let Some(q) = quantity(&entries) {
                        return q;
                    }
                }
                Value::Obj(Arc::new(Object::from_entries(entries)))
            }
        }
    }

    pub fn parse(bytes: &[u8], buf: &mut Vec<u8>) -> Option<Value> {
        buf.clear();
        buf.extend_from_slice(bytes);
        let v = simd_json::to_borrowed_value(buf).ok()?;
        Some(convert(&v))
    }
}

fn serde_value(bytes: &[u8]) -> Option<Value> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(from_json_value(&v))
}

fn candidates(c: &mut Criterion) {
    let limits = ContextLimits::default();
    let mut g = c.benchmark_group("context_parse");
    for (name, bytes) in inputs() {
        // All candidates agree (simd-json's object order is not the
        // document's, so it is compared by lookups only).
        let ours = Value::Obj(Context::from_json(&bytes, &limits).expect("parses").root);
        assert_eq!(serde_value(&bytes).as_ref(), Some(&ours));
        assert_eq!(visitor::parse(&bytes).map(Value::Obj).as_ref(), Some(&ours));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("serde_json_value", name),
            &bytes,
            |b, x| b.iter(|| serde_value(black_box(x)).expect("parses")),
        );
        g.bench_with_input(BenchmarkId::new("serde_visitor", name), &bytes, |b, x| {
            b.iter(|| visitor::parse(black_box(x)).expect("parses"))
        });
        let mut buf = Vec::new();
        g.bench_with_input(BenchmarkId::new("simd_json", name), &bytes, |b, x| {
            b.iter(|| simd::parse(black_box(x), &mut buf).expect("parses"))
        });
        g.bench_with_input(BenchmarkId::new("omni", name), &bytes, |b, x| {
            b.iter(|| Context::from_json(black_box(x), &limits).expect("parses"))
        });
    }
    g.finish();
}

criterion_group!(benches, candidates);
criterion_main!(benches);
