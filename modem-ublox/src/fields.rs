//! Splitting and reading the comma-separated arguments of an information line or URC
//! (`+CREG: 2,5,"9E9A","019624BD",2`). Quoted strings may contain commas.

/// If `line` starts with `prefix` (e.g. `b"+CREG:"`), the rest with leading spaces removed.
pub(crate) fn strip<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(prefix)?;
    let i = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
    Some(&rest[i..])
}

/// An iterator over the raw fields of an argument list (quotes kept).
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Fields of `args` (the part after `+XXX: `).
    pub(crate) fn new(args: &'a [u8]) -> Self {
        Self { rest: Some(args) }
    }

    /// The next field as an unsigned integer (`None` if absent or not a number).
    pub(crate) fn int(&mut self) -> Option<u32> {
        parse_u32(self.next()?)
    }

    /// The next field as the content of a quoted string (`None` if absent or not quoted).
    pub(crate) fn quoted(&mut self) -> Option<&'a [u8]> {
        unquote(self.next()?)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quote = false;
        for (i, &c) in s.iter().enumerate() {
            match c {
                b'"' => in_quote = !in_quote,
                b',' if !in_quote => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim(&s[..i]));
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(trim(s))
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| c != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&c| c != b' ').map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Parse a decimal `u32` (no sign, no spaces, at most 9 digits so it cannot overflow).
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
}

/// Parse a decimal `u64` (band masks); `None` if empty, not digits, or over `u64::MAX`.
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |a, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        a.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The inside of `"…"`.
pub(crate) fn unquote(s: &[u8]) -> Option<&[u8]> {
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        Some(&s[1..s.len() - 1])
    } else {
        None
    }
}

/// `true` if the field is a quoted string.
pub(crate) fn is_quoted(s: &[u8]) -> bool {
    unquote(s).is_some()
}

/// Parse a dotted IPv4 address.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<core::net::Ipv4Addr> {
    let mut o = [0u8; 4];
    let mut parts = s.split(|&c| c == b'.');
    for slot in &mut o {
        let p = parts.next()?;
        if p.len() > 3 {
            return None;
        }
        *slot = u8::try_from(parse_u32(p)?).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(core::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_respect_quotes() {
        let mut f = Fields::new(br#"0,"a,b",  12 ,"""#);
        assert_eq!(f.int(), Some(0));
        assert_eq!(f.quoted(), Some(&b"a,b"[..]));
        assert_eq!(f.int(), Some(12));
        assert_eq!(f.quoted(), Some(&b""[..]));
        assert_eq!(f.next(), None);
    }

    #[test]
    fn numbers_and_addresses() {
        assert_eq!(parse_u32(b"4294967295"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(
            parse_ipv4(b"10.174.88.81"),
            Some(core::net::Ipv4Addr::new(10, 174, 88, 81))
        );
        assert_eq!(parse_ipv4(b"10.174.88"), None);
        #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
        {
            assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
            assert_eq!(parse_u64(b"18446744073709551616"), None);
            assert_eq!(parse_u64(b"1a"), None);
            assert_eq!(parse_u64(b""), None);
        }
        assert_eq!(parse_ipv4(b"10.174.88.256"), None);
        assert_eq!(strip(b"+CREG:  0,1", b"+CREG:"), Some(&b"0,1"[..]));
    }
}
