//! An exact RFC 3339 `date-time` checker (section 5.6), without a calendar
//! crate.
//!
//! Accepted: `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`, with
//! - a real calendar date in the proleptic Gregorian calendar, years
//!   `0000`–`9999`, 29 February only in leap years;
//! - hours `00`–`23` (so `24:00` is refused), minutes `00`–`59`;
//! - seconds `00`–`59`, and `60` (a leap second) only when the time,
//!   converted to UTC with the given offset, is `23:59` — the only minute a
//!   leap second can end. No table of past leap seconds is kept (future ones
//!   are announced only months ahead), so the day itself is not checked;
//! - a fraction of one or more digits after a `.`;
//! - `Z` or an offset `±hh:mm` with hours `00`–`23` and minutes `00`–`59`
//!   (`-00:00`, "local offset unknown", included);
//! - lowercase `t` and `z`, which RFC 3339 section 5.6 explicitly allows.
//!
//! Refused: a space instead of `T` (an application extension, not the
//! grammar), missing seconds or offset, `,` as the fraction separator,
//! basic (undelimited) ISO 8601 forms, and anything trailing.

/// Why a string is not an RFC 3339 date-time.
pub(crate) fn check(text: &str) -> Result<(), &'static str> {
    let mut p = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let year = p
        .digits(4)
        .ok_or("the date must start with a 4-digit year")?;
    p.expect(b'-').ok_or("expected `-` after the year")?;
    let month = p.digits(2).ok_or("expected a 2-digit month")?;
    p.expect(b'-').ok_or("expected `-` after the month")?;
    let day = p.digits(2).ok_or("expected a 2-digit day")?;
    if !(1..=12).contains(&month) {
        return Err("the month is not 01-12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("the day does not exist in that month");
    }
    match p.next() {
        Some(b'T' | b't') => {}
        Some(b' ') => return Err("expected `T` between date and time, not a space"),
        _ => return Err("expected `T` and a time after the date"),
    }
    let hour = p.digits(2).ok_or("expected a 2-digit hour")?;
    p.expect(b':').ok_or("expected `:` after the hour")?;
    let minute = p.digits(2).ok_or("expected 2-digit minutes")?;
    p.expect(b':')
        .ok_or("expected `:` and seconds after the minutes")?;
    let second = p.digits(2).ok_or("expected 2-digit seconds")?;
    if hour > 23 {
        return Err("the hour is not 00-23");
    }
    if minute > 59 {
        return Err("the minutes are not 00-59");
    }
    if second > 60 {
        return Err("the seconds are not 00-60");
    }
    if p.peek() == Some(b'.') {
        p.at += 1;
        let start = p.at;
        while p.peek().is_some_and(|b| b.is_ascii_digit()) {
            p.at += 1;
        }
        if p.at == start {
            return Err("expected digits after `.`");
        }
    }
    let offset_minutes: i64 = match p.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = p.digits(2).ok_or("expected a 2-digit offset hour")?;
            p.expect(b':').ok_or("expected `:` in the offset")?;
            let om = p.digits(2).ok_or("expected 2-digit offset minutes")?;
            if oh > 23 || om > 59 {
                return Err("the offset is not within ±23:59");
            }
            let total = i64::from(oh * 60 + om);
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err("expected `Z` or an offset like `+02:00` after the time"),
    };
    if p.at != p.bytes.len() {
        return Err("unexpected text after the offset");
    }
    if second == 60 {
        let local = i64::from(hour * 60 + minute);
        let utc = (local - offset_minutes).rem_euclid(24 * 60);
        if utc != 23 * 60 + 59 {
            return Err("a leap second (:60) can only occur at 23:59 UTC");
        }
    }
    Ok(())
}

fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let chunk = self.bytes.get(self.at..self.at + n)?;
        let mut value = 0u32;
        for &b in chunk {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.at += n;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_valid_date_times() {
        for ok in [
            "2024-02-29T12:00:00Z",
            "2000-02-29T00:00:00Z",
            "1985-04-12T23:20:50.52Z",
            "1996-12-19T16:39:57-08:00",
            "1990-12-31T23:59:60Z",
            "1990-12-31T15:59:60-08:00",
            "1937-01-01T12:00:27.87+00:20",
            "2024-01-01t00:00:00z",
            "2024-01-01T00:00:00-00:00",
            "0000-02-29T00:00:00Z",
            "9999-12-31T23:59:59.999999999+23:59",
            "2024-04-30T00:00:00Z",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_invalid_date_times() {
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T12:00:60Z",
            "2024-01-01T23:59:60+01:00",
            "2024-01-01T23:59:61Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00,5Z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+01:60",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
            "20240101T000000Z",
            "24-01-01T00:00:00Z",
            "+2024-01-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert!(check(bad).is_err(), "{bad} was accepted");
        }
    }
}
