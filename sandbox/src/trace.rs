//! Reading a syscall trace as `strace -f -xx` writes it (one line per call, each prefixed with
//! the process id; calls interrupted by another process's line are written `<unfinished ...>`
//! and finished in a `<... NAME resumed>` line) into [`Event`]s: what the programs ran, opened,
//! connected to, asked the resolver for, renamed, changed, and how they ended. A line that
//! is not a call this reader knows is skipped; nothing in a line can make the reader fail.

use std::collections::HashMap;

use serde::Serialize;

/// Longest line kept from a pending `<unfinished ...>` call.
const MAX_PENDING: usize = 64 * 1024;
/// Most processes whose parent and directory are remembered.
const MAX_PROCESSES: usize = 100_000;

/// A socket address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addr {
    /// `inet`, `inet6`, `unix` or another family's name.
    pub family: String,
    /// The address (a path for `unix`).
    pub host: String,
    /// The port (0 for `unix`).
    pub port: u16,
}

impl Addr {
    /// Whether the address leaves the machine (not loopback, not a local socket).
    pub fn is_remote(&self) -> bool {
        match self.family.as_str() {
            "inet" => !self.host.starts_with("127.") && self.host != "0.0.0.0",
            "inet6" => !matches!(self.host.as_str(), "::1" | "::" | "::ffff:127.0.0.1"),
            _ => false,
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.family.as_str() {
            "inet6" => write!(f, "[{}]:{}", self.host, self.port),
            "inet" => write!(f, "{}:{}", self.host, self.port),
            fam => write!(f, "{fam}:{}", self.host),
        }
    }
}

/// What a call did, as far as the behaviour rules care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `execve`/`execveat`.
    Exec {
        /// The program.
        path: String,
        /// Its arguments.
        argv: Vec<String>,
    },
    /// `open`/`openat`/`creat`.
    Open {
        /// The file (relative paths resolved against the process's directory).
        path: String,
        /// Whether it was opened to write, create, truncate or append.
        write: bool,
    },
    /// `connect`.
    Connect {
        /// Where to.
        addr: Addr,
    },
    /// `bind`.
    Bind {
        /// Which address.
        addr: Addr,
    },
    /// Data sent on a socket (other than a resolver query).
    Send {
        /// Where to, when the call names it.
        addr: Option<Addr>,
    },
    /// A resolver query sent (to port 53).
    Dns {
        /// The name asked for.
        name: String,
    },
    /// `unlink`/`unlinkat`/`rmdir`.
    Unlink {
        /// The file.
        path: String,
    },
    /// `rename`/`renameat`/`renameat2`.
    Rename {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `symlink`/`symlinkat`/`link`/`linkat`.
    Link {
        /// The link made.
        path: String,
        /// What it leads to (a symbolic link's relative target read from the link's folder).
        target: String,
        /// A symbolic link (not a hard one).
        symbolic: bool,
    },
    /// `chmod`/`fchmodat`.
    Chmod {
        /// The file.
        path: String,
        /// The mode asked for.
        mode: u32,
    },
    /// `ptrace`.
    Ptrace {
        /// The request (`PTRACE_TRACEME`, …).
        request: String,
    },
    /// `mount`/`umount2`/`pivot_root`.
    Mount {
        /// The target.
        target: String,
    },
    /// `fork`/`vfork`/`clone`/`clone3`.
    Fork,
    /// `kill`/`tkill`/`tgkill`.
    Kill {
        /// The process (or group) signalled.
        target: i64,
        /// The signal.
        signal: String,
    },
    /// `setuid` and its kin.
    Setuid {
        /// The call.
        name: String,
    },
    /// `memfd_create`.
    Memfd {
        /// The name given.
        name: String,
    },
    /// `nanosleep`/`clock_nanosleep`.
    Sleep,
    /// `io_uring_setup`: a ring whose operations (open, connect, send) no traced call shows.
    IoUring,
    /// A call the sandbox's seccomp filter refused with SIGSYS (it did not run).
    Refused {
        /// The call's name.
        name: String,
    },
    /// `chdir`/`fchdir`.
    Chdir {
        /// The directory.
        path: String,
    },
}

/// One call by one process, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The process.
    pub pid: u32,
    /// The syscall's name.
    pub syscall: String,
    /// What it asked for.
    #[serde(flatten)]
    pub call: Call,
    /// The return value (`None` when the call never returned).
    pub ret: Option<i64>,
    /// The error's name (`ENOENT`) when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exit {
    /// The process.
    pub pid: u32,
    /// `exited with N` or `killed by SIGNAL`.
    pub how: String,
}

