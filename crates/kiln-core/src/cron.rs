//! Cron schedules, as Buildbot's `Nightly` scheduler writes them, on calendar ("civil") times.
//!
//! The core knows no time zones: a [`Calendar`] supplied by the caller turns timestamps into civil
//! times and back. [`Utc`] is the calendar without offsets, computed here, for tests and for
//! masters configured in UTC.
//!
//! The fields follow cron: minute 0-59, hour 0-23, day of month 1-31 (or `L`, the last day),
//! month 1-12 (or `jan`…`dec`), day of week 0-7 with Sunday as 0 and 7 (or `sun`…`sat`); each is
//! `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma-separated list of these.
//! When both the day of month and the day of week are restricted, a day matching either is
//! chosen, as in cron.

/// A calendar time to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
}

impl Civil {
    /// The day of the week, Sunday = 0.
    pub fn weekday(&self) -> u8 {
        // Days since 1970-01-01, which was a Thursday.
        let days = days_from_civil(self.year, self.month, self.day);
        (days + 4).rem_euclid(7) as u8
    }

    fn start_of_next_month(self) -> Civil {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Civil {
            year,
            month,
            day: 1,
            hour: 0,
            minute: 0,
        }
    }

    fn start_of_next_day(self) -> Civil {
        if self.day >= days_in_month(self.year, self.month) {
            return self.start_of_next_month();
        }
        Civil {
            day: self.day + 1,
            hour: 0,
            minute: 0,
            ..self
        }
    }

    fn start_of_next_hour(self) -> Civil {
        if self.hour >= 23 {
            return self.start_of_next_day();
        }
        Civil {
            hour: self.hour + 1,
            minute: 0,
            ..self
        }
    }

    fn next_minute(self) -> Civil {
        if self.minute >= 59 {
            return self.start_of_next_hour();
        }
        Civil {
            minute: self.minute + 1,
            ..self
        }
    }
}

/// Converts between timestamps (epoch seconds) and civil times in one time zone.
pub trait Calendar {
    /// The civil time at `timestamp`, to the minute (seconds are dropped).
    fn civil(&self, timestamp: i64) -> Civil;
    /// The timestamp of a civil time. A time that does not exist (skipped by a daylight-saving
    /// change) maps to the first instant after the gap; a repeated one to its first occurrence.
    fn timestamp(&self, civil: Civil) -> i64;
}

/// Coordinated Universal Time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utc;

impl Calendar for Utc {
    fn civil(&self, timestamp: i64) -> Civil {
        let days = timestamp.div_euclid(86_400);
        let secs = timestamp.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: ((secs % 3600) / 60) as u8,
        }
    }

    fn timestamp(&self, c: Civil) -> i64 {
        days_from_civil(c.year, c.month, c.day) * 86_400
            + i64::from(c.hour) * 3600
            + i64::from(c.minute) * 60
    }
}

pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// One field of a cron line: the set of values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// Bit n is set when value n is allowed.
    bits: u64,
    /// Written as `*` (or `*/1`): unrestricted, which matters for the day rule.
    star: bool,
}

impl Field {
    fn has(&self, v: u8) -> bool {
        self.bits & (1u64 << v) != 0
    }
}

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minute: Field,
    hour: Field,
    day_of_month: Field,
    /// `L` in the day of month: the last day of each month.
    last_day: bool,
    month: Field,
    day_of_week: Field,
}

