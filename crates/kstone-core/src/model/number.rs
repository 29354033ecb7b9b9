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
            // Leading zeros say nothing (`1e0000000002` is 100).
            while i + 1 < bytes.len() && bytes[i] == b'0' && bytes[i + 1].is_ascii_digit() {
                i += 1;
            }
            let first = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                if i - first >= 6 {
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
            return Err(bad("magnitude out of range (1E-130 to 9.99…E+125)"));
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

    /// Sign, significant digits (ASCII, no leading or trailing zeros) and
    /// decimal point position `e`: the value is `±0.DIGITS × 10^e`. Zero has
    /// no digits.
    fn parts(&self) -> (bool, Vec<u8>, i64) {
        let (negative, text) = match self.0.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, self.0.as_str()),
        };
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let int = int.trim_start_matches('0');
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        let mut e = int.len() as i64;
        let lead = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..lead);
        e -= lead as i64;
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        (negative, digits, e)
    }

    /// Number of significant digits (DynamoDB's size rule counts them).
    pub fn significant_digits(&self) -> usize {
        self.parts().1.len().max(1)
    }

    /// Order-preserving binary form (used for N keys): byte strings compare
    /// as the numbers do. See `docs/formats.md` ("Typed keys").
    pub fn to_order_bytes(&self, out: &mut Vec<u8>) {
        let (negative, digits, e) = self.parts();
        if digits.is_empty() {
            out.push(ORDER_ZERO);
            return;
        }
        // `e` is within -129..=126 for every valid number (see MIN_EXP/MAX_EXP).
        let exp = (e - MIN_EXP - 1) as u8;
        let flip = |b: u8| if negative { !b } else { b };
        out.push(if negative { ORDER_NEG } else { ORDER_POS });
        out.push(flip(exp));
        for pair in digits.chunks(2) {
            let hi = pair[0] - b'0';
            let lo = pair.get(1).map_or(0, |d| d - b'0');
            out.push(flip(1 + 10 * hi + lo));
        }
        out.push(flip(0));
    }

    /// Would [`Number::from_order_bytes`] accept `b`? Checked without
    /// building the number (every write of an N key asks).
    pub fn is_order_bytes(b: &[u8]) -> bool {
        let (negative, body) = match b.split_first() {
            Some((&ORDER_ZERO, [])) => return true,
            Some((&ORDER_NEG, rest)) => (true, rest),
            Some((&ORDER_POS, rest)) => (false, rest),
            _ => return false,
        };
        let flip = |b: u8| if negative { !b } else { b };
        // exponent byte, 1..=19 digit pairs, terminator
        let [_exp, pairs @ .., end] = body else {
            return false;
        };
        if flip(*end) != 0 || pairs.is_empty() || pairs.len() > MAX_SIGNIFICANT_DIGITS / 2 {
            return false;
        }
        let value = |p: u8| flip(p).wrapping_sub(1);
        // A first digit of 0 or a last pair "00" is not canonical.
        pairs.iter().all(|&p| value(p) < 100)
            && value(pairs[0]) >= 10
            && value(pairs[pairs.len() - 1]) != 0
    }

    /// The inverse of [`Number::to_order_bytes`]; refuses any other bytes.
    pub fn from_order_bytes(b: &[u8]) -> Result<Number> {
        let bad = || Error::Malformed(format!("bad number key bytes {b:02x?}"));
        let (negative, body) = match b.split_first() {
            Some((&ORDER_ZERO, [])) => return Ok(Number("0".into())),
            Some((&ORDER_NEG, rest)) => (true, rest),
            Some((&ORDER_POS, rest)) => (false, rest),
            _ => return Err(bad()),
        };
        let flip = |b: u8| if negative { !b } else { b };
        let (&exp, rest) = body.split_first().ok_or_else(bad)?;
        let (&end, pairs) = rest.split_last().ok_or_else(bad)?;
        if flip(end) != 0 || pairs.is_empty() || pairs.len() > MAX_SIGNIFICANT_DIGITS / 2 {
            return Err(bad());
        }
        let mut text = String::with_capacity(pairs.len() * 2 + 8);
        if negative {
            text.push('-');
        }
        text.push_str("0.");
        for &p in pairs {
            let v = flip(p)
                .checked_sub(1)
                .filter(|v| *v < 100)
                .ok_or_else(bad)?;
            text.push(char::from(b'0' + v / 10));
            text.push(char::from(b'0' + v % 10));
        }
        let e = i64::from(flip(exp)) + MIN_EXP + 1;
        text.push_str(&format!("e{e}"));
        let n = Number::parse(&text).map_err(|_| bad())?;
        // Only the canonical encoding is accepted (e.g. no trailing "00" pair).
        let mut again = Vec::with_capacity(b.len());
        n.to_order_bytes(&mut again);
        if again != b {
            return Err(bad());
        }
        Ok(n)
    }
}