/// A trace read so far.
#[derive(Debug, Default)]
pub struct Trace {
    /// Calls in the order they returned.
    pub events: Vec<Event>,
    /// Processes that ended.
    pub exits: Vec<Exit>,
    /// Parent of each process that forked one (child → parent).
    pub parents: HashMap<u32, u32>,
    /// Calls left unfinished when one process's line was interrupted.
    pending: HashMap<u32, String>,
    /// Each process's directory, for relative paths.
    cwd: HashMap<u32, String>,
    /// Sockets connected to port 53, by process and descriptor.
    dns_fds: HashMap<(u32, i64), ()>,
    /// Where relative paths start for a process seen first.
    start_dir: String,
    /// Most events kept.
    max_events: usize,
    /// Events not kept past `max_events`.
    pub dropped: u64,
}

impl Trace {
    /// An empty trace: processes start in `dir`; at most `max_events` events are kept.
    pub fn new(dir: &str, max_events: usize) -> Trace {
        Trace {
            start_dir: dir.to_string(),
            max_events,
            ..Trace::default()
        }
    }

    /// Reads one line of strace output.
    pub fn line(&mut self, line: &str) {
        let Some((pid, rest)) = split_pid(line) else {
            return;
        };
        if let Some(how) = rest.strip_prefix("+++ ") {
            let how = how.trim_end_matches(" +++").trim().to_string();
            let trapped = self
                .events
                .iter()
                .rev()
                .take(64)
                .any(|e| e.pid == pid && e.error.as_deref() == Some("SIGSYS"));
            if how.starts_with("killed by SIGSYS") && !trapped {
                // Ended by the filter's architecture check (a call through the i386 or another
                // entry), not by a refused call's trap.
                self.push(Event {
                    pid,
                    syscall: "foreign_abi".into(),
                    call: Call::Refused {
                        name: "foreign_abi".into(),
                    },
                    ret: None,
                    error: Some("SIGSYS".into()),
                });
            }
            if self.exits.len() < MAX_PROCESSES {
                self.exits.push(Exit { pid, how });
            }
            return;
        }
        if let Some(signal) = rest.strip_prefix("--- ") {
            self.signal(pid, signal);
            return;
        }
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            if head.len() <= MAX_PENDING {
                self.pending.insert(pid, head.to_string());
            }
            return;
        }
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                return;
            };
            let Some(head) = self.pending.remove(&pid) else {
                return;
            };
            let whole = format!("{head}{tail}");
            self.call(pid, &whole);
            return;
        }
        self.call(pid, rest);
    }

    /// A signal line: `SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, …, si_syscall=__NR_mount,
    /// …} ---` is a call the sandbox's seccomp filter refused (refused mounts are `Mount`
    /// events, refused io_uring calls `IoUring` events, the rest `Refused`).
    fn signal(&mut self, pid: u32, text: &str) {
        if !text.starts_with("SIGSYS ") || !text.contains("si_code=SYS_SECCOMP") {
            return;
        }
        let Some(at) = text.find("si_syscall=") else {
            return;
        };
        let nr = &text[at + "si_syscall=".len()..];
        let nr = &nr[..nr.find([',', '}']).unwrap_or(nr.len())];
        let name = nr.strip_prefix("__NR_").unwrap_or(nr);
        if name.is_empty() || name.len() > 64 {
            return;
        }
        let call = match name {
            "mount" | "umount2" | "pivot_root" | "fsopen" | "fsconfig" | "fsmount" | "fspick"
            | "move_mount" | "open_tree" | "mount_setattr" => Call::Mount {
                target: format!("(refused: {name})"),
            },
            n if n.starts_with("io_uring_") => Call::IoUring,
            n => Call::Refused {
                name: n.to_string(),
            },
        };
        self.push(Event {
            pid,
            syscall: name.to_string(),
            call,
            ret: None,
            error: Some("SIGSYS".into()),
        });
    }

    /// Keeps an event, or counts it past the bound.
    fn push(&mut self, e: Event) {
        if self.events.len() >= self.max_events {
            self.dropped += 1;
            return;
        }
        self.events.push(e);
    }

    fn call(&mut self, pid: u32, text: &str) {
        let Some(open) = text.find('(') else { return };
        let name = &text[..open];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return;
        }
        let Some((args, close)) = args(&text[open + 1..]) else {
            return;
        };
        let tail = &text[open + 1 + close + 1..];
        let (ret, error) = result(tail);
        if matches!(name, "fork" | "vfork" | "clone" | "clone3") {
            // With --pidns-translation the child's id as the tracer sees it follows the one
            // the sandbox's namespace gives.
            let child = translated(tail).or(ret.filter(|&r| r > 0).map(|r| r as u32));
            if let Some(child) = child {
                if self.parents.len() < MAX_PROCESSES {
                    self.parents.insert(child, pid);
                    // A child starts in its parent's directory.
                    if let Some(dir) = self.cwd.get(&pid).cloned() {
                        self.cwd.insert(child, dir);
                    }
                }
            }
        }
        let Some(call) = self.decode(pid, name, &args, ret) else {
            return;
        };
        if let Call::Chdir { path } = &call {
            if ret == Some(0) {
                self.cwd.insert(pid, path.clone());
            }
        }
        self.push(Event {
            pid,
            syscall: name.to_string(),
            call,
            ret,
            error,
        });
    }

    fn decode(&mut self, pid: u32, name: &str, a: &[&str], ret: Option<i64>) -> Option<Call> {
        let s = |i: usize| a.get(i).map(|x| text(x)).unwrap_or_default();
        let path = |this: &Self, i: usize| this.resolve(pid, &s(i));
        Some(match name {
            "execve" => Call::Exec {
                path: path(self, 0),
                argv: list(a.get(1).copied().unwrap_or("")),
            },
            "execveat" => Call::Exec {
                path: path(self, 1),
                argv: list(a.get(2).copied().unwrap_or("")),
            },
            "open" => Call::Open {
                path: path(self, 0),
                write: writes(a.get(1).copied().unwrap_or("")),
            },
            "openat" | "openat2" => Call::Open {
                path: self.at(pid, a.first().copied().unwrap_or(""), &s(1)),
                write: writes(a.get(2).copied().unwrap_or("")),
            },
            "creat" => Call::Open {
                path: path(self, 0),
                write: true,
            },
            "connect" => {
                let addr = sockaddr(a.get(1)?)?;
                if addr.port == 53 {
                    self.dns_fds.insert((pid, fd(a)?), ());
                }
                Call::Connect { addr }
            }
            "bind" => Call::Bind {
                addr: sockaddr(a.get(1)?)?,
            },
            "sendto" | "sendmsg" | "sendmmsg" | "send" => {
                let to_dns = a
                    .get(4)
                    .and_then(|x| sockaddr(x))
                    .is_some_and(|x| x.port == 53)
                    || fd(a).is_some_and(|f| self.dns_fds.contains_key(&(pid, f)));
                let name = a
                    .get(1)
                    .into_iter()
                    .flat_map(|x| quoted(x))
                    .find_map(|b| dns_name(&b));
                match name {
                    Some(name) if to_dns => Call::Dns { name },
                    _ => Call::Send {
                        addr: a.get(4).and_then(|x| sockaddr(x)),
                    },
                }
            }
            "unlink" | "rmdir" => Call::Unlink {
                path: path(self, 0),
            },
            "unlinkat" => Call::Unlink {
                path: path(self, 1),
            },
            "rename" => Call::Rename {
                from: path(self, 0),
                to: path(self, 1),
            },
            "renameat" | "renameat2" => Call::Rename {
                from: path(self, 1),
                to: path(self, 3),
            },
            "symlink" => symlink(&s(0), path(self, 1)),
            "symlinkat" => symlink(&s(0), self.at(pid, a.get(1).copied().unwrap_or(""), &s(2))),
            "link" => Call::Link {
                path: path(self, 1),
                target: path(self, 0),
                symbolic: false,
            },
            "linkat" => Call::Link {
                path: self.at(pid, a.get(2).copied().unwrap_or(""), &s(3)),
                target: self.at(pid, a.first().copied().unwrap_or(""), &s(1)),
                symbolic: false,
            },
            "chmod" => Call::Chmod {
                path: path(self, 0),
                mode: mode(a.get(1).copied().unwrap_or("")),
            },
            "fchmodat" | "fchmodat2" => Call::Chmod {
                path: self.at(pid, a.first().copied().unwrap_or(""), &s(1)),
                mode: mode(a.get(2).copied().unwrap_or("")),
            },
            "fchmod" => Call::Chmod {
                path: fd_path(a.first()?)?,
                mode: mode(a.get(1).copied().unwrap_or("")),
            },
            "fchdir" => Call::Chdir {
                path: fd_path(a.first()?)?,
            },
            "io_uring_setup" => Call::IoUring,
            "ptrace" => Call::Ptrace {
                request: a.first().map(|r| r.trim().to_string()).unwrap_or_default(),
            },
            "mount" => Call::Mount { target: s(1) },
            "umount2" | "pivot_root" => Call::Mount { target: s(0) },
            "fork" | "vfork" | "clone" | "clone3" => Call::Fork,
            "kill" | "tkill" => Call::Kill {
                target: number(a.first()?)?,
                signal: a.get(1).map(|x| x.trim().to_string()).unwrap_or_default(),
            },
            "tgkill" => Call::Kill {
                target: number(a.get(1)?)?,
                signal: a.get(2).map(|x| x.trim().to_string()).unwrap_or_default(),
            },
            "setuid" | "setgid" | "setreuid" | "setregid" | "setresuid" | "setresgid" => {
                Call::Setuid {
                    name: name.to_string(),
                }
            }
            "memfd_create" => Call::Memfd { name: s(0) },
            "nanosleep" | "clock_nanosleep" => Call::Sleep,
            "chdir" => Call::Chdir {
                path: path(self, 0),
            },
            _ => {
                let _ = ret;
                return None;
            }
        })
    }

    /// A path relative to a directory descriptor (`AT_FDCWD`, or `3</dir>` with `strace -y`).
    fn at(&self, pid: u32, dirfd: &str, p: &str) -> String {
        match fd_path(dirfd) {
            Some(dir) if !p.starts_with('/') && dir.starts_with('/') => {
                normalize(&format!("{}/{p}", dir.trim_end_matches('/')))
            }
            _ => self.resolve(pid, p),
        }
    }

    /// A path as the process meant it: relative ones joined to its directory.
    fn resolve(&self, pid: u32, p: &str) -> String {
        if p.starts_with('/') || p.is_empty() {
            return p.to_string();
        }
        let dir = self.cwd.get(&pid).unwrap_or(&self.start_dir);
        normalize(&format!("{}/{p}", dir.trim_end_matches('/')))
    }
}

