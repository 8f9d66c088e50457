//! What can be detonated, by content (never by name): ELF programs, and scripts for the
//! shells, Python and Perl, known by their `#!` line or, without one, by lines only that
//! language starts with.

use serde::Serialize;

/// How a file is run in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// An ELF program, run as it is.
    Elf,
    /// A POSIX shell script (`/bin/sh`).
    Sh,
    /// A Bash script.
    Bash,
    /// A Python 3 script.
    Python,
    /// A Perl script.
    Perl,
}

impl Runner {
    /// The interpreter that runs the file (`None`: the file runs itself).
    pub fn interpreter(self) -> Option<&'static str> {
        match self {
            Runner::Elf => None,
            Runner::Sh => Some("/bin/sh"),
            Runner::Bash => Some("/bin/bash"),
            Runner::Python => Some("/usr/bin/python3"),
            Runner::Perl => Some("/usr/bin/perl"),
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runner::Elf => "elf",
            Runner::Sh => "sh",
            Runner::Bash => "bash",
            Runner::Python => "python",
            Runner::Perl => "perl",
        }
    }
}

/// How `content` would be run, or `None` when it is nothing the sandbox runs.
pub fn runner(content: &[u8]) -> Option<Runner> {
    if content.starts_with(b"\x7fELF") {
        return Some(Runner::Elf);
    }
    let text = content.get(..content.len().min(4096))?;
    if let Some(line) = text.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        return shebang(line);
    }
    guess(text)
}

/// The runner a `#!` line names (`/usr/bin/env NAME` included).
fn shebang(line: &[u8]) -> Option<Runner> {
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let mut program = words.next()?;
    if program.rsplit('/').next() == Some("env") {
        program = words.find(|w| !w.starts_with('-'))?;
    }
    by_name(program.rsplit('/').next().unwrap_or(program))
}

fn by_name(name: &str) -> Option<Runner> {
    match name {
        "sh" | "dash" | "ash" => Some(Runner::Sh),
        "bash" => Some(Runner::Bash),
        "perl" => Some(Runner::Perl),
        n if n == "python" || n.starts_with("python3") || n == "python2" => Some(Runner::Python),
        _ => None,
    }
}

/// A script without `#!`: Python or Perl by lines only they start with.
fn guess(text: &[u8]) -> Option<Runner> {
    let text = std::str::from_utf8(text).ok()?;
    let lines = || text.lines().map(str::trim_start);
    if lines().any(|l| {
        l.starts_with("use strict;") || l.starts_with("use warnings;") || l.starts_with("my $")
    }) {
        return Some(Runner::Perl);
    }
    if lines().any(|l| {
        l.starts_with("import ")
            || (l.starts_with("from ") && l.contains(" import "))
            || (l.starts_with("def ") && l.ends_with(':'))
    }) {
        return Some(Runner::Python);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_scripts_by_content() {
        assert_eq!(runner(b"\x7fELF\x02\x01\x01"), Some(Runner::Elf));
        assert_eq!(runner(b"#!/bin/sh\necho"), Some(Runner::Sh));
        assert_eq!(runner(b"#! /bin/bash -e\n"), Some(Runner::Bash));
        assert_eq!(
            runner(b"#!/usr/bin/env -S python3 -u\n"),
            Some(Runner::Python)
        );
        assert_eq!(runner(b"#!/usr/bin/perl -w\n"), Some(Runner::Perl));
        assert_eq!(
            runner(b"import os\nos.system('id')\n"),
            Some(Runner::Python)
        );
        assert_eq!(runner(b"use strict;\nprint 1;\n"), Some(Runner::Perl));
        assert_eq!(runner(b"#!/usr/bin/ruby\n"), None);
        assert_eq!(runner(b"MZ\x90\x00"), None);
        assert_eq!(runner(b"%PDF-1.7"), None);
        assert_eq!(runner(b""), None);
    }
}
