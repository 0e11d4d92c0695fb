//! The backend request URI of a relay: the backend's configured URL joined with the relay's
//! `POKTHTTPRequest.url`, the way poktroll's relayer builds it (`BuildServiceBackendRequest`).
//!
//! Gateways (PATH, shannon-sdk) put Go's `http.Request.URL.String()` in `POKTHTTPRequest.url`: usually an
//! absolute URL naming the supplier's *public* endpoint (`https://rm.example.com/v1?x=1`), sometimes just a path
//! (`/`, `/v1`). Only its path and query mean anything to the backend:
//! - scheme and host (and user info, fragment) of the relay's URL are dropped; the backend's are used;
//! - path: Go's `path.Join(backend path, relay path)` on the decoded paths (`/v2/KEY` + `/v1` → `/v2/KEY/v1`;
//!   `path.Clean` semantics: no empty or `.` segments, no trailing slash, `..` resolved), re-escaped like Go's
//!   `URL.EscapedPath` (a relay path left unchanged by the join keeps its own valid escaping);
//! - query: Go's `url.Values` merge: the relay's values, then the backend URL's appended per key, encoded by
//!   `Values.Encode` (keys sorted, values `QueryEscape`d, pairs with `;` or a bad escape dropped as Go's
//!   `ParseQuery` drops them).
//!
//! One deliberate difference: the relay's path is cleaned as a rooted path *before* the join, so `..` segments
//! cannot climb out of the backend URL's path (Go's join would let `/../admin` escape `/v2/KEY`). Paths without
//! `..` give Go's result exactly. A relay URL Go would not parse (bad percent escape, control byte, a colon in
//! the first segment of a relative path) or an opaque one (`scheme:rest` without `//` or `/`, which Go would send
//! as the request target verbatim) is refused as malformed.

use std::fmt::Write as _;

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

/// A backend URL parsed once at start: its origin, decoded path and query values.
#[derive(Debug, Clone)]
pub struct BackendUrl {
    /// `scheme://authority`, as configured.
    origin: String,
    /// `http` or `https` (lower case).
    scheme: String,
    /// Decoded path (Go `URL.Path`).
    path: Vec<u8>,
    /// Query values in order (Go `URL.Query()`).
    query: Vec<(Vec<u8>, Vec<u8>)>,
    /// The request URI when the relay adds neither path nor query (the common `/` case).
    bare: http::Uri,
    /// `path` is a `base_path`: a relay path already starting with it (whole segments) is not prefixed again.
    base: bool,
}

