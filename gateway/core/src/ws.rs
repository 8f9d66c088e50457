//! WebSocket frames of an upgraded connection, as the stages see them (RFC 6455 §5.2).

use bytes::Bytes;

use crate::flow::Direction;

/// One WebSocket frame (a PDU, as Suricata calls it): what its header says and its payload
/// as the endpoint reads it.
#[derive(Clone, Debug)]
pub struct WsFrame {
    /// Client to server (masked) or server to client.
    pub direction: Direction,
    /// The first byte's upper four bits: FIN (`0x80`), RSV1 (`0x40`, "compressed" under
    /// permessage-deflate), RSV2, RSV3.
    pub flags: u8,
    /// The opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// The masking key (big-endian), when the frame has one.
    pub mask: Option<u32>,
    /// The payload unmasked, up to the inspected size. The final frame of a fragmented data
    /// message carries the whole message (bounded the same way); a compressed message is
    /// given inflated (bounded) when it inflates, else as it came with the four bytes RFC 7692
    /// appends (so at most the inspected size and 4).
    pub payload: Bytes,
    /// Anomalies ([`WsFrame::PAYLOAD_SKIPPED`], [`WsFrame::REASSEMBLY_LIMIT`]).
    pub notes: u8,
    /// The frame's bytes as sent: its header, then the inspected part of its payload (still
    /// masked when it was).
    pub raw: Bytes,
    /// How many of `raw`'s bytes are the header.
    pub header_len: usize,
}

impl WsFrame {
    /// FIN: the message's last frame.
    pub const FIN: u8 = 0x80;
    /// RSV1: the message is compressed (RFC 7692).
    pub const COMPRESSED: u8 = 0x40;
    /// The payload went past the inspected size: the rest was not inspected (Suricata's
    /// `websocket.skip_end_of_payload`).
    pub const PAYLOAD_SKIPPED: u8 = 1;
    /// A fragmented message went past the inspected size (`websocket.reassembly_limit_reached`).
    pub const REASSEMBLY_LIMIT: u8 = 2;

    /// Whether the frame ends its message.
    pub fn fin(&self) -> bool {
        self.flags & Self::FIN != 0
    }

    /// The header's bytes as sent.
    pub fn raw_header(&self) -> Bytes {
        self.raw.slice(..self.header_len.min(self.raw.len()))
    }

    /// The payload's bytes as sent (masked when it was).
    pub fn raw_payload(&self) -> Bytes {
        self.raw.slice(self.header_len.min(self.raw.len())..)
    }

    /// Whether `note` was raised on the frame.
    pub fn has(&self, note: u8) -> bool {
        self.notes & note != 0
    }
}