/// A symbolic link at `path` to `target` (a relative target is read from the link's folder,
/// as the kernel follows it).
fn symlink(target: &str, path: String) -> Call {
    let target = if target.starts_with('/') {
        normalize(target)
    } else {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        normalize(&format!("{dir}/{target}"))
    };
    Call::Link {
        path,
        target,
        symbolic: true,
    }
}

/// `a/./b/../c` → `a/c` (the path as written; symbolic links are not followed).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The process id and the rest of a line (`123 call(…)` or `[pid 123] call(…)`).
fn split_pid(line: &str) -> Option<(u32, &str)> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("[pid") {
        let (n, rest) = rest.trim_start().split_once(']')?;
        return Some((n.trim().parse().ok()?, rest.trim_start()));
    }
    let (n, rest) = line.split_once(' ')?;
    Some((n.parse().ok()?, rest.trim_start()))
}

/// The top-level arguments of a call (split at commas outside quotes and brackets) and
/// where its closing parenthesis is.
fn args(s: &str) -> Option<(Vec<&str>, usize)> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut quote = false;
    let mut start = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quote => i += 1,
            b'"' => quote = !quote,
            _ if quote => {}
            b'(' | b'[' | b'{' => depth += 1,
            b')' if depth == 0 => {
                let last = s[start..i].trim();
                if !last.is_empty() {
                    out.push(last);
                }
                return Some((out, i));
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The return value and error name after `)`: ` = -1 ENOENT (No such file…)`, ` = 3`, ` = ?`.
fn result(s: &str) -> (Option<i64>, Option<String>) {
    let Some(r) = s.trim_start().strip_prefix('=') else {
        return (None, None);
    };
    let mut words = r.split_ascii_whitespace();
    let ret = words.next().and_then(|w| {
        w.parse::<i64>()
            .ok()
            .or_else(|| i64::from_str_radix(w.strip_prefix("0x")?, 16).ok())
    });
    let error = words
        .next()
        .filter(|w| w.starts_with('E') && w.bytes().all(|b| b.is_ascii_uppercase()));
    (ret, error.map(str::to_string))
}

/// A number argument, without the comment `--pidns-translation` may add (`2 /* 9884 … */`).
fn number(arg: &str) -> Option<i64> {
    arg.split("/*").next()?.trim().parse().ok()
}

/// `= 3 /* 9884 in strace's PID NS */` → 9884.
fn translated(tail: &str) -> Option<u32> {
    let (_, rest) = tail.split_once("/* ")?;
    let (n, rest) = rest.split_once(' ')?;
    rest.starts_with("in strace's PID NS")
        .then(|| n.parse().ok())
        .flatten()
}

/// The bytes of every quoted string in `s`, in order.
fn quoted(s: &str) -> Vec<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let (bytes, end) = unquote(&b[i + 1..]);
            out.push(bytes);
            i += 1 + end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// A C string's bytes up to its closing quote, and where that quote is.
fn unquote(b: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && b[i] != b'"' {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        match b[i] {
            b'x' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'x');
                        i += 1;
                    }
                }
            }
            b'0'..=b'7' => {
                let n = b[i..]
                    .iter()
                    .take(3)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .count();
                let v = b[i..i + n]
                    .iter()
                    .fold(0u32, |v, &d| v * 8 + u32::from(d - b'0'));
                out.push(v as u8);
                i += n;
            }
            c => {
                out.push(match c {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    c => c,
                });
                i += 1;
            }
        }
    }
    (out, i)
}

