//! `byte_extract` and `byte_math` (Suricata 8): numbers read from the buffer into a rule's
//! variables, which `byte_test` (value, offset), `byte_jump` (offset), `isdataat` and the
//! `content` modifiers `offset` / `depth` / `distance` / `within` then use by name.
//!
//! As Suricata's `DetectByteExtractDoMatch` / `DetectByteMathDoMatch`: the bytes are read at
//! `offset` (from the previous match with `relative`, which needs bytes left after it), as
//! big- or little-endian binary (1 to 8 bytes) or as a `string` in a base (dec by default);
//! the cursor moves past them. `byte_extract` multiplies and aligns (up to 2 or 4);
//! `byte_math` applies `oper` with `rvalue` (a number or a variable; a division by zero does
//! not match; a left shift of 64 or more gives 0), then `bitmask` (shifted by its trailing
//! zeros).

use crate::matchers::{read_number, Encoding};

/// Variables one rule may define (Suricata's `DETECT_BYTEMATH_MAX_VARS` equivalent).
pub const MAX_VARS: usize = 8;
/// Variable values during one rule's inspection.
pub type Vars = [u64; MAX_VARS];

/// A number written in the rule, or a variable's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Num {
    /// A literal.
    Lit(i64),
    /// A variable (its index).
    Var(u8),
}

impl Num {
    /// The value.
    pub fn get(self, vars: &Vars) -> i64 {
        match self {
            Num::Lit(n) => n,
            Num::Var(i) => vars[usize::from(i) % MAX_VARS] as i64,
        }
    }
}

/// A `byte_math` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oper {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `<<`.
    Shl,
    /// `>>`.
    Shr,
}

/// `byte_extract`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteExtract {
    /// Bytes read.
    pub nbytes: usize,
    /// Where (from the previous match with `relative`).
    pub offset: i64,
    /// From the previous match.
    pub relative: bool,
    /// How the bytes read as a number.
    pub enc: Encoding,
    /// `multiplier`.
    pub multiplier: u64,
    /// `align` (1: none).
    pub align: u64,
    /// The variable set.
    pub var: u8,
}

/// `byte_math`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteMath {
    /// Bytes read (a number or a variable).
    pub nbytes: Num,
    /// Where.
    pub offset: i64,
    /// From the previous match.
    pub relative: bool,
    /// How the bytes read as a number.
    pub enc: Encoding,
    /// The operation.
    pub oper: Oper,
    /// Its right operand.
    pub rvalue: Num,
    /// `bitmask`.
    pub bitmask: Option<u64>,
    /// The variable set.
    pub var: u8,
}

/// Where reading starts: `None` when a relative read has no bytes left after the cursor.
fn start(relative: bool, prev: usize, offset: i64, len: usize) -> Option<i64> {
    if !relative {
        return Some(offset);
    }
    let at = prev as i64 + offset;
    (len as i64 - at > 0).then_some(at)
}

/// A read of `n` bytes at `at`: the value and the cursor after it.
fn read(buf: &[u8], at: i64, n: usize, enc: Encoding) -> Option<(u64, usize)> {
    if at < 0 || n == 0 || n > buf.len() {
        return None;
    }
    let v = read_number(buf, at, n, enc)?;
    if matches!(enc, Encoding::String(_)) && v == 0 {
        // Suricata: no numeric value is no match.
        let window = buf.get(at as usize..at as usize + n)?;
        if !window.iter().any(u8::is_ascii_digit) {
            return None;
        }
    }
    Some((v, at as usize + n))
}

impl ByteExtract {
    /// Runs at the cursor `prev`: the value and the new cursor.
    pub fn run(&self, buf: &[u8], prev: usize) -> Option<(u64, usize)> {
        let at = start(self.relative, prev, self.offset, buf.len())?;
        let (v, end) = read(buf, at, self.nbytes, self.enc)?;
        let mut v = v.wrapping_mul(self.multiplier);
        if self.align > 1 && v % self.align != 0 {
            v += self.align - v % self.align;
        }
        Some((v, end))
    }
}

