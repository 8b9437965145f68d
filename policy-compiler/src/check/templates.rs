//! Path templates, gRPC method names and hosts as written in intents.
//!
//! A template may only describe paths the engine can classify: canonical
//! paths (see `meshward_engine::path`) made of visible ASCII, with no `%`,
//! `;`, `\`, `?` or `#`, no empty, `.` or `..` segments. `{name}` and `**`
//! are whole segments; `**` only last.

use std::ops::Range;

use meshward_engine::authority::CanonicalAuthority;

use crate::checked::TemplateSegment;

/// Why a template (or gRPC name, or host) is invalid: a note, the bytes of
/// the written value to point at, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub note: String,
    pub range: Range<usize>,
    pub help: String,
}

fn problem(note: impl Into<String>, range: Range<usize>, help: impl Into<String>) -> Problem {
    Problem {
        note: note.into(),
        range,
        help: help.into(),
    }
}

/// Parses a path template such as `/orders/{id}` or `/static/**`.
pub(super) fn parse_template(text: &str) -> Result<Vec<TemplateSegment>, Problem> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err(problem(
            "a path template starts with `/`",
            0..text.len(),
            format!("write `/{text}`"),
        ));
    };
    check_characters(text)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let count = rest.split('/').count();
    let mut offset = 0;
    let mut segments = Vec::with_capacity(count);
    for (index, segment) in rest.split('/').enumerate() {
        offset += 1;
        // An empty segment has no bytes of its own: point at its `/`.
        let range = if segment.is_empty() {
            offset - 1..offset
        } else {
            offset..offset + segment.len()
        };
        offset += segment.len();
        segments.push(parse_segment(segment, index + 1 == count, range)?);
    }
    Ok(segments)
}

fn parse_segment(
    segment: &str,
    last: bool,
    range: Range<usize>,
) -> Result<TemplateSegment, Problem> {
    match segment {
        "" => Err(problem(
            "empty path segment (`//` or a trailing `/`)",
            range,
            "remove the extra `/`: requests with empty segments are never classified",
        )),
        "." | ".." => Err(problem(
            "`.` and `..` segments are never classified (non-canonical path)",
            range,
            "write the path without dot segments",
        )),
        "**" if last => Ok(TemplateSegment::Rest),
        "**" => Err(problem(
            "`**` must be the last segment",
            range,
            "`**` matches the rest of the path; use `{name}` for exactly one segment",
        )),
        "*" => Err(problem(
            "`*` is not a path wildcard",
            range,
            "use `{name}` for exactly one segment or `**` for the rest of the path",
        )),
        s if s.starts_with('{') && s.ends_with('}') => {
            let name = s.get(1..s.len() - 1).unwrap_or("");
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Ok(TemplateSegment::Param)
            } else {
                Err(problem(
                    format!("`{s}` is not a valid parameter"),
                    range,
                    "name the parameter with letters, digits and `_`, e.g. `{id}`",
                ))
            }
        }
        s if s.contains(['{', '}', '*']) => Err(problem(
            "`{name}`, `*` and `**` must be whole segments",
            range,
            "put the parameter or wildcard in a segment of its own",
        )),
        s => Ok(TemplateSegment::Literal(s.to_owned())),
    }
}

/// Rejects characters that never appear in a canonical request path.
fn check_characters(text: &str) -> Result<(), Problem> {
    for (i, c) in text.char_indices() {
        let range = i..i + c.len_utf8();
        let (note, help) = match c {
            '%' => (
                "`%` is not allowed: percent-encoded paths are classified in their plain form",
                "write the character itself, or leave it out",
            ),
            '?' => (
                "`?` starts a query, which intents do not match",
                "remove the query: intents match the path only",
            ),
            '#' => (
                "`#` starts a fragment, which never reaches the server",
                "remove the fragment",
            ),
            ';' => (
                "`;` path parameters are never classified (non-canonical path)",
                "remove the `;…` part",
            ),
            '\\' => (
                "`\\` is never classified (non-canonical path)",
                "separate segments with `/`",
            ),
            '\u{21}'..='\u{7e}' => continue,
            _ => (
                "only visible ASCII characters may appear in a path template",
                "remove spaces, control and non-ASCII characters",
            ),
        };
        return Err(problem(note, range, help));
    }
    Ok(())
}

/// Parses a gRPC method `package.Service/Method` into its route segments
/// (the request path is `/package.Service/Method`, always POST).
pub(super) fn parse_grpc(text: &str) -> Result<Vec<TemplateSegment>, Problem> {
    const FORM: &str = "write the fully qualified method as `package.Service/Method`";
    if let Some(rest) = text.strip_prefix('/') {
        return Err(problem(
            "a gRPC method is written without a leading `/`",
            0..1,
            format!("write `{rest}`"),
        ));
    }
    let Some((service, method)) = text.split_once('/') else {
        return Err(problem(
            "a gRPC method needs a `/` between service and method",
            0..text.len(),
            FORM,
        ));
    };
    let service_ok = !service.is_empty()
        && !service.starts_with('.')
        && !service.ends_with('.')
        && !service.contains("..")
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !service_ok {
        return Err(problem(
            format!("`{service}` is not a valid gRPC service name"),
            0..service.len().max(1),
            FORM,
        ));
    }
    let method_ok = !method.is_empty()
        && method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !method_ok {
        let start = service.len() + 1;
        return Err(problem(
            format!("`{method}` is not a valid gRPC method name"),
            start..start + method.len().max(1),
            FORM,
        ));
    }
    Ok(vec![
        TemplateSegment::Literal(service.to_owned()),
        TemplateSegment::Literal(method.to_owned()),
    ])
}

