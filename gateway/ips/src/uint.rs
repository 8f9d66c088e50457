//! Suricata's integer keyword values (`detect/uint.rs`): `5`, `=5`, `!5`, `!=5`, `<5`, `<=5`,
//! `>5`, `>=5`, `2-8` and `2<>8` (exclusive), `!2-8`, `&0x40=0x40`, `&0x40!=0`, hexadecimal
//! `0x..` and `kb`/`mb`/`gb` units; for enumerated keywords a name (`text`, `!ping`); for
//! bit-flag keywords a list of names (`fin,!comp`) with a modifier (`+` all set, `*` any,
//! `-` none, `=` exactly).

/// How the value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Range,
    NegRange,
    Mask,
    NegMask,
}

/// A parsed integer condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uint {
    mode: Mode,
    a: u64,
    b: u64,
}

impl Uint {
    /// Parses a numeric condition on an integer no larger than `max`.
    pub fn parse(s: &str, max: u64) -> Result<Uint, String> {
        let t = s.trim();
        parse_bitmask(t, max)
            .or_else(|| parse_range(t, max))
            .or_else(|| parse_symbol(t, max))
            .ok_or_else(|| format!("{s:?} is not an integer condition (0 to {max})"))
    }

    /// Parses a condition on an enumerated integer: a number condition, else one of `names`
    /// (case-insensitive), `!` before it for "not".
    pub fn parse_enum(s: &str, max: u64, names: &[(&str, u64)]) -> Result<Uint, String> {
        if let Ok(u) = Uint::parse(s, max) {
            return Ok(u);
        }
        let t = s.trim();
        let (neg, name) = match t.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, t),
        };
        let value = lookup(name, names).ok_or_else(|| format!("unknown value {name:?}"))?;
        let mode = if neg { Mode::Ne } else { Mode::Eq };
        Ok(Uint {
            mode,
            a: value,
            b: 0,
        })
    }

    /// Parses a condition on bit flags: a number condition, else an optional modifier and a
    /// list of flag names (each may be `!`-negated); without a modifier, `default_all`
    /// means "these set, the negated ones clear" (`+`), else "exactly these" (`=`).
    pub fn parse_flags(
        s: &str,
        max: u64,
        names: &[(&str, u64)],
        default_all: bool,
    ) -> Result<Uint, String> {
        if let Ok(u) = Uint::parse(s, max) {
            return Ok(u);
        }
        let t = s.trim();
        let (modifier, list) = match t.chars().next() {
            Some(c @ ('+' | '*' | '-' | '=')) => (c, &t[1..]),
            _ => (if default_all { '+' } else { '=' }, t),
        };
        let (mut mask, mut set) = (0u64, 0u64);
        for item in list.split([',', ' ']).filter(|i| !i.is_empty()) {
            let (neg, name) = match item.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, item),
            };
            let v = lookup(name, names).ok_or_else(|| format!("unknown flag {name:?}"))?;
            if mask & v != 0 {
                return Err(format!("flag {name:?} named twice"));
            }
            mask |= v;
            if !neg {
                set |= v;
            }
        }
        if mask == 0 {
            return Err(format!("{s:?} names no flag"));
        }
        let (mode, a, b) = match modifier {
            '=' => (Mode::Eq, mask, 0),
            '+' => (Mode::Mask, mask, set),
            '*' => (Mode::NegMask, mask, 0),
            _ => (Mode::NegMask, mask, set),
        };
        Ok(Uint { mode, a, b })
    }

    /// Whether `v` meets the condition.
    pub fn test(&self, v: u64) -> bool {
        let (a, b) = (self.a, self.b);
        match self.mode {
            Mode::Eq => v == a,
            Mode::Ne => v != a,
            Mode::Lt => v < a,
            Mode::Le => v <= a,
            Mode::Gt => v > a,
            Mode::Ge => v >= a,
            Mode::Range => v > a && v < b,
            Mode::NegRange => v <= a || v >= b,
            Mode::Mask => v & a == b,
            Mode::NegMask => v & a != b,
        }
    }
}

fn lookup(name: &str, names: &[(&str, u64)]) -> Option<u64> {
    names
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|&(_, v)| v)
}

/// A value: decimal with an optional unit, or `0x` hexadecimal; at most `max`.
fn value(s: &str, max: u64) -> Option<u64> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()?
    } else {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = s.get(..digits)?.parse().ok()?;
        let unit = match s[digits..].to_ascii_lowercase().as_str() {
            "" => 1,
            "kb" | "kib" => 1 << 10,
            "mb" | "mib" => 1 << 20,
            "gb" | "gib" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(unit)?
    };
    (v <= max).then_some(v)
}

