//! One detonation: the sample in a task folder's scratch directory, run under bubblewrap
//! (its own pid, mount, ipc, uts, cgroup and network namespaces; the host's `/usr` and `/etc`
//! read-only and nothing else of it, a private `/tmp`, the scratch folder the only writable
//! place, a resolver file naming 127.0.0.1). The sandbox's first process is the gateway's own
//! binary (`sekisho sandbox init`, [`crate::inside`]): it serves a make-believe network
//! inside the namespace (every address routed to loopback, a resolver answering every name,
//! a sinkhole recording what clients send: [`crate::netsim`]) and confines itself (Landlock,
//! seccomp: [`crate::confine`]) before it starts the sample's process, which drops to an
//! unprivileged uid with no capabilities and `no_new_privs` (`setpriv`), takes its rlimits (`prlimit`: CPU, address
//! space, processes, file size, open files) and runs the sample. Everything is traced from
//! outside the sandbox by `strace -f` (the sample cannot reach its tracer's output) and
//! killed with its whole process group at the wall-clock deadline or when its trace outgrows
//! its bound. Killing bubblewrap ends the pid namespace, so no process outlives the task.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inside::HELPER;
use crate::netsim::NetRecord;
use crate::sniff::Runner;
use crate::trace::Trace;

/// The calls traced (strace's names; every one must be known to the strace installed, 6.1 on
/// Debian 12, or strace refuses to start: `fchmodat2` is not).
const TRACED: &str = "execve,execveat,open,openat,openat2,creat,connect,bind,sendto,sendmsg,\
sendmmsg,unlink,unlinkat,rmdir,rename,renameat,renameat2,symlink,symlinkat,link,linkat,chmod,fchmod,fchmodat,ptrace,\
mount,umount2,pivot_root,fork,vfork,clone,clone3,kill,tkill,tgkill,setuid,setgid,setreuid,\
setregid,setresuid,setresgid,memfd_create,nanosleep,clock_nanosleep,chdir,fchdir,io_uring_setup";

/// Bytes of the sandbox's own messages (records, tool errors) read at most.
const MESSAGE_BYTES: usize = 4 << 20;

/// Folders of `/etc` the sample never sees (the gateway's own config, keys and logs).
const HIDDEN: &[&str] = &["/etc/sekisho"];

/// Where the scratch folder is inside the sandbox.
pub const SCRATCH: &str = "/tmp/scratch";

/// The uid and gid the sample runs as when the worker is root (`nobody`).
const NOBODY: u32 = 65534;
/// Capabilities the sandbox's first process keeps in a user namespace: routes, the
/// resolver's port, and dropping the rest for the sample.
const INIT_CAPS: &[&str] = &["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP"];

/// Bounds on one detonation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_secs: u64,
    /// Address space per process (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes of the sandbox user (RLIMIT_NPROC).
    pub processes: u64,
    /// Largest file a process may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// Open files per process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Largest trace read; a run whose trace grows past it is stopped.
    pub trace_bytes: u64,
    /// Most events kept from the trace.
    pub max_events: usize,
    /// Most files left in scratch that are hashed and reported.
    pub max_dropped: usize,
    /// Bytes of the sample's output kept for the report.
    pub output_bytes: usize,
    /// Size of the private `/tmp` and `/var/tmp` (each a tmpfs in memory).
    pub tmp_bytes: u64,
    /// Bytes the scratch folder may hold; a run that writes more is stopped.
    pub scratch_bytes: u64,
    /// Bytes of dropped files hashed at most (each file once, links included).
    pub hash_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            cpu_secs: 20,
            memory_bytes: 1 << 30,
            processes: 64,
            file_bytes: 64 << 20,
            open_files: 256,
            trace_bytes: 64 << 20,
            max_events: 200_000,
            max_dropped: 1000,
            output_bytes: 16 * 1024,
            tmp_bytes: 64 << 20,
            scratch_bytes: 256 << 20,
            hash_bytes: 512 << 20,
        }
    }
}

