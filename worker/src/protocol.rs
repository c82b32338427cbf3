//! The supervisor↔worker wire protocol: serde types encoded with `postcard`
//! in length-prefixed frames (a little-endian `u32` length, then the payload)
//! with a hard maximum size, over a Unix socket pair.
//!
//! A conversation: the worker applies its sandbox, sends `Reply::Ready`, then
//! answers each `Request` with exactly one `Reply` carrying the same id.

pub use omni::ErrorCode;
use omni::{CheckOptions, Features, Limits, Profile};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Largest request frame: a 100 KB policy and a 100 KB context with room to spare.
pub const MAX_REQUEST_FRAME: usize = 1 << 20;
/// Largest reply frame (a traced decision can be large).
pub const MAX_REPLY_FRAME: usize = 16 << 20;

/// Exit code of a worker that received a malformed or oversized frame.
pub const EXIT_PROTOCOL_ERROR: i32 = 65;
/// Exit code of a worker that could not apply its sandbox.
pub const EXIT_SANDBOX_FAILED: i32 = 66;
/// Exit code of a worker started with bad arguments.
pub const EXIT_USAGE: i32 = 64;

/// The policy to evaluate: its text, or only its id when the worker has it cached.
/// The text is shared (`Arc`): the supervisor sends the copy its caller holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicySource {
    Text { policy_id: String, text: Arc<str> },
    Cached { policy_id: String },
}

impl PolicySource {
    pub fn policy_id(&self) -> &str {
        match self {
            PolicySource::Text { policy_id, .. } | PolicySource::Cached { policy_id } => policy_id,
        }
    }
}

/// Per-request options: what to check the policy under, and every limit,
/// sent whole (the supervisor lowers its configured limits for the tenant;
/// the worker enforces exactly these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestOptions {
    /// Built by [`RequestOptions::new`], so its nesting and regex limits are those of `limits`.
    pub check: CheckOptions,
    pub limits: Limits,
    pub trace: bool,
}

impl RequestOptions {
    pub fn new(profile: Profile, features: Features, limits: Limits, trace: bool) -> Self {
        RequestOptions {
            check: CheckOptions {
                profile,
                features,
                nesting: limits.nesting,
                regex: limits.regex,
            },
            limits,
            trace,
        }
    }
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions::new(
            Profile::Strict,
            Features::default(),
            Limits::standard(),
            false,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub policy: PolicySource,
    /// The context as raw JSON bytes, parsed inside the sandbox.
    ///
    /// `None` makes this a check-only job: parse and check, no context, no
    /// evaluation. The reply ([`Reply::Done`]) carries the diagnostics (all
    /// severities) and no decision, and a policy without errors is kept in
    /// the cache as an evaluation would keep it (`kept` says so), so the
    /// first evaluation after a check (storing a policy) is a cache hit.
    /// Encoded as one byte string (length and bytes), not as a sequence of
    /// `u8` elements: a 100 KB context costs a copy, not 100,000 calls.
    #[serde(with = "opt_bytes")]
    pub context: Option<Vec<u8>>,
    /// The evaluation's `now`, nanoseconds since the Unix epoch.
    pub now_unix_nanos: i64,
    pub options: RequestOptions,
}

/// `Option<Vec<u8>>` as an optional byte string (what `serde_bytes` does,
/// without the dependency). Sequences are accepted too, for self-describing
/// formats that write bytes as a list of numbers (JSON).
mod opt_bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::{Serialize, Serializer};
    use std::fmt;

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    struct BufVisitor;

    impl<'de> Visitor<'de> for BufVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an optional byte string")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_byte_buf(BufVisitor).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptVisitor)
    }
}

/// Phase timings measured in the worker, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub parse_us: u64,
    pub check_us: u64,
    pub context_us: u64,
    pub eval_us: u64,
}

/// A policy was processed (it may have errors; then `decision_json` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub id: u64,
    pub policy_id: String,
    /// The compiled policy came from the worker's cache (parse and check skipped).
    pub cache_hit: bool,
    /// The worker holds the compiled policy in its cache after this request,
    /// so the next one may send [`PolicySource::Cached`]. Only the worker
    /// knows its cache rule; the supervisor remembers this answer.
    pub kept: bool,
    /// Check diagnostics, as JSON objects of `docs/api.md#endpoints`, in order.
    pub diagnostics_json: String,
    pub has_errors: bool,
    /// The legacy `rules` list of the response, as JSON.
    pub rules_json: String,
    /// The fired action names (legacy `actions` of the response), as a
    /// JSON array of strings: spliced into the answer as it is, instead of
    /// one allocation per name on each side.
    pub actions_json: String,
    /// The decision of `docs/language.md#the-decision` as JSON, when evaluated.
    pub decision_json: Option<String>,
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub id: u64,
    /// One of the codes of the language (limits, context) or `internal`.
    pub code: ErrorCode,
    /// A user-facing message (no paths, pids or internals).
    pub message: String,
    pub timings: Timings,
}

