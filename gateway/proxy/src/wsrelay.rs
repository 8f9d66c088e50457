//! Relaying an upgraded WebSocket connection frame by frame: the stages judge each frame
//! ([`sekisho_core::Inspector::on_ws_frame`]) before any of its bytes go on, so a blocked
//! frame never reaches the other side; a block closes both connections.
//!
//! Memory per direction is bounded by one frame header, the inspected part of one payload
//! (`max` bytes) and one read; a peer that does not read stalls its sender's direction, and
//! the connection closes once neither direction moved for the idle timeout. Bytes of a frame
//! left incomplete when its sender closes are not relayed (they were never judged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sekisho_core::{Direction, Verdict, WsFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::flowstate::FlowState;
use crate::wsframe::{Next, WsReader};

/// Bytes read at a time.
const READ: usize = 16 * 1024;

/// How a direction ended, when it ends the connection.
enum Stop {
    Blocked,
    Failed(std::io::Error),
}

/// When either direction last moved, for the idle timeout.
struct Clock {
    start: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    async fn idle(&self, limit: Duration) {
        loop {
            let now = self.start.elapsed().as_millis() as u64;
            let idle =
                Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)));
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle + Duration::from_millis(5)).await;
        }
    }
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
    let (cr, cw) = tokio::io::split(TokioIo::new(client));
    let (sr, sw) = tokio::io::split(TokioIo::new(server));
    let clock = Clock {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let sent = [AtomicU64::new(0), AtomicU64::new(0)];
    let up = pump(Direction::Request, cr, sw, &state, max, &clock, &sent[0]);
    let down = pump(Direction::Response, sr, cw, &state, max, &clock, &sent[1]);
    tokio::select! {
        r = futures_util::future::try_join(up, down) => match r {
            Ok(_) | Err(Stop::Blocked) => {}
            Err(Stop::Failed(e)) => state.set_error(format!("websocket: {e}")),
        },
        _ = clock.idle(idle) => tracing::debug!("websocket idle: closed"),
    }
    state.count_relayed(
        sent[0].load(Ordering::Relaxed),
        sent[1].load(Ordering::Relaxed),
    );
}

/// One direction: frames read, judged, relayed.
async fn pump<R, W>(
    dir: Direction,
    mut src: R,
    mut dst: W,
    state: &FlowState,
    max: usize,
    clock: &Clock,
    sent: &AtomicU64,
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
        dst.write_all(&buf[..n]).await.map_err(Stop::Failed)?;
        clock.touch();
        sent.fetch_add(n as u64, Ordering::Relaxed);
        buf.advance(n);
    }
}

/// The stages' verdict on one frame (their findings emitted at once).
async fn judge(state: &FlowState, frame: &WsFrame) -> Verdict {
    let mut flow = state.flow.lock().await;
    let v = flow.ws_frame(frame);
    state.emit(&mut flow).await;
    v
}
