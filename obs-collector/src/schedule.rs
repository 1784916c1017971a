//! The weekly report's schedule: a weekday and a local time in a time zone (`Mon 09:00`,
//! `Europe/Berlin`), as wall-clock time, so the report comes at 09:00 on both sides of a
//! daylight-saving change. The time zone database is bundled (jiff's), so a container without
//! `/usr/share/zoneinfo` schedules the same.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// When the report is due each week.
#[derive(Debug, Clone, PartialEq)]
pub struct Weekly {
    weekday: Weekday,
    hour: i8,
    minute: i8,
    tz: TimeZone,
    /// As configured, for messages.
    text: String,
}

/// A schedule that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSchedule(pub String);

impl std::fmt::Display for BadSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadSchedule {}

impl Weekly {
    /// `Mon 09:00` (a weekday's first three letters, then 24-hour `HH:MM`) in `timezone` (an
    /// IANA name such as `Europe/Berlin`, or `UTC`).
    pub fn parse(schedule: &str, timezone: &str) -> Result<Self, BadSchedule> {
        let bad = || {
            BadSchedule(format!(
                "schedule {schedule:?} is not a weekday and a time such as \"Mon 09:00\""
            ))
        };
        let (day, time) = schedule.trim().split_once(' ').ok_or_else(bad)?;
        let weekday = match day.to_ascii_lowercase().get(..3) {
            Some("mon") => Weekday::Monday,
            Some("tue") => Weekday::Tuesday,
            Some("wed") => Weekday::Wednesday,
            Some("thu") => Weekday::Thursday,
            Some("fri") => Weekday::Friday,
            Some("sat") => Weekday::Saturday,
            Some("sun") => Weekday::Sunday,
            _ => return Err(bad()),
        };
        let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
        let hour: i8 = h
            .parse()
            .ok()
            .filter(|h| (0..24).contains(h))
            .ok_or_else(bad)?;
        let minute: i8 = m
            .parse()
            .ok()
            .filter(|m| (0..60).contains(m))
            .ok_or_else(bad)?;
        let tz = TimeZone::get(timezone)
            .map_err(|_| BadSchedule(format!("timezone {timezone:?} is not a known time zone")))?;
        Ok(Self {
            weekday,
            hour,
            minute,
            tz,
            text: format!("{} {timezone}", schedule.trim()),
        })
    }

    /// The schedule as configured (`Mon 09:00 Europe/Berlin`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The latest scheduled time at or before `now_ms` (milliseconds since the epoch). A local
    /// time skipped by a daylight-saving change is taken as the time after the gap, a repeated
    /// one as its first occurrence.
    pub fn last_slot(&self, now_ms: i64) -> i64 {
        let Ok(now) = Timestamp::from_millisecond(now_ms) else {
            return now_ms;
        };
        let today = now.to_zoned(self.tz.clone()).date();
        let back = (today.weekday().to_monday_zero_offset() - self.weekday.to_monday_zero_offset())
            .rem_euclid(7);
        let mut day = today;
        for _ in 0..back {
            day = day.yesterday().unwrap_or(day);
        }
        let slot = self.at(day);
        if slot <= now_ms {
            return slot;
        }
        let mut week_before = day;
        for _ in 0..7 {
            week_before = week_before.yesterday().unwrap_or(week_before);
        }
        self.at(week_before)
    }

    /// The scheduled local time on `day`, in milliseconds.
    fn at(&self, day: Date) -> i64 {
        day.at(self.hour, self.minute, 0, 0)
            .to_zoned(self.tz.clone())
            .map_or(i64::MIN, |z| z.timestamp().as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        crate::time::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn the_last_slot_is_the_weekday_at_local_time() {
        let s = Weekly::parse("Mon 09:00", "Europe/Berlin").unwrap();
        // Monday 2026-12-07, 09:00 CET is 08:00 UTC.
        assert_eq!(
            s.last_slot(ms("2026-12-07T08:00:00Z")),
            ms("2026-12-07T08:00:00Z")
        );
        assert_eq!(
            s.last_slot(ms("2026-12-07T07:59:59Z")),
            ms("2026-11-30T08:00:00Z")
        );
        assert_eq!(
            s.last_slot(ms("2026-12-10T12:00:00Z")),
            ms("2026-12-07T08:00:00Z")
        );
        // In summer, 09:00 CEST is 07:00 UTC.
        assert_eq!(
            s.last_slot(ms("2026-07-08T00:00:00Z")),
            ms("2026-07-06T07:00:00Z")
        );
        assert!(Weekly::parse("Monday 9", "UTC").is_err());
        assert!(Weekly::parse("Mon 25:00", "UTC").is_err());
        assert!(Weekly::parse("Mon 09:00", "Mars/Olympus").is_err());
    }

    /// Every minute over three weeks around a daylight-saving change, the slot changes once a
    /// week, always at 09:00 local: one report a week.
    #[test]
    fn one_slot_a_week_across_daylight_saving_changes() {
        for (tz, from) in [
            ("Europe/Berlin", "2027-03-15T00:00:00Z"), // CET -> CEST on 2027-03-28
            ("Europe/Berlin", "2026-10-12T00:00:00Z"), // CEST -> CET on 2026-10-25
            ("America/New_York", "2027-03-01T00:00:00Z"),
        ] {
            let s = Weekly::parse("Mon 09:00", tz).unwrap();
            let start = ms(from);
            let mut slots = Vec::new();
            let mut t = start;
            while t < start + 21 * 86_400_000 {
                let slot = s.last_slot(t);
                if slots.last() != Some(&slot) {
                    slots.push(slot);
                }
                t += 60_000;
            }
            // The slot before the start, then one per Monday.
            assert_eq!(slots.len(), 4, "{tz}: {slots:?}");
            for slot in &slots {
                let local = Timestamp::from_millisecond(*slot)
                    .unwrap()
                    .to_zoned(TimeZone::get(tz).unwrap());
                assert_eq!(
                    (local.weekday(), local.hour(), local.minute()),
                    (Weekday::Monday, 9, 0)
                );
            }
        }
    }

    #[test]
    fn a_time_skipped_by_the_change_comes_after_the_gap() {
        // 02:30 on Sunday 2027-03-28 does not exist in Berlin.
        let s = Weekly::parse("Sun 02:30", "Europe/Berlin").unwrap();
        let slot = s.last_slot(ms("2027-03-28T12:00:00Z"));
        assert_eq!(slot, ms("2027-03-28T01:30:00Z"));
    }
}