impl BackendUrl {
    /// Parses a configured backend URL (`http[s]://host[:port][/path][?query]`).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let parts = Parts::parse(url)?;
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(UrlError(format!(
                "`{url}` is not an absolute URL like http://host:port/path"
            )));
        };
        let scheme = scheme.to_ascii_lowercase();
        if authority.is_empty() {
            return Err(UrlError(format!("`{url}` has no host")));
        }
        let mut query = Vec::new();
        parse_query(parts.raw_query, &mut query);
        let origin = format!("{scheme}://{authority}");
        let mut this = Self {
            origin,
            scheme,
            path: parts.path,
            query,
            bare: http::Uri::from_static("/"),
            base: false,
        };
        this.bare = this.build(b"", None)?;
        Ok(this)
    }

    /// The URL with `base_path` instead of its own path (the Go relayer's `mergeBackendPath`): relay paths are
    /// joined onto `base_path`, except one that already starts with it as whole segments, sent as it is. A
    /// `base_path` of `/` or empty changes nothing.
    pub fn with_base_path(mut self, base_path: &str) -> Result<Self, UrlError> {
        let trimmed = base_path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(self);
        }
        let path = unescape(trimmed.as_bytes(), false)
            .ok_or_else(|| UrlError(format!("base_path {base_path:?}: invalid URL escape")))?;
        self.path = if path.first() == Some(&b'/') {
            path
        } else {
            [b"/".as_slice(), &path].concat()
        };
        self.base = true;
        self.bare = self.build(b"", None)?;
        Ok(self)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The URI to send a relay whose `POKTHTTPRequest.url` is `relay_url` to.
    pub fn join(&self, relay_url: &str) -> Result<http::Uri, UrlError> {
        if relay_url.is_empty() || relay_url == "/" {
            return Ok(self.bare.clone());
        }
        let parts = Parts::parse(relay_url)?;
        if parts.raw_query.is_empty() && (parts.path.is_empty() || parts.path == b"/") {
            return Ok(self.bare.clone());
        }
        self.build(&parts.path, Some((parts.raw_path, parts.raw_query)))
    }

    /// Joins the decoded relay path `path` (with its raw form and raw query, when it came from a relay).
    fn build(&self, path: &[u8], raw: Option<(&str, &str)>) -> Result<http::Uri, UrlError> {
        // Rooted clean first: `..` never climbs above the backend's path.
        let relay_path = if path.is_empty() {
            Vec::new()
        } else {
            let mut rooted = Vec::with_capacity(path.len() + 1);
            if path[0] != b'/' {
                rooted.push(b'/');
            }
            rooted.extend_from_slice(path);
            clean(&rooted)
        };
        let prefixed = self.base
            && relay_path.starts_with(&self.path)
            && matches!(relay_path.get(self.path.len()), None | Some(b'/'));
        let joined = if prefixed {
            relay_path.clone()
        } else {
            join(&self.path, &relay_path)
        };
        let mut uri = String::with_capacity(self.origin.len() + joined.len() + 16);
        uri.push_str(&self.origin);
        // Go's `URL.EscapedPath`: the relay's own escaping when the join left its path as it was.
        match raw {
            Some((raw_path, _)) if joined == path && valid_encoded(raw_path) => uri.push_str(raw_path),
            _ => escape_path(&joined, &mut uri),
        }
        if joined.is_empty() {
            uri.push('/');
        }
        let mut values = Vec::new();
        if let Some((_, raw_query)) = raw {
            parse_query(raw_query, &mut values);
        }
        values.extend(self.query.iter().cloned());
        if !values.is_empty() {
            // `url.Values.Encode`: keys sorted (stable: a key's values keep their order, the relay's first).
            values.sort_by(|a, b| a.0.cmp(&b.0));
            uri.push('?');
            for (i, (key, value)) in values.iter().enumerate() {
                if i > 0 {
                    uri.push('&');
                }
                escape_query(key, &mut uri);
                uri.push('=');
                escape_query(value, &mut uri);
            }
        }
        uri.parse::<http::Uri>()
            .map_err(|e| UrlError(format!("backend URI {uri:?}: {e}")))
    }
}

/// The pieces of a URL as Go's `url.Parse` splits them (only what the join needs).
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    /// The path as written (escaped).
    raw_path: &'a str,
    /// The decoded path.
    path: Vec<u8>,
    raw_query: &'a str,
}

impl<'a> Parts<'a> {
    fn parse(url: &'a str) -> Result<Self, UrlError> {
        if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UrlError(format!("{url:?}: invalid control character in URL")));
        }
        let rest = url.split_once('#').map_or(url, |(r, _)| r);
        let (mut rest, raw_query) = rest.split_once('?').unwrap_or((rest, ""));
        let scheme = match scheme_end(rest) {
            Ok(Some(end)) => {
                let scheme = &rest[..end];
                rest = &rest[end + 1..];
                Some(scheme)
            }
            Ok(None) => None,
            Err(()) => return Err(UrlError(format!("{url:?}: missing protocol scheme"))),
        };
        if scheme.is_some() && !rest.starts_with('/') {
            return Err(UrlError(format!(
                "{url:?}: an opaque URL (no `//` or `/` after the scheme) names no path"
            )));
        }
        let mut authority = None;
        if (scheme.is_some() || !rest.starts_with("///")) && rest.starts_with("//") {
            let after = &rest[2..];
            let end = after.find('/').unwrap_or(after.len());
            authority = Some(&after[..end]);
            rest = &after[end..];
        } else if scheme.is_none() && !rest.starts_with('/') {
            let first = rest.split('/').next().unwrap_or_default();
            if first.contains(':') {
                return Err(UrlError(format!(
                    "{url:?}: first path segment in URL cannot contain colon"
                )));
            }
        }
        let path = unescape(rest.as_bytes(), false)
            .ok_or_else(|| UrlError(format!("{url:?}: invalid URL escape in the path")))?;
        Ok(Self {
            scheme,
            authority,
            raw_path: rest,
            path,
            raw_query,
        })
    }
}

