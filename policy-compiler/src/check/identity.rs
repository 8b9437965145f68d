//! Subjects as written → checked subjects: SPIFFE IDs and patterns parsed
//! once, trust domains checked against the policy's `trust_domains`.
//!
//! Validation reuses the engine's SPIFFE rules (`spiffe::SpiffeId::parse`,
//! `check_trust_domain`, `check_path_segment`) so the compiler never accepts
//! an ID the filter would reject.

use meshward_engine::spiffe::{self, SpiffeId, MAX_SPIFFE_ID_LEN};

use super::settings::Settings;
use super::Context;
use crate::ast::StrLit;
use crate::checked::{IdPattern, IdPatternSegment, Subject};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;
use crate::suggest::did_you_mean;

const SCHEME: &str = "spiffe://";

/// Parses an exact SPIFFE ID or an ID pattern (`*` = one segment, `**` = the
/// rest, whole segments only). Reports `E008`/`E007` and returns `None` on error.
pub(super) fn subject_from_id(
    cx: &mut Context,
    settings: &Settings,
    lit: &StrLit,
) -> Option<Subject> {
    let subject = match parse_id_or_pattern(&lit.value) {
        Ok(subject) => subject,
        Err(problem) => {
            cx.report(problem.into_diagnostic(lit));
            return None;
        }
    };
    let td_span =
        lit.sub_span(SCHEME.len()..SCHEME.len() + subject.trust_domain().map_or(0, str::len));
    check_trusted(cx, settings, subject.trust_domain().unwrap_or(""), td_span).then_some(subject)
}

/// Parses `domain "td"`. Reports `E008`/`E007` and returns `None` on error.
pub(super) fn subject_from_domain(
    cx: &mut Context,
    settings: &Settings,
    lit: &StrLit,
) -> Option<Subject> {
    if let Err(error) = spiffe::check_trust_domain(&lit.value) {
        let help = match lit.value.strip_prefix(SCHEME) {
            Some(rest) => format!("write the bare trust domain: `domain \"{rest}\"`"),
            None => "a trust domain is a lowercase DNS-like name, e.g. `prod.example`".to_owned(),
        };
        cx.report(
            Diagnostic::new(
                Code::MalformedSpiffeId,
                format!("invalid trust domain `{}`", lit.value),
                lit.span,
            )
            .note(error.to_string())
            .help(help),
        );
        return None;
    }
    check_trusted(cx, settings, &lit.value, lit.sub_span(0..lit.value.len()))
        .then(|| Subject::TrustDomain(lit.value.clone()))
}

/// Reports `E007` unless `trust_domain` is trusted.
fn check_trusted(cx: &mut Context, settings: &Settings, trust_domain: &str, span: Span) -> bool {
    if settings.trusts(trust_domain) {
        return true;
    }
    let help = did_you_mean(
        trust_domain,
        settings.trust_domains.iter().map(String::as_str),
        || {
            format!("add `\"{trust_domain}\"` to `trust_domains` in the policy block if its workloads should be trusted")
        },
    );
    cx.report(
        Diagnostic::new(
            Code::UntrustedTrustDomain,
            format!("trust domain `{trust_domain}` is not trusted by this policy"),
            span,
        )
        .note("not in `trust_domains`")
        .help(help),
    );
    false
}

/// Why an ID or pattern is malformed, and which bytes of it to point at.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct IdProblem {
    note: String,
    range: std::ops::Range<usize>,
    help: &'static str,
}

impl IdProblem {
    fn into_diagnostic(self, lit: &StrLit) -> Diagnostic {
        Diagnostic::new(
            Code::MalformedSpiffeId,
            format!("malformed SPIFFE ID `{}`", lit.value),
            lit.sub_span(self.range),
        )
        .note(self.note)
        .help(self.help)
    }
}

const ID_HELP: &str =
    "write `spiffe://TRUST.DOMAIN/path/segments`, e.g. `spiffe://prod.example/ns/shop/sa/frontend`";
const WILDCARD_HELP: &str =
    "use `*` for exactly one whole segment and `**` as the last segment for any remaining ones";

