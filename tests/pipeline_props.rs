//! Property test over the pipeline with the real engines (AV with the bundled YARA/ClamAV rules,
//! IPS with a request-body rule, the URL filter): for any chunking of an upload, any stage
//! order, any decision delay and any stage deadline, a fail-closed pipeline never allows a body
//! that some holding stage did not answer for, and never misses a detection of a stage that did.

#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{repo, TempDir};
use proptest::prelude::*;
use sekisho_core::{
    BoxFuture, Cx, Direction, FlowMeta, HeldBody, Inspector, Pipeline, RequestHead, Stage,
    StagePolicy, Timer, Verdict,
};

const EICAR: &str = concat!(
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
    "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
);
const IPS_MARK: &[u8] = b"EVIL-UPLOAD-PAYLOAD";

/// The real stages, loaded once from a generated config.
struct Real {
    av: Arc<dyn Stage>,
    ips: Arc<dyn Stage>,
    url: Arc<dyn Stage>,
    _dir: TempDir,
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        let dir = TempDir::new("props");
        let d = dir.path();
        std::fs::write(
            d.join("t.rules"),
            "drop http any any -> any any (msg:\"evil upload\"; flow:to_server; \
             http.request_body; content:\"EVIL-UPLOAD-PAYLOAD\"; sid:9000001; rev:1;)\n",
        )
        .unwrap();
        std::fs::write(d.join("bad.list"), "blocked.test\n").unwrap();
        let text = format!(
            "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\
             [tls]\nca_cert = \"{d}/ca.crt\"\nca_key = \"{d}/ca.key\"\n\
             [ips]\nrules = [\"{d}/t.rules\"]\nbody_limit = 1048576\n\
             [av]\nyara = [\"{y}\"]\nclamav = [\"{c}\"]\ncache_dir = \"\"\n\
             [urlfilter]\ncategory_dirs = []\n\
             [[urlfilter.list]]\nname = \"bad\"\npath = \"{d}/bad.list\"\n\
             [[urlfilter.policy]]\nname = \"default\"\ndefault = \"allow\"\nblock = [\"bad\"]\n",
            d = d.display(),
            y = repo().join("rules/yara").display(),
            c = repo().join("rules/clamav").display(),
        );
        let assembly = sekisho_assembly::Assembly::new().unwrap();
        let cfg = assembly.parse(&text, &d.join("t.toml")).unwrap();
        let stage = |name: &str| {
            cfg.engine(name)
                .unwrap()
                .build(&cfg.build_cx())
                .unwrap()
                .stage
        };
        Real {
            av: stage("av"),
            ips: stage("ips"),
            url: stage("url"),
            _dir: dir,
        }
    })
}

/// Pending `n` times (waking itself), then ready: a unit of simulated time.
struct Polls(u32);
impl std::future::Future for Polls {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A clock on which a second lasts one poll: a deadline of N seconds fires after N polls.
struct PollClock;
impl Timer for PollClock {
    fn sleep(&self, after: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Polls(after.as_secs() as u32))
    }
}

/// A real stage whose decision takes `delay` polls, and which records that it answered.
struct Witness {
    inner: Arc<dyn Stage>,
    delay: u32,
    held: Arc<AtomicBool>,
    answered: Arc<AtomicBool>,
}

struct WitnessInspector {
    inner: Box<dyn Inspector>,
    delay: u32,
    held: Arc<AtomicBool>,
    answered: Arc<AtomicBool>,
}

impl Stage for Witness {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn new_flow(&self, meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(WitnessInspector {
            inner: self.inner.new_flow(meta),
            delay: self.delay,
            held: Arc::clone(&self.held),
            answered: Arc::clone(&self.answered),
        })
    }
}

impl WitnessInspector {
    fn note(&self, v: Verdict) -> Verdict {
        if v == Verdict::Hold {
            self.held.store(true, Ordering::SeqCst);
        }
        v
    }
}

impl Inspector for WitnessInspector {
    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        let v = self.inner.on_request_head(cx, head);
        self.note(v)
    }
    fn on_request_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, end: bool) -> Verdict {
        let v = self.inner.on_request_body(cx, chunk, end);
        self.note(v)
    }
    fn resolve<'a>(&'a mut self, cx: &'a mut Cx<'_>, held: &'a HeldBody) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            Polls(self.delay).await;
            let v = self.inner.resolve(cx, held).await;
            self.answered.store(true, Ordering::SeqCst);
            v
        })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One case: the stages in order, each with (delay in polls, deadline in "seconds" = polls).
#[derive(Debug)]
struct Case {
    order: Vec<usize>,
    timing: [(u32, u64); 3],
    body: Vec<u8>,
    cuts: Vec<usize>,
    host: &'static str,
}