/// What the sandbox actually applied, for the supervisor to log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub enabled: bool,
    pub seccomp: bool,
    pub no_new_privs: bool,
    pub dumpable_off: bool,
    pub uid: u32,
    pub gid: u32,
    pub dropped_privileges: bool,
    pub namespaces: Vec<String>,
    /// `(name, soft limit)` of each rlimit set.
    pub rlimits: Vec<(String, u64)>,
    pub closed_fds: u32,
    /// Steps that were skipped because they are not permitted here.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// First frame: the sandbox is in place and the worker takes requests.
    Ready(SandboxReport),
    Done(Box<Evaluated>),
    Failed(Failure),
    /// `PolicySource::Cached` named a policy this worker does not hold
    /// (under these check options): resend the text.
    NotCached {
        id: u64,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed frame")]
    Malformed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one frame into `buf` (cleared first) — reuse `buf` to avoid allocations.
pub fn encode_frame<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    let out = postcard::to_extend(msg, std::mem::take(buf)).map_err(|_| FrameError::Malformed)?;
    *buf = out;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes one frame.
pub fn write_frame<T: Serialize, W: Write>(
    w: &mut W,
    msg: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    encode_frame(msg, buf)?;
    w.write_all(buf)?;
    Ok(())
}

/// Decodes one payload: the whole of `bytes` must be exactly one message
/// (trailing bytes make the frame malformed).
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(FrameError::Malformed),
    }
}

/// Reads one frame of at most `max` payload bytes; `buf` is reused.
///
/// A clean end of stream before the first byte of a frame is
/// [`FrameError::Closed`]; an end of stream inside a frame (its length or its
/// payload) is [`FrameError::Malformed`].
pub fn read_frame<T: DeserializeOwned, R: Read>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Malformed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Err(FrameError::TooLarge(n));
    }
    buf.clear();
    buf.resize(n, 0);
    match r.read_exact(buf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Malformed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    decode_payload(buf)
}

/// How long the supervisor's side polls for a reply before it sleeps:
/// twice the worker's last service time, when that was short (at most
/// `cap`); nothing after a long one. A short evaluation is answered while
/// the waiting thread still has its CPU, instead of after the wake-up of a
/// halted one (tens of microseconds on a virtual machine); a long one costs
/// no polling at all.
#[derive(Debug, Clone, Copy)]
pub struct ReplyPoll {
    cap: std::time::Duration,
    last: Option<std::time::Duration>,
}

impl ReplyPoll {
    /// Polls of at most `cap` (zero: never).
    pub fn new(cap: std::time::Duration) -> ReplyPoll {
        ReplyPoll { cap, last: None }
    }

    /// The polling window for the next request.
    pub fn window(&self) -> std::time::Duration {
        match self.last {
            Some(last) if last <= self.cap => (last * 2).min(self.cap),
            _ => std::time::Duration::ZERO,
        }
    }

    /// Records how long the last request took, from send to reply.
    pub fn record(&mut self, service: std::time::Duration) {
        self.last = Some(service);
    }
}

/// A buffered frame reader: one `recv` usually brings a whole frame (length
/// and payload), where [`read_frame`] needs two. The buffer is reused across
/// frames and never grows past `max + 4` bytes.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    /// End of the unread bytes in `buf`.
    end: usize,
    max: usize,
}

