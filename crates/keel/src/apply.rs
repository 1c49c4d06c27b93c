//! `keel monitors apply FILE --tenant T`: a monitor set kept in a file (YAML or
//! JSON, like Gatus' configuration), applied idempotently by name. Each monitor
//! in the file is created when the tenant has none of that name, replaced when
//! its definition differs, and left alone (not even rescheduled) when it is the
//! same; monitors not in the file are kept. Every definition is checked before
//! anything is written, so a file with one mistake changes nothing.

use anyhow::Context;
use keel_core::uptime::monitor::MonitorSpec;
use keel_store::{Store, TenantId};
use serde_json::Value;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The monitors of a file: `monitors: [...]` or a bare list.
pub fn parse_file(text: &str) -> anyhow::Result<Vec<MonitorSpec>> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => serde_yaml_ng::from_str(text).context("the file is neither JSON nor YAML")?,
    };
    let list = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(o) => match o.get("monitors") {
            Some(Value::Array(items)) => items.clone(),
            _ => anyhow::bail!("expected a list of monitors, or `monitors:` holding one"),
        },
        _ => anyhow::bail!("expected a list of monitors, or `monitors:` holding one"),
    };
    let mut specs = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        match MonitorSpec::parse(raw) {
            Ok(spec) => specs.push(spec),
            Err(errors) => problems.extend(
                errors
                    .into_iter()
                    .map(|e| format!("monitors/{i}{}: {}", e.pointer, e.detail)),
            ),
        }
    }
    // Names come from the raw entries so a duplicate is reported even when one
    // of the two has other mistakes.
    let mut names: Vec<&str> = list
        .iter()
        .filter_map(|raw| raw.get("name").and_then(Value::as_str))
        .collect();
    names.sort_unstable();
    for pair in names.windows(2).filter(|p| p[0] == p[1]) {
        problems.push(format!("the name {:?} is used twice", pair[0]));
    }
    if !problems.is_empty() {
        anyhow::bail!("nothing applied:\n  {}", problems.join("\n  "));
    }
    Ok(specs)
}

pub async fn apply(
    store: &dyn Store,
    tenant: &TenantId,
    specs: Vec<MonitorSpec>,
) -> anyhow::Result<Applied> {
    let mut applied = Applied::default();
    for spec in specs {
        let name = spec.name.clone();
        match store.monitor_named(tenant, &name).await? {
            None => {
                store.create_monitor(tenant, spec).await?;
                applied.created.push(name);
            }
            Some(existing) if existing.spec == spec => applied.unchanged.push(name),
            Some(existing) => {
                store.replace_monitor(tenant, &existing.id, spec).await?;
                applied.updated.push(name);
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_yaml_or_json_and_checked_whole() {
        let yaml = "monitors:\n  - name: api\n    kind: http\n    target: https://example.com/health\n    conditions: [\"status == 200\"]\n  - name: nightly\n    kind: push\n    interval_s: 86400\n";
        let specs = parse_file(yaml).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].interval_s, 86_400);
        let json = r#"[{"name": "db", "kind": "tcp", "target": "db.internal:5432"}]"#;
        assert_eq!(parse_file(json).unwrap()[0].name, "db");
        let bad = parse_file("- name: a\n  kind: http\n  target: x\n- name: a\n  kind: push\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("monitors/0/target"), "{bad}");
        assert!(bad.contains("\"a\" is used twice"), "{bad}");
        assert!(parse_file("just: text").is_err());
    }
}
