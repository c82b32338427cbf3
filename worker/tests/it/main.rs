//! The integration tests of omni-worker: the protocol, the sandbox, the worker loop, as one test binary (one link
//! instead of one per file, which matters on a 2-core CI). Each module is
//! one area; shared helpers are in `common`.

mod common;
mod examples;
mod protocol;
mod sandbox;
mod security_doc;
