//! SLOs at run time (SPEC §7): their figures ([`report`]), the request SLIs the
//! edge counts ([`requests`]) and the evaluator that opens and resolves
//! burn-rate alerts ([`evaluate`]).

pub mod evaluate;
pub mod report;
pub mod requests;
pub mod rules;
