//! The sandbox's first process: the gateway's own binary, bound read-only into the sandbox at
//! [`HELPER`] and run as `sekisho sandbox init -- COMMAND…`.
//!
//! While it still holds the sandbox's privileges (root of its namespaces, or a user
//! namespace's network capabilities) it routes every address to loopback and binds the
//! resolver and sinkhole ([`crate::netsim`]); it puts Landlock and seccomp on itself
//! ([`crate::confine`]), which the command inherits; it starts the command
//! (`setpriv … -- prlimit … -- sample`), whose standard error is its standard output; then it
//! gives up every privilege before it reads a byte the sample sends (root becomes a uid of its
//! own, never the sample's, so the sample can neither signal nor trace it; in a user
//! namespace it drops every capability), serves the make-believe network, and ends with the
//! sample's status when the sample's first process ends. Its records go to its standard
//! error, a descriptor the sample never holds.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
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
/// The uid and gid the first process drops to when it is root: not the sample's (65534).
const INIT_ID: u32 = 65533;

/// `sekisho sandbox init -- COMMAND…`: the sandbox's first process.
pub fn init(command: &[OsString]) -> i32 {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let Some((program, args)) = command.split_first() else {
        return failed(&rec, "no command to run".into());
    };
    if !alone_on_loopback() {
        // Outside a sandbox the routes below would take over the host's network.
        return failed(
            &rec,
            "not in a sandbox's own network namespace (an interface other than lo is present)"
                .into(),
        );
    }
    let any_address = route_everything_to_loopback();
    let sockets = match netsim::bind() {
        Ok(s) => s,
        Err(e) => return failed(&rec, format!("cannot bind the resolver: {e}")),
    };
    let landlock = match crate::confine::confine() {
        Ok(l) => l,
        Err(e) => return failed(&rec, e.to_string()),
    };
    // Not dumpable: its /proc files (descriptors, memory) are root's, not the sample's, even
    // where both run as the same user (a user namespace), from before the sample starts.
    let quiet = rustix::process::DumpableBehavior::NotDumpable;
    if let Err(e) = rustix::process::set_dumpable_behavior(quiet) {
        return failed(&rec, format!("cannot hide its own /proc files: {e}"));
    }
    let output = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => return failed(&rec, format!("cannot share the output: {e}")),
    };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::from(output))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return failed(
                &rec,
                format!("cannot run {}: {e}", program.to_string_lossy()),
            )
        }
    };
    if let Err(e) = drop_privileges() {
        let _ = child.kill();
        return failed(&rec, format!("cannot give up privileges: {e}"));
    }
    {
        let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
        r.write(&NetRecord::Confined { landlock });
        r.write(&NetRecord::Network { any_address });
    }
    // The sample's first process ends: a thread blocked on it says so at once.
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let code = child
            .wait()
            .map_or(SETUP_FAILED, |s| s.code().unwrap_or(128));
        let _ = ended_tx.send(code);
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(&rec, format!("cannot start the network: {e}")),
    };
    rt.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(netsim::MAX_CONNECTIONS));
        let net = tokio::spawn(netsim::serve(sockets, rec.clone(), slots.clone()));
        let code = ended.await.unwrap_or(SETUP_FAILED);
        // Connections the sample left in flight get a moment to be recorded.
        let settled = async {
            while slots.available_permits() < netsim::MAX_CONNECTIONS {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(GRACE, settled).await;
        net.abort();
        code
    })
}

/// Writes a failure record and gives the status that says the sample did not run.
fn failed(rec: &Arc<Mutex<Recorder>>, reason: String) -> i32 {
    rec.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write(&NetRecord::Failed { reason });
    SETUP_FAILED
}

/// Whether this network namespace has no interface but loopback (a sandbox's own).
fn alone_on_loopback() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") else {
        return false;
    };
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .all(|name| name.trim() == "lo")
}

/// `ip route add local 0.0.0.0/0 dev lo` and its IPv6 twin (one `ip -batch`): every address
/// is this namespace's own, so a connection to any of them reaches the sinkhole.
fn route_everything_to_loopback() -> bool {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let Some(ip) = ip else { return false };
    let run = Command::new(ip)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut run) = run else { return false };
    if let Some(mut input) = run.stdin.take() {
        let _ = input.write_all(b"route add local 0.0.0.0/0 dev lo\nroute add local ::/0 dev lo\n");
    }
    run.wait().is_ok_and(|s| s.success())
}

/// Root (of the sandbox's namespaces, the host's root user): becomes [`INIT_ID`], which ends
/// every capability. Otherwise (root of a user namespace): drops every capability. The process is
/// single-threaded here, so the calls that act on a thread act on all of it.
fn drop_privileges() -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let outside_root = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().take(2).eq(["0", "0"]))
        .unwrap_or(false);
    if outside_root {
        let (uid, gid) = (Uid::from_raw(INIT_ID), Gid::from_raw(INIT_ID));
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