/// The first quoted string of an argument as text.
fn text(arg: &str) -> String {
    quoted(arg)
        .into_iter()
        .next()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `["a", "b"]` → its strings.
fn list(arg: &str) -> Vec<String> {
    quoted(arg)
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

fn writes(flags: &str) -> bool {
    ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
        .iter()
        .any(|f| flags.contains(f))
}

fn mode(m: &str) -> u32 {
    let m = m.trim();
    u32::from_str_radix(m.trim_start_matches("0o").trim_start_matches('0'), 8).unwrap_or(0)
}

/// A descriptor argument's number (`3`, or `3</path>` as `strace -y` writes it).
fn fd(a: &[&str]) -> Option<i64> {
    let t = a.first()?.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
    t[..digits].parse().ok()
}

/// The path `strace -y` gives a descriptor argument (`3</etc>` → `/etc`).
fn fd_path(arg: &str) -> Option<String> {
    let (_, rest) = arg.trim().split_once('<')?;
    let inner = rest.strip_suffix('>')?;
    let mut b = inner.as_bytes().to_vec();
    b.push(b'"');
    let (bytes, _) = unquote(&b);
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")}` and the IPv6
/// and local forms.
fn sockaddr(arg: &str) -> Option<Addr> {
    let family = field(arg, "sa_family=")?;
    let port = || {
        let p = field(arg, "_port=htons(")?;
        p.trim_end_matches(')').parse().ok()
    };
    match family {
        "AF_INET" => Some(Addr {
            family: "inet".into(),
            host: text(arg.split_once("sin_addr=")?.1),
            port: port()?,
        }),
        "AF_INET6" => Some(Addr {
            family: "inet6".into(),
            host: text(arg.split_once("inet_pton(AF_INET6,")?.1),
            port: port()?,
        }),
        "AF_UNIX" => Some(Addr {
            family: "unix".into(),
            host: text(arg.split_once("sun_path=")?.1),
            port: 0,
        }),
        other => Some(Addr {
            family: other.trim_start_matches("AF_").to_ascii_lowercase(),
            host: String::new(),
            port: 0,
        }),
    }
}

/// The value after `key` up to the next `,` or `}`.
fn field<'a>(arg: &'a str, key: &str) -> Option<&'a str> {
    let rest = arg.split_once(key)?.1;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// The name a DNS query asks for (the first question), if `b` is one.
pub fn dns_name(b: &[u8]) -> Option<String> {
    if b.len() < 17 || b[2] & 0x80 != 0 || u16::from_be_bytes([b[4], b[5]]) == 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = usize::from(*b.get(i)?);
        if n == 0 {
            break;
        }
        if n > 63 || labels.len() > 127 {
            return None;
        }
        let label = b.get(i + 1..i + 1 + n)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        i += 1 + n;
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &str) -> Trace {
        let mut t = Trace::new("/tmp/scratch", 1000);
        for l in lines.lines() {
            t.line(l);
        }
        t
    }

    #[test]
    fn calls_become_events() {
        let t = read(concat!(
            "5 execve(\"/tmp/scratch/s.sh\", [\"/tmp/scratch/s.sh\"], 0x7ffc /* 3 vars */) = 0\n",
            "5 openat(AT_FDCWD, \"/etc/cron.d/x\", O_WRONLY|O_CREAT|O_TRUNC, 0666) = -1 EROFS (Read-only file system)\n",
            "5 openat(AT_FDCWD, \"\\x2f\\x65\\x74\\x63\\x2f\\x73\\x68\\x61\\x64\\x6f\\x77\", O_RDONLY) = -1 EACCES (Permission denied)\n",
            "5 connect(3, {sa_family=AF_INET, sin_port=htons(4444), sin_addr=inet_addr(\"198.51.100.7\")}, 16) = -1 ENETUNREACH (Network is unreachable)\n",
            "5 connect(4, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \"2001:db8::1\", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)\n",
            "5 chdir(\"sub\") = 0\n",
            "5 openat(AT_FDCWD, \"../x\", O_RDONLY) = 3\n",
            "5 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>\n",
            "6 rename(\"a\", \"b.enc\") = 0\n",
            "5 <... clone resumed>, child_tidptr=0x7f) = 2 /* 6 in strace's PID NS */\n",
            "6 chmod(\"/tmp/scratch/d\", 0755) = 0\n",
            "6 +++ exited with 0 +++\n",
            "5 --- SIGCHLD {si_signo=SIGCHLD} ---\n",
            "5 memfd_create(\"x\", MFD_CLOEXEC) = 3\n",
            "garbage line\n",
            "7 ptrace(PTRACE_TRACEME) = -1 EPERM (Operation not permitted)\n",
            "8 openat(3</etc>, \"shadow\", O_RDONLY) = -1 EACCES (Permission denied)\n",
            "8 fchmod(4</tmp/scratch/p>, 0755) = 0\n",
            "8 kill(2 /* 9884 in strace's PID NS */, SIGKILL) = 0\n",
            "8 connect(5<socket:[77]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0\n",
            "8 symlink(\"/etc/shadow\", \"s\") = 0\n",
            "8 symlinkat(\"../../root/.ssh\", 3</tmp/scratch>, \"k\") = 0\n",
            "8 link(\"/etc/passwd\", \"/tmp/scratch/p\") = -1 EXDEV (Invalid cross-device link)\n",
            "8 linkat(AT_FDCWD, \"a\", 4</tmp/scratch/d>, \"b\", 0) = 0\n",
        ));
        let calls: Vec<&Call> = t.events.iter().map(|e| &e.call).collect();
        assert_eq!(
            calls[0],
            &Call::Exec {
                path: "/tmp/scratch/s.sh".into(),
                argv: vec!["/tmp/scratch/s.sh".into()]
            }
        );
        assert_eq!(
            calls[1],
            &Call::Open {
                path: "/etc/cron.d/x".into(),
                write: true
            }
        );
        assert_eq!(t.events[1].error.as_deref(), Some("EROFS"));
        assert_eq!(
            calls[2],
            &Call::Open {
                path: "/etc/shadow".into(),
                write: false
            }
        );
        let Call::Connect { addr } = calls[3] else {
            panic!("{:?}", calls[3])
        };
        assert_eq!(addr.to_string(), "198.51.100.7:4444");
        assert!(addr.is_remote());
        let Call::Connect { addr } = calls[4] else {
            panic!("{:?}", calls[4])
        };
        assert_eq!(addr.to_string(), "[2001:db8::1]:443");
        assert_eq!(
            calls[6],
            &Call::Open {
                path: "/tmp/scratch/x".into(),
                write: false
            }
        );
        assert!(calls.contains(&&Call::Rename {
            from: "/tmp/scratch/a".into(),
            to: "/tmp/scratch/b.enc".into()
        }));
        assert!(calls.contains(&&Call::Fork));
        assert!(calls.contains(&&Call::Chmod {
            path: "/tmp/scratch/d".into(),
            mode: 0o755
        }));
        assert!(calls.contains(&&Call::Memfd { name: "x".into() }));
        assert_eq!(t.parents.get(&6), Some(&5));
        assert_eq!(t.exits[0].how, "exited with 0");
        assert!(calls.contains(&&Call::Open {
            path: "/etc/shadow".into(),
            write: false
        }));
        assert!(calls.contains(&&Call::Chmod {
            path: "/tmp/scratch/p".into(),
            mode: 0o755
        }));
        assert!(calls.contains(&&Call::Kill {
            target: 2,
            signal: "SIGKILL".into()
        }));
        assert!(t.dns_fds.contains_key(&(8, 5)));
        assert_eq!(t.events.iter().filter(|e| e.syscall == "openat").count(), 4);
        let links: Vec<(&str, &str, bool)> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Link {
                    path,
                    target,
                    symbolic,
                } => Some((path.as_str(), target.as_str(), *symbolic)),
                _ => None,
            })
            .collect();
        assert_eq!(
            links,
            [
                ("/tmp/scratch/s", "/etc/shadow", true),
                ("/tmp/scratch/k", "/root/.ssh", true),
                ("/tmp/scratch/p", "/etc/passwd", false),
                ("/tmp/scratch/d/b", "/tmp/scratch/a", false),
            ]
        );
    }

    #[test]
    fn resolver_queries_are_read_from_what_is_sent() {
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04evil\x07example\x03com\x00\x00\x01\x00\x01";
        let hex: String = q.iter().map(|b| format!("\\x{b:02x}")).collect();
        let t = read(&format!(
            "9 connect(3, {{sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"127.0.0.1\")}}, 16) = 0\n\
             9 sendmmsg(3, [{{msg_hdr={{msg_name=NULL, msg_namelen=0, msg_iov=[{{iov_base=\"{hex}\", iov_len=33}}], msg_iovlen=1}}, msg_len=33}}], 1, MSG_NOSIGNAL) = 1\n"
        ));
        assert_eq!(
            t.events[1].call,
            Call::Dns {
                name: "evil.example.com".into()
            }
        );
        assert_eq!(dns_name(b"short"), None);
    }

    #[test]
    fn events_past_the_limit_are_counted_not_kept() {
        let mut t = Trace::new("/", 2);
        for _ in 0..5 {
            t.line("3 fork() = 4");
        }
        assert_eq!((t.events.len(), t.dropped), (2, 3));
    }

    #[test]
    fn calls_refused_by_seccomp_are_read_from_their_sigsys() {
        let mut t = Trace::new("/", 100);
        t.line("7 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x7f3b, si_syscall=__NR_unshare, si_arch=AUDIT_ARCH_X86_64} ---");
        t.line("7 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x7f3b, si_syscall=__NR_mount, si_arch=AUDIT_ARCH_X86_64} ---");
        t.line("7 --- SIGSYS {si_signo=SIGSYS, si_code=SYS_SECCOMP, si_call_addr=0x7f3b, si_syscall=__NR_io_uring_setup, si_arch=AUDIT_ARCH_X86_64} ---");
        t.line("7 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=8} ---");
        t.line("7 --- SIGSYS {si_signo=SIGSYS, si_code=SI_USER, si_pid=9} ---");
        let calls: Vec<_> = t.events.iter().map(|e| e.call.clone()).collect();
        assert_eq!(
            calls,
            vec![
                Call::Refused {
                    name: "unshare".into()
                },
                Call::Mount {
                    target: "(refused: mount)".into()
                },
                Call::IoUring,
            ]
        );
        assert_eq!(t.events[0].error.as_deref(), Some("SIGSYS"));
        assert_eq!(t.events[0].syscall, "unshare");
        // Killed by the filter's architecture check: no trap line before the end.
        t.line("9 +++ killed by SIGSYS (core dumped) +++");
        assert_eq!(
            t.events.last().map(|e| e.call.clone()),
            Some(Call::Refused {
                name: "foreign_abi".into()
            })
        );
        // A trapped call's process ending the same way adds nothing.
        let n = t.events.len();
        t.line("7 +++ killed by SIGSYS (core dumped) +++");
        assert_eq!(t.events.len(), n);
    }
}
