//! `GET /v1/slos/{id}/prometheus-rules` (SPEC §7): a Prometheus rule file for
//! one SLO, for teams that keep Prometheus. It reads `keel_slo_events_total`
//! (each Keel process counts its SLI events there, by tenant, SLO and
//! outcome), records the error ratio over every window the burn-rate rules
//! need, and alerts with the same multiwindow rules Keel's own evaluator uses
//! (page at 14.4× over 1h and 5m or 6× over 6h and 30m; ticket at 3× over 1d
//! and 2h or 1× over 3d and 6h).
//!
//! YAML is written by hand: every value that comes from a user (the SLO and
//! tenant names) goes through [`quoted`], a double-quoted YAML scalar (JSON
//! string escaping is valid YAML), so nothing a user names can break the file.

use std::fmt::Write as _;

use keel_core::slo::budget::{self, minutes_label, Fixed8, Severity, BURN_RULES};
use keel_store::slos::StoredSlo;

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A PromQL string literal inside a label matcher (same escaping rules).
fn label_value(text: &str) -> String {
    quoted(text)
}

pub fn rule_file(slo: &StoredSlo) -> String {
    let (tenant, name) = (slo.tenant.as_str(), slo.spec.name.as_str());
    let matcher = format!("tenant={},slo={}", label_value(tenant), label_value(name));
    // The allowed bad fraction, exact: (100 − objective) / 100.
    let allowed = Fixed8((Fixed8::from_int(100).0 - slo.spec.objective().percent().0) / 100);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Keel SLO {name:?} ({}% over {}), tenant {tenant:?}.",
        slo.spec.objective(),
        slo.spec.window
    );
    out.push_str("groups:\n");
    let _ = writeln!(out, "  - name: {}", quoted(&format!("keel-slo-{name}")));
    out.push_str("    rules:\n");
    for minutes in budget::needed_windows() {
        let window = minutes_label(minutes);
        let _ = writeln!(out, "      - record: keel:slo_error_ratio:rate{window}");
        let _ = writeln!(
            out,
            "        expr: {}",
            quoted(&format!(
                "sum(rate(keel_slo_events_total{{{matcher},outcome=\"bad\"}}[{window}])) / sum(rate(keel_slo_events_total{{{matcher}}}[{window}]))"
            ))
        );
        out.push_str("        labels:\n");
        let _ = writeln!(out, "          tenant: {}", quoted(tenant));
        let _ = writeln!(out, "          slo: {}", quoted(name));
    }
    for severity in [Severity::Page, Severity::Ticket] {
        let conditions: Vec<String> = BURN_RULES
            .iter()
            .filter(|r| r.severity == severity)
            .map(|rule| {
                let limit = format!("{} * {allowed}", rule.threshold());
                format!(
                    "(keel:slo_error_ratio:rate{long}{{{matcher}}} > ({limit}) and keel:slo_error_ratio:rate{short}{{{matcher}}} > ({limit}))",
                    long = minutes_label(rule.long_minutes),
                    short = minutes_label(rule.short_minutes),
                )
            })
            .collect();
        let alert = match severity {
            Severity::Page => "KeelSloBurnRatePage",
            Severity::Ticket => "KeelSloBurnRateTicket",
        };
        let _ = writeln!(out, "      - alert: {alert}");
        let _ = writeln!(out, "        expr: {}", quoted(&conditions.join(" or ")));
        out.push_str("        labels:\n");
        let _ = writeln!(out, "          severity: {}", severity.as_str());
        let _ = writeln!(out, "          tenant: {}", quoted(tenant));
        let _ = writeln!(out, "          slo: {}", quoted(name));
        out.push_str("        annotations:\n");
        let _ = writeln!(
            out,
            "          summary: {}",
            quoted(&format!(
                "SLO {name} is burning its error budget too fast ({})",
                severity.as_str()
            ))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::slo::SloSpec;
    use keel_store::TenantId;
    use serde_json::json;

    fn slo(name: &str) -> StoredSlo {
        StoredSlo {
            id: "s1".into(),
            tenant: TenantId("t1".into()),
            spec: SloSpec::parse(&json!({
                "name": name, "objective": 99.9,
                "sli": {"requests": {"route": "/hello/*", "good": "status < 500"}}
            }))
            .unwrap(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn rules_use_the_exact_allowed_ratio_and_every_window() {
        let file = rule_file(&slo("api"));
        assert!(file.contains("14.4 * 0.001"), "{file}");
        assert!(file.contains("3 * 0.001"), "{file}");
        for window in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
            assert!(
                file.contains(&format!("record: keel:slo_error_ratio:rate{window}\n")),
                "{window}"
            );
        }
        assert_eq!(file.matches("- alert:").count(), 2);
    }

    #[test]
    fn names_cannot_break_the_file() {
        let file = rule_file(&slo("x\"}\n  - evil: 1"));
        assert!(!file.contains("\n  - evil"), "{file}");
    }
}
