//! Error-budget and burn-rate arithmetic, exact: objectives are decimals held as
//! integers, every figure is computed in integers and rounded once, at the end,
//! to eight decimal places (a 99.9% objective allows exactly 0.1%, never
//! 0.0009999999999999432). Thresholds are compared without rounding at all.

use std::fmt;

/// A decimal with eight places, held as an integer count of 10⁻⁸.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Fixed8(pub i128);

pub const SCALE: i128 = 100_000_000;

impl Fixed8 {
    pub const fn from_int(n: i128) -> Self {
        Self(n * SCALE)
    }

    /// `numerator / denominator`, rounded half away from zero; 0 for a zero
    /// denominator.
    pub fn ratio(numerator: i128, denominator: i128) -> Self {
        if denominator == 0 {
            return Self(0);
        }
        let (n, d) = (numerator * SCALE, denominator);
        let (q, r) = (n / d, n % d);
        let away = 2 * r.abs() >= d.abs();
        let sign = if (n < 0) != (d < 0) { -1 } else { 1 };
        Self(if away { q + sign } else { q })
    }

    /// The nearest `f64`, found by parsing the exact decimal, so it prints back
    /// as that decimal.
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(0.0)
    }

    /// Parses a plain decimal (`99.9`, `14.4`, `3`) with at most eight places.
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 20 || fraction.len() > 8 {
            return None;
        }
        if !plain(whole) || !plain(fraction) || (digits.contains('.') && fraction.is_empty()) {
            return None;
        }
        let whole: i128 = whole.parse().ok()?;
        let fraction: i128 = format!("{fraction:0<8}").parse().ok()?;
        let value = whole * SCALE + fraction;
        Some(Self(if negative { -value } else { value }))
    }
}

impl fmt::Display for Fixed8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let (whole, fraction) = (self.0.abs() / SCALE, self.0.abs() % SCALE);
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let fraction = format!("{fraction:08}");
        write!(f, "{sign}{whole}.{}", fraction.trim_end_matches('0'))
    }
}

/// Events in a window: how many there were and how many of them were good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
}

impl Counts {
    pub fn bad(self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    pub fn add(&mut self, other: Counts) {
        self.good += other.good;
        self.total += other.total;
    }
}

/// An objective in percent (strictly between 0 and 100, at most six decimal
/// places), held exactly as the percentage × 10⁸.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective(Fixed8);

impl Objective {
    /// From the decimal as written (`"99.9"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = Fixed8::parse(text)
            .ok_or_else(|| format!("{text} is not a percentage with at most six decimal places"))?;
        if value.0 % 100 != 0 {
            return Err(format!("{text} has more than six decimal places"));
        }
        if value <= Fixed8(0) || value >= Fixed8::from_int(100) {
            return Err(format!("{text} is not between 0 and 100 (exclusive)"));
        }
        Ok(Self(value))
    }

    pub fn percent(self) -> Fixed8 {
        self.0
    }

    /// The share of events allowed to be bad, in percent × 10⁸ (`0.1` for 99.9).
    fn allowed(self) -> i128 {
        Fixed8::from_int(100).0 - self.0 .0
    }

    /// The budget in events for `total` events: exact (a decimal with at most
    /// eight places, since the objective has at most six).
    pub fn budget_events(self, total: u64) -> Fixed8 {
        Fixed8(i128::from(total) * self.allowed() / 100)
    }

    /// How fast the budget burns: the bad share over the allowed share (1 means
    /// the budget would be used up exactly at the end of the window).
    pub fn burn_rate(self, counts: Counts) -> Fixed8 {
        Fixed8::ratio(
            i128::from(counts.bad()) * Fixed8::from_int(100).0,
            i128::from(counts.total) * self.allowed(),
        )
    }

    /// Whether the burn rate is strictly above `threshold`, decided exactly.
    pub fn burns_faster_than(self, counts: Counts, threshold: Fixed8) -> bool {
        // bad/total / (allowed/100·10⁸) > threshold/10⁸
        //   ⇔ bad · 100·10⁸ · 10⁸ > threshold · total · allowed
        i128::from(counts.bad()) * Fixed8::from_int(100).0 * SCALE
            > threshold.0 * i128::from(counts.total) * self.allowed()
    }

