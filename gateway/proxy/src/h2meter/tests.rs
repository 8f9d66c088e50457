use std::time::{Duration, Instant};

use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn preface() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    b.extend(frame(SETTINGS, 0, 0, &[]));
    b
}

/// Feeds `bytes` in pieces of `piece`; the flood (if any) and the alarms.
fn run(bytes: &[u8], piece: usize, written: u64, now: Instant) -> (Option<Flood>, Vec<Alarm>) {
    let mut m = H2Meter::new(16 << 10, now);
    let mut alarms = Vec::new();
    for c in bytes.chunks(piece) {
        if let Err(f) = m.feed(c, written, now, &mut |a| alarms.push(a)) {
            return (Some(f), alarms);
        }
    }
    (None, alarms)
}

fn repeat(f: &[u8], n: usize) -> Vec<u8> {
    let mut b = preface();
    for _ in 0..n {
        b.extend_from_slice(f);
    }
    b
}

#[test]
fn a_ping_flood_is_cut_after_the_burst_whatever_the_reads() {
    let ping = frame(PING, 0, 0, &[7; 8]);
    let now = Instant::now();
    for piece in [1, 7, 4096] {
        let (flood, _) = run(&repeat(&ping, 999), piece, 0, now);
        assert!(flood.is_none(), "999 pings (+1 SETTINGS) fit the burst");
        let (flood, _) = run(&repeat(&ping, 1000), piece, 0, now);
        let flood = flood.expect("the 1001st control frame overdraws");
        assert_eq!(flood.what, "PING");
        assert_eq!(flood.ping, 1000);
    }
}

#[test]
fn settings_priority_and_empty_frames_are_floods_too() {
    let now = Instant::now();
    let (f, _) = run(&repeat(&frame(SETTINGS, 0, 0, &[]), 2000), 512, 0, now);
    assert_eq!(f.expect("settings flood").what, "SETTINGS");
    let prio = frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16]);
    let (f, _) = run(&repeat(&prio, 2000), 512, 0, now);
    assert_eq!(f.expect("priority flood").what, "PRIORITY");
    let (f, _) = run(&repeat(&frame(DATA, 0, 1, &[]), 200), 512, 0, now);
    assert_eq!(f.expect("empty frames").what, "empty frame");
}

#[test]
fn the_budget_refills_with_time_and_with_data_written() {
    let ping = frame(PING, 0, 0, &[1; 8]);
    let start = Instant::now();
    let mut m = H2Meter::new(16 << 10, start);
    let mut none = |_: Alarm| {};
    m.feed(&repeat(&ping, 990), 0, start, &mut none).unwrap();
    // A keepalive ping every few seconds never runs out.
    for i in 1..=500u64 {
        let t = start + Duration::from_secs(i * 5);
        m.feed(&ping, 0, t, &mut none).unwrap();
    }
    // Window updates follow the data the gateway wrote.
    let wu = frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0x40, 0]);
    let t = start + Duration::from_secs(2500);
    for i in 1..=50_000u64 {
        m.feed(&wu, i * 16_384, t, &mut none).unwrap();
    }
    let err = (0..2000).find_map(|_| m.feed(&wu, 50_000 * 16_384, t, &mut none).err());
    assert_eq!(err.expect("updates beyond the data").what, "WINDOW_UPDATE");
}

#[test]
fn requests_and_their_bodies_cost_nothing() {
    let now = Instant::now();
    let mut b = preface();
    for i in 0..5000u32 {
        let sid = 2 * i + 1;
        b.extend(frame(HEADERS, END_HEADERS, sid, &[0x82, 0x87, 0x84]));
        b.extend(frame(DATA, 0, sid, &[1; 100]));
        b.extend(frame(DATA, END_STREAM, sid, &[]));
    }
    let (flood, alarms) = run(&b, 1000, 0, now);
    assert!(flood.is_none() && alarms.is_empty());
}

#[test]
fn resetting_most_streams_is_a_flood_and_some_is_not() {
    let now = Instant::now();
    let request_and_reset = |sid: u32| {
        let mut f = frame(HEADERS, END_HEADERS | END_STREAM, sid, &[0x82, 0x87, 0x84]);
        f.extend(frame(RST_STREAM, 0, sid, &[0, 0, 0, 8]));
        f
    };
    // Rapid reset: a request and its reset, again and again, nothing answered.
    let mut b = preface();
    for i in 0..5000u32 {
        b.extend(request_and_reset(2 * i + 1));
    }
    let (flood, _) = run(&b, 1000, 0, now);
    assert_eq!(
        flood.expect("a rapid reset flood").what,
        "RST_STREAM (rapid reset)"
    );
    // A client (or a load balancer) cancelling a third of its requests is never cut.
    let mut b = preface();
    for i in 0..30_000u32 {
        let sid = 2 * i + 1;
        if i % 3 == 0 {
            b.extend(request_and_reset(sid));
        } else {
            b.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                sid,
                &[0x82, 0x87, 0x84],
            ));
        }
    }
    let (flood, alarms) = run(&b, 1000, 0, now);
    assert!(flood.is_none() && alarms.is_empty(), "{flood:?}");
}

#[test]
fn an_hpack_bomb_raises_one_alarm_per_block_and_keeps_the_connection() {
    let mut block = vec![0x40, 1, b'x', 0x7f, 0x81, 0x1e]; // value of 127 + 3841 = 3968
    block.extend(std::iter::repeat_n(b'a', 3968));
    block.extend(std::iter::repeat_n(0xbe, 4000));
    let mut b = preface();
    b.extend(frame(HEADERS, 0, 1, &block[..3000]));
    b.extend(frame(CONTINUATION, 0, 1, &block[3000..6000]));
    b.extend(frame(CONTINUATION, END_HEADERS, 1, &block[6000..]));
    let (flood, alarms) = run(&b, 333, 0, Instant::now());
    assert!(flood.is_none());
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].attack, Attack::HpackBomb);
    assert!(
        alarms[0].detail.contains("decodes to 16008001"),
        "{alarms:?}"
    );
}

#[test]
fn padding_and_priority_are_not_read_as_header_fields() {
    // PADDED + PRIORITY HEADERS: pad length 4, 5 priority octets, one literal of 20,000 octets.
    let mut payload = vec![4, 0, 0, 0, 0, 16, 0x00, 1, b'v', 0x7f, 0xa1, 0x9b, 0x01];
    payload.extend(std::iter::repeat_n(b'a', 20_000));
    payload.extend([0; 4]);
    let mut b = preface();
    b.extend(frame(
        HEADERS,
        END_HEADERS | PADDED | PRIORITY_FLAG,
        1,
        &payload,
    ));
    let (_, alarms) = run(&b, 100, 0, Instant::now());
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].attack, Attack::OversizedHead);
    assert!(alarms[0].detail.contains("decodes to 20033 "), "{alarms:?}");
}

#[test]
fn a_connection_that_is_not_h2_is_not_metered() {
    let (flood, alarms) = run(&[b'G'; 100_000], 100, 0, Instant::now());
    assert!(flood.is_none() && alarms.is_empty());
}