/// Go's `getScheme`: `Ok(Some(i))` when `rest[..i]` is a scheme followed by `:`, `Ok(None)` when there is none,
/// `Err` for a leading `:`.
fn scheme_end(rest: &str) -> Result<Option<usize>, ()> {
    for (i, c) in rest.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err(()),
            b':' => return Ok(Some(i)),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Percent-decodes `s`; `plus_is_space` for query components. `None` on a malformed escape.
fn unescape(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex_value(*s.get(i + 1)?)?;
                let lo = hex_value(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.ParseQuery` as `URL.Query()` uses it: pairs split on `&`, a pair containing `;` or a bad escape
/// dropped, `key` without `=` is `key=""`.
fn parse_query(raw: &str, into: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(key), Some(value)) = (unescape(key.as_bytes(), true), unescape(value.as_bytes(), true)) {
            into.push((key, value));
        }
    }
}

/// Go's `path.Clean`.
fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let mut out = Vec::with_capacity(path.len());
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        dotdot = 1;
    }
    for segment in path.split(|c| *c == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                if out.len() > dotdot {
                    let mut w = out.len() - 1;
                    while w > dotdot && out[w] != b'/' {
                        w -= 1;
                    }
                    out.truncate(w);
                } else if !rooted {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(b"..");
                    dotdot = out.len();
                }
            }
            _ => {
                if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                    out.push(b'/');
                }
                out.extend_from_slice(segment);
            }
        }
    }
    if out.is_empty() {
        return b".".to_vec();
    }
    out
}

/// Go's `path.Join(a, b)`: the non-empty ones joined with `/` and cleaned; empty when both are.
fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Vec::new(),
        (false, true) => clean(a),
        (true, false) => clean(b),
        (false, false) => {
            let mut both = Vec::with_capacity(a.len() + b.len() + 1);
            both.extend_from_slice(a);
            both.push(b'/');
            both.extend_from_slice(b);
            clean(&both)
        }
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
}

/// Go's `escape(path, encodePath)`: unreserved and `$&+,/:;=@` as they are, everything else `%XX`.
fn escape_path(path: &[u8], out: &mut String) {
    for &c in path {
        if unreserved(c) || matches!(c, b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@') {
            out.push(char::from(c));
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
}

/// Go's `url.QueryEscape`: unreserved as they are, space as `+`, everything else `%XX`.
fn escape_query(s: &[u8], out: &mut String) {
    for &c in s {
        if unreserved(c) {
            out.push(char::from(c));
        } else if c == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
}

/// Go's `validEncoded(s, encodePath)`: whether a raw path can be sent as written.
fn valid_encoded(s: &str) -> bool {
    s.bytes().all(|c| {
        unreserved(c)
            || matches!(
                c,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'['
                    | b']'
                    | b'%'
                    | b'/'
            )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn joined(backend: &str, relay: &str) -> String {
        BackendUrl::parse(backend).unwrap().join(relay).unwrap().to_string()
    }

    #[test]
    fn an_absolute_relay_url_keeps_only_its_path_and_query() {
        let b = "http://127.0.0.1:8545";
        assert_eq!(
            joined(b, "https://rm.example.com/v1/rest?x=1"),
            "http://127.0.0.1:8545/v1/rest?x=1"
        );
        assert_eq!(joined(b, "https://rm.example.com"), "http://127.0.0.1:8545/");
        assert_eq!(joined(b, "https://rm.example.com/"), "http://127.0.0.1:8545/");
        assert_eq!(
            joined(b, "https://user:pw@rm.example.com:443/a#frag"),
            "http://127.0.0.1:8545/a"
        );
        assert_eq!(joined(b, "//rm.example.com/a"), "http://127.0.0.1:8545/a");
    }

    #[test]
    fn relative_relay_urls_keep_working() {
        let b = "http://127.0.0.1:8545";
        assert_eq!(joined(b, ""), "http://127.0.0.1:8545/");
        assert_eq!(joined(b, "/"), "http://127.0.0.1:8545/");
        assert_eq!(joined(b, "/v1"), "http://127.0.0.1:8545/v1");
        assert_eq!(joined(b, "v1/x"), "http://127.0.0.1:8545/v1/x");
        assert_eq!(joined(b, "/?a=1"), "http://127.0.0.1:8545/?a=1");
    }

    #[test]
    fn the_backend_path_is_joined_and_queries_merged_like_go() {
        let b = "https://eth.example.net/v2/KEY?apikey=s3cret";
        assert_eq!(joined(b, "/"), "https://eth.example.net/v2/KEY?apikey=s3cret");
        assert_eq!(joined(b, ""), "https://eth.example.net/v2/KEY?apikey=s3cret");
        assert_eq!(
            joined(b, "https://rm.example.com/v1?x=1"),
            "https://eth.example.net/v2/KEY/v1?apikey=s3cret&x=1"
        );
        // Keys sorted, a key's values relay-first, `QueryEscape`d; a flag becomes `flag=`.
        assert_eq!(
            joined(b, "/a/?z=1&apikey=mine&flag&q=a+b%2Fc"),
            "https://eth.example.net/v2/KEY/a?apikey=mine&apikey=s3cret&flag=&q=a+b%2Fc&z=1"
        );
        // A trailing slash on the backend path goes, as with path.Join.
        assert_eq!(joined("http://h/rpc/", "/"), "http://h/rpc");
        assert_eq!(joined("http://h/rpc/", "/x/"), "http://h/rpc/x");
        // Pairs Go's ParseQuery refuses are dropped.
        assert_eq!(joined("http://h", "/?a=1;b=2&c=%zz&d=4"), "http://h/?d=4");
    }

    #[test]
    fn paths_are_cleaned_and_cannot_climb_out_of_the_backend_path() {
        let b = "http://h/v2/KEY";
        assert_eq!(joined(b, "/a//b/./c"), "http://h/v2/KEY/a/b/c");
        assert_eq!(joined(b, "/a/../b"), "http://h/v2/KEY/b");
        assert_eq!(joined(b, "/../../admin"), "http://h/v2/KEY/admin");
        assert_eq!(joined(b, "https://x/%2e%2e/admin"), "http://h/v2/KEY/admin");
    }

    #[test]
    fn escaping_follows_go() {
        // Unchanged by the join: the relay's own valid escaping is kept.
        assert_eq!(joined("http://h", "/a%2Fb!"), "http://h/a%2Fb!");
        // Changed by the join: re-escaped from the decoded path (`!` and spaces escaped, `%2F` now a `/`).
        assert_eq!(joined("http://h/base", "/a%2Fb!"), "http://h/base/a/b%21");
        assert_eq!(joined("http://h", "/a b"), "http://h/a%20b");
        assert_eq!(joined("http://h", "/caf%C3%A9"), "http://h/caf%C3%A9");
    }

    #[test]
    fn urls_go_would_not_parse_are_refused() {
        let b = BackendUrl::parse("http://h").unwrap();
        for bad in ["/a%zz", "/a\nb", ":x", "mailto:someone", "a:b/c", "1a:b"] {
            assert!(b.join(bad).is_err(), "{bad:?}");
        }
        for bad in ["h:1", "/path", "http://", "localhost:8545"] {
            assert!(BackendUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/a/b/../../..", "/"),
            ("a/b/../../../c", "../c"),
        ] {
            assert_eq!(String::from_utf8(clean(input.as_bytes())).unwrap(), want, "{input:?}");
        }
    }
}

#[cfg(test)]
mod base_path_tests {
    #![allow(clippy::unwrap_used)]
    use super::BackendUrl;

    /// The Go relayer's `mergeBackendPath` cases: `base_path` wins over the URL's path, a relay path already under
    /// it (whole segments) is not prefixed again, a partial segment is.
    #[test]
    fn base_path_merges_as_go_does() {
        let with = |url: &str, base: &str| BackendUrl::parse(url).unwrap().with_base_path(base).unwrap();
        let b = with("http://h:1/ignored", "/api/");
        for (relay, want) in [
            ("/", "http://h:1/api"),
            ("", "http://h:1/api"),
            ("/foo", "http://h:1/api/foo"),
            ("/api", "http://h:1/api"),
            ("/api/foo", "http://h:1/api/foo"),
            ("/apifoo", "http://h:1/api/apifoo"),
            ("/api/foo?x=1", "http://h:1/api/foo?x=1"),
        ] {
            assert_eq!(b.join(relay).unwrap().to_string(), want, "{relay}");
        }
        // `/` or empty: the URL's own path, as without base_path.
        assert_eq!(
            with("http://h:1/v1", "/").join("/x").unwrap().to_string(),
            "http://h:1/v1/x"
        );
    }
}