/// The host tools a detonation runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// bubblewrap.
    pub bwrap: PathBuf,
    /// strace.
    pub strace: PathBuf,
    /// util-linux `setpriv`.
    pub setpriv: PathBuf,
    /// util-linux `prlimit`.
    pub prlimit: PathBuf,
    /// The gateway's own binary, run inside the sandbox as its first process
    /// (`sekisho sandbox init`): the make-believe network and the sample's confinement.
    pub helper: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            bwrap: "/usr/bin/bwrap".into(),
            strace: "/usr/bin/strace".into(),
            setpriv: "/usr/bin/setpriv".into(),
            prlimit: "/usr/bin/prlimit".into(),
            helper: std::env::current_exe().unwrap_or_else(|_| "/usr/bin/sekisho".into()),
        }
    }
}

impl Tools {
    /// The first tool that is missing, if any.
    pub fn missing(&self) -> Option<&Path> {
        [
            &self.bwrap,
            &self.strace,
            &self.setpriv,
            &self.prlimit,
            &self.helper,
        ]
        .into_iter()
        .find(|p| !p.is_file())
        .map(PathBuf::as_path)
    }
}

/// Why a detonation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A host tool is not installed.
    #[error("{0} is not installed (Debian: bubblewrap, strace, util-linux)")]
    Missing(PathBuf),
    /// The task folder could not be prepared or read.
    #[error("task folder {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The tracer could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    /// The tracer or the sandbox refused to run (what they printed).
    #[error("the tracer wrote no trace; it said: {0}")]
    Tracer(String),
    /// The sandbox could not be set up (network, confinement): the sample was not run.
    #[error("the sandbox could not be set up, the sample was not run: {0}")]
    Setup(String),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The sample's processes ended.
    Exited,
    /// Its deadline came.
    Deadline,
    /// Its trace outgrew `trace_bytes`.
    TraceFull,
    /// Its scratch folder outgrew `scratch_bytes`.
    ScratchFull,
}

/// A file the sample left in scratch.
#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    /// Its path inside the sandbox.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// SHA-256 of its content.
    pub sha256: String,
    /// Shannon entropy of its first MiB, bits per byte.
    pub entropy: f64,
}

/// What a detonation left to analyse.
#[derive(Debug)]
pub struct Run {
    /// The trace, from the sample's start.
    pub trace: Trace,
    /// The sample's process (the root of the process tree).
    pub root: Option<u32>,
    /// Where the sample's own start is in `trace.events` (events up to it are the wrappers').
    pub started_at: usize,
    /// Whether the deadline ended the run.
    pub timed_out: bool,
    /// Whether the trace outgrew its bound (the run was stopped then).
    pub trace_truncated: bool,
    /// Whether the scratch folder outgrew its bound (the run was stopped then).
    pub scratch_full: bool,
    /// Wall-clock time.
    pub duration: Duration,
    /// Files left in scratch (the sample itself excluded unless it changed).
    pub dropped: Vec<Dropped>,
    /// Files left in scratch past `max_dropped` (not hashed).
    pub dropped_uncounted: usize,
    /// The first bytes of what the sample wrote to stdout and stderr.
    pub output: String,
    /// What the sandbox's first process recorded: confinement, resolver queries, the
    /// sinkhole's connections.
    pub network: Vec<NetRecord>,
}

/// A sandbox: tools, limits and where task folders go.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Host tools.
    pub tools: Tools,
    /// Bounds per detonation.
    pub limits: Limits,
    /// Where task folders are made (each removed after its run unless `keep`).
    pub work_dir: PathBuf,
    /// Keep each task folder (scratch, trace) for an analyst.
    pub keep: bool,
    /// Files the sample must not read even where the sandbox shows their folder (the worker's
    /// TLS key and token under `/etc`): each is replaced by an empty file.
    pub hidden: Vec<PathBuf>,
}