    /// The budget left, in percent of the budget (negative once overspent; 100
    /// with no events yet).
    pub fn remaining_percent(self, counts: Counts) -> Fixed8 {
        if counts.total == 0 {
            return Fixed8::from_int(100);
        }
        let budget = i128::from(counts.total) * self.allowed(); // events × 100·10⁸
        let spent = i128::from(counts.bad()) * Fixed8::from_int(100).0;
        Fixed8::ratio((budget - spent) * 100, budget)
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The windows burn rates are reported over (SPEC §7), in minutes.
pub const REPORTED_WINDOWS: [(&str, u32); 6] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("6h", 360),
    ("1d", 1_440),
    ("3d", 4_320),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "page" => Some(Severity::Page),
            "ticket" => Some(Severity::Ticket),
            _ => None,
        }
    }
}

/// One multiwindow rule: fires when the burn rate over both the long and the
/// short window is above the threshold (the short one makes it reset quickly
/// once the cause is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnRule {
    pub severity: Severity,
    /// Tenths (144 = 14.4×), to stay exact.
    pub threshold_tenths: u32,
    pub long_minutes: u32,
    pub short_minutes: u32,
}

impl BurnRule {
    pub fn threshold(self) -> Fixed8 {
        Fixed8(i128::from(self.threshold_tenths) * SCALE / 10)
    }

    /// `"1h/5m"`: how the rule is named in alerts.
    pub fn windows(self) -> String {
        format!(
            "{}/{}",
            minutes_label(self.long_minutes),
            minutes_label(self.short_minutes)
        )
    }
}

/// The SRE workbook's rules (SPEC §7), most urgent first.
pub const BURN_RULES: [BurnRule; 4] = [
    BurnRule {
        severity: Severity::Page,
        threshold_tenths: 144,
        long_minutes: 60,
        short_minutes: 5,
    },
    BurnRule {
        severity: Severity::Page,
        threshold_tenths: 60,
        long_minutes: 360,
        short_minutes: 30,
    },
    BurnRule {
        severity: Severity::Ticket,
        threshold_tenths: 30,
        long_minutes: 1_440,
        short_minutes: 120,
    },
    BurnRule {
        severity: Severity::Ticket,
        threshold_tenths: 10,
        long_minutes: 4_320,
        short_minutes: 360,
    },
];

/// Every window (minutes) a rule or a report needs counts for.
pub fn needed_windows() -> Vec<u32> {
    let mut all: Vec<u32> = REPORTED_WINDOWS.iter().map(|(_, m)| *m).collect();
    for rule in BURN_RULES {
        all.push(rule.long_minutes);
        all.push(rule.short_minutes);
    }
    all.sort_unstable();
    all.dedup();
    all
}

