//! Keel's domain: the types a handler parses outside input into, and the pure rules
//! that act on them. Nothing here does IO, spawns tasks or knows SQL — so every rule
//! can be tested exhaustively and reused by every adapter and role.
//!
//! *Parse, don't validate*: once code holds a [`greeter::Username`] or a
//! [`counter::CounterValue`], it is valid; nothing deeper checks it again.

pub mod account;
pub mod apikey;
pub mod bus;
pub mod channel;
pub mod clock;
pub mod counter;
pub mod cursor;
pub mod field_error;
pub mod filter;
pub mod greeter;
pub mod latency;
pub mod objects;
pub mod outbound;
pub mod slo;
pub mod telemetry;
pub mod uptime;

pub use field_error::FieldError;
