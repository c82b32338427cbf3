//! Logs: `tracing`, one JSON object per line on stdout (or a human format
//! with `--log-format pretty`). The level can change on SIGHUP through a
//! reload handle. Callers log ids, tenants, statuses, timings and restart
//! reasons — never policy text or context values.
//!
//! The JSON lines are written by [`JsonLines`] rather than by
//! `tracing-subscriber`'s JSON formatter: the same lines, at a fraction of
//! the cost, which matters because the access log writes one per request.
//!
//! A worker's stderr is a pipe read here ([`forward_worker_stderr`]): each
//! line becomes a field of the supervisor's own log line, with the worker's
//! pid, capped in length and in lines per second, so a compromised worker
//! can neither forge log lines nor flood the log.

use crate::config::LogFormat;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the log level of the running process.
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    pub fn set_level(&self, level: &str) {
        if let Ok(f) = EnvFilter::try_new(level) {
            let _ = self.handle.reload(f);
        }
    }
}

pub fn init(format: LogFormat, level: &str) -> LogHandle {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(JsonLines::stdout()).try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stdout),
            )
            .try_init(),
    };
    if result.is_err() {
        eprintln!("omnid: logging was already initialised");
    }
    LogHandle { handle }
}

/// A layer that writes each event as one JSON object on one line:
/// `{"timestamp":"2026-01-01T00:00:00.000000Z","level":"INFO","message":…,`
/// then the event's fields in order} — what `tracing-subscriber`'s JSON
/// formatter writes with `flatten_event(true)` and no spans or target. A
/// line is built in a per-thread buffer and handed to the sink in one piece
/// (on stdout: one `write`), so lines from different threads never mix.
pub struct JsonLines<W = fn(&[u8])> {
    sink: W,
}

impl JsonLines {
    pub fn stdout() -> Self {
        JsonLines {
            sink: |line: &[u8]| {
                // Nowhere to report a failed log write to.
                let _ = std::io::stdout().lock().write_all(line);
            },
        }
    }
}

#[cfg(test)]
impl<W: Fn(&[u8]) + 'static> JsonLines<W> {
    /// A layer writing its lines to `sink`.
    pub fn with_sink(sink: W) -> Self {
        JsonLines { sink }
    }
}

thread_local! {
    static LINE: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
}

impl<S: tracing::Subscriber, W: Fn(&[u8]) + 'static> tracing_subscriber::Layer<S> for JsonLines<W> {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let write = |line: &mut Vec<u8>, scratch: &mut String| {
            line.clear();
            line.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(line, SystemTime::now());
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(event.metadata().level().as_str().as_bytes());
            line.push(b'"');
            event.record(&mut FieldWriter { line, scratch });
            line.extend_from_slice(b"}\n");
            (self.sink)(line);
        };
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (line, scratch) = &mut *bufs;
                write(line, scratch);
                if line.capacity() > 64 * 1024 {
                    *line = Vec::new();
                }
            }
            // An event logged while a field of another was being formatted.
            Err(_) => write(&mut Vec::new(), &mut String::new()),
        });
    }
}

/// Appends `,"name":value` for each field of an event.
struct FieldWriter<'a> {
    line: &'a mut Vec<u8>,
    scratch: &'a mut String,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        push_str(self.line, field.name());
        self.line.push(b':');
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_str(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // As serde_json writes them: finite numbers as numbers, others null.
        let _ = serde_json::to_writer(&mut *self.line, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value}");
        self.key(field);
        push_str(self.line, self.scratch);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields arrive here too, with a Debug that prints Display.
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        self.key(field);
        push_str(self.line, self.scratch);
    }
}

/// Longest worker stderr line logged, in bytes; the rest of it is dropped.
pub const WORKER_LINE_MAX: usize = 1024;
/// Worker stderr lines logged per second per worker; the rest are counted
/// and the count is logged when the next second begins (or at the end).
pub const WORKER_LINES_PER_SEC: u32 = 20;

/// Reads a worker's stderr on a thread of its own until the worker closes
/// it (it exits), logging each line as the `line` field of a warning with
/// the worker's pid: never the raw bytes on the supervisor's stream.
pub fn forward_worker_stderr(stderr: std::process::ChildStderr, pid: u32) {
    let started = std::thread::Builder::new()
        .name("worker-stderr".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut limit = LineLimiter::new(WORKER_LINES_PER_SEC);
            let emit = |event: StderrEvent| match event {
                StderrEvent::Line { text, truncated } => {
                    tracing::warn!(workerPid = pid, line = %text, truncated, "worker stderr")
                }
                StderrEvent::Suppressed(n) => {
                    tracing::warn!(
                        workerPid = pid,
                        suppressed = n,
                        "worker stderr lines dropped (over the rate)"
                    )
                }
            };
            read_lines(stderr, WORKER_LINE_MAX, |line, truncated| {
                for event in limit.admit(std::time::Instant::now(), line, truncated) {
                    emit(event);
                }
            });
            if let Some(event) = limit.finish() {
                emit(event);
            }
        });
    if let Err(e) = started {
        // The pipe is dropped with the closure: the worker's writes to it
        // fail, which costs it nothing but the message.
        tracing::warn!(workerPid = pid, error = %e, "cannot read the worker's stderr");
    }
}

/// What to log for a worker's stderr.
#[derive(Debug, PartialEq, Eq)]
enum StderrEvent {
    Line { text: String, truncated: bool },
    Suppressed(u64),
}