/// The search for a next time gives up after this many years: `30 2 * *` (February 30th) never
/// comes.
const SEARCH_YEARS: i32 = 30;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses the five fields; the error names the field and what is wrong with it.
    pub fn parse(
        minute: &str,
        hour: &str,
        day_of_month: &str,
        month: &str,
        day_of_week: &str,
    ) -> Result<Cron, String> {
        let (dom, last_day) = {
            let parts: Vec<&str> = day_of_month.split(',').map(str::trim).collect();
            let last = parts.iter().any(|p| p.eq_ignore_ascii_case("l"));
            let rest: Vec<&str> = parts
                .into_iter()
                .filter(|p| !p.eq_ignore_ascii_case("l"))
                .collect();
            let field = if rest.is_empty() {
                Field {
                    bits: 0,
                    star: false,
                }
            } else {
                parse_field(&rest.join(","), 1, 31, &[], "dayOfMonth")?
            };
            (field, last)
        };
        let mut dow = parse_field(day_of_week, 0, 7, &DAYS, "dayOfWeek")?;
        // 7 is Sunday too.
        if dow.has(7) {
            dow.bits |= 1;
            dow.bits &= !(1u64 << 7);
        }
        Ok(Cron {
            minute: parse_field(minute, 0, 59, &[], "minute")?,
            hour: parse_field(hour, 0, 23, &[], "hour")?,
            day_of_month: dom,
            last_day,
            month: parse_field(month, 1, 12, &MONTHS, "month")?,
            day_of_week: dow,
        })
    }

    fn day_matches(&self, c: &Civil) -> bool {
        let dom = self.day_of_month.has(c.day)
            || (self.last_day && c.day == days_in_month(c.year, c.month));
        let dow = self.day_of_week.has(c.weekday());
        let dom_star = self.day_of_month.star && !self.last_day;
        match (dom_star, self.day_of_week.star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            // Both restricted: either will do, as in cron.
            (false, false) => dom || dow,
        }
    }

    /// Whether the schedule includes this minute.
    pub fn matches(&self, c: &Civil) -> bool {
        self.month.has(c.month)
            && self.day_matches(c)
            && self.hour.has(c.hour)
            && self.minute.has(c.minute)
    }

    /// The first civil minute strictly after `after` that the schedule includes, if there is one
    /// within thirty years.
    pub fn next_after(&self, after: Civil) -> Option<Civil> {
        let limit = after.year + SEARCH_YEARS;
        let mut c = after.next_minute();
        while c.year <= limit {
            if !self.month.has(c.month) {
                c = c.start_of_next_month();
            } else if !self.day_matches(&c) {
                c = c.start_of_next_day();
            } else if !self.hour.has(c.hour) {
                c = c.start_of_next_hour();
            } else if !self.minute.has(c.minute) {
                c = c.next_minute();
            } else {
                return Some(c);
            }
        }
        None
    }

    /// The first timestamp strictly after `after` that the schedule includes, in `calendar`'s
    /// time zone.
    pub fn next_timestamp(&self, calendar: &dyn Calendar, after: i64) -> Option<i64> {
        let mut civil = calendar.civil(after);
        // A civil time can map back to or before `after` around a daylight-saving change; such a
        // time is passed over. The bound keeps a pathological calendar from looping.
        for _ in 0..1000 {
            civil = self.next_after(civil)?;
            let t = calendar.timestamp(civil);
            if t > after {
                return Some(t);
            }
        }
        None
    }
}

