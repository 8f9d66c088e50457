//! The two steps the gateway's own binary runs inside the sandbox (`sekisho sandbox init` and
//! `sekisho sandbox confine`, bound read-only into it at [`HELPER`]).
//!
//! `init` is the sandbox's first process. While it still holds the sandbox's privileges (root
//! of its namespaces, or a user namespace's network capabilities) it routes every address to
//! loopback and binds the resolver and sinkhole ([`crate::netsim`]); it starts `confine` with
//! the rest of the command line, then gives up every privilege (nobody, or no capabilities)
//! before it reads a byte the sample sends, serves the make-believe network, and ends with
//! the sample's status when the sample's first process ends.
//!
//! `confine` puts Landlock and seccomp on itself ([`crate::confine`]), says so to `init` on
//! its standard error, moves that to its standard output, and runs the rest of its command
//! line (`setpriv … -- prlimit … -- sample`). The sample's output and the first process's
//! records travel apart: the sample never holds the descriptor the records are written on.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netsim::{self, NetRecord, Recorder};

/// Where the gateway's binary is inside the sandbox.
pub const HELPER: &str = "/run/sekisho/sandbox-init";
/// The status `init` and `confine` end with when they could not run the sample.
pub const SETUP_FAILED: i32 = 125;
/// How long connections still being served when the sample ends may take to be recorded.
const GRACE: Duration = Duration::from_millis(300);
/// The uid and gid the first process drops to when it is root.
const NOBODY: u32 = 65534;

/// `sekisho sandbox init -- COMMAND…`: the sandbox's first process.
pub fn init(command: &[OsString]) -> i32 {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let any_address = route_everything_to_loopback();
    let sockets = match netsim::bind() {
        Ok(s) => s,
        Err(e) => return failed(&rec, format!("cannot bind the resolver: {e}")),
    };
    let Ok(me) = std::env::current_exe() else {
        return failed(&rec, "cannot find the helper's own path".into());
    };
    let child = Command::new(me)
        .args(["sandbox", "confine", "--"])
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(&rec, format!("cannot start the confined step: {e}")),
    };
    if let Err(e) = drop_privileges() {
        let _ = child.kill();
        return failed(&rec, format!("cannot give up privileges: {e}"));
    }
    rec.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write(&NetRecord::Network { any_address });
    // The confined step's status line(s), forwarded as records.
    let status = child.stderr.take().map(|err| {
        let rec = rec.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok).take(16) {
                if let Some(r) = NetRecord::parse(&line) {
                    rec.lock().unwrap_or_else(|p| p.into_inner()).write(&r);
                }
            }
        })
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = child.kill();
            return failed(&rec, format!("cannot start the network: {e}"));
        }
    };
    let code = rt.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(netsim::MAX_CONNECTIONS));
        let net = tokio::spawn(netsim::serve(sockets, rec.clone(), slots.clone()));
        let code = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(128),
                Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => break SETUP_FAILED,
            }
        };
        // Connections the sample left in flight get a moment to be recorded.
        let settled = async {
            while slots.available_permits() < netsim::MAX_CONNECTIONS {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(GRACE, settled).await;
        net.abort();
        code
    });
    if let Some(t) = status {
        let _ = t.join();
    }
    code
}

/// `sekisho sandbox confine -- COMMAND…`: confines itself and runs the command.
pub fn confine(command: &[OsString]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        return SETUP_FAILED;
    };
    let landlock = match crate::confine::confine() {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "{}",
                NetRecord::Failed {
                    reason: e.to_string()
                }
                .line()
            );
            return SETUP_FAILED;
        }
    };
    eprintln!("{}", NetRecord::Confined { landlock }.line());
    // From here on the standard error is the sample's: the same pipe as its output.
    if rustix::stdio::dup2_stderr(std::io::stdout().as_fd()).is_err() {
        return SETUP_FAILED;
    }
    let e = Command::new(program).args(args).exec();
    eprintln!("cannot run {}: {e}", program.to_string_lossy());
    SETUP_FAILED
}

/// Writes a failure record and gives the status that says the sample did not run.
fn failed(rec: &Arc<Mutex<Recorder>>, reason: String) -> i32 {
    rec.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write(&NetRecord::Failed { reason });
    SETUP_FAILED
}

/// `ip route add local 0.0.0.0/0 dev lo` and its IPv6 twin: every address is this
/// namespace's own, so a connection to any of them reaches the sinkhole.
fn route_everything_to_loopback() -> bool {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let Some(ip) = ip else { return false };
    [
        &["route", "add", "local", "0.0.0.0/0", "dev", "lo"][..],
        &["-6", "route", "add", "local", "::/0", "dev", "lo"][..],
    ]
    .into_iter()
    .all(|args| {
        Command::new(ip)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Root (of the sandbox's namespaces, the host's root user): becomes nobody, which ends every
/// capability. Otherwise (root of a user namespace): drops every capability. The process is
/// single-threaded here, so the calls that act on a thread act on all of it.
fn drop_privileges() -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let outside_root = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().take(2).eq(["0", "0"]))
        .unwrap_or(false);
    if outside_root {
        let (uid, gid) = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    }
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}
