//! The one error shape every parser in this crate returns: *which* field (a JSON
//! pointer, RFC 6901) and *why*. The HTTP edge renders a list of them as the
//! `errors` member of a problem document.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer to the offending part of the request, e.g. `/dateOfBirth`.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.detail)
    }
}

impl std::error::Error for FieldError {}
