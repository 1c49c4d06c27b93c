//! What the bus adapters share: routing messages through filters, receipts, and
//! JSON columns.

use std::sync::Arc;

use keel_core::filter::FilterPolicy;
use serde_json::{Map, Value};

use crate::{
    bus::{FilterScope, OutgoingMessage},
    StoreError, StoreResult,
};

/// A receipt is `<queue entry seq>-<random nonce>`: the seq finds the entry by its
/// primary key, the nonce (stored with it, replaced on every receive) proves the
/// receipt is the current one. No index on receipts is needed.
pub(crate) fn parse_receipt(receipt: &str) -> Option<(i64, &str)> {
    let (seq, nonce) = receipt.split_once('-')?;
    Some((seq.parse().ok()?, nonce))
}

/// How long a publish id is remembered (SPEC §4: 5 minutes).
pub(crate) const DEDUP_WINDOW_MICROS: i64 = 5 * 60 * 1_000_000;

pub(crate) fn json_text(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("encoding JSON: {e}")))
}

pub(crate) fn json_value(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("stored JSON: {e}")))
}

pub(crate) fn json_map(text: &str) -> StoreResult<Map<String, Value>> {
    match json_value(text)? {
        Value::Object(map) => Ok(map),
        _ => Err(StoreError::Internal(
            "stored attributes are not an object".into(),
        )),
    }
}

/// A topic's subscriptions with their parsed filters: where a publish fans out.
pub(crate) type Routes = Arc<Vec<(String, FilterScope, FilterPolicy)>>;

/// A message ready for the writer: filters evaluated, JSON serialised once.
pub(crate) struct Routed {
    pub messages: Vec<RoutedMessage>,
    /// Bytes the publish writes in all: each message's size times its copies.
    pub fanout_bytes: u64,
}

pub(crate) struct RoutedMessage {
    pub dedup_id: Option<String>,
    /// Indexes into the routes it matched.
    pub matched: Vec<usize>,
    /// Body and attributes as stored; `None` when it matched nothing.
    pub texts: Option<(String, String)>,
}

/// Evaluates every message against every route and checks the fan-out quota:
/// the bytes a publish writes are its messages' sizes times their copies.
pub(crate) fn route_messages(
    routes: &Routes,
    messages: Vec<OutgoingMessage>,
    fanout_limit: u64,
) -> StoreResult<Routed> {
    let mut fanout_bytes: u64 = 0;
    let messages = messages
        .into_iter()
        .map(|message| {
            let attributes = Value::Object(message.attributes);
            let matched: Vec<usize> = matching_routes(routes, &message.body, &attributes).collect();
            let texts = if matched.is_empty() {
                None
            } else {
                let texts = (json_text(&message.body)?, json_text(&attributes)?);
                let size = (texts.0.len() + texts.1.len()) as u64;
                fanout_bytes = fanout_bytes.saturating_add(size * matched.len() as u64);
                if fanout_bytes > fanout_limit {
                    return Err(StoreError::QuotaExceeded {
                        quota: "fanout_bytes_per_publish",
                        limit: fanout_limit,
                    });
                }
                Some(texts)
            };
            Ok(RoutedMessage {
                dedup_id: message.dedup_id,
                matched,
                texts,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Routed {
        messages,
        fanout_bytes,
    })
}

/// The indexes of the routes whose filter a message passes.
pub(crate) fn matching_routes<'a>(
    routes: &'a [(String, FilterScope, FilterPolicy)],
    body: &'a Value,
    attributes: &'a Value,
) -> impl Iterator<Item = usize> + 'a {
    routes
        .iter()
        .enumerate()
        .filter(move |(_, (_, scope, policy))| {
            policy.matches(match scope {
                FilterScope::Attributes => attributes,
                FilterScope::Body => body,
            })
        })
        .map(|(i, _)| i)
}

/// A stored subscription's routing columns, parsed.
pub(crate) fn parse_route(
    name: String,
    filter: Option<&str>,
    scope: &str,
) -> StoreResult<(String, FilterScope, FilterPolicy)> {
    let filter = filter.map(json_value).transpose()?;
    route_from(name, filter.as_ref(), scope)
}

/// A subscription's route from its filter (as the client wrote it) and scope.
pub(crate) fn route_from(
    name: String,
    filter: Option<&Value>,
    scope: &str,
) -> StoreResult<(String, FilterScope, FilterPolicy)> {
    let policy = match filter {
        None => FilterPolicy::match_all(),
        Some(filter) => FilterPolicy::parse(filter, "/filter")
            .map_err(|e| StoreError::Internal(format!("stored filter of {name}: {e}")))?,
    };
    Ok((name, parse_scope(scope), policy))
}

pub(crate) fn parse_scope(scope: &str) -> FilterScope {
    if scope == "body" {
        FilterScope::Body
    } else {
        FilterScope::Attributes
    }
}