impl ByteMath {
    /// Runs at the cursor `prev` with the rule's variables: the value and the new cursor.
    pub fn run(&self, buf: &[u8], prev: usize, vars: &Vars) -> Option<(u64, usize)> {
        let n = usize::try_from(self.nbytes.get(vars)).ok()?;
        let max = if matches!(self.enc, Encoding::String(_)) {
            10
        } else {
            4
        };
        if n == 0 || n > max {
            return None;
        }
        let at = start(self.relative, prev, self.offset, buf.len())?;
        let (v, end) = read(buf, at, n, self.enc)?;
        let r = self.rvalue.get(vars) as u64;
        let mut v = match self.oper {
            Oper::Add => v.wrapping_add(r),
            Oper::Sub => v.wrapping_sub(r),
            Oper::Mul => v.wrapping_mul(r),
            Oper::Div if r == 0 => return None,
            Oper::Div => v / r,
            Oper::Shl if r < 64 => v << r,
            Oper::Shl => 0,
            Oper::Shr if r < 64 => v >> r,
            Oper::Shr => 0,
        };
        if let Some(m) = self.bitmask {
            v &= m;
            if v != 0 && m != 0 {
                v >>= m.trailing_zeros();
            }
        }
        Some((v, end))
    }
}

/// The variables a rule defined, by name, in order.
#[derive(Debug, Default)]
pub struct Names(Vec<String>);

impl Names {
    /// The index of `name`, if a `byte_extract` / `byte_math` before defined it.
    pub fn get(&self, name: &str) -> Option<u8> {
        self.0
            .iter()
            .position(|n| n == name)
            .and_then(|i| u8::try_from(i).ok())
    }

    fn define(&mut self, name: &str) -> Result<u8, String> {
        if let Some(i) = self.get(name) {
            return Ok(i);
        }
        if name.is_empty() || !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(format!("bad variable name {name:?}"));
        }
        if self.0.len() >= MAX_VARS {
            return Err(format!("more than {MAX_VARS} variables"));
        }
        self.0.push(name.to_string());
        Ok((self.0.len() - 1) as u8)
    }

    /// A number, or a defined variable.
    pub fn num(&self, s: &str) -> Result<Num, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i64>() {
            return Ok(Num::Lit(n));
        }
        self.get(s)
            .map(Num::Var)
            .ok_or_else(|| format!("{s:?} is neither a number nor a variable defined before"))
    }
}

fn base(s: &str) -> Option<Encoding> {
    Some(Encoding::String(match s {
        "hex" => 16,
        "dec" => 10,
        "oct" => 8,
        _ => return None,
    }))
}

/// Parses `byte_extract:<bytes>, <offset>, <name>[, relative][, multiplier N][, big|little]
/// [, string[, hex|dec|oct]][, align 2|4]`.
pub fn parse_extract(v: &str, names: &mut Names) -> Result<ByteExtract, String> {
    let a: Vec<&str> = v.split(',').map(str::trim).collect();
    let [n, offset, name, rest @ ..] = &a[..] else {
        return Err("byte_extract needs bytes, offset and a name".into());
    };
    let nbytes: usize = n.parse().map_err(|_| format!("bad byte count {n:?}"))?;
    let offset: i64 = offset
        .parse()
        .map_err(|_| format!("bad offset {offset:?}"))?;
    let mut e = ByteExtract {
        nbytes,
        offset,
        relative: false,
        enc: Encoding::Big,
        multiplier: 1,
        align: 1,
        var: 0,
    };
    let mut it = rest.iter().peekable();
    while let Some(&o) = it.next() {
        let (k, val) = o.split_once(' ').map_or((o, ""), |(k, v)| (k, v.trim()));
        match k {
            "relative" => e.relative = true,
            "big" => e.enc = Encoding::Big,
            "little" => e.enc = Encoding::Little,
            "dce" => return Err("dce (DCERPC) byte order is not supported".into()),
            "string" => {
                e.enc = base(val).unwrap_or(Encoding::String(10));
                if val.is_empty() {
                    if let Some(b) = it.peek().and_then(|t| base(t)) {
                        it.next();
                        e.enc = b;
                    }
                }
            }
            "hex" | "dec" | "oct" => e.enc = base(k).unwrap_or(Encoding::String(10)),
            "multiplier" => {
                e.multiplier = val
                    .parse()
                    .ok()
                    .filter(|m| (1..=65535).contains(m))
                    .ok_or_else(|| format!("bad multiplier {val:?}"))?;
            }
            "align" => {
                e.align = match val {
                    "2" => 2,
                    "4" => 4,
                    _ => return Err(format!("align must be 2 or 4, not {val:?}")),
                };
            }
            _ => return Err(format!("unknown option {o:?}")),
        }
    }
    let max = if matches!(e.enc, Encoding::String(_)) {
        23
    } else {
        8
    };
    if nbytes == 0 || nbytes > max {
        return Err(format!("byte count {nbytes} outside 1..={max}"));
    }
    e.var = names.define(name)?;
    Ok(e)
}

