//! `keel_server::extract::from_json::<T>` into the request types the routes read,
//! then the domain parsing each route does next. Never panics; every error renders
//! as a 4xx problem document (never 5xx) whose pointer names the offending field.
#![no_main]

use keel_core::{
    account::{Email, Password},
    apikey::Scopes,
    bus::{DeliveryPolicy, Target},
    filter::FilterPolicy,
    greeter::DateOfBirth,
};
use keel_fuzz::{json_inputs, render_problem, resolves};
use keel_server::{
    extract::{from_json, PageQuery},
    problem::ApiError,
    routes::{accounts, admin, bus, hello, queues},
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A 4xx problem; `Some(pointer)` of its first field error.
fn check_error(err: ApiError) -> Option<String> {
    let (status, problem) = render_problem(err);
    assert!((400..500).contains(&status), "status {status}: {problem}");
    problem["errors"][0]["pointer"].as_str().map(str::to_owned)
}

/// Deserializes `body` as `T`; a failure is a 400 whose pointer resolves in `body`
/// (the field itself, or the object a required field is missing from).
fn typed<T: DeserializeOwned>(body: &Value) -> Option<T> {
    match from_json::<T>(body.clone()) {
        Ok(t) => Some(t),
        Err(err) => {
            assert!(matches!(err, ApiError::Validation { .. }));
            let pointer = check_error(err).expect("a field error");
            assert!(
                resolves(body, &pointer),
                "pointer {pointer:?} not in {body}"
            );
            None
        }
    }
}

fn domain<T>(result: Result<T, ApiError>) -> Option<T> {
    match result {
        Ok(t) => Some(t),
        Err(err) => {
            check_error(err);
            None
        }
    }
}

fn field<T>(result: Result<T, keel_core::FieldError>) -> Option<T> {
    domain(result.map_err(ApiError::field))
}

fn subscription(body: &Value) {
    let Some(sub) = typed::<bus::SubscriptionBody>(body) else {
        return;
    };
    let scope_ok = matches!(
        sub.filter_scope.as_deref(),
        None | Some("attributes" | "body")
    );
    if !scope_ok {
        check_error(ApiError::field(keel_core::FieldError::new(
            "/filter_scope",
            "filter_scope is attributes or body",
        )));
    }
    if let Some(policy) = sub.filter.as_ref().filter(|f| !f.is_null()) {
        field(FilterPolicy::parse(policy, "/filter"));
    }
    if let Some(target) = field(Target::parse(&sub.target)) {
        // What is stored parses back to the same target.
        assert_eq!(Target::parse(&target.to_json(true)), Ok(target.clone()));
    }
    let d = DeliveryPolicy::default();
    if let Some(policy) = field(DeliveryPolicy::new(
        sub.max_receives.unwrap_or(d.max_receives),
        sub.visibility_timeout_s.unwrap_or(d.visibility_timeout_s),
        sub.retry_backoff_s.unwrap_or(d.retry_backoff_s),
    )) {
        for n in [0, 1, 2, 31, 32, 33, u32::MAX] {
            let _ = policy.backoff_after(n);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(values) = json_inputs(data, 1) else {
        return;
    };
    let body = &values[0];
    // Every route's type sees every body; cheap enough and more coverage per input.
    if let Some(c) = typed::<accounts::Credentials>(body) {
        domain(ApiError::both(
            Email::parse(&c.email),
            Password::parse(&c.password),
        ));
    }
    if let Some(k) = typed::<accounts::NewKeyBody>(body) {
        domain(accounts::parse_scopes(k.scopes, Scopes::account_owner()));
    }
    if let Some(t) = typed::<admin::NewTenant>(body) {
        field(admin::parse_tenant_name(&t.name));
    }
    if let Some(k) = typed::<admin::AdminNewKey>(body) {
        domain(accounts::parse_scopes(k.scopes, Scopes::account_owner()));
    }
    subscription(body);
    if let Some(h) = typed::<hello::HelloBody>(body) {
        field(DateOfBirth::parse(
            &h.date_of_birth,
            jiff::civil::date(2024, 6, 15),
        ));
    }
    typed::<queues::ReceiveBody>(body);
    typed::<queues::AckBody>(body);
    typed::<queues::NackBody>(body);
    typed::<queues::RedriveBody>(body);
    typed::<PageQuery>(body);
});
