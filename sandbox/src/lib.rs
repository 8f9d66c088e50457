//! Sekisho's sandbox: files exchanged between medical applications and clients are run on the
//! gateway's own host, isolated (namespaces, an unprivileged uid without capabilities,
//! rlimits, a deadline; `detonate`; Landlock and seccomp, `confine`), their syscalls traced
//! (`trace`), their network answered by a make-believe one that records what they try
//! (`netsim`, served by the sandbox's first process, `inside`), and what they did scored
//! against behaviour signatures the SOC edits (`rules`, `report`). Nothing leaves the host.
//! ELF programs and shell, Python and Perl scripts are run (`sniff`); other types are
//! reported as not detonated.

pub mod cache;
pub mod confine;
pub mod detonate;
pub mod guard;
pub mod inside;
pub mod netsim;
pub mod report;
pub mod rules;
pub mod serve;
pub mod sniff;
pub mod trace;

pub use detonate::{Limits, Sandbox, SandboxError, Tools};
pub use report::{Report, Verdict};
pub use rules::{RuleError, Rules};

impl Sandbox {
    /// Runs `sample` when it is a type the sandbox runs and reports what it did; any other
    /// type gets a "not detonated" report.
    pub fn analyze(&self, sample: &[u8], rules: &Rules) -> Result<Report, SandboxError> {
        let Some(runner) = sniff::runner(sample) else {
            let why = "not an ELF program or a sh, bash, python or perl script: static checks only";
            return Ok(Report::not_detonated(sample, rules, why.to_string()));
        };
        let run = self.detonate(sample, runner)?;
        Ok(Report::of_run(sample, runner.name(), &run, rules))
    }
}