impl FrameReader {
    /// A reader for frames of at most `max` payload bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            max,
        }
    }

    /// Bytes received but not yet consumed (part of a later frame).
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Polls `fd` without blocking for up to `budget`, buffering whatever
    /// arrives; returns whether there is something to read (data, or the end
    /// of the stream, which the next [`read`](Self::read) reports).
    ///
    /// Calling this before a blocking [`read`](Self::read) keeps the thread
    /// on its CPU for a short while: on virtual machines whose idle vCPUs
    /// halt at once, waking a halted vCPU costs tens of microseconds, more
    /// than a short request takes. The cost is up to `budget` of CPU time
    /// when nothing comes.
    pub fn poll_for(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        budget: std::time::Duration,
    ) -> bool {
        use std::os::fd::AsRawFd;
        if self.buffered() > 0 {
            return true;
        }
        if budget.is_zero() {
            return false;
        }
        self.start = 0;
        self.end = 0;
        let started = std::time::Instant::now();
        loop {
            // SAFETY: recv into our own buffer with its real length; the fd
            // is borrowed for the duration of the call.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.end = n as usize;
                return true;
            }
            if n == 0 {
                return true; // end of stream: the next read says Closed
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock && err.kind() != io::ErrorKind::Interrupted {
                return true; // let the blocking read report it
            }
            if started.elapsed() >= budget {
                return false;
            }
            // Give the CPU away if anyone else wants it: a peer we just woke
            // may have been placed on this CPU (sync wake-ups assume that
            // the waker sleeps), and must not wait for the poll to end.
            std::thread::yield_now();
        }
    }

    /// Makes at least `want` unread bytes available, reading as much as the
    /// peer has sent in each call. `Ok(false)`: end of stream first.
    fn fill<R: Read>(&mut self, r: &mut R, want: usize) -> Result<bool, FrameError> {
        if self.end - self.start >= want {
            return Ok(true);
        }
        if self.start + want > self.buf.len() {
            // Move the unread bytes to the front, then grow if still short.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
        }
        while self.end - self.start < want {
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
        Ok(true)
    }

    /// Reads and decodes the next frame.
    pub fn read<T: DeserializeOwned, R: Read>(&mut self, r: &mut R) -> Result<T, FrameError> {
        if !self.fill(r, 4)? {
            return Err(if self.buffered() == 0 {
                FrameError::Closed
            } else {
                FrameError::Malformed
            });
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let n = u32::from_le_bytes(len) as usize;
        if n > self.max {
            return Err(FrameError::TooLarge(n));
        }
        if !self.fill(r, 4 + n)? {
            return Err(FrameError::Malformed);
        }
        let payload = &self.buf[self.start + 4..self.start + 4 + n];
        let msg = decode_payload(payload);
        self.start += 4 + n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_poll_follows_short_service_times_only() {
        use std::time::Duration;
        let us = Duration::from_micros;
        let mut p = ReplyPoll::new(us(100));
        assert_eq!(p.window(), Duration::ZERO, "nothing known yet: no polling");
        p.record(us(30));
        assert_eq!(p.window(), us(60));
        p.record(us(80));
        assert_eq!(p.window(), us(100), "capped");
        p.record(us(101));
        assert_eq!(
            p.window(),
            Duration::ZERO,
            "a long evaluation: sleep at once"
        );
        let mut off = ReplyPoll::new(Duration::ZERO);
        off.record(Duration::ZERO);
        assert_eq!(off.window(), Duration::ZERO);
    }

    fn req(context: Option<Vec<u8>>) -> Request {
        Request {
            id: 7,
            policy: PolicySource::Cached {
                policy_id: "sha256:00".into(),
            },
            context,
            now_unix_nanos: 1,
            options: RequestOptions::default(),
        }
    }

    #[test]
    fn requests_round_trip_and_context_is_a_byte_string() {
        let mut buf = Vec::new();
        for ctx in [
            None,
            Some(Vec::new()),
            Some(br#"{"a": 1}"#.to_vec()),
            Some(vec![0xff; 300]),
        ] {
            let r = req(ctx.clone());
            encode_frame(&r, &mut buf).unwrap();
            let back: Request = decode_payload(&buf[4..]).unwrap();
            assert_eq!(back, r);
        }
        // 300 bytes of 0xff: as a byte string, not 300 varints of 2 bytes.
        encode_frame(&req(Some(vec![0xff; 300])), &mut buf).unwrap();
        assert!(buf.len() < 300 + 200, "{} bytes", buf.len());
        // Self-describing formats (JSON) still work.
        let json = serde_json::to_string(&req(Some(b"{}".to_vec()))).unwrap();
        let back: Request = serde_json::from_str(&json).unwrap();
        assert_eq!(back.context.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn frame_reader_handles_split_and_pipelined_frames() {
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        for id in 0..3 {
            let mut r = req(Some(vec![b'x'; 70_000]));
            r.id = id;
            encode_frame(&r, &mut buf).unwrap();
            wire.extend_from_slice(&buf);
        }
        // A reader that hands out at most 1000 bytes per read.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut src = Trickle(&wire);
        let mut reader = FrameReader::new(MAX_REQUEST_FRAME);
        for id in 0..3 {
            let r: Request = reader.read(&mut src).unwrap();
            assert_eq!(r.id, id);
        }
        assert!(matches!(
            reader.read::<Request, _>(&mut src),
            Err(FrameError::Closed)
        ));
        // Truncated, oversized.
        let mut src = Trickle(&wire[..100]);
        assert!(matches!(
            reader.read::<Request, _>(&mut src),
            Err(FrameError::Malformed)
        ));
        let big = ((MAX_REQUEST_FRAME + 1) as u32).to_le_bytes();
        let mut reader = FrameReader::new(MAX_REQUEST_FRAME);
        assert!(matches!(
            reader.read::<Request, _>(&mut &big[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut reader = FrameReader::new(MAX_REQUEST_FRAME);
        assert!(matches!(
            reader.read::<Request, _>(&mut &[1u8, 0][..]),
            Err(FrameError::Malformed)
        ));
    }
}
