//! What makes a request good for a request SLI (SPEC §7): an expression over
//! `status` and `latency_ms` with `<`, `<=`, `>`, `>=`, `==`, `!=`, `and`, `or`
//! and parentheses — `status < 500 and latency_ms < 300` — and the route pattern
//! that picks the requests (`/hello/*`).

use std::fmt;

use crate::uptime::condition::Op;

/// What a request SLI's expression is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestOutcome {
    pub status: u16,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Status,
    LatencyMs,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Compare(Subject, Op, f64),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

/// A parsed `good` expression; displays in a normalised form.
#[derive(Debug, Clone, PartialEq)]
pub struct GoodExpr {
    root: Node,
}

impl GoodExpr {
    pub const MAX_LEN: usize = 1_000;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > Self::MAX_LEN {
            return Err(format!("longer than {} bytes", Self::MAX_LEN));
        }
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("an empty expression".into());
        }
        let mut parser = Parser { tokens, at: 0 };
        let root = parser.or(0)?;
        match parser.tokens.get(parser.at) {
            None => Ok(Self { root }),
            Some(t) => Err(format!("unexpected {t} after a complete expression")),
        }
    }

    pub fn is_good(&self, outcome: RequestOutcome) -> bool {
        eval(&self.root, outcome)
    }
}

impl fmt::Display for GoodExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(&self.root, f, 0)
    }
}

fn eval(node: &Node, seen: RequestOutcome) -> bool {
    match node {
        Node::Compare(subject, op, value) => {
            let actual = match subject {
                Subject::Status => f64::from(seen.status),
                Subject::LatencyMs => seen.latency_ms,
            };
            op.holds(actual, *value)
        }
        Node::And(a, b) => eval(a, seen) && eval(b, seen),
        Node::Or(a, b) => eval(a, seen) || eval(b, seen),
    }
}

/// `parent`: 0 at the top or under `or`, 1 under `and` (where an `or` needs
/// parentheses to keep its meaning).
fn show(node: &Node, f: &mut fmt::Formatter<'_>, parent: u8) -> fmt::Result {
    match node {
        Node::Compare(subject, op, value) => {
            let name = match subject {
                Subject::Status => "status",
                Subject::LatencyMs => "latency_ms",
            };
            write!(f, "{name} {} {value}", op.symbol())
        }
        Node::And(a, b) => {
            show(a, f, 1)?;
            f.write_str(" and ")?;
            show(b, f, 1)
        }
        Node::Or(a, b) => {
            if parent == 1 {
                f.write_str("(")?;
            }
            show(a, f, 0)?;
            f.write_str(" or ")?;
            show(b, f, 0)?;
            if parent == 1 {
                f.write_str(")")?;
            }
            Ok(())
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Subject(Subject),
    Op(Op),
    Number(f64),
    And,
    Or,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Subject(Subject::Status) => f.write_str("`status`"),
            Token::Subject(Subject::LatencyMs) => f.write_str("`latency_ms`"),
            Token::Op(op) => write!(f, "`{}`", op.symbol()),
            Token::Number(n) => write!(f, "`{n}`"),
            Token::And => f.write_str("`and`"),
            Token::Or => f.write_str("`or`"),
            Token::Open => f.write_str("`(`"),
            Token::Close => f.write_str("`)`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (token, width) = match (b, next) {
            (b' ' | b'\t' | b'\n' | b'\r', _) => {
                i += 1;
                continue;
            }
            (b'(', _) => (Token::Open, 1),
            (b')', _) => (Token::Close, 1),
            (b'=', Some(b'=')) => (Token::Op(Op::Eq), 2),
            (b'!', Some(b'=')) => (Token::Op(Op::Ne), 2),
            (b'<', Some(b'=')) => (Token::Op(Op::Le), 2),
            (b'>', Some(b'=')) => (Token::Op(Op::Ge), 2),
            (b'<', _) => (Token::Op(Op::Lt), 1),
            (b'>', _) => (Token::Op(Op::Gt), 1),
            (b'0'..=b'9' | b'.', _) => {
                let end = (i..bytes.len())
                    .find(|&j| !(bytes[j].is_ascii_digit() || bytes[j] == b'.'))
                    .unwrap_or(bytes.len());
                let raw = &text[i..end];
                let n: f64 = raw
                    .parse()
                    .map_err(|_| format!("`{raw}` is not a number"))?;
                (Token::Number(n), end - i)
            }
            (b'a'..=b'z' | b'A'..=b'Z' | b'_', _) => {
                let end = (i..bytes.len())
                    .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_'))
                    .unwrap_or(bytes.len());
                let word = &text[i..end];
                let token = match word {
                    "status" => Token::Subject(Subject::Status),
                    "latency_ms" => Token::Subject(Subject::LatencyMs),
                    "and" => Token::And,
                    "or" => Token::Or,
                    _ => {
                        return Err(format!(
                            "unknown word `{word}`: expected status, latency_ms, and, or"
                        ))
                    }
                };
                (token, end - i)
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected character `{c}`"));
            }
        };
        tokens.push(token);
        i += width;
    }
    Ok(tokens)
}

/// Recursive descent: `or` binds loosest, then `and`, then a comparison or a
/// parenthesised expression. Depth is bounded so no input can exhaust the stack.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn take(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Node, String> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            let right = self.and(depth)?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Node, String> {
        let mut left = self.term(depth)?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            let right = self.term(depth)?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self, depth: usize) -> Result<Node, String> {
        match self.take() {
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} parentheses"));
                }
                let inner = self.or(depth + 1)?;
                match self.take() {
                    Some(Token::Close) => Ok(inner),
                    Some(t) => Err(format!("expected `)`, found {t}")),
                    None => Err("a `(` is never closed".into()),
                }
            }
            Some(Token::Subject(subject)) => {
                let op = match self.take() {
                    Some(Token::Op(op)) => op,
                    Some(t) => return Err(format!("expected a comparison, found {t}")),
                    None => return Err("the expression ends before its comparison".into()),
                };
                match self.take() {
                    Some(Token::Number(n)) => Ok(Node::Compare(subject, op, n)),
                    Some(t) => Err(format!("expected a number, found {t}")),
                    None => Err("the expression ends before its number".into()),
                }
            }
            Some(t) => Err(format!("expected status, latency_ms or `(`, found {t}")),
            None => Err("the expression ends too soon".into()),
        }
    }
}

