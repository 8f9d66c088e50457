//! `sekisho-core`: the pure logic every Sekisho component shares.
//!
//! * [`FlowMeta`], [`RequestHead`], [`ResponseHead`]: what a stage sees of a flow.
//! * [`Stage`] / [`Inspector`]: the stage contract (see `ARCHITECTURE.md`); [`Respond`] and
//!   [`StageError`]: what a stage can say besides a verdict.
//! * [`Engine`]: how an engine plugs in (config table → [`Built`] stage + [`LoadReport`]).
//! * [`Verdict`]: ordered by severity; the [`Pipeline`] keeps the maximum, so a later stage can
//!   never weaken an earlier one.
//! * [`Finding`] → [`ThreatEvent`]: the ECS/EVE-shaped event schema, and [`CommLog`], the
//!   per-flow communication log.
//!
//! This crate does no I/O and depends on no async runtime: the only async point,
//! [`Inspector::resolve`], returns a boxed future that [`Flow::resolve`] races against the
//! stage's deadline on the driver's [`Timer`].

pub mod de;
mod engine;
pub mod event;
mod finding;
mod flow;
pub mod host;
mod path;
mod pipeline;
mod resolve;
mod respond;
mod shared;
mod stage;
mod verdict;
mod ws;

pub use engine::{BuildCx, Built, ConfigError, Engine, LoadReport, RouteOptions, RouteWaf};
pub use event::{
    signature_number, AlertInfo, CommLog, DestinationInfo, EventEvidence, EventInfo, FacilityInfo,
    FileInfo, FlowTls, HttpInfo, Observer, RuleInfo, SourceInfo, ThreatEvent, TlsClientInfo,
    TlsClientX509, TlsInfo, DERIVED_SIGNATURE_BASE,
};
pub use finding::{
    Action, Evidence, Finding, SandboxInfo, Severity, SignatureInfo, UrlCategoryInfo, WafInfo,
    WafRuleMatch,
};
pub use flow::{
    split_host_port, ClientCert, Direction, FlowMeta, RequestHead, ResponseHead, TlsError,
    TlsHello, TlsMode, UpstreamTls, WireNotes,
};
pub use path::{canonical_path, PathRefusal};
pub use pipeline::{
    Flow, Mode, OnError, OnOverflow, Pipeline, StagePolicy, Streams, DEFAULT_RESOLVE_TIMEOUT,
};
pub use resolve::Timer;
pub use respond::{Respond, StageError};
pub use shared::{BusHandler, LoopbackBus, SharedState, StoreBackend, StoreConfig};
pub use stage::{BoxFuture, Cx, HeldBody, Inspector, LateReporter, Stage};
pub use verdict::Verdict;
pub use ws::WsFrame;
