//! The body type of every response the service writes: one buffer, sent
//! whole (the HTTP side and the playground both build responses with it).

use bytes::Bytes;
use http_body_util::Full;

pub type Body = Full<Bytes>;