/// Parses `byte_math:bytes <n|var>, offset <n>, oper <op>, rvalue <n|var>, result <name>
/// [, relative][, endian big|little][, string hex|dec|oct][, bitmask <v>]`.
pub fn parse_math(v: &str, names: &mut Names) -> Result<ByteMath, String> {
    let (mut nbytes, mut offset, mut oper, mut rvalue, mut result) = (None, None, None, None, None);
    let mut m = ByteMath {
        nbytes: Num::Lit(0),
        offset: 0,
        relative: false,
        enc: Encoding::Big,
        oper: Oper::Add,
        rvalue: Num::Lit(0),
        bitmask: None,
        var: 0,
    };
    for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (k, val) = o.split_once(' ').map_or((o, ""), |(k, v)| (k, v.trim()));
        match k {
            "bytes" => nbytes = Some(names.num(val)?),
            "offset" => {
                offset = Some(
                    val.parse::<i64>()
                        .map_err(|_| format!("bad offset {val:?}"))?,
                )
            }
            "oper" => {
                oper = Some(match val {
                    "+" => Oper::Add,
                    "-" => Oper::Sub,
                    "*" => Oper::Mul,
                    "/" => Oper::Div,
                    "<<" => Oper::Shl,
                    ">>" => Oper::Shr,
                    _ => return Err(format!("unknown operator {val:?}")),
                })
            }
            "rvalue" => rvalue = Some(names.num(val)?),
            "result" => result = Some(val.to_string()),
            "relative" => m.relative = true,
            "endian" => {
                m.enc = match val {
                    "big" => Encoding::Big,
                    "little" => Encoding::Little,
                    "dce" => return Err("dce (DCERPC) byte order is not supported".into()),
                    _ => return Err(format!("bad endian {val:?}")),
                }
            }
            "string" => m.enc = base(val).ok_or_else(|| format!("bad string base {val:?}"))?,
            "dce" => return Err("dce (DCERPC) byte order is not supported".into()),
            "bitmask" => {
                let h = val.trim_start_matches("0x").trim_start_matches("0X");
                m.bitmask =
                    Some(u64::from_str_radix(h, 16).map_err(|_| format!("bad bitmask {val:?}"))?);
            }
            _ => return Err(format!("unknown option {o:?}")),
        }
    }
    let need = |what: &str| format!("byte_math needs {what}");
    m.nbytes = nbytes.ok_or_else(|| need("bytes"))?;
    if let Num::Lit(n) = m.nbytes {
        let max = if matches!(m.enc, Encoding::String(_)) {
            10
        } else {
            4
        };
        if n < 1 || n > max {
            return Err(format!("byte count {n} outside 1..={max}"));
        }
    }
    m.offset = offset.ok_or_else(|| need("offset"))?;
    m.oper = oper.ok_or_else(|| need("oper"))?;
    m.rvalue = rvalue.ok_or_else(|| need("rvalue"))?;
    m.var = names.define(&result.ok_or_else(|| need("result"))?)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_and_math() {
        let mut names = Names::default();
        let e = parse_extract(
            "2, 0, len, relative, little, multiplier 2, align 4",
            &mut names,
        )
        .unwrap();
        // Two little-endian bytes after the cursor: 0x0003 * 2 = 6, aligned to 8.
        assert_eq!(e.run(b"ab\x03\x00rest", 2), Some((8, 4)));
        assert_eq!(e.run(b"ab\x03", 2), None, "not enough bytes");
        assert_eq!(e.run(b"ab", 2), None, "nothing after the cursor");
        let s = parse_extract("3, 0, num, string, dec", &mut names).unwrap();
        assert_eq!(s.run(b"042x", 0), Some((42, 3)));
        assert_eq!(s.run(b"abc", 0), None, "no digits");
        let m = parse_math(
            "bytes 1, offset 0, oper *, rvalue len, result twice",
            &mut names,
        )
        .unwrap();
        let mut vars = [0u64; MAX_VARS];
        vars[0] = 8;
        assert_eq!(m.run(b"\x05", 0, &vars), Some((40, 1)));
        let d = parse_math("bytes 1, offset 0, oper /, rvalue 0, result q", &mut names).unwrap();
        assert_eq!(d.run(b"\x05", 0, &vars), None, "division by zero");
        let b = parse_math(
            "bytes 2, offset 0, oper >>, rvalue 0, result r, bitmask 0x0ff0",
            &mut names,
        )
        .unwrap();
        assert_eq!(b.run(b"\x12\x34", 0, &vars), Some((0x23, 2)));
        assert!(parse_math("bytes 1, offset 0, oper %, rvalue 1, result x", &mut names).is_err());
        assert!(parse_math(
            "bytes 1, offset 0, oper +, rvalue nope, result x",
            &mut names
        )
        .is_err());
        assert!(parse_extract("9, 0, big", &mut names).is_err());
        assert_eq!(names.get("len"), Some(0));
    }
}