/// Checks an intent host and returns it lowercased.
pub(super) fn parse_host(text: &str) -> Result<String, Problem> {
    if text.is_empty() {
        return Err(problem(
            "the host is empty",
            0..0,
            "write a host such as `orders.shop.svc`, or omit `host` to match any",
        ));
    }
    if let Some(i) = text.find(':') {
        return Err(problem(
            "the port is ignored when matching, so it cannot be part of `host`",
            i..text.len(),
            format!("write `{}`", text.get(..i).unwrap_or("")),
        ));
    }
    if let Some((i, c)) = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        let help = if c == '*' {
            "wildcard hosts are not supported: omit `host` to match any host"
        } else {
            "a host is a DNS name of letters, digits, `.`, `-` and `_`"
        };
        return Err(problem(
            format!("`{c}` cannot appear in a host"),
            i..i + c.len_utf8(),
            help,
        ));
    }
    // The same canonical form the engine gives a request's `:authority`
    // (lower case, one trailing dot removed), so the intent matches exactly
    // the requests whose host is this one; a host the engine would refuse
    // could never match.
    match CanonicalAuthority::parse(text) {
        Ok(canonical) => Ok(canonical.host().to_owned()),
        Err(e) => Err(problem(
            e.to_string(),
            0..text.len(),
            "a host is a DNS name (labels of 1-63 letters, digits, `-`, `_`, \
             joined by single dots) or a dotted-quad IPv4 address",
        )),
    }
}

/// Renders segments back as a template, for messages (`{}` for parameters).
pub(super) fn display_template(segments: &[TemplateSegment]) -> String {
    if segments.is_empty() {
        return "/".to_owned();
    }
    segments
        .iter()
        .map(|s| match s {
            TemplateSegment::Literal(text) => format!("/{text}"),
            TemplateSegment::Param => "/{}".to_owned(),
            TemplateSegment::Rest => "/**".to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplateSegment::*;

    #[test]
    fn parses_templates() {
        assert_eq!(parse_template("/"), Ok(vec![]));
        assert_eq!(
            parse_template("/orders/{id}/items/**"),
            Ok(vec![
                Literal("orders".into()),
                Param,
                Literal("items".into()),
                Rest
            ])
        );
        assert_eq!(
            parse_template("/a:b/~c"),
            Ok(vec![Literal("a:b".into()), Literal("~c".into())])
        );
    }

    #[test]
    fn rejects_bad_templates_pointing_at_the_cause() {
        let range = |t: &str| parse_template(t).err().map(|p| p.range);
        assert_eq!(range("orders"), Some(0..6));
        assert_eq!(range("/a//b"), Some(2..3));
        assert_eq!(range("/a/"), Some(2..3));
        assert_eq!(range("/a/../b"), Some(3..5));
        assert_eq!(range("/a/**/b"), Some(3..5));
        assert_eq!(range("/a/*"), Some(3..4));
        assert_eq!(range("/a/x{id}"), Some(3..8));
        assert_eq!(range("/a/{}"), Some(3..5));
        assert_eq!(range("/a/{1d}"), Some(3..7));
        assert_eq!(range("/a%2e"), Some(2..3));
        assert_eq!(range("/a?x=1"), Some(2..3));
        assert_eq!(range("/a;b"), Some(2..3));
        assert_eq!(range("/a\\b"), Some(2..3));
        assert_eq!(range("/a#b"), Some(2..3));
        assert_eq!(range("/a b"), Some(2..3));
        assert_eq!(range("/é"), Some(1..3));
    }

    #[test]
    fn grpc_names() {
        assert_eq!(
            parse_grpc("shop.v1.Orders/Get"),
            Ok(vec![
                Literal("shop.v1.Orders".into()),
                Literal("Get".into())
            ])
        );
        for bad in [
            "/shop.Orders/Get",
            "shop.Orders",
            "shop..Orders/Get",
            "shop.Orders/",
            "shop.Orders/Get/x",
            "/",
        ] {
            assert!(parse_grpc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("Orders.Shop.svc"),
            Ok("orders.shop.svc".to_owned())
        );
        assert_eq!(
            parse_host("orders:8080").err().map(|p| p.range),
            Some(6..11)
        );
        assert!(parse_host("*.svc").is_err());
        assert!(parse_host("").is_err());
        // The canonical form a request's host gets: one trailing dot goes.
        assert_eq!(parse_host("Vault.Example."), Ok("vault.example".to_owned()));
        assert_eq!(parse_host("10.0.0.1"), Ok("10.0.0.1".to_owned()));
        for bad in [
            "vault.example..",
            "vault..example",
            ".vault.example",
            "-vault.example",
            "10.1",
            "010.0.0.1",
            "a,b",
            "x@vault",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_templates() {
        assert_eq!(display_template(&[]), "/");
        assert_eq!(
            display_template(&[Literal("a".into()), Param, Rest]),
            "/a/{}/**"
        );
    }
}