fn parse_bitmask(t: &str, max: u64) -> Option<Uint> {
    let rest = t.strip_prefix('&')?;
    let (mask, neg, want) = match rest.split_once("!=") {
        Some((m, w)) => (m, true, w),
        None => {
            let (m, w) = rest.split_once('=')?;
            (m, false, w)
        }
    };
    let (a, b) = (value(mask, max)?, value(want, max)?);
    if b & a != b {
        return None;
    }
    let mode = if neg { Mode::NegMask } else { Mode::Mask };
    Some(Uint { mode, a, b })
}

fn parse_range(t: &str, max: u64) -> Option<Uint> {
    let (neg, t) = match t.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (a, b) = t.split_once("<>").or_else(|| t.split_once('-'))?;
    let (a, b) = (value(a, max)?, value(b, max)?);
    // As Suricata: the range must hold a value between its ends.
    if b <= a || b - a <= 1 {
        return None;
    }
    let mode = if neg { Mode::NegRange } else { Mode::Range };
    Some(Uint { mode, a, b })
}

fn parse_symbol(t: &str, max: u64) -> Option<Uint> {
    let ops: [(&str, Mode); 7] = [
        (">=", Mode::Ge),
        ("<=", Mode::Le),
        ("!=", Mode::Ne),
        (">", Mode::Gt),
        ("<", Mode::Lt),
        ("!", Mode::Ne),
        ("=", Mode::Eq),
    ];
    let (mode, rest) = ops
        .iter()
        .find_map(|&(op, m)| t.strip_prefix(op).map(|r| (m, r)))
        .unwrap_or((Mode::Eq, t));
    let a = value(rest, max)?;
    // Conditions no value can meet are refused, as Suricata refuses them.
    let impossible = match mode {
        Mode::Lt | Mode::Ge => a == 0,
        Mode::Le | Mode::Gt => a == max,
        _ => false,
    };
    (!impossible).then_some(Uint { mode, a, b: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPCODES: &[(&str, u64)] = &[("text", 1), ("ping", 9)];
    const FLAGS: &[(&str, u64)] = &[("fin", 0x80), ("comp", 0x40)];

    fn holds(s: &str, v: u64) -> bool {
        Uint::parse(s, u64::from(u8::MAX)).unwrap().test(v)
    }

    #[test]
    fn numeric_forms_read_as_suricata_reads_them() {
        assert!(holds("128", 128) && holds("=128", 128) && !holds("128", 1));
        assert!(holds("!5", 4) && holds("!=5", 6) && !holds("!5", 5));
        assert!(holds(">8", 9) && !holds(">8", 8) && holds(">=8", 8));
        assert!(holds("<8", 7) && holds("<=8", 8) && !holds("<8", 8));
        assert!(holds("2-8", 3) && !holds("2-8", 2) && !holds("2<>8", 8));
        assert!(holds("!2-8", 2) && !holds("!2-8", 5));
        assert!(holds("&0x40=0x40", 0xc1) && !holds("&0x40=0x40", 0x81));
        assert!(holds("&0xC0!=0x80", 0x40));
        assert!(holds("0x10", 16));
        assert_eq!(Uint::parse("2kb", u64::MAX).unwrap().a, 2048);
        for bad in ["", "x", "256", "<0", ">255", "3-4", "8-2", "&0x1=0x3", "5x"] {
            assert!(Uint::parse(bad, 255).is_err(), "{bad}");
        }
    }

    #[test]
    fn enumerations_take_names_or_numbers() {
        let text = Uint::parse_enum("text", 255, OPCODES).unwrap();
        assert!(text.test(1) && !text.test(2));
        let not_ping = Uint::parse_enum("!PING", 255, OPCODES).unwrap();
        assert!(not_ping.test(10) && !not_ping.test(9));
        assert!(Uint::parse_enum(">8", 255, OPCODES).unwrap().test(9));
        assert!(Uint::parse_enum("pong", 255, OPCODES).is_err());
    }

    #[test]
    fn flag_lists_with_modifiers() {
        let f = |s| Uint::parse_flags(s, 255, FLAGS, true).unwrap();
        assert!(f("fin").test(0x80) && f("fin").test(0xc0) && !f("fin").test(0x40));
        assert!(f("fin,!comp").test(0x80) && !f("fin,!comp").test(0xc0));
        assert!(f("=fin").test(0x80) && !f("=fin").test(0xc0));
        assert!(f("*fin,comp").test(0x40) && !f("*fin,comp").test(0x10));
        assert!(f("-fin").test(0x40) && !f("-fin").test(0x80));
        assert!(f("128").test(0x80));
        assert!(Uint::parse_flags("fin,fin", 255, FLAGS, true).is_err());
        assert!(Uint::parse_flags("rsv9", 255, FLAGS, true).is_err());
    }
}