/// Which request paths a request SLI counts: `*` stands for any characters
/// within one path segment, `**` for any characters across segments; anything
/// else matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern(String);

impl RoutePattern {
    pub const MAX_LEN: usize = 500;

    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("a route pattern starts with `/`".into());
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!("longer than {} bytes", Self::MAX_LEN));
        }
        if text.contains("***") {
            return Err("`***` means nothing: use `*` or `**`".into());
        }
        if text.chars().any(|c| c.is_control() || c == '?' || c == '#') {
            return Err(
                "a route pattern is a path: no query, fragment or control characters".into(),
            );
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, path: &str) -> bool {
        glob(self.0.as_bytes(), path.as_bytes())
    }
}

/// Glob matching by dynamic programming over (pattern, text) prefixes: exact for
/// any mix of `*` and `**`, and O(pattern × path) whatever the input.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // matched[j]: the pattern so far matches the first j bytes of the path.
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    let mut p = 0;
    while p < pattern.len() {
        let mut next = vec![false; text.len() + 1];
        if pattern[p] == b'*' {
            let crosses = pattern.get(p + 1) == Some(&b'*');
            p += if crosses { 2 } else { 1 };
            next[0] = matched[0];
            for j in 1..=text.len() {
                next[j] = matched[j] || (next[j - 1] && (crosses || text[j - 1] != b'/'));
            }
        } else {
            for j in 0..text.len() {
                next[j + 1] = matched[j] && text[j] == pattern[p];
            }
            p += 1;
        }
        matched = next;
    }
    matched[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, latency_ms: f64) -> RequestOutcome {
        RequestOutcome { status, latency_ms }
    }

    #[test]
    fn expressions_follow_precedence_and_parentheses() {
        let e = GoodExpr::parse("status < 500 and latency_ms < 300").unwrap();
        assert!(e.is_good(outcome(200, 12.0)));
        assert!(!e.is_good(outcome(503, 12.0)));
        assert!(!e.is_good(outcome(200, 300.0)));
        // `and` binds tighter than `or`.
        let e = GoodExpr::parse("status == 404 or status < 400 and latency_ms <= 100").unwrap();
        assert!(e.is_good(outcome(404, 5000.0)));
        assert!(e.is_good(outcome(200, 100.0)));
        assert!(!e.is_good(outcome(200, 100.5)));
        let e = GoodExpr::parse("(status == 404 or status < 400) and latency_ms <= 100").unwrap();
        assert!(!e.is_good(outcome(404, 5000.0)));
        assert_eq!(
            e.to_string(),
            "(status == 404 or status < 400) and latency_ms <= 100"
        );
        let e = GoodExpr::parse("status != 500 and status >= 200 and status > 199").unwrap();
        assert!(e.is_good(outcome(201, 0.0)));
        assert!(!e.is_good(outcome(500, 0.0)));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("status <", "ends before its number"),
            ("status 500", "expected a comparison"),
            ("latency < 3", "unknown word `latency`"),
            ("status < 500 and", "ends too soon"),
            ("(status < 500", "never closed"),
            ("status < 500)", "unexpected `)`"),
            ("status < \"x\"", "unexpected character `\"`"),
            ("status < 1.2.3", "not a number"),
        ] {
            let why = GoodExpr::parse(text).unwrap_err();
            assert!(why.contains(says), "{text:?}: {why}");
        }
        let deep = format!("{}status < 1{}", "(".repeat(40), ")".repeat(40));
        assert!(GoodExpr::parse(&deep).unwrap_err().contains("nested"));
    }

    #[test]
    fn route_patterns_match_segments_and_across_them() {
        let p = RoutePattern::parse("/hello/*").unwrap();
        assert!(p.matches("/hello/alice"));
        assert!(p.matches("/hello/"));
        assert!(!p.matches("/hello/alice/x"));
        assert!(!p.matches("/hello"));
        assert!(!p.matches("/v1/hello/alice"));
        let p = RoutePattern::parse("/v1/**").unwrap();
        assert!(p.matches("/v1/topics/a/publish"));
        assert!(!p.matches("/v2/topics"));
        let p = RoutePattern::parse("/v1/topics/*/publish").unwrap();
        assert!(p.matches("/v1/topics/orders/publish"));
        assert!(!p.matches("/v1/topics/a/b/publish"));
        assert!(RoutePattern::parse("/exact").unwrap().matches("/exact"));
        assert!(!RoutePattern::parse("/exact").unwrap().matches("/exactly"));
        assert!(RoutePattern::parse("hello").is_err());
        assert!(RoutePattern::parse("/a?b=1").is_err());
        // A `**` may need to take more when a later `*` cannot.
        let p = RoutePattern::parse("/**/*/z").unwrap();
        assert!(p.matches("/a/b/c/z"));
        assert!(!p.matches("/c/z"));
        let p = RoutePattern::parse(&"/*".repeat(30)).unwrap();
        assert!(!p.matches(&format!("{}x", "/a".repeat(29))));
    }
}
