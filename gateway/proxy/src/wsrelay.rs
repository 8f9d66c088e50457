//! Relaying an upgraded WebSocket connection frame by frame: the stages judge each frame
//! ([`sekisho_core::Inspector::on_ws_frame`]) before any of its bytes go on, so a blocked
//! frame never reaches the other side; a block closes both connections.
//!
//! Memory per direction is bounded by one frame header, the inspected part of one payload
//! (`max` bytes) and one read; a peer that does not read stalls its sender's direction, and
//! the connection closes once neither direction moved for the idle timeout. Bytes of a frame
//! left incomplete when its sender closes are not relayed (they were never judged). On a
//! block each endpoint gets a close frame, status 1008 (policy violation), where what was
//! relayed to it ends on a frame boundary; then the connections close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sekisho_core::{Direction, Verdict, WsFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::flowstate::FlowState;
use crate::io::Activity;
use crate::wsframe::{Next, WsReader};

/// Bytes read at a time.
const READ: usize = 16 * 1024;

/// The close frame's reason on a block.
const BLOCKED: &str = "blocked by the gateway's policy";

/// How long the close frames may take to write.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// How a direction ended, when it ends the connection.
enum Stop {
    Blocked,
    Failed(std::io::Error),
}

/// Relays the two upgraded streams until both sides closed, one frame was blocked, an I/O
/// error, or `idle` without traffic. `max` is the payload bytes inspected per frame.
pub(crate) async fn relay(
    client: Upgraded,
    server: Upgraded,
    state: Arc<FlowState>,
    max: usize,
    idle: Duration,
) {
    let (cr, mut cw) = tokio::io::split(TokioIo::new(client));
    let (sr, mut sw) = tokio::io::split(TokioIo::new(server));
    // When either direction last moved, for the idle timeout.
    let clock = Activity::new();
    let up = Side::default();
    let down = Side::default();
    let blocked = {
        let a = pump(Direction::Request, cr, &mut sw, &state, max, &clock, &up);
        let b = pump(Direction::Response, sr, &mut cw, &state, max, &clock, &down);
        tokio::select! {
            r = futures_util::future::try_join(a, b) => match r {
                Ok(_) => false,
                Err(Stop::Blocked) => true,
                Err(Stop::Failed(e)) => {
                    state.set_error(format!("websocket: {e}"));
                    false
                }
            },
            _ = clock.idle(idle) => {
                tracing::debug!("websocket idle: closed");
                false
            }
        }
    };
    if blocked {
        // The client gets a server's close frame, the server a client's (masked) one, where
        // what each was sent ends on a frame boundary.
        if down.whole.load(Ordering::Relaxed) {
            send_close(&mut cw, None).await;
        }
        if up.whole.load(Ordering::Relaxed) {
            let mut key = [0u8; 4];
            key.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..4]);
            send_close(&mut sw, Some(key)).await;
        }
    }
    state.count_relayed(
        up.sent.load(Ordering::Relaxed),
        down.sent.load(Ordering::Relaxed),
    );
}

/// What one direction relayed: bytes, and whether they end on a frame boundary.
struct Side {
    sent: AtomicU64,
    whole: AtomicBool,
}

impl Default for Side {
    fn default() -> Self {
        Side {
            sent: AtomicU64::new(0),
            whole: AtomicBool::new(true),
        }
    }
}

/// Writes a close frame (status 1008, policy violation), masked with `key` when given, and
/// shuts the stream, within [`CLOSE_WRITE`].
async fn send_close<W: AsyncWrite + Unpin>(w: &mut W, key: Option<[u8; 4]>) {
    let mut payload = 1008u16.to_be_bytes().to_vec();
    payload.extend_from_slice(BLOCKED.as_bytes());
    let mut frame = vec![0x88, payload.len() as u8];
    if let Some(k) = key {
        frame[1] |= 0x80;
        frame.extend_from_slice(&k);
        payload
            .iter_mut()
            .zip(k.iter().cycle())
            .for_each(|(b, k)| *b ^= k);
    }
    frame.extend_from_slice(&payload);
    let _ = tokio::time::timeout(CLOSE_WRITE, async {
        w.write_all(&frame).await?;
        w.shutdown().await
    })
    .await;
}

/// One direction: frames read, judged, relayed (what was relayed noted in `side`).
async fn pump<R, W>(
    dir: Direction,
    mut src: R,
    dst: &mut W,
    state: &FlowState,
    max: usize,
    clock: &Activity,
    side: &Side,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = WsReader::new(dir, max);
    let mut buf = BytesMut::with_capacity(READ);
    let mut chunk = vec![0u8; READ];
    loop {
        let n = match reader.next(&buf) {
            Next::Frame(frame, n) => {
                if judge(state, &frame).await == Verdict::Block {
                    return Err(Stop::Blocked);
                }
                n
            }
            Next::Pass(n) => n,
            Next::More => {
                let room = reader.wanted().saturating_sub(buf.len()).clamp(1, READ);
                let got = src.read(&mut chunk[..room]).await.map_err(Stop::Failed)?;
                clock.touch();
                if got == 0 {
                    let _ = dst.shutdown().await;
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..got]);
                continue;
            }
        };
        side.whole.store(false, Ordering::Relaxed);
        dst.write_all(&buf[..n]).await.map_err(Stop::Failed)?;
        side.whole.store(reader.at_boundary(), Ordering::Relaxed);
        clock.touch();
        side.sent.fetch_add(n as u64, Ordering::Relaxed);
        buf.advance(n);
    }
}

/// The stages' verdict on one frame (their findings emitted at once).
async fn judge(state: &FlowState, frame: &WsFrame) -> Verdict {
    state
        .shared
        .metrics
        .ws_frames
        .with_label_values(&[frame.direction.as_str()])
        .inc();
    let mut flow = state.flow.lock().await;
    let v = flow.ws_frame(frame);
    state.emit(&mut flow).await;
    v
}