/// Parses the text of an exact ID or a pattern.
pub(super) fn parse_id_or_pattern(text: &str) -> Result<Subject, IdProblem> {
    let problem = |note: String, range: std::ops::Range<usize>, help: &'static str| IdProblem {
        note,
        range,
        help,
    };
    if text.len() > MAX_SPIFFE_ID_LEN {
        return Err(problem(
            spiffe::SpiffeIdError::TooLong.to_string(),
            0..text.len(),
            ID_HELP,
        ));
    }
    let Some(rest) = text.strip_prefix(SCHEME) else {
        return Err(problem(
            spiffe::SpiffeIdError::WrongScheme.to_string(),
            0..text.len(),
            if text.contains('/') {
                ID_HELP
            } else {
                "for a whole trust domain write `subject domain \"…\"`; for one workload, a full `spiffe://` ID"
            },
        ));
    };
    let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let td_range = SCHEME.len()..SCHEME.len() + td.len();
    spiffe::check_trust_domain(td)
        .map_err(|e| problem(e.to_string(), td_range.clone(), ID_HELP))?;

    let mut offset = td_range.end;
    let mut segments = Vec::new();
    let mut has_wildcard = false;
    let segment_count = if path.is_empty() {
        0
    } else {
        path.split('/').count() - 1
    };
    for (index, segment) in path.split('/').skip(1).enumerate() {
        offset += 1;
        // An empty segment has no bytes of its own: point at its `/`.
        let range = if segment.is_empty() {
            offset - 1..offset
        } else {
            offset..offset + segment.len()
        };
        offset += segment.len();
        let parsed = match segment {
            "*" => IdPatternSegment::Any,
            "**" if index + 1 == segment_count => IdPatternSegment::Rest,
            "**" => {
                return Err(problem(
                    "`**` must be the last segment".to_owned(),
                    range,
                    WILDCARD_HELP,
                ))
            }
            s if s.contains('*') => {
                return Err(problem(
                    "`*` and `**` must be whole segments".to_owned(),
                    range,
                    WILDCARD_HELP,
                ))
            }
            s => {
                spiffe::check_path_segment(s)
                    .map_err(|e| problem(e.to_string(), range, ID_HELP))?;
                IdPatternSegment::Literal(s.to_owned())
            }
        };
        has_wildcard |= !matches!(parsed, IdPatternSegment::Literal(_));
        segments.push(parsed);
    }
    if has_wildcard {
        return Ok(Subject::Pattern(IdPattern {
            trust_domain: td.to_owned(),
            segments,
        }));
    }
    SpiffeId::parse(text)
        .map(Subject::Exact)
        .map_err(|e| problem(e.to_string(), 0..text.len(), ID_HELP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{codes, PREAMBLE};

    #[test]
    fn parses_ids_and_patterns() {
        assert!(matches!(
            parse_id_or_pattern("spiffe://a.example/ns/x"),
            Ok(Subject::Exact(id)) if id.as_str() == "spiffe://a.example/ns/x"
        ));
        assert!(matches!(
            parse_id_or_pattern("spiffe://a.example"),
            Ok(Subject::Exact(_))
        ));
        let Ok(Subject::Pattern(p)) = parse_id_or_pattern("spiffe://a.example/ns/*/sa/**") else {
            panic!("expected a pattern");
        };
        assert_eq!(p.trust_domain, "a.example");
        assert_eq!(
            p.segments,
            [
                IdPatternSegment::Literal("ns".into()),
                IdPatternSegment::Any,
                IdPatternSegment::Literal("sa".into()),
                IdPatternSegment::Rest
            ]
        );
    }

    #[test]
    fn points_at_the_bad_part() {
        let range = |text: &str| parse_id_or_pattern(text).err().map(|p| p.range);
        assert_eq!(range("spiffe://a.example/ns/**/x"), Some(22..24));
        assert_eq!(range("spiffe://a.example/ns/sa*"), Some(22..25));
        assert_eq!(range("spiffe://A.example/x"), Some(9..18));
        assert_eq!(range("spiffe://a.example//x"), Some(18..19));
        assert_eq!(range("spiffe://a.example/x/"), Some(20..21));
        assert_eq!(range("spiffe://a.example/a%20b"), Some(19..24));
        assert_eq!(range("a.example/x"), Some(0..11));
        assert_eq!(range("spiffe://"), Some(9..9));
    }

    #[test]
    fn subjects_must_be_trusted_and_well_formed() {
        let source = format!(
            "{PREAMBLE}intent i {{ path \"/\" }}\nallow r {{\n  subject \"spiffe://c.example/x\"\n  subject domain \"c.example\"\n  subject \"spiffe://a.example/**/x\"\n  subject domain \"spiffe://a.example\"\n  intent i\n}}\n"
        );
        assert_eq!(
            codes(&source),
            [
                Code::UntrustedTrustDomain,
                Code::UntrustedTrustDomain,
                Code::MalformedSpiffeId,
                Code::MalformedSpiffeId,
            ]
        );
    }
}
