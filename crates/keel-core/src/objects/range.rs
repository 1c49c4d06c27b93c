//! An HTTP `Range` header (RFC 9110) resolved against an object's size, for
//! range reads of objects (SPEC §6).

/// A `Range` header resolved against an object's size: the bytes `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Not a single `bytes=` range this server understands: serve the whole object
    /// (RFC 9110 lets a server ignore a Range it does not support).
    Ignored,
    /// Syntactically fine but outside the object: 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against `size`. Several ranges
/// in one header are not supported and are ignored (the whole object is served).
pub fn parse_range(header: &str, size: u64) -> Result<ByteRange, RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Ignored)?;
    if spec.contains(',') {
        return Err(RangeError::Ignored);
    }
    let (first, last) = spec.split_once('-').ok_or(RangeError::Ignored)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| RangeError::Ignored);
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err(RangeError::Ignored),
        (true, false) => {
            let suffix = number(last)?;
            if suffix == 0 || size == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            ByteRange {
                start: size.saturating_sub(suffix),
                end: size,
            }
        }
        (false, open_end) => {
            let start = number(first)?;
            let end = if open_end {
                size
            } else {
                let last = number(last)?;
                if last < start {
                    return Err(RangeError::Ignored);
                }
                last.saturating_add(1).min(size)
            };
            if start >= size {
                return Err(RangeError::Unsatisfiable);
            }
            ByteRange { start, end }
        }
    };
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_size() {
        let r = |h: &str| parse_range(h, 100);
        assert_eq!(r("bytes=0-9"), Ok(ByteRange { start: 0, end: 10 }));
        assert_eq!(
            r("bytes=90-"),
            Ok(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(
            r("bytes=-10"),
            Ok(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(r("bytes=-500"), Ok(ByteRange { start: 0, end: 100 }));
        assert_eq!(
            r("bytes=50-500"),
            Ok(ByteRange {
                start: 50,
                end: 100
            })
        );
        assert_eq!(r("bytes=100-"), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=-0"), Err(RangeError::Unsatisfiable));
        assert_eq!(r("bytes=5-1"), Err(RangeError::Ignored));
        assert_eq!(r("bytes=0-1,5-6"), Err(RangeError::Ignored));
        assert_eq!(r("items=0-1"), Err(RangeError::Ignored));
    }
}