pub fn minutes_label(minutes: u32) -> String {
    if minutes.is_multiple_of(1_440) {
        format!("{}d", minutes / 1_440)
    } else if minutes.is_multiple_of(60) {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

/// The first rule of `severity` that fires, given the counts per window
/// (`counts(minutes)`); `None` when that severity's condition is clear.
pub fn firing_rule(
    objective: Objective,
    severity: Severity,
    counts: impl Fn(u32) -> Counts,
) -> Option<BurnRule> {
    BURN_RULES
        .into_iter()
        .filter(|rule| rule.severity == severity)
        .find(|rule| {
            objective.burns_faster_than(counts(rule.long_minutes), rule.threshold())
                && objective.burns_faster_than(counts(rule.short_minutes), rule.threshold())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(good: u64, total: u64) -> Counts {
        Counts { good, total }
    }

    #[test]
    fn fixed_decimals_parse_print_and_round() {
        assert_eq!(Fixed8::parse("99.9").unwrap().to_string(), "99.9");
        assert_eq!(Fixed8::parse("3").unwrap(), Fixed8::from_int(3));
        assert_eq!(Fixed8::parse("0.00000001").unwrap(), Fixed8(1));
        assert_eq!(Fixed8::parse("-1.5").unwrap().to_string(), "-1.5");
        for bad in ["", ".5", "5.", "1e3", "0.000000001", "1.2.3", "x"] {
            assert_eq!(Fixed8::parse(bad), None, "{bad}");
        }
        assert_eq!(Fixed8::ratio(1, 3).to_string(), "0.33333333");
        assert_eq!(Fixed8::ratio(2, 3).to_string(), "0.66666667");
        assert_eq!(Fixed8::ratio(-2, 3).to_string(), "-0.66666667");
        assert_eq!(Fixed8::ratio(1, 0), Fixed8(0));
        assert_eq!(Fixed8::parse("0.1").unwrap().to_f64(), 0.1);
    }

    #[test]
    fn objectives_are_exact_percentages() {
        let o = Objective::parse("99.9").unwrap();
        assert_eq!(o.percent().to_string(), "99.9");
        // Exactly one event in a thousand, not 0.9999999999999432.
        assert_eq!(o.budget_events(1_000).to_string(), "1");
        assert_eq!(o.budget_events(1_000).to_f64(), 1.0);
        assert_eq!(o.budget_events(12_345).to_string(), "12.345");
        let o = Objective::parse("99.999999").unwrap();
        assert_eq!(o.budget_events(1).to_string(), "0.00000001");
        assert!(Objective::parse("99.9999999").is_err(), "seven places");
        assert!(Objective::parse("100").is_err());
        assert!(Objective::parse("0").is_err());
        assert!(Objective::parse("-5").is_err());
    }

    #[test]
    fn budget_remaining_by_hand() {
        let o = Objective::parse("99.9").unwrap();
        // 10,000 events allow 10 bad; 4 bad leave 60%.
        assert_eq!(o.remaining_percent(counts(9_996, 10_000)).to_string(), "60");
        // 10 bad: exactly used up; 15 bad: overspent by half.
        assert_eq!(o.remaining_percent(counts(9_990, 10_000)), Fixed8(0));
        assert_eq!(
            o.remaining_percent(counts(9_985, 10_000)).to_string(),
            "-50"
        );
        // 1 bad of 3,000 allows 3: two thirds left, rounded at the eighth place.
        assert_eq!(
            o.remaining_percent(counts(2_999, 3_000)).to_string(),
            "66.66666667"
        );
        assert_eq!(o.remaining_percent(counts(0, 0)), Fixed8::from_int(100));
        let o = Objective::parse("99.5").unwrap();
        assert_eq!(o.remaining_percent(counts(199, 200)).to_string(), "0");
    }

    #[test]
    fn burn_rates_by_hand() {
        let o = Objective::parse("99.9").unwrap();
        // 1% bad against 0.1% allowed burns ten times too fast.
        assert_eq!(o.burn_rate(counts(990, 1_000)).to_string(), "10");
        assert_eq!(o.burn_rate(counts(1_000, 1_000)), Fixed8(0));
        assert_eq!(o.burn_rate(counts(0, 0)), Fixed8(0));
        // Everything bad: 1000×.
        assert_eq!(o.burn_rate(counts(0, 7)).to_string(), "1000");
        let o = Objective::parse("99").unwrap();
        assert_eq!(o.burn_rate(counts(2, 3)).to_string(), "33.33333333");
    }

    #[test]
    fn thresholds_are_strict_and_exact_at_the_edge() {
        let o = Objective::parse("99.9").unwrap();
        let page = BURN_RULES[0].threshold();
        assert_eq!(page.to_string(), "14.4");
        // 144 bad in 10,000 is a burn of exactly 14.4: not above it.
        assert!(!o.burns_faster_than(counts(10_000 - 144, 10_000), page));
        assert!(o.burns_faster_than(counts(10_000 - 145, 10_000), page));
        // An objective whose allowed share is not a binary fraction: 99.7 → 0.3%.
        let o = Objective::parse("99.7").unwrap();
        assert!(!o.burns_faster_than(counts(997, 1_000), Fixed8::from_int(1)));
        assert!(o.burns_faster_than(counts(996, 1_000), Fixed8::from_int(1)));
        assert!(!o.burns_faster_than(counts(0, 0), Fixed8(0)));
    }

    #[test]
    fn multiwindow_rules_need_both_windows() {
        let o = Objective::parse("99.9").unwrap();
        // Burning at 20× over the last hour, but the last 5 minutes are clean:
        // the page resets (the short window's point).
        let recovering = |minutes: u32| match minutes {
            5 => counts(500, 500),
            _ => counts(9_800, 10_000),
        };
        assert_eq!(
            firing_rule(o, Severity::Page, recovering).map(|r| r.windows()),
            Some("6h/30m".into())
        );
        let recovered = |minutes: u32| match minutes {
            5 | 30 => counts(500, 500),
            _ => counts(9_800, 10_000),
        };
        assert_eq!(firing_rule(o, Severity::Page, recovered), None);
        let burning = |_| counts(9_800, 10_000);
        assert_eq!(
            firing_rule(o, Severity::Page, burning).map(|r| r.windows()),
            Some("1h/5m".into())
        );
        assert_eq!(
            firing_rule(o, Severity::Ticket, burning).map(|r| r.windows()),
            Some("1d/2h".into())
        );
        // A slow burn (2×) only tickets, over 3d and 6h.
        let slow = |_| counts(9_980, 10_000);
        assert_eq!(firing_rule(o, Severity::Page, slow), None);
        assert_eq!(
            firing_rule(o, Severity::Ticket, slow).map(|r| r.windows()),
            Some("3d/6h".into())
        );
        assert_eq!(needed_windows(), vec![5, 30, 60, 120, 360, 1_440, 4_320]);
    }
}