fn parse_field(text: &str, min: u8, max: u8, names: &[&str], what: &str) -> Result<Field, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{what} is empty"));
    }
    let bad = |why: String| format!("{what} {text:?}: {why}");
    let value = |s: &str| -> Result<u8, String> {
        let s = s.trim();
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1, day names from 0.
            return Ok(if names.len() == 12 {
                i as u8 + 1
            } else {
                i as u8
            });
        }
        let v: u8 = s
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if v < min || v > max {
            return Err(bad(format!("{v} is outside {min}-{max}")));
        }
        Ok(v)
    };
    let mut field = Field {
        bits: 0,
        star: false,
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(bad("a step of 0".into()));
                }
                (r.trim(), step)
            }
            None => (part.trim(), 1),
        };
        let (lo, hi) = if range == "*" {
            if step == 1 {
                field.star = true;
            }
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(bad(format!("the range {a}-{b} is backwards")));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `a/n` runs from a to the end, as in cron.
            (a, if part.contains('/') { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            field.bits |= 1u64 << v;
            match v.checked_add(step) {
                Some(n) => v = n,
                None => break,
            }
        }
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Civil {
        Civil {
            year,
            month,
            day,
            hour,
            minute,
        }
    }

    fn next(cron: &Cron, from: Civil) -> Civil {
        cron.next_after(from).expect("a next time")
    }

    #[test]
    fn dates_convert_both_ways() {
        for (ts, c) in [
            (0, civil(1970, 1, 1, 0, 0)),
            (951_782_400, civil(2000, 2, 29, 0, 0)),
            (1_700_000_000, civil(2023, 11, 14, 22, 13)),
            (-86_400, civil(1969, 12, 31, 0, 0)),
        ] {
            assert_eq!(Utc.civil(ts), c);
            assert_eq!(Utc.timestamp(c), ts - ts.rem_euclid(60));
        }
        assert_eq!(civil(2026, 11, 21, 0, 0).weekday(), 6, "a Saturday");
        assert_eq!(civil(1970, 1, 4, 0, 0).weekday(), 0, "a Sunday");
    }

    #[test]
    fn the_next_time_is_strictly_later_and_walks_fields() {
        // Buildbot's default Nightly: minute 0 of every hour.
        let hourly = Cron::parse("0", "*", "*", "*", "*").unwrap();
        assert_eq!(
            next(&hourly, civil(2026, 1, 1, 10, 0)),
            civil(2026, 1, 1, 11, 0)
        );
        assert_eq!(
            next(&hourly, civil(2026, 12, 31, 23, 30)),
            civil(2027, 1, 1, 0, 0)
        );
        let nightly = Cron::parse("30", "3", "*", "*", "*").unwrap();
        assert_eq!(
            next(&nightly, civil(2026, 2, 28, 4, 0)),
            civil(2026, 3, 1, 3, 30)
        );
        let steps = Cron::parse("*/15", "9-17/4", "*", "*", "*").unwrap();
        assert_eq!(
            next(&steps, civil(2026, 5, 5, 9, 50)),
            civil(2026, 5, 5, 13, 0)
        );
        assert_eq!(
            next(&steps, civil(2026, 5, 5, 17, 45)),
            civil(2026, 5, 6, 9, 0)
        );
    }

    #[test]
    fn days_of_week_months_and_the_last_day() {
        // Mondays and Fridays at 8:00 (cron numbering, names allowed).
        let weekdays = Cron::parse("0", "8", "*", "*", "mon,5").unwrap();
        // 2026-11-21 is a Saturday.
        assert_eq!(
            next(&weekdays, civil(2026, 11, 21, 0, 0)),
            civil(2026, 11, 23, 8, 0)
        );
        assert_eq!(
            next(&weekdays, civil(2026, 11, 23, 8, 0)),
            civil(2026, 11, 27, 8, 0)
        );
        let sunday = Cron::parse("0", "0", "*", "*", "7").unwrap();
        assert_eq!(
            next(&sunday, civil(2026, 11, 21, 0, 0)),
            civil(2026, 11, 22, 0, 0)
        );
        // Both day fields restricted: either matches.
        let either = Cron::parse("0", "0", "1", "*", "sat").unwrap();
        assert_eq!(
            next(&either, civil(2026, 11, 20, 0, 0)),
            civil(2026, 11, 21, 0, 0)
        );
        assert_eq!(
            next(&either, civil(2026, 11, 28, 0, 0)),
            civil(2026, 12, 1, 0, 0)
        );
        let last = Cron::parse("0", "12", "L", "feb", "*").unwrap();
        assert_eq!(
            next(&last, civil(2027, 3, 1, 0, 0)),
            civil(2028, 2, 29, 12, 0)
        );
        let quarterly = Cron::parse("0", "0", "1", "jan-dec/3", "*").unwrap();
        assert_eq!(
            next(&quarterly, civil(2026, 2, 1, 0, 0)),
            civil(2026, 4, 1, 0, 0)
        );
    }

    #[test]
    fn impossible_schedules_end_and_bad_fields_are_named() {
        let never = Cron::parse("0", "0", "30", "2", "*").unwrap();
        assert_eq!(never.next_after(civil(2026, 1, 1, 0, 0)), None);
        for (fields, says) in [
            (
                ["60", "*", "*", "*", "*"],
                "minute \"60\": 60 is outside 0-59",
            ),
            (
                ["0", "x", "*", "*", "*"],
                "hour \"x\": \"x\" is not a number",
            ),
            (
                ["0", "*", "0", "*", "*"],
                "dayOfMonth \"0\": 0 is outside 1-31",
            ),
            (["0", "*", "*", "*/0", "*"], "month \"*/0\": a step of 0"),
            (["0", "*", "*", "*", "5-2"], "range 5-2 is backwards"),
            (["", "*", "*", "*", "*"], "minute is empty"),
        ] {
            let err =
                Cron::parse(fields[0], fields[1], fields[2], fields[3], fields[4]).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    /// A calendar one hour ahead of UTC that skips 02:00-02:59 on one day, as a daylight-saving
    /// change does.
    struct Gap;
    impl Calendar for Gap {
        fn civil(&self, t: i64) -> Civil {
            Utc.civil(t + 3600)
        }
        fn timestamp(&self, c: Civil) -> i64 {
            let t = Utc.timestamp(c) - 3600;
            if c.year == 2026 && c.month == 3 && c.day == 29 && c.hour == 2 {
                Utc.timestamp(civil(2026, 3, 29, 3, 0)) - 3600
            } else {
                t
            }
        }
    }

    #[test]
    fn timestamps_follow_the_calendar() {
        let at_230 = Cron::parse("30", "2", "*", "*", "*").unwrap();
        let after = Utc.timestamp(civil(2026, 3, 28, 12, 0));
        let t = at_230.next_timestamp(&Gap, after).unwrap();
        assert_eq!(Gap.civil(t), civil(2026, 3, 29, 3, 0), "moved past the gap");
        let t2 = at_230.next_timestamp(&Gap, t).unwrap();
        assert_eq!(Gap.civil(t2), civil(2026, 3, 30, 2, 30));
    }
}
