//! Watches the frames an HTTP/2 client sends, by their 9-byte headers, before the h2 library
//! reads them: the floods that library answers without complaint (it acknowledges every PING
//! and SETTINGS, takes any number of PRIORITY, WINDOW_UPDATE and empty frames) and header blocks
//! that decode past `max_header_bytes` (HPACK bombs, which it refuses stream by stream without a
//! word to us). CONTINUATION floods the library cuts off itself; rapid reset it catches only
//! while the reset streams wait to be accepted, so a gateway quick to accept them never hears of
//! it: here a connection whose client reset at least [`RESET_FLOOR`] streams, more than half of
//! those it opened, is cut (Envoy's premature-reset rule; a client or load balancer that
//! cancels some of its requests is never).
//!
//! Control frames draw on a budget per connection, as Envoy and Tomcat meter them: a burst of
//! [`BURST`], refilled over time and by the bytes the gateway writes (a client acknowledges data
//! with WINDOW_UPDATE). Overdrawn, the connection is cut: the read fails and an [`Alarm`] says
//! which [`Flood`] it was.

pub mod hpack;

use std::time::Instant;

use crate::shed::Attack;

/// What a client sends first on an h2 connection.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Control frames a connection may send at once.
const BURST: f64 = 1000.0;
/// Control frames a connection earns per second.
const REFILL_PER_SEC: f64 = 20.0;
/// Bytes the gateway writes per control frame earned.
const CREDIT_BYTES: f64 = 4096.0;
/// Client resets from which a connection that reset more than half its streams is a flood.
const RESET_FLOOR: u64 = 1000;
/// Frames in a row without payload that neither end a stream nor a header block.
const MAX_EMPTY_RUN: u32 = 100;
/// Header block octets kept to measure (larger blocks the library refuses itself).
const MAX_BLOCK: usize = 256 << 10;
/// The HPACK table size the gateway allows (the h2 library's default).
const TABLE_SIZE: usize = 4096;
/// A header block that expands by more than this is a bomb, not just a large head.
const BOMB_RATIO: usize = 8;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// A connection cut for a flood: the error its read fails with.
#[derive(Debug, thiserror::Error)]
#[error("HTTP/2 {what} flood: {frames} control frames ({ping} PING, {settings} SETTINGS, {priority} PRIORITY, {window} WINDOW_UPDATE, {reset} RST_STREAM, {empty} empty) in {secs:.1}s")]
pub struct Flood {
    what: &'static str,
    frames: u64,
    ping: u64,
    settings: u64,
    priority: u64,
    window: u64,
    reset: u64,
    empty: u64,
    secs: f64,
}

/// Something the meter saw that does not end the connection, for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The attack.
    pub(crate) attack: Attack,
    /// What was seen.
    pub detail: String,
}

impl Alarm {
    /// The attack's id (`rule.id` of its event).
    pub fn attack_id(&self) -> &'static str {
        self.attack.id()
    }
}

/// Where the parser is in the byte stream.
#[derive(Debug)]
enum Parse {
    Preface(usize),
    Header {
        buf: [u8; 9],
        have: usize,
    },
    Payload {
        left: usize,
    },
    /// Not h2 (no preface): nothing more is metered.
    Off,
}

/// Frames counted on one connection.
#[derive(Debug, Default)]
struct Counts {
    ping: u64,
    settings: u64,
    priority: u64,
    window: u64,
    reset: u64,
    empty: u64,
    /// Streams the client opened (HEADERS on a new stream id).
    streams: u64,
    last_stream: u32,
}

/// The meter of one client connection.
#[derive(Debug)]
pub struct H2Meter {
    parse: Parse,
    frame: (u8, u8),
    tokens: f64,
    started: Instant,
    last: Instant,
    credited: u64,
    empty_run: u32,
    counts: Counts,
    /// The header block being collected: its octets (None once too large to keep).
    block: Option<Vec<u8>>,
    /// Padding still to strip from the HEADERS fragment, and whether it had a priority.
    block_trim: (usize, bool),
    sizer: Option<hpack::Sizer>,
    max_list: usize,
}

