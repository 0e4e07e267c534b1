//! The decoder's fast path: one hand-written pass over payloads of the common
//! shape (a flat object whose keys and strings hold no escapes, numbers that
//! parse exactly in one step, ISO-8601 UTC timestamps), filling the same slots
//! as the serde path. Anything else (nesting, escapes, long or unusual
//! numbers, any syntax error) is declined and left to the serde path, which
//! gives the result or the exact error; so this path only answers for
//! documents on which both agree.

use std::borrow::Cow;

use super::Raw;

/// The most slots (entity fields, timestamp, inputs) the fast path fills;
/// schemas with more take the serde path.
pub(super) const MAX_SLOTS: usize = 16;

/// Digits a number may have here: the significand then stays below 10^18,
/// exact in a `u64` and an `i64`.
const MAX_DIGITS: usize = 18;

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Scans `payload` as a flat JSON object, handing each entry to `entry` in
/// order. `None`: not of the fast shape (or not valid JSON), and the entries
/// handed so far mean nothing; the caller decodes with serde instead.
pub(super) fn scan<'a>(payload: &'a [u8], mut entry: impl FnMut(&str, &Raw<'a>)) -> Option<()> {
    let mut c = Cursor { b: payload, i: 0 };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_none() {
        loop {
            c.eat(b'"')?;
            let key = c.string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let value = c.value()?;
            entry(key, &value);
            c.ws();
            match c.next()? {
                b',' => c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == payload.len()).then_some(())
}

/// The high bit of each byte of a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// 1 in each byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;

/// A byte that ends the fast path's reading of a string: its closing quote,
/// or a backslash or control character, which the fast path declines.
fn is_stop(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The high bit of each stop byte ([`is_stop`]) of a little-endian word of
/// string bytes, and possibly of bytes above the first one (the classic
/// zero-byte test: a borrow runs only upwards from a flagged byte), so the
/// lowest flagged byte is exactly the first stop byte.
fn stop_bytes(w: u64) -> u64 {
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGH_BITS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH_BITS;
    zero_in(w ^ (ONES * u64::from(b'"'))) | zero_in(w ^ (ONES * u64::from(b'\\'))) | below_space
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// The rest of a string whose opening quote was read, if it holds no
    /// escape or control character and is valid UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        let rest = &self.b[self.i..];
        let mut high = 0;
        // Eight bytes at a time: the first stop byte of a word is its lowest
        // flagged byte; the last few bytes of the payload go one by one.
        let mut start = 0;
        let len = loop {
            let Some(word) = rest.get(start..start + 8) else {
                let tail = rest[start..].iter().position(|&c| is_stop(c))?;
                high |= rest[start..start + tail].iter().fold(0, |h, &c| h | c) & 0x80;
                break start + tail;
            };
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let stops = stop_bytes(w);
            if stops == 0 {
                high |= u8::from(w & HIGH_BITS != 0) << 7;
                start += 8;
                continue;
            }
            let before = stops.trailing_zeros() / 8;
            let below = (1u64 << (before * 8)).wrapping_sub(1);
            high |= u8::from(w & below & HIGH_BITS != 0) << 7;
            break start + before as usize;
        };
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        let text = &rest[..len];
        if high == 0 {
            // SAFETY: every byte is below 0x80: ASCII, hence UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(text) })
        } else {
            std::str::from_utf8(text).ok()
        }
    }

    fn value(&mut self) -> Option<Raw<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(|s| Raw::Str(Cow::Borrowed(s)))
            }
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Raw::Bool(true)),
            b'f' => self.literal(b"false", Raw::Bool(false)),
            b'n' => self.literal(b"null", Raw::Null),
            _ => None,
        }
    }

    fn literal(&mut self, text: &[u8], value: Raw<'a>) -> Option<Raw<'a>> {
        self.b[self.i..].starts_with(text).then(|| {
            self.i += text.len();
            value
        })
    }

    /// A number as serde_json reads it: an integer without fraction or
    /// exponent is an `i64`; otherwise a float, here only when the significand
    /// is below 2^53 and the decimal exponent within ±22, where one
    /// multiplication or division by an exact power of ten is correctly
    /// rounded (serde_json computes exactly that, bit for bit). `-0`, which
    /// serde_json reads as the float -0.0, is declined.
    fn number(&mut self) -> Option<Raw<'a>> {
        let negative = self.eat(b'-').is_some();
        let mut significand: u64 = 0;
        let mut digits = 0;
        let mut digit = |c: u8, significand: &mut u64| {
            digits += 1;
            *significand = *significand * 10 + u64::from(c - b'0');
            digits <= MAX_DIGITS
        };
        match self.next()? {
            b'0' => {
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
            }
            c @ b'1'..=b'9' => {
                digit(c, &mut significand);
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    self.i += 1;
                    if !digit(c, &mut significand) {
                        return None;
                    }
                }
            }
            _ => return None,
        }
        let mut exponent: i32 = 0;
        let mut float = false;
        if self.eat(b'.').is_some() {
            float = true;
            let start = self.i;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                if !digit(c, &mut significand) {
                    return None;
                }
                exponent -= 1;
            }
            if self.i == start {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            let negative_exponent = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let start = self.i;
            let mut e: i32 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                if self.i - start > 3 {
                    return None;
                }
                e = e * 10 + i32::from(c - b'0');
            }
            if self.i == start {
                return None;
            }
            exponent += if negative_exponent { -e } else { e };
        }
        if !float {
            // Below 10^18: an exact i64 either way.
            let n = significand as i64;
            return match (negative, n) {
                (true, 0) => None,
                (true, n) => Some(Raw::Int(-n)),
                (false, n) => Some(Raw::Int(n)),
            };
        }
        if significand > 1 << 53 || exponent.unsigned_abs() as usize >= POW10.len() {
            return None;
        }
        let magnitude = significand as f64;
        let pow = POW10[exponent.unsigned_abs() as usize];
        let f = if exponent >= 0 {
            magnitude * pow
        } else {
            magnitude / pow
        };
        Some(Raw::Float(if negative { -f } else { f }))
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (a
/// fraction of 1 to 9 digits, truncated to milliseconds as chrono does); `None`
/// for any other form or an invalid date or time, which the general parser
/// then handles.
pub(super) fn utc_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[s.len() - 1] != b'Z' {
        return None;
    }
    let num = |at: usize, width: usize| -> Option<i64> {
        let mut n = 0;
        for &c in s.get(at..at + width)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| s[at] != c) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let millis = match s.len() - 20 {
        0 => 0,
        n if (2..=10).contains(&n) && s[19] == b'.' => {
            let fraction = num(20, n - 1)?;
            let scale = 10_i64.pow((n - 1) as u32);
            fraction * 1000 / scale
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date, by the era arithmetic
/// of 400-year cycles whose years start on 1 March (the inverse of
/// `civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word test against a byte-by-byte search for the first stop byte,
    /// on words mixing the bytes around each boundary (control characters,
    /// space, quote, backslash, DEL, the high half).
    #[test]
    fn the_word_test_finds_the_first_stop_byte() {
        let bytes = [
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, b'a', 0x7f, 0x80, 0x9f,
            0xa0, 0xdc, 0xe2, 0xff,
        ];
        let mut state: u64 = 0x853c_49e6_748f_ea9b;
        for _ in 0..200_000 {
            let mut word = [0u8; 8];
            for b in &mut word {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = bytes[(state % bytes.len() as u64) as usize];
            }
            let first = word
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            let stops = stop_bytes(u64::from_le_bytes(word));
            let got = (stops != 0).then(|| stops.trailing_zeros() as usize / 8);
            assert_eq!(got, first, "{word:x?}");
        }
    }
}