/// Reads `input` to its end, calling `line` for each line (without its
/// newline) cut to `max` bytes, with whether it was cut.
fn read_lines(input: impl std::io::Read, max: usize, mut line: impl FnMut(&[u8], bool)) {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(4096, input);
    let mut cur: Vec<u8> = Vec::with_capacity(max.min(4096));
    let mut truncated = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok([]) => break,
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let (part, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        let room = max.saturating_sub(cur.len());
        truncated |= part.len() > room;
        cur.extend_from_slice(&part[..part.len().min(room)]);
        let used = part.len() + usize::from(newline);
        r.consume(used);
        if newline {
            line(&cur, truncated);
            cur.clear();
            truncated = false;
        }
    }
    if !cur.is_empty() || truncated {
        line(&cur, truncated);
    }
}

/// At most `per_sec` lines in each second; counts the rest.
struct LineLimiter {
    per_sec: u32,
    window: Option<std::time::Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LineLimiter {
    fn new(per_sec: u32) -> LineLimiter {
        LineLimiter {
            per_sec,
            window: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// The events for one line read at `now`.
    fn admit(&mut self, now: std::time::Instant, line: &[u8], truncated: bool) -> Vec<StderrEvent> {
        let mut out = Vec::new();
        let new_window = self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= std::time::Duration::from_secs(1));
        if new_window {
            out.extend(self.finish());
            self.window = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.per_sec {
            self.in_window += 1;
            out.push(StderrEvent::Line {
                text: printable(line),
                truncated,
            });
        } else {
            self.suppressed += 1;
        }
        out
    }

    /// The count of lines dropped since it was last reported, if any.
    fn finish(&mut self) -> Option<StderrEvent> {
        let n = std::mem::take(&mut self.suppressed);
        (n > 0).then_some(StderrEvent::Suppressed(n))
    }
}

/// A worker's bytes as text that cannot act on a terminal or a log reader:
/// invalid UTF-8 and control characters become U+FFFD.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// `s` as a JSON string.
fn push_str(line: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *line, s);
}

/// `t` in UTC as `2026-01-01T00:00:00.000000Z` (microseconds, as
/// `tracing-subscriber` writes it).
fn push_timestamp(line: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let _ = write!(
        line,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_micros()
    );
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn events() {
        let id = "0e1ceda230b1d6e6c49c".to_string();
        tracing::info!(
            requestId = %id,
            tenant = "ten\"ant\n\u{e9}",
            status = 200u16,
            cacheHit = true,
            delta = -5i64,
            ratio = 0.25f64,
            nan = f64::NAN,
            reason = ?Some("crash"),
            "validate"
        );
        tracing::warn!("worker {} exited: {}", 3, "signal \u{1}");
        tracing::error!(
            error = &std::io::Error::other("broken pipe") as &dyn std::error::Error,
            r#type = 1u8,
            "failed"
        );
    }

    /// The lines as `tracing-subscriber`'s JSON formatter writes them (the
    /// project's format until this layer replaced it), timestamps aside.
    #[test]
    fn lines_are_the_ones_tracing_subscriber_writes() {
        let ours = Arc::new(Mutex::new(Vec::<u8>::new()));
        let o = ours.clone();
        let sub = tracing_subscriber::registry().with(JsonLines::with_sink(move |l: &[u8]| {
            o.lock().unwrap().extend_from_slice(l)
        }));
        tracing::subscriber::with_default(sub, events);

        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let theirs = Buf(Arc::new(Mutex::new(Vec::new())));
        let t = theirs.clone();
        let sub = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_target(false)
                .with_writer(move || t.clone()),
        );
        tracing::subscriber::with_default(sub, events);

        let ours = String::from_utf8(ours.lock().unwrap().clone()).unwrap();
        let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(ours.lines().count(), 3, "{ours}");
        for (a, b) in ours.lines().zip(theirs.lines()) {
            let cut = |l: &str| l[l.find("\"level\"").expect("a level")..].to_string();
            assert_eq!(cut(a), cut(b));
            let v: serde_json::Value = serde_json::from_str(a).expect("JSON");
            let ts = v["timestamp"].as_str().expect("a timestamp");
            assert_eq!(ts.len(), "2026-01-01T00:00:00.000000Z".len(), "{ts}");
        }
        assert!(ours.contains("\"requestId\":\"0e1ceda230b1d6e6c49c\""));
    }

    #[test]
    fn worker_stderr_lines_are_cut_and_rate_limited() {
        let mut lines = Vec::new();
        let input = format!("one\n{}\nthree\x1b[31m\nlast", "x".repeat(10));
        read_lines(input.as_bytes(), 4, |l, t| lines.push((l.to_vec(), t)));
        assert_eq!(
            lines,
            [
                (b"one".to_vec(), false),
                (b"xxxx".to_vec(), true),
                (b"thre".to_vec(), true),
                (b"last".to_vec(), false)
            ]
        );
        assert_eq!(printable(b"a\x1b[0m\xffb"), "a\u{fffd}[0m\u{fffd}b");

        let mut limit = LineLimiter::new(2);
        let t0 = std::time::Instant::now();
        let mut events = Vec::new();
        for i in 0..5 {
            events.extend(limit.admit(t0 + Duration::from_millis(i), b"l", false));
        }
        assert_eq!(events.len(), 2, "{events:?}");
        let later = limit.admit(t0 + Duration::from_secs(2), b"m", false);
        assert_eq!(later[0], StderrEvent::Suppressed(3));
        assert!(limit.finish().is_none());
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut v = Vec::new();
            push_timestamp(
                &mut v,
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
            );
            String::from_utf8(v).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_795_851_316, 348_463), "2026-11-28T07:35:16.348463Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
    }
}