impl H2Meter {
    /// A meter for a connection whose header lists may decode to `max_list` octets.
    pub fn new(max_list: usize, now: Instant) -> Self {
        H2Meter {
            parse: Parse::Preface(0),
            frame: (0, 0),
            tokens: BURST,
            started: now,
            last: now,
            credited: 0,
            empty_run: 0,
            counts: Counts::default(),
            block: None,
            block_trim: (0, false),
            sizer: Some(hpack::Sizer::new(TABLE_SIZE)),
            max_list,
        }
    }

    /// Feeds bytes read from the client; `written` is every byte written to it so far. An
    /// `Err` ends the connection; alarms go to `alarm`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        written: u64,
        now: Instant,
        alarm: &mut dyn FnMut(Alarm),
    ) -> Result<(), Flood> {
        self.refill(written, now);
        while !data.is_empty() {
            data = match &mut self.parse {
                Parse::Off => return Ok(()),
                Parse::Preface(seen) => {
                    let n = (PREFACE.len() - *seen).min(data.len());
                    if data[..n] != PREFACE[*seen..*seen + n] {
                        self.parse = Parse::Off;
                        return Ok(());
                    }
                    *seen += n;
                    if *seen == PREFACE.len() {
                        self.parse = Parse::Header {
                            buf: [0; 9],
                            have: 0,
                        };
                    }
                    &data[n..]
                }
                Parse::Header { buf, have } => {
                    let n = (9 - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    if *have == 9 {
                        let head = *buf;
                        self.frame_header(&head, now, alarm)?;
                    }
                    &data[n..]
                }
                Parse::Payload { left } => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    let done = *left == 0;
                    self.keep(&data[..n]);
                    if done {
                        self.parse = Parse::Header {
                            buf: [0; 9],
                            have: 0,
                        };
                        self.payload_end(alarm);
                    }
                    &data[n..]
                }
            };
        }
        Ok(())
    }

    fn refill(&mut self, written: u64, now: Instant) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        let bytes = written.saturating_sub(self.credited) as f64;
        self.tokens = (self.tokens + secs * REFILL_PER_SEC + bytes / CREDIT_BYTES).min(BURST);
        self.last = now;
        self.credited = self.credited.max(written);
    }

    /// A complete frame header: counts it and sets up its payload.
    fn frame_header(
        &mut self,
        h: &[u8; 9],
        now: Instant,
        alarm: &mut dyn FnMut(Alarm),
    ) -> Result<(), Flood> {
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.frame = (kind, flags);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if kind == HEADERS && stream > self.counts.last_stream {
            self.counts.streams += 1;
            self.counts.last_stream = stream;
        }
        self.account(kind, flags, len, now)?;
        if kind == HEADERS {
            self.block = Some(Vec::new());
            self.block_trim = (0, flags & PRIORITY_FLAG != 0);
            if flags & PADDED != 0 {
                self.block_trim.0 = usize::MAX; // read from the first payload octet
            }
        }
        self.parse = if len == 0 {
            Parse::Header {
                buf: [0; 9],
                have: 0,
            }
        } else {
            Parse::Payload { left: len }
        };
        if len == 0 {
            self.payload_end(alarm);
        }
        Ok(())
    }

    /// Charges a frame to the budget; a flood once it is overdrawn.
    fn account(&mut self, kind: u8, flags: u8, len: usize, now: Instant) -> Result<(), Flood> {
        let empty = len == 0
            && matches!(kind, DATA | HEADERS | CONTINUATION)
            && flags & (END_STREAM | END_HEADERS) == 0;
        if empty {
            self.empty_run += 1;
            self.counts.empty += 1;
        } else if matches!(kind, DATA | HEADERS | CONTINUATION) {
            self.empty_run = 0;
        }
        let cost = match kind {
            PING => {
                self.counts.ping += 1;
                1.0
            }
            SETTINGS => {
                self.counts.settings += 1;
                1.0
            }
            PRIORITY => {
                self.counts.priority += 1;
                1.0
            }
            WINDOW_UPDATE => {
                self.counts.window += 1;
                1.0
            }
            RST_STREAM => {
                self.counts.reset += 1;
                0.0
            }
            DATA | HEADERS | CONTINUATION if empty => 1.0,
            DATA | HEADERS | CONTINUATION | GOAWAY => 0.0,
            _ => 1.0,
        };
        self.tokens -= cost;
        let c = &self.counts;
        let rapid_reset = c.reset >= RESET_FLOOR && c.reset * 2 > c.streams;
        if self.tokens < 0.0 || self.empty_run > MAX_EMPTY_RUN || rapid_reset {
            return Err(self.flood(now));
        }
        Ok(())
    }

    fn flood(&self, now: Instant) -> Flood {
        let c = &self.counts;
        let what = if self.empty_run > MAX_EMPTY_RUN {
            "empty frame"
        } else if c.reset >= RESET_FLOOR && c.reset * 2 > c.streams {
            "RST_STREAM (rapid reset)"
        } else {
            [
                (c.ping, "PING"),
                (c.settings, "SETTINGS"),
                (c.priority, "PRIORITY"),
                (c.window, "WINDOW_UPDATE"),
                (c.empty, "empty frame"),
            ]
            .into_iter()
            .max_by_key(|(n, _)| *n)
            .map_or("control frame", |(_, w)| w)
        };
        Flood {
            what,
            frames: c.ping + c.settings + c.priority + c.window + c.reset + c.empty,
            ping: c.ping,
            settings: c.settings,
            priority: c.priority,
            window: c.window,
            reset: c.reset,
            empty: c.empty,
            secs: now.saturating_duration_since(self.started).as_secs_f64(),
        }
    }

    /// Keeps payload octets of a header block.
    fn keep(&mut self, mut part: &[u8]) {
        if !matches!(self.frame.0, HEADERS | CONTINUATION) {
            return;
        }
        let Some(block) = &mut self.block else {
            return;
        };
        if self.frame.0 == HEADERS && self.block_trim.0 == usize::MAX {
            if let Some((&pad, rest)) = part.split_first() {
                self.block_trim.0 = usize::from(pad);
                part = rest;
            }
        }
        if block.len() + part.len() > MAX_BLOCK {
            self.block = None;
            return;
        }
        block.extend_from_slice(part);
    }

    /// The end of a frame's payload: a header block ends with END_HEADERS.
    fn payload_end(&mut self, alarm: &mut dyn FnMut(Alarm)) {
        let (kind, flags) = self.frame;
        if !matches!(kind, HEADERS | CONTINUATION) {
            return;
        }
        if kind == HEADERS {
            self.strip_headers_frame();
        }
        if flags & END_HEADERS == 0 {
            return;
        }
        let block = self.block.take();
        let (Some(block), Some(sizer)) = (block, &mut self.sizer) else {
            // Unseen octets: the table can no longer be followed.
            self.sizer = None;
            return;
        };
        match sizer.block_size(&block) {
            Ok(size) if size > self.max_list => {
                let ratio = size / block.len().max(1);
                let attack = if ratio > BOMB_RATIO {
                    Attack::HpackBomb
                } else {
                    Attack::OversizedHead
                };
                alarm(Alarm {
                    attack,
                    detail: format!(
                        "h2 header block of {} octets decodes to {size} (limit {}), refused",
                        block.len(),
                        self.max_list
                    ),
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "h2 header block not measured");
                self.sizer = None;
            }
        }
    }

    /// Takes the padding and priority fields off a complete HEADERS fragment.
    fn strip_headers_frame(&mut self) {
        let (pad, prio) = self.block_trim;
        self.block_trim = (0, false);
        let Some(block) = &mut self.block else {
            return;
        };
        let pad = if pad == usize::MAX { 0 } else { pad };
        let skip = if prio { 5 } else { 0 };
        if skip + pad > block.len() {
            self.block = None;
            return;
        }
        block.truncate(block.len() - pad);
        block.drain(..skip);
    }
}

#[cfg(test)]
mod tests;
