//! Exact decimal numbers (DynamoDB's `N`), validated and kept in one canonical
//! string form so that equal numbers have equal bytes.

use crate::error::{Error, Result};

/// DynamoDB keeps up to 38 significant digits.
const MAX_SIGNIFICANT_DIGITS: usize = 38;
/// Smallest and largest decimal exponent of the leading digit (1E-130 ..= 9.99E+125).
const MIN_EXP: i64 = -130;
const MAX_EXP: i64 = 125;

/// A validated number in canonical plain-decimal form: no exponent, no leading
/// zeros, no trailing fractional zeros, no `+`, and `0` never negative.
///
/// ```
/// use kstone_core::Number;
/// assert_eq!(Number::parse("0012.50e1").unwrap().as_str(), "125");
/// assert!(Number::parse("12abc").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(String);

impl Number {
    /// Parse and canonicalize a decimal string (`-1.5`, `3e10`, `+0.25E-3`).
    pub fn parse(s: &str) -> Result<Number> {
        let bad = |why: &str| Error::InvalidInput(format!("invalid number {s:?}: {why}"));
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&c) = bytes.first() {
            if c == b'-' || c == b'+' {
                negative = c == b'-';
                i = 1;
            }
        }
        let mut digits = Vec::new();
        let mut int_len: i64 = 0;
        let mut seen_digit = false;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            digits.push(bytes[i]);
            int_len += 1;
            i += 1;
            seen_digit = true;
        }
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                digits.push(bytes[i]);
                i += 1;
                seen_digit = true;
            }
        }
        if !seen_digit {
            return Err(bad("no digits"));
        }
        let mut exp: i64 = 0;
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            i += 1;
            let mut exp_neg = false;
            if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
                exp_neg = bytes[i] == b'-';
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                if i - start >= 6 {
                    return Err(bad("exponent out of range"));
                }
                exp = exp * 10 + i64::from(bytes[i] - b'0');
                i += 1;
            }
            if i == start {
                return Err(bad("empty exponent"));
            }
            if exp_neg {
                exp = -exp;
            }
        }
        if i != bytes.len() {
            return Err(bad("unexpected character"));
        }
        // value = 0.<digits> * 10^point
        let mut point = int_len + exp;
        let lead = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..lead);
        point -= lead as i64;
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Ok(Number("0".into()));
        }
        if digits.len() > MAX_SIGNIFICANT_DIGITS {
            return Err(bad("more than 38 significant digits"));
        }
        let sci_exp = point - 1;
        if !(MIN_EXP..=MAX_EXP).contains(&sci_exp) {
            return Err(bad("magnitude out of range (1E-130 to 9.9E+125)"));
        }
        let mut out = String::with_capacity(digits.len() + 8);
        if negative {
            out.push('-');
        }
        let d = std::str::from_utf8(&digits).map_err(|_| bad("not ASCII"))?;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(d);
        } else if point as usize >= d.len() {
            out.push_str(d);
            out.extend(std::iter::repeat_n('0', point as usize - d.len()));
        } else {
            out.push_str(&d[..point as usize]);
            out.push('.');
            out.push_str(&d[point as usize..]);
        }
        Ok(Number(out))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("007", "7"),
            ("1.50", "1.5"),
            ("+3", "3"),
            ("1e3", "1000"),
            ("1.5E-2", "0.015"),
            ("-12.340e1", "-123.4"),
            (".5", "0.5"),
            ("5.", "5"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Number::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "-",
            ".",
            "1e",
            "1e+",
            "abc",
            "1.2.3",
            "1 ",
            "0x10",
            "1e9999999",
            "NaN",
        ] {
            assert!(Number::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(Number::parse(&"1".repeat(39)).is_err());
        assert!(Number::parse("1e126").is_err());
        assert!(Number::parse("1e-131").is_err());
        assert!(Number::parse("1e125").is_ok());
    }

    #[test]
    fn canonical_is_idempotent() {
        for s in ["-0.001", "42", "9.99e125", "1e-130"] {
            let n = Number::parse(s).unwrap();
            assert_eq!(Number::parse(n.as_str()).unwrap(), n);
        }
    }
}