impl Sandbox {
    /// Runs `sample` with `runner` and collects what it did.
    pub fn detonate(&self, sample: &[u8], runner: Runner) -> Result<Run, SandboxError> {
        if let Some(m) = self.tools.missing() {
            return Err(SandboxError::Missing(m.to_path_buf()));
        }
        let task = self.task_folder()?;
        let io = |e| SandboxError::Io(task.clone(), e);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(task.join("scratch"))
            .map_err(io)?;
        let result = self.run_in(&task, sample, runner);
        if self.keep {
            eprintln!("task folder kept: {}", task.display());
        } else {
            let _ = std::fs::remove_dir_all(&task);
        }
        result
    }

    /// A new task folder under `work_dir` (made 0700 when missing; refused when another user
    /// owns it or others may write to it, so nobody can swap a path the worker then changes),
    /// with a name nobody can guess.
    fn task_folder(&self) -> Result<PathBuf, SandboxError> {
        use std::os::unix::fs::MetadataExt;
        let w = &self.work_dir;
        let io = |e| SandboxError::Io(w.clone(), e);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(w)
            .map_err(io)?;
        let m = std::fs::symlink_metadata(w).map_err(io)?;
        let me = rustix::process::geteuid().as_raw();
        if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
            return Err(io(std::io::Error::other(
                "not a folder of this user that only it may write to",
            )));
        }
        let task = w.join(format!("task-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&task)
            .map_err(|e| SandboxError::Io(task.clone(), e))?;
        Ok(task)
    }

    fn run_in(&self, task: &Path, sample: &[u8], runner: Runner) -> Result<Run, SandboxError> {
        let io = |e| SandboxError::Io(task.to_path_buf(), e);
        let scratch = task.join("scratch");
        let root = rustix::process::geteuid().is_root();
        std::fs::write(scratch.join("sample"), sample).map_err(io)?;
        std::fs::set_permissions(scratch.join("sample"), PermissionsExt::from_mode(0o755))
            .map_err(io)?;
        std::fs::set_permissions(&scratch, PermissionsExt::from_mode(0o700)).map_err(io)?;
        if root {
            for p in [&scratch, &scratch.join("sample")] {
                std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).map_err(io)?;
            }
        }
        std::fs::write(task.join("resolv.conf"), "nameserver 127.0.0.1\n").map_err(io)?;
        let trace_path = task.join("trace");
        let mut cmd = self.command(task, &trace_path, runner, root);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| SandboxError::Spawn(self.tools.strace.clone(), e))?;
        let out = drain(child.stdout.take(), self.limits.output_bytes);
        let err = drain(child.stderr.take(), MESSAGE_BYTES);
        let ended = self.wait(&mut child, &trace_path, &scratch);
        let duration = started.elapsed();
        let output = out.join().unwrap_or_default();
        let (network, messages) = records(&err.join().unwrap_or_default());
        if !trace_path.exists() {
            return Err(SandboxError::Tracer(messages.trim().to_string()));
        }
        // Only a failure before confinement counts: the first process writes none after it.
        let failed = network
            .iter()
            .take_while(|n| !matches!(n, NetRecord::Confined { .. }))
            .find_map(|n| match n {
                NetRecord::Failed { reason } => Some(reason.clone()),
                _ => None,
            });
        if let Some(reason) = failed {
            return Err(SandboxError::Setup(reason));
        }
        let (trace, root_pid, started_at) = self.read_trace(&trace_path, runner)?;
        let confined = network
            .iter()
            .any(|n| matches!(n, NetRecord::Confined { .. }));
        if root_pid.is_none() || !confined {
            // Nothing of the sample ran confined: never a clean verdict.
            let said = format!("{} {}", messages.trim(), output.trim());
            return Err(SandboxError::Setup(format!(
                "the sample never started confined; the sandbox said: {}",
                said.trim()
            )));
        }
        let (dropped, dropped_uncounted) = dropped_files(
            &scratch,
            sample,
            self.limits.max_dropped,
            self.limits.hash_bytes,
        );
        Ok(Run {
            trace,
            root: root_pid,
            started_at,
            timed_out: ended == Ended::Deadline,
            trace_truncated: ended == Ended::TraceFull,
            scratch_full: ended == Ended::ScratchFull,
            duration,
            dropped,
            dropped_uncounted,
            output,
            network,
        })
    }

    /// `strace … -- bwrap … -- sekisho sandbox init -- setpriv … -- prlimit … --
    /// [interpreter] sample`.
    fn command(&self, task: &Path, trace: &Path, runner: Runner, root: bool) -> Command {
        let l = &self.limits;
        let t = &self.tools;
        let mut c = Command::new(&t.strace);
        c.args([
            "-f",
            "-q",
            "-y",
            "-xx",
            "-s",
            "256",
            "--seccomp-bpf",
            "--pidns-translation",
        ])
        .args(["-e", "signal=SIGSYS"])
        .args(["-e", &format!("trace={TRACED}")])
        .arg("-o")
        .arg(trace)
        .arg("--")
        .arg(&t.bwrap)
        .args(system_binds(&self.hidden))
        .args(["--dev", "/dev", "--proc", "/proc"])
        .args(["--size", &l.tmp_bytes.to_string(), "--tmpfs", "/var/tmp"])
        .args([
            "--size",
            &l.tmp_bytes.to_string(),
            "--tmpfs",
            "/tmp",
            "--bind",
        ])
        .arg(task.join("scratch"))
        .arg(SCRATCH)
        .arg("--ro-bind")
        .arg(task.join("resolv.conf"))
        .arg("/etc/resolv.conf")
        .arg("--ro-bind")
        .arg(&t.helper)
        .arg(HELPER)
        .args([
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
        ])
        .args(["--unshare-cgroup-try", "--die-with-parent", "--new-session"])
        .args(["--hostname", "sandbox", "--chdir", SCRATCH, "--clearenv"])
        .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"])
        .args(["--setenv", "HOME", SCRATCH]);
        if root {
            // bubblewrap keeps root inside: the first process sets up the network, then
            // setpriv drops the sample to nobody with no capabilities.
            c.args(["--", HELPER, "sandbox", "init", "--"])
                .arg(&t.setpriv)
                .args([
                    &format!("--reuid={NOBODY}"),
                    &format!("--regid={NOBODY}"),
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--bounding-set=-all",
                    "--no-new-privs",
                ]);
        } else {
            // Unprivileged: a user namespace whose root (the caller, outside) keeps only the
            // network capabilities the first process needs; the sample keeps none, and
            // secure bits stop it regaining them by running a program.
            c.args(["--unshare-user", "--uid", "0", "--gid", "0"]);
            for cap in INIT_CAPS {
                c.args(["--cap-add", cap]);
            }
            c.args(["--", HELPER, "sandbox", "init", "--"])
                .arg(&t.setpriv)
                .args([
                    "--no-new-privs",
                    "--inh-caps=-all",
                    "--ambient-caps=-all",
                    "--bounding-set=-all",
                    "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked",
                ]);
        }
        c.arg("--")
            .arg(&t.prlimit)
            .arg(format!("--cpu={}", l.cpu_secs))
            .arg(format!("--as={}", l.memory_bytes))
            .arg(format!("--nproc={}", l.processes))
            .arg(format!("--fsize={}", l.file_bytes))
            .arg(format!("--nofile={}", l.open_files))
            .arg("--");
        if let Some(i) = runner.interpreter() {
            c.arg(i);
        }
        c.arg(format!("{SCRATCH}/sample"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        c
    }

    /// Waits for the run to end, its deadline, or a bound (trace or scratch size); kills the
    /// process group when it stops the run.
    fn wait(&self, child: &mut std::process::Child, trace: &Path, scratch: &Path) -> Ended {
        let deadline = Instant::now() + self.limits.timeout;
        let mut round = 0u64;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ended::Exited;
            }
            round += 1;
            // The scratch folder is on the host's disk: every 250 ms its size is read (a
            // bounded walk), and a run that writes past its bound is stopped.
            let stop = if Instant::now() >= deadline {
                Some(Ended::Deadline)
            } else if std::fs::metadata(trace).is_ok_and(|m| m.len() > self.limits.trace_bytes) {
                Some(Ended::TraceFull)
            } else if round % 25 == 0 && folder_bytes(scratch, 100_000) > self.limits.scratch_bytes
            {
                Some(Ended::ScratchFull)
            } else {
                None
            };
            if let Some(why) = stop {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return why;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The trace (bounded), the sample's process, and where its start is.
    fn read_trace(
        &self,
        path: &Path,
        runner: Runner,
    ) -> Result<(Trace, Option<u32>, usize), SandboxError> {
        let f = std::fs::File::open(path).map_err(|e| SandboxError::Io(path.to_path_buf(), e))?;
        let mut text = Vec::new();
        f.take(self.limits.trace_bytes)
            .read_to_end(&mut text)
            .map_err(|e| SandboxError::Io(path.to_path_buf(), e))?;
        let mut trace = Trace::new(SCRATCH, self.limits.max_events);
        for line in String::from_utf8_lossy(&text).lines() {
            trace.line(line);
        }
        let (root, started_at) = sample_start(&trace, &self.tools, runner);
        Ok((trace, root, started_at))
    }
}

/// What of the host the sandbox sees, read-only: `/usr` and `/etc` (programs, libraries,
/// interpreters and their settings; files only root may read stay unreadable to `nobody`),
/// and `/bin`, `/sbin`, `/lib*` as the host has them (links into `/usr` on a merged-`/usr`
/// system). Homes, `/var`, `/srv`, `/opt`, `/run`, `/sys`, `/mnt` and the gateway's own files
/// are not there.
fn system_binds(hidden: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        .map(String::from)
        .to_vec();
    for h in HIDDEN.iter().filter(|h| Path::new(h).is_dir()) {
        out.extend(["--tmpfs".to_string(), h.to_string()]);
    }
    let shown = |p: &&PathBuf| p.starts_with("/etc") || p.starts_with("/usr");
    for f in hidden.iter().filter(shown).filter(|p| p.is_file()) {
        let f = f.to_string_lossy().into_owned();
        out.extend(["--ro-bind".to_string(), "/dev/null".to_string(), f]);
    }
    for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        match std::fs::read_link(d) {
            Ok(target) => out.extend([
                "--symlink".to_string(),
                target.to_string_lossy().into_owned(),
                d.to_string(),
            ]),
            Err(_) if Path::new(d).is_dir() => {
                out.extend(["--ro-bind".to_string(), d.to_string(), d.to_string()])
            }
            Err(_) => {}
        }
    }
    out
}

/// The process that ran the sample and the index of its start: the first program run after
/// `setpriv` and `prlimit` by the process that ran them, which must be the sample itself (or
/// its interpreter): a program for another machine makes `prlimit` fall back to running it
/// with `/bin/sh`, and that is not the sample running.
fn sample_start(trace: &Trace, tools: &Tools, runner: Runner) -> (Option<u32>, usize) {
    let expected = runner
        .interpreter()
        .map_or_else(|| format!("{SCRATCH}/sample"), str::to_string);
    let wrappers = [
        tools.setpriv.to_string_lossy().into_owned(),
        tools.prlimit.to_string_lossy().into_owned(),
    ];
    let mut root = None;
    for (i, e) in trace.events.iter().enumerate() {
        let crate::trace::Call::Exec { path, .. } = &e.call else {
            continue;
        };
        if e.error.is_some() {
            continue;
        }
        match root {
            None if path == &wrappers[0] => root = Some(e.pid),
            Some(r) if e.pid == r && !wrappers.contains(path) => {
                return match path == &expected {
                    true => (Some(r), i),
                    false => (None, trace.events.len()),
                };
            }
            _ => {}
        }
    }
    // The wrappers ran but the sample never did (a program for another machine, a wrapper
    // that failed): nothing was observed, which is no verdict.
    (None, trace.events.len())
}

/// The sandbox's records, and its other messages (tools' errors), from its standard error.
fn records(text: &str) -> (Vec<NetRecord>, String) {
    let mut out = Vec::new();
    let mut other = String::new();
    for line in text.lines() {
        match NetRecord::parse(line) {
            Some(r) if out.len() < crate::netsim::MAX_RECORDS + 64 => out.push(r),
            Some(_) => {}
            None => {
                other.push_str(line);
                other.push('\n');
            }
        }
    }
    (out, other)
}

/// Reads a pipe to its end on a thread, keeping the first `keep` bytes.
fn drain<R: Read + Send + 'static>(r: Option<R>, keep: usize) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let Some(mut r) = r else {
            return String::new();
        };
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// Bytes of the regular files under `dir` (links not followed), reading at most `entries`.
fn folder_bytes(dir: &Path, entries: usize) -> u64 {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > entries {
                return total;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Regular files in scratch (symbolic links are not followed; depth 8), hashed, at most
/// `max` and `hash_bytes` in all (each file once: links to one are one); the sample itself is
/// left out unless it changed.
fn dropped_files(
    scratch: &Path,
    sample: &[u8],
    max: usize,
    hash_bytes: u64,
) -> (Vec<Dropped>, usize) {
    use std::os::unix::fs::MetadataExt;
    let mut files = std::collections::HashSet::new();
    let mut budget = hash_bytes;
    let mut out = Vec::new();
    let mut extra = 0;
    let mut stack = vec![(scratch.to_path_buf(), 0)];
    let original = hex(&Sha256::digest(sample));
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() && depth < 8 {
                stack.push((p, depth + 1));
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if out.len() >= max || meta.len() > budget || !files.insert((meta.dev(), meta.ino())) {
                extra += 1;
                continue;
            }
            budget -= meta.len();
            let Some(d) = describe(&p) else { continue };
            let inside = format!(
                "{SCRATCH}/{}",
                p.strip_prefix(scratch).unwrap_or(&p).display()
            );
            if inside == format!("{SCRATCH}/sample") && d.0 == original {
                continue;
            }
            out.push(Dropped {
                path: inside,
                size: d.2,
                sha256: d.0,
                entropy: d.1,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, extra)
}

/// SHA-256, entropy of the first MiB, and size of a file.
fn describe(p: &Path) -> Option<(String, f64, u64)> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = Sha256::new();
    let mut counts = [0u64; 256];
    let mut seen = 0u64;
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        for &b in buf[..n]
            .iter()
            .take((1usize << 20).saturating_sub(seen as usize))
        {
            counts[usize::from(b)] += 1;
            seen += 1;
        }
    }
    Some((hex(&h.finalize()), entropy(&counts, seen), size))
}

/// Shannon entropy in bits per byte.
pub fn entropy(counts: &[u64; 256], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_files_the_sandbox_would_show_are_replaced_by_an_empty_one() {
        let binds = system_binds(&[PathBuf::from("/etc/passwd"), PathBuf::from("/tmp/x")]);
        let joined = binds.join(" ");
        assert!(
            joined.contains("--ro-bind /dev/null /etc/passwd"),
            "{joined}"
        );
        assert!(
            !joined.contains("/tmp/x"),
            "outside what the sandbox shows: {joined}"
        );
    }

    #[test]
    fn entropy_of_uniform_and_constant_bytes() {
        let mut c = [0u64; 256];
        c[0] = 100;
        assert_eq!(entropy(&c, 100), 0.0);
        let all = [4u64; 256];
        assert!((entropy(&all, 1024) - 8.0).abs() < 1e-9);
    }
}
