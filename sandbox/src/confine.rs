//! What the sandbox's first process puts on itself before it starts the sample (inherited by
//! every process the sample starts): a Landlock domain and two seccomp filters.
//!
//! - Landlock (where the kernel has it): read and run anything the sandbox shows, write only
//!   under `/tmp` (scratch included), `/var/tmp`, `/dev` and `/proc`; scoped so no process of
//!   the domain can signal a process outside it (bubblewrap's own) nor reach an abstract
//!   socket made outside it.
//! - seccomp: the calls a program needs to leave or weaken a sandbox (mount and the new mount
//!   API, namespaces, kernel modules and kexec, BPF, perf, keyrings, opening by handle,
//!   userfaultfd, io_uring, the kernel log, raw port I/O) send SIGSYS instead of running
//!   (calls that only need a capability the sample never has, like setting the clock, are
//!   left to fail with EPERM): the tracer sees the signal with the call's name (strace's own filter cannot
//!   see a call another filter refuses), and a program that does not catch SIGSYS ends.
//!   `clone` with a namespace flag is refused the same way; `clone3`, whose flags sit in
//!   memory a filter cannot read, answers ENOSYS so the C library falls back to `clone`.
//!   On x86_64 the x32 numbering of each refused call is refused too, and a call of another
//!   architecture (the i386 entry) ends the process.

use std::collections::BTreeMap;

use landlock::{
    Access, AccessFs, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Where the sample may write (everything else it sees is read-only to it).
const WRITABLE: &[&str] = &["/tmp", "/var/tmp", "/dev", "/proc"];

/// The calls refused with SIGSYS, by name (as `si_syscall` names them, without `__NR_`).
pub const REFUSED: &[(&str, i64)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("syslog", libc::SYS_syslog),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

/// `clone` flags that make a namespace (any one refuses the call).
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The bit that marks x32 system call numbers on x86_64.
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;

/// Why confinement failed (the sample is then not run).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// Landlock refused the ruleset (a kernel without Landlock is not an error).
    #[error("landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
}

/// How far Landlock could go on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockLevel {
    /// Every restriction asked for holds.
    Full,
    /// An older Landlock: some restrictions hold (files, not scopes).
    Partial,
    /// The kernel has no Landlock.
    None,
}

/// Puts Landlock and the seccomp filters on the calling process (single-threaded: both
/// apply to the calling thread and are inherited by every child).
pub fn confine() -> Result<LandlockLevel, ConfineError> {
    let level = landlock_self()?;
    for program in filters()? {
        seccompiler::apply_filter(&program).map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    }
    Ok(level)
}

/// The Landlock domain.
fn landlock_self() -> Result<LandlockLevel, ConfineError> {
    let abi = ABI::V6;
    let status: RestrictionStatus = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(landlock::path_beneath_rules(
            ["/"],
            AccessFs::from_read(abi),
        ))?
        .add_rules(landlock::path_beneath_rules(
            WRITABLE,
            AccessFs::from_all(abi),
        ))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockLevel::Full,
        RulesetStatus::PartiallyEnforced => LandlockLevel::Partial,
        _ => LandlockLevel::None,
    })
}

/// The two seccomp programs: refusals by SIGSYS, and `clone3` answered ENOSYS.
pub fn filters() -> Result<Vec<BpfProgram>, ConfineError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| ConfineError::Seccomp(e.to_string()))?;
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(_, nr) in REFUSED {
        refused.insert(nr, Vec::new());
        #[cfg(target_arch = "x86_64")]
        refused.insert(nr | X32, Vec::new());
    }
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let c = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?;
            SeccompRule::new(vec![c])
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    refused.insert(libc::SYS_clone, clone_rules.clone());
    #[cfg(target_arch = "x86_64")]
    refused.insert(libc::SYS_clone | X32, clone_rules);
    // x32's own numbers (512 to 547: the calls whose x32 form differs, kexec_load among them).
    #[cfg(target_arch = "x86_64")]
    for nr in 512..=547 {
        refused.insert(nr | X32, Vec::new());
    }
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    #[cfg(target_arch = "x86_64")]
    clone3.insert(libc::SYS_clone3 | X32, Vec::new());
    let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
    [(refused, SeccompAction::Trap), (clone3, enosys)]
        .into_iter()
        .map(|(rules, action)| {
            let f = SeccompFilter::new(rules, SeccompAction::Allow, action, arch)
                .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
            BpfProgram::try_from(f).map_err(|e| ConfineError::Seccomp(e.to_string()))
        })
        .collect()
}

/// The name of a refused call from its number (`si_syscall`), if it is one.
pub fn refused_name(nr: i64) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let nr = nr & !X32;
    if nr == libc::SYS_clone {
        return Some("clone");
    }
    REFUSED
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build_and_name_their_calls() {
        let f = filters().unwrap();
        assert_eq!(f.len(), 2);
        assert!(f[0].len() > REFUSED.len());
        assert_eq!(refused_name(libc::SYS_mount), Some("mount"));
        assert_eq!(refused_name(libc::SYS_read), None);
    }
}
