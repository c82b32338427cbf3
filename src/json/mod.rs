//! JSON in the language crate: the context reader (`context.rs`: bytes
//! straight to [`Value`](crate::value::Value)s under [`ContextLimits`]) and
//! the validator the service runs on the JSON it embeds ([`check`]). Both
//! share one string scan (`scan.rs`).

pub mod check;
mod context;
mod scan;

pub use context::{from_json_value, Context, ContextError, ContextLimits};
