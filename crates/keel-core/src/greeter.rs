//! The birthday greeter's rules (SPEC §2): who may be greeted, which dates of birth
//! are real, and how many days remain until the next birthday.

use jiff::civil::Date;

use crate::FieldError;

/// 1–64 Unicode alphabetic characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let count = raw.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(FieldError::new(
                "/username",
                format!("username must be 1 to {} letters", Self::MAX_CHARS),
            ));
        }
        if !raw.chars().all(char::is_alphabetic) {
            return Err(FieldError::new(
                "/username",
                "username may contain letters only",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A real calendar date written exactly `YYYY-MM-DD`, strictly before today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(Date);

impl DateOfBirth {
    pub fn parse(raw: &str, today: Date) -> Result<Self, FieldError> {
        let date = parse_iso_date(raw).ok_or_else(|| {
            FieldError::new(
                "/dateOfBirth",
                "dateOfBirth must be a real calendar date written YYYY-MM-DD",
            )
        })?;
        if date >= today {
            return Err(FieldError::new(
                "/dateOfBirth",
                "dateOfBirth must be before today",
            ));
        }
        Ok(Self(date))
    }

    /// For dates read back from storage, which were parsed on the way in.
    pub fn from_stored(date: Date) -> Self {
        Self(date)
    }

    pub fn date(self) -> Date {
        self.0
    }
}

/// Exactly four year digits, two month digits, two day digits; a date that exists.
fn parse_iso_date(raw: &str) -> Option<Date> {
    let bytes = raw.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let year: i16 = raw[0..4].parse().ok()?;
    let month: i8 = raw[5..7].parse().ok()?;
    let day: i8 = raw[8..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

/// The birthday in `year`: 29 February falls on 28 February in common years.
pub fn birthday_in_year(born: Date, year: i16) -> Date {
    let day = born.day().min(days_in_month(year, born.month()));
    Date::new(year, born.month(), day).expect("day clamped into the month")
}

fn days_in_month(year: i16, month: i8) -> i8 {
    Date::new(year, month, 1)
        .expect("month of a valid date")
        .days_in_month()
}

/// Whole calendar days from `today` to the next birthday; 0 means today is the day.
pub fn days_until_birthday(born: Date, today: Date) -> i32 {
    let this_year = birthday_in_year(born, today.year());
    if this_year >= today {
        return day_number(this_year) - day_number(today);
    }
    if today.year() == 9999 {
        // Year 10000 is past what a `Date` holds; it is a leap year like 2000 and
        // the Gregorian calendar repeats every 400 years, so shift by 8000 years.
        let shifted = birthday_in_year(born, 2000);
        return day_number(shifted) + DAYS_IN_8000_YEARS - day_number(today);
    }
    day_number(birthday_in_year(born, today.year() + 1)) - day_number(today)
}

/// 20 Gregorian cycles of 146,097 days.
const DAYS_IN_8000_YEARS: i32 = 20 * 146_097;

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm);
/// exact and free of time-zone questions.
fn day_number(date: Date) -> i32 {
    let (y, m, d) = (
        i32::from(date.year()),
        i32::from(date.month()),
        i32::from(date.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The greeting SPEC §2 prescribes, word for word.
pub fn greeting(username: &Username, born: DateOfBirth, today: Date) -> String {
    match days_until_birthday(born.date(), today) {
        0 => format!("Hello, {}! Happy birthday!", username.as_str()),
        n => format!(
            "Hello, {}! Your birthday is in {} day(s)",
            username.as_str(),
            n
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    #[test]
    fn usernames() {
        for ok in ["a", "Alice", "Zoë", "Ñandú", "日本", &"x".repeat(64)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "al1ce",
            "a b",
            "a-b",
            "a_b",
            "😀",
            &"x".repeat(65),
            "a.",
            " a",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_of_birth() {
        let today = date(2024, 6, 15);
        for ok in ["2000-01-01", "2020-02-29", "2024-06-14", "0001-01-01"] {
            assert!(DateOfBirth::parse(ok, today).is_ok(), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "2024-06-15",
            "2024-06-16",
            "3000-01-01",
            "2000-1-01",
            "2000-01-1",
            "20000-01-01",
            "2000/01/01",
            "2000-13-01",
            "2000-00-10",
            "2000-04-31",
            "",
            "2000-01-01T00:00:00",
            " 2000-01-01",
            "+200-01-01",
            "２０００-01-01",
        ] {
            assert!(DateOfBirth::parse(bad, today).is_err(), "{bad}");
        }
    }

    #[test]
    fn leap_day_birthdays_fall_on_28_february_in_common_years() {
        let born = date(2000, 2, 29);
        assert_eq!(days_until_birthday(born, date(2023, 2, 28)), 0);
        assert_eq!(days_until_birthday(born, date(2023, 2, 27)), 1);
        assert_eq!(days_until_birthday(born, date(2023, 3, 1)), 365); // to 2024-02-29
        assert_eq!(days_until_birthday(born, date(2024, 2, 28)), 1);
        assert_eq!(days_until_birthday(born, date(2024, 2, 29)), 0);
        assert_eq!(days_until_birthday(born, date(2024, 3, 1)), 364); // to 2025-02-28
    }

    #[test]
    fn year_ends() {
        assert_eq!(days_until_birthday(date(1990, 1, 1), date(2023, 12, 31)), 1);
        assert_eq!(
            days_until_birthday(date(1990, 12, 31), date(2024, 1, 1)),
            365
        );
        assert_eq!(
            days_until_birthday(date(1990, 12, 31), date(2023, 1, 1)),
            364
        );
        assert_eq!(days_until_birthday(date(1990, 1, 1), date(2024, 1, 1)), 0);
    }

    #[test]
    fn greetings_word_for_word() {
        let name = Username::parse("Ana").unwrap();
        let born = DateOfBirth::from_stored(date(1990, 6, 16));
        assert_eq!(
            greeting(&name, born, date(2024, 6, 15)),
            "Hello, Ana! Your birthday is in 1 day(s)"
        );
        assert_eq!(
            greeting(&name, born, date(2024, 6, 16)),
            "Hello, Ana! Happy birthday!"
        );
    }

    /// Walks every day of a leap year and of a common year, for a birth date on
    /// every day of a leap year, against a naive day-by-day count.
    #[test]
    fn every_day_of_a_leap_and_a_common_year() {
        for year in [2023i16, 2024] {
            let mut born = date(2000, 1, 1);
            while born.year() == 2000 {
                let mut today = date(year, 1, 1);
                while today.year() == year {
                    assert_eq!(
                        days_until_birthday(born, today),
                        naive_days_until(born, today),
                        "born {born}, today {today}"
                    );
                    today = today.tomorrow().unwrap();
                }
                born = born.tomorrow().unwrap();
            }
        }
    }

    /// Steps one day at a time until the (clamped) birthday comes round.
    fn naive_days_until(born: Date, today: Date) -> i32 {
        let mut day = today;
        let mut n = 0;
        loop {
            let is_birthday = day.month() == born.month()
                && (day.day() == born.day()
                    || (born.month() == 2
                        && born.day() == 29
                        && day.day() == 28
                        && !day.in_leap_year()));
            if is_birthday {
                return n;
            }
            day = day.tomorrow().unwrap();
            n += 1;
        }
    }

    fn any_date() -> impl Strategy<Value = Date> {
        (1i16..=9998, 1i8..=12, 1i8..=31)
            .prop_filter_map("real date", |(y, m, d)| Date::new(y, m, d).ok())
    }

    proptest! {
        #[test]
        fn next_birthday_is_within_a_year_and_lands_on_the_birthday(
            born in any_date(), today in any_date()
        ) {
            let n = days_until_birthday(born, today);
            prop_assert!((0..=365).contains(&n));
            let next = today.checked_add(jiff::Span::new().days(i64::from(n))).unwrap();
            prop_assert_eq!(next.month(), born.month());
            prop_assert_eq!(next, birthday_in_year(born, next.year()));
        }

        #[test]
        fn printed_dates_parse_back(born in any_date()) {
            let raw = format!("{:04}-{:02}-{:02}", born.year(), born.month(), born.day());
            let parsed = DateOfBirth::parse(&raw, date(9999, 12, 31)).unwrap();
            prop_assert_eq!(parsed.date(), born);
        }
    }

    #[test]
    fn the_last_representable_year_counts_into_year_ten_thousand() {
        // Found by fuzzing (FUZZING.md F1): this panicked.
        let born = date(3365, 1, 1);
        assert_eq!(days_until_birthday(born, date(9999, 4, 15)), 261);
        assert_eq!(
            days_until_birthday(date(2000, 2, 29), date(9999, 12, 31)),
            60
        );
        assert_eq!(days_until_birthday(born, date(9999, 1, 1)), 0);
    }
}
