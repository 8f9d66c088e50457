//! The TCP conversations of a capture: packets read with `pcap-file` (pcap or pcapng), sliced
//! with `etherparse` (Ethernet, Linux cooked, raw IP, VLAN), and each direction reassembled in
//! sequence order. A flow becomes a list of turns: the bytes one side sent before the other
//! side sent any, in capture order.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// Most bytes a flow keeps per direction (the recorded cases are small).
const MAX_FLOW_BYTES: usize = 64 << 20;

/// Who sent a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One TCP conversation.
#[derive(Debug)]
pub struct Flow {
    /// The server's port as recorded.
    pub server_port: u16,
    /// The bytes of each side, in the order the sides spoke.
    pub turns: Vec<(Side, Vec<u8>)>,
    /// Whether the capture holds the flow's SYN: without it Suricata's defaults
    /// (`stream.midstream: false`) never reassemble the flow, so no rule sees it.
    pub handshake: bool,
    /// Whether that was the client's SYN (not a SYN-ACK first: a midstream pickup, which
    /// Suricata's midstream exception policy may refuse).
    pub client_syn: bool,
}

type Endpoint = (IpAddr, u16);

/// One direction being reassembled.
#[derive(Debug, Default)]
struct Dir {
    /// The sequence number of the next byte expected (after the SYN, or the first segment).
    next: Option<u32>,
    /// Segments ahead of `next`, by sequence number.
    pending: BTreeMap<u32, Vec<u8>>,
    total: usize,
}

impl Dir {
    /// Takes a segment; returns the bytes now in order.
    fn push(&mut self, seq: u32, syn: bool, data: &[u8]) -> Vec<u8> {
        if syn {
            self.next.get_or_insert(seq.wrapping_add(1));
            return Vec::new();
        }
        let next = *self.next.get_or_insert(seq);
        if data.is_empty() || self.total >= MAX_FLOW_BYTES {
            return Vec::new();
        }
        // Bytes before `next` were delivered already (a retransmission keeps the first copy).
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead >= 0 {
            self.pending.entry(seq).or_insert_with(|| data.to_vec());
        } else if (ahead.unsigned_abs() as usize) < data.len() {
            let behind = ahead.unsigned_abs() as usize;
            self.pending
                .entry(next)
                .or_insert_with(|| data[behind..].to_vec());
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            let Some(seg) = self.pending.remove(&next) else {
                // A segment that overlaps `next` from before it.
                let overlapping = self
                    .pending
                    .range(..next)
                    .next_back()
                    .map(|(s, d)| (*s, d.len()));
                match overlapping {
                    Some((s, len)) if (next.wrapping_sub(s) as usize) < len => {
                        let d = self.pending.remove(&s).unwrap_or_default();
                        self.pending
                            .insert(next, d[next.wrapping_sub(s) as usize..].to_vec());
                        continue;
                    }
                    _ => break,
                }
            };
            self.next = Some(next.wrapping_add(seg.len() as u32));
            self.total += seg.len();
            out.extend_from_slice(&seg);
        }
        out
    }
}

#[derive(Debug)]
struct Conv {
    client: Endpoint,
    server: Endpoint,
    client_known: bool,
    client_syn: bool,
    up: Dir,
    down: Dir,
    turns: Vec<(Side, Vec<u8>)>,
}

impl Conv {
    fn add(&mut self, side: Side, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((s, b)) if *s == side => b.extend_from_slice(&bytes),
            _ => self.turns.push((side, bytes)),
        }
    }
}

/// The TCP flows of a capture file, in the order they started.
pub fn flows(path: &Path) -> Result<Vec<Flow>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut convs: Vec<Conv> = Vec::new();
    let mut index: HashMap<(Endpoint, Endpoint), usize> = HashMap::new();
    let mut take = |link: DataLink, frame: &[u8]| {
        if let Some(seg) = segment(link, frame) {
            add_segment(&mut convs, &mut index, seg);
        }
    };
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&data[..]).map_err(|e| e.to_string())?;
        let mut links = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(|e| e.to_string())? {
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p) => {
                    let link = links
                        .get(p.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    take(link, &p.data);
                }
                Block::SimplePacket(p) => take(
                    links.first().copied().unwrap_or(DataLink::ETHERNET),
                    &p.data,
                ),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&data[..]).map_err(|e| e.to_string())?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            match p {
                Ok(p) => take(link, &p.data),
                Err(_) => break, // a truncated last record
            }
        }
    }
    Ok(convs
        .into_iter()
        .map(|c| Flow {
            server_port: c.server.1,
            turns: c.turns,
            handshake: c.client_known,
            client_syn: c.client_syn,
        })
        .collect())
}

struct Segment {
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
    syn: bool,
    ack: bool,
    data: Vec<u8>,
}

fn segment(link: DataLink, frame: &[u8]) -> Option<Segment> {
    let p = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(frame).ok()?,
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(frame).ok()?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(frame).ok()?,
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(frame.get(4..)?).ok()?,
        _ => return None,
    };
    let (src, dst): (IpAddr, IpAddr) = match p.net? {
        NetSlice::Ipv4(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    let TransportSlice::Tcp(t) = p.transport? else {
        return None;
    };
    if t.rst() {
        return None;
    }
    Some(Segment {
        src: (src, t.source_port()),
        dst: (dst, t.destination_port()),
        seq: t.sequence_number(),
        syn: t.syn(),
        ack: t.ack(),
        data: t.payload().to_vec(),
    })
}

fn add_segment(
    convs: &mut Vec<Conv>,
    index: &mut HashMap<(Endpoint, Endpoint), usize>,
    s: Segment,
) {
    let key = if s.src <= s.dst {
        (s.src, s.dst)
    } else {
        (s.dst, s.src)
    };
    let i = *index.entry(key).or_insert_with(|| {
        convs.push(Conv {
            client: s.src,
            server: s.dst,
            client_known: false,
            client_syn: false,
            up: Dir::default(),
            down: Dir::default(),
            turns: Vec::new(),
        });
        convs.len() - 1
    });
    let c = &mut convs[i];
    if !c.client_known && c.turns.is_empty() {
        if s.syn {
            // A SYN names the client; a SYN-ACK the server.
            (c.client, c.server) = if s.ack {
                (s.dst, s.src)
            } else {
                (s.src, s.dst)
            };
            c.client_known = true;
            c.client_syn = !s.ack;
        } else if !s.data.is_empty() && !looks_like_request(&s.data) && s.src.1 < s.dst.1 {
            (c.client, c.server) = (s.dst, s.src);
        }
    }
    let side = if s.src == c.client {
        Side::Client
    } else {
        Side::Server
    };
    let dir = match side {
        Side::Client => &mut c.up,
        Side::Server => &mut c.down,
    };
    let bytes = dir.push(s.seq, s.syn, &s.data);
    c.add(side, bytes);
}

/// Whether bytes begin like an HTTP request (a method token, a space) or the h2 preface.
pub fn looks_like_request(b: &[u8]) -> bool {
    let method = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (method >= 3 && b.get(method) == Some(&b' ')) || b.starts_with(b"PRI * HTTP/2.0")
}