struct Outcome {
    verdict: Verdict,
    /// (name, held, answered) per stage.
    stages: Vec<(&'static str, bool, bool)>,
}

fn drive(case: &Case) -> Outcome {
    let r = real();
    let reals = [&r.av, &r.ips, &r.url];
    let mut p = Pipeline::new();
    let mut flags = Vec::new();
    for &i in &case.order {
        let (delay, deadline) = case.timing[i];
        let (held, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        flags.push((reals[i].name(), Arc::clone(&held), Arc::clone(&answered)));
        let w = Witness {
            inner: Arc::clone(reals[i]),
            delay,
            held,
            answered,
        };
        let policy = StagePolicy {
            resolve_timeout_secs: Some(deadline),
            ..Default::default()
        };
        p.push(Arc::new(w), policy);
    }
    let a = "127.0.0.1:40000".parse().unwrap();
    let mut f = p.start(Arc::new(FlowMeta::new(1, "forward", a, a)));
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_LENGTH, case.body.len().into());
    headers.insert(
        http::header::CONTENT_TYPE,
        "application/octet-stream".parse().unwrap(),
    );
    let head = RequestHead::new(
        http::Method::POST,
        format!("http://{}/upload", case.host).parse().unwrap(),
        http::Version::HTTP_11,
        headers,
        80,
    );
    let mut verdict = f.request_head(&head);
    let mut held = HeldBody::new(Direction::Request);
    let mut start = 0;
    if verdict != Verdict::Block {
        for end in case
            .cuts
            .iter()
            .copied()
            .chain(std::iter::once(case.body.len()))
        {
            let last = end == case.body.len();
            let chunk = Bytes::copy_from_slice(&case.body[start..end]);
            start = end;
            verdict = f.body(Direction::Request, &chunk, last);
            if verdict == Verdict::Block {
                break;
            }
            if f.holding(Direction::Request) {
                held.push(chunk);
            }
            if last {
                break;
            }
        }
    }
    if verdict != Verdict::Block && f.holding(Direction::Request) {
        verdict = runtime().block_on(f.resolve(Direction::Request, &held, &PollClock));
    }
    let stages = flags
        .iter()
        .map(|(n, h, a)| (*n, h.load(Ordering::SeqCst), a.load(Ordering::SeqCst)))
        .collect();
    Outcome { verdict, stages }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn case() -> impl Strategy<Value = Case> {
    (
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        [(0u32..6, 1u64..6), (0u32..6, 1u64..6), (0u32..6, 1u64..6)],
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(0usize..4000, 0..6),
        prop_oneof![Just("clean.test"), Just("blocked.test")],
        0usize..3000,
    )
        .prop_map(|(order, timing, mut body, eicar, mark, cuts, host, at)| {
            // The EICAR test file is EICAR only at the start of a file of at most 128 bytes.
            if eicar {
                body.truncate(40);
                body = [EICAR.as_bytes(), &body].concat();
            }
            if mark {
                let at = at.min(body.len());
                body.splice(at..at, IPS_MARK.iter().copied());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            cuts.dedup();
            cuts.retain(|&c| c < body.len());
            Case {
                order,
                timing,
                body,
                cuts,
                host,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fail_closed_never_allows_without_every_answer(c in case()) {
        let out = drive(&c);
        let silent: Vec<_> = out.stages.iter().filter(|(_, held, answered)| *held && !answered).collect();
        if out.verdict < Verdict::Hold {
            prop_assert!(silent.is_empty(), "{:?} allowed while {:?} never answered", out.verdict, silent);
        }
        prop_assert_ne!(out.verdict, Verdict::Hold);
        // Decisions race their deadlines poll by poll; the answer wins a tie.
        let late = c
            .order
            .iter()
            .zip(&out.stages)
            .any(|(&i, (_, held, _))| *held && u64::from(c.timing[i].0) > c.timing[i].1);
        if late {
            prop_assert_eq!(out.verdict, Verdict::Block, "a holding stage missed its deadline");
        }
        // A stage that answered in time is never overruled downwards: its detection blocks.
        let answered = |name: &str| out.stages.iter().any(|(n, h, a)| *n == name && *h && *a);
        let eicar = c.body.starts_with(EICAR.as_bytes()) && c.body.len() <= 128;
        if eicar && answered("av") {
            prop_assert_eq!(out.verdict, Verdict::Block);
        }
        if contains(&c.body, IPS_MARK) {
            prop_assert_eq!(out.verdict, Verdict::Block, "the IPS judges the held body in its body phase");
        }
        if c.host == "blocked.test" {
            prop_assert_eq!(out.verdict, Verdict::Block);
        }
        // A clean upload that every stage answered for in time passes.
        if !eicar && !contains(&c.body, IPS_MARK) && c.host == "clean.test" && !late {
            prop_assert!(out.verdict < Verdict::Hold, "clean upload blocked: {:?}", out.stages);
        }
    }
}
