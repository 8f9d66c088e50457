//! `normalizePath` and `normalizePathWin`: ModSecurity's in-place path normaliser, step for
//! step (it is not a "clean path" function: `/..` gives an empty path, any segment ending in
//! `..` is removed with the one before it, a relative path keeps the `..` it cannot resolve).

/// Normalises `input` (with `win`, `\` counts as `/`); changed when the output differs.
pub fn normalize(input: &[u8], out: &mut Vec<u8>, win: bool) -> bool {
    if input.is_empty() {
        return false;
    }
    let slash = |b: u8| b == b'/' || (win && b == b'\\');
    let mut buf: Vec<u8> = input
        .iter()
        .map(|&b| if win && b == b'\\' { b'/' } else { b })
        .collect();
    let relative = !slash(input[0]);
    let trailing = slash(input[input.len() - 1]);
    let len = run(&mut buf, relative);
    buf.truncate(len);
    if !trailing && buf.last() == Some(&b'/') {
        buf.pop();
    }
    out.extend_from_slice(&buf);
    out.as_slice() != input
}

/// The state machine over one buffer: `src` reads, `dst` writes behind it. Returns the length
/// written.
fn run(buf: &mut [u8], relative: bool) -> usize {
    let end = buf.len() - 1;
    let (mut src, mut dst): (usize, isize) = (0, 0);
    let mut hitroot = false;
    loop {
        if src > end || dst > end as isize {
            break;
        }
        let done = src == end;
        if done || buf[src + 1] == b'/' {
            match segment_end(buf, src, &mut dst, relative, done, &mut hitroot) {
                Step::Copy => {}
                Step::Skip => src += 1,
                Step::Finish => break,
            }
            if src > end {
                break;
            }
        }
        // Copy the byte; a run of slashes collapses to its last one.
        if buf[src] == b'/' {
            while src < end && buf[src + 1] == b'/' {
                src += 1;
            }
            if relative && dst == 0 {
                src += 1;
                if done {
                    break;
                }
                continue;
            }
        }
        buf[dst as usize] = buf[src];
        dst += 1;
        src += 1;
        if done {
            break;
        }
    }
    dst.max(0) as usize
}

enum Step {
    /// Copy the byte at `src`.
    Copy,
    /// Skip the byte at `src` and copy the next one.
    Skip,
    /// The end was reached on a reference: stop without copying.
    Finish,
}

/// What to do at the last byte of a segment (`src` is at its end).
fn segment_end(
    buf: &[u8],
    src: usize,
    dst: &mut isize,
    relative: bool,
    done: bool,
    hitroot: &mut bool,
) -> Step {
    let prev = |d: isize| if d > 0 { buf[(d - 1) as usize] } else { 0 };
    if !done && buf[src] == b'/' {
        return Step::Copy;
    }
    if buf[src] != b'.' {
        if *dst > 0 {
            *hitroot = false;
        }
        return Step::Copy;
    }
    if *dst > 0 && prev(*dst) == b'.' {
        if relative && (*hitroot || *dst - 2 <= 0) {
            *hitroot = true;
            return Step::Copy;
        }
        *dst -= 3;
        while *dst > 0 && buf[*dst as usize] != b'/' {
            *dst -= 1;
        }
        if *dst <= 0 {
            *hitroot = true;
            *dst = if !relative && done { 1 } else { 0 };
        }
    } else if *dst == 0 {
        // A relative self-reference: dropped.
    } else if prev(*dst) == b'/' {
        *dst -= 1;
    } else {
        return Step::Copy;
    }
    if done {
        Step::Finish
    } else {
        Step::Skip
    }
}
