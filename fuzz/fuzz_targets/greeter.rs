//! `keel_core::greeter`: usernames, dates of birth and days until the next birthday.
#![no_main]

use arbitrary::Arbitrary;
use jiff::civil::Date;
use keel_core::greeter::{birthday_in_year, days_until_birthday, DateOfBirth, Username};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    username: String,
    date_of_birth: String,
    /// Today's date as (year, month, day); folded into jiff's range below.
    today: (i16, u8, u8),
    /// A date of birth built from numbers, so that valid dates are common.
    born: (u16, u8, u8),
}

/// Any date jiff can represent (-9999-01-01 ..= 9999-12-31).
fn fold_date(y: i32, m: u8, d: u8) -> Date {
    let y = (y.rem_euclid(19_999) - 9_999) as i16;
    let m = (m % 12 + 1) as i8;
    let first = Date::new(y, m, 1).unwrap();
    let d = (d % first.days_in_month() as u8 + 1) as i8;
    Date::new(y, m, d).unwrap()
}

fn check_username(raw: &str) {
    let n = raw.chars().count();
    let expected = (1..=64).contains(&n) && raw.chars().all(char::is_alphabetic);
    match Username::parse(raw) {
        Ok(name) => {
            assert!(expected, "accepted username {raw:?}");
            assert_eq!(name.as_str(), raw);
        }
        Err(e) => {
            assert!(!expected, "refused username {raw:?}: {e}");
            assert_eq!(e.pointer, "/username");
        }
    }
}

/// What the SPEC says a date of birth is, stated with jiff's own parser/printer.
fn oracle_date(raw: &str, today: Date) -> Option<Date> {
    if raw.len() != 10 {
        return None;
    }
    let date: Date = raw.parse().ok()?;
    (date.to_string() == raw && date < today).then_some(date)
}

fn check_birthday(born: Date, today: Date) {
    let n = days_until_birthday(born, today);
    assert!(
        (0..=365).contains(&n),
        "days_until_birthday({born}, {today}) = {n}"
    );
    // Independently: jiff's calendar arithmetic lands on the (clamped) birthday,
    // and there is no birthday between today and then.
    let Ok(next) = today.checked_add(jiff::Span::new().days(i64::from(n))) else {
        // In year 10000, which a date cannot hold: the rest of 9999, then the
        // birthday's day of the year in a leap year (the calendar repeats every
        // 400 years, so 10000 is like 2000).
        assert_eq!(today.year(), 9999, "born {born}, today {today}, n {n}");
        let rest = i32::from(today.days_in_year() - today.day_of_year());
        let day = i32::from(birthday_in_year(born, 2000).day_of_year());
        assert_eq!(n, rest + day, "born {born}, today {today}");
        return;
    };
    assert_eq!(
        next.month(),
        born.month(),
        "born {born}, today {today}, n {n}"
    );
    assert_eq!(next, birthday_in_year(born, next.year()));
    if n > 0 && next.year() == today.year() {
        assert!(birthday_in_year(born, today.year()) == next);
    }
    if next.year() > today.year() {
        assert!(birthday_in_year(born, today.year()) < today);
    }
    assert_eq!(n == 0, birthday_in_year(born, today.year()) == today);
}

fuzz_target!(|input: Input| {
    check_username(&input.username);

    let today = fold_date(input.today.0.into(), input.today.1, input.today.2);
    let built = fold_date(input.born.0.into(), input.born.1, input.born.2);
    let built_text = format!(
        "{:04}-{:02}-{:02}",
        built.year(),
        built.month(),
        built.day()
    );

    for raw in [input.date_of_birth.as_str(), built_text.as_str()] {
        let parsed = DateOfBirth::parse(raw, today);
        let expected = oracle_date(raw, today);
        match parsed {
            Ok(born) => {
                assert_eq!(
                    Some(born.date()),
                    expected,
                    "accepted {raw:?} (today {today})"
                );
                // Formats back to exactly the input.
                let back = format!(
                    "{:04}-{:02}-{:02}",
                    born.date().year(),
                    born.date().month(),
                    born.date().day()
                );
                assert_eq!(back, raw);
                assert!(born.date() < today);
                // Year 9999 after the birthday (F1 in FUZZING.md, fixed) included.
                check_birthday(born.date(), today);
            }
            Err(e) => {
                assert_eq!(expected, None, "refused {raw:?} (today {today}): {e}");
                assert_eq!(e.pointer, "/dateOfBirth");
            }
        }
    }
});