/// First byte of a number's order-preserving form: negatives < zero < positives.
const ORDER_NEG: u8 = 0x01;
const ORDER_ZERO: u8 = 0x02;
const ORDER_POS: u8 = 0x03;

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
        assert_eq!(
            Number::parse("1e0000000000000000002").unwrap().as_str(),
            "100"
        );
        assert!(Number::parse("1e0000001000000").is_err());
    }

    #[test]
    fn order_bytes_order_as_numbers() {
        let sorted = [
            "-9.99e125",
            "-1e10",
            "-10",
            "-2",
            "-1.5",
            "-1.01",
            "-1",
            "-0.101",
            "-0.1",
            "-1e-130",
            "0",
            "1e-130",
            "0.1",
            "0.101",
            "1",
            "1.01",
            "1.5",
            "2",
            "10",
            "10.5",
            "11",
            "1e10",
            "123456789012345678901234567890123456.78",
            "9.99e125",
        ];
        let enc = |s: &str| {
            let mut v = Vec::new();
            Number::parse(s).unwrap().to_order_bytes(&mut v);
            v
        };
        for w in sorted.windows(2) {
            assert!(enc(w[0]) < enc(w[1]), "{} !< {}", w[0], w[1]);
        }
        for s in sorted {
            let n = Number::parse(s).unwrap();
            assert_eq!(Number::from_order_bytes(&enc(s)).unwrap(), n, "{s}");
            assert!(Number::is_order_bytes(&enc(s)), "{s}");
            // Every one-byte change: the quick check agrees with decoding.
            let e = enc(s);
            for i in 0..e.len() {
                for v in 0..=255u8 {
                    let mut m = e.clone();
                    m[i] = v;
                    assert_eq!(
                        Number::is_order_bytes(&m),
                        Number::from_order_bytes(&m).is_ok(),
                        "{m:?}"
                    );
                }
            }
        }
        for junk in [
            &[][..],
            &[0],
            &[4],
            &[3],
            &[3, 130],
            &[3, 130, 0],
            &[3, 130, 2, 1],
            &[3, 130, 101, 0],
            &[2, 0],
        ] {
            assert!(Number::from_order_bytes(junk).is_err(), "{junk:?}");
            assert!(!Number::is_order_bytes(junk), "{junk:?}");
        }
        assert_eq!(Number::parse("12300").unwrap().significant_digits(), 3);
        assert_eq!(Number::parse("-0.00120").unwrap().significant_digits(), 2);
        assert_eq!(Number::parse("0").unwrap().significant_digits(), 1);
    }

    proptest::proptest! {
        #[test]
        fn the_quick_check_agrees_with_decoding(b in proptest::collection::vec(
            proptest::prop_oneof![proptest::prelude::any::<u8>(), 0u8..4, 250u8..=255], 0..24)) {
            proptest::prop_assert_eq!(Number::is_order_bytes(&b), Number::from_order_bytes(&b).is_ok(), "{:?}", b);
        }

        #[test]
        fn order_bytes_match_decimal_order(a in -10_000_000i64..10_000_000, b in -10_000_000i64..10_000_000,
                                           sa in 0u32..12, sb in 0u32..12) {
            // a / 10^sa vs b / 10^sb, compared exactly in integers.
            let (x, y) = (format!("{a}e-{sa}"), format!("{b}e-{sb}"));
            let want = (i128::from(a) * 10i128.pow(sb)).cmp(&(i128::from(b) * 10i128.pow(sa)));
            let (mut ex, mut ey) = (Vec::new(), Vec::new());
            let (nx, ny) = (Number::parse(&x).unwrap(), Number::parse(&y).unwrap());
            nx.to_order_bytes(&mut ex);
            ny.to_order_bytes(&mut ey);
            proptest::prop_assert_eq!(ex.cmp(&ey), want);
            proptest::prop_assert_eq!(Number::from_order_bytes(&ex).unwrap(), nx);
        }
    }

    #[test]
    fn canonical_is_idempotent() {
        for s in ["-0.001", "42", "9.99e125", "1e-130"] {
            let n = Number::parse(s).unwrap();
            assert_eq!(Number::parse(n.as_str()).unwrap(), n);
        }
    }
}
