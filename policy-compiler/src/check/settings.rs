//! The `policy` block: name, trust domains, credential bounds, mode.

use meshward_engine::spiffe;

use super::{report_repeated_setting, warn_listed_twice, Context};
use crate::ast::{Mode, PolicyBlock, PolicySetting};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};

/// The checked policy-wide settings.
pub(super) struct Settings {
    pub name: String,
    pub dry_run: bool,
    pub trust_domains: Vec<String>,
    /// False when the trust domains could not be read (no `policy` block or
    /// no `trust_domains`): untrusted-domain checks are then skipped rather
    /// than flagging every subject.
    pub trust_domains_known: bool,
    pub max_cert_lifetime_secs: Option<u64>,
}

impl Settings {
    /// Whether subjects of `trust_domain` may appear in rules.
    pub fn trusts(&self, trust_domain: &str) -> bool {
        !self.trust_domains_known || self.trust_domains.iter().any(|td| td == trust_domain)
    }
}

pub(super) fn check_policy_blocks(cx: &mut Context, blocks: &[&PolicyBlock]) -> Settings {
    let mut settings = Settings {
        name: String::new(),
        dry_run: false,
        trust_domains: Vec::new(),
        trust_domains_known: false,
        max_cert_lifetime_secs: None,
    };
    let Some((block, others)) = blocks.split_first() else {
        cx.report(
            Diagnostic::new(
                Code::MissingPolicy,
                "missing `policy` block",
                Span::new(0, 0),
            )
            .note("expected a `policy` block in this file")
            .help("start the file with `policy \"NAME\" { trust_domains \"your.trust.domain\" }`"),
        );
        return settings;
    };
    for other in others {
        cx.report(
            Diagnostic::new(
                Code::Duplicate,
                "`policy` block is declared twice",
                other.keyword,
            )
            .note("declared again here")
            .with_label(block.keyword, "first declared here")
            .help("a file holds one policy: merge the blocks"),
        );
    }
    settings.name = block.name.value.clone();

    let mut trust_keyword: Option<Span> = None;
    let mut lifetime_keyword: Option<Span> = None;
    let mut mode_keyword: Option<Span> = None;
    for setting in &block.settings {
        match setting {
            PolicySetting::TrustDomains { keyword, domains } => {
                if let Some(first) = trust_keyword {
                    report_repeated_setting(cx, "trust_domains", *keyword, first);
                    continue;
                }
                trust_keyword = Some(*keyword);
                let mut seen: Vec<Spanned<String>> = Vec::new();
                for domain in domains {
                    let entry = Spanned::new(domain.value.clone(), domain.span);
                    if let Some(first) = seen.iter().find(|s| s.value == entry.value) {
                        warn_listed_twice(cx, "trust domain", &entry, first.span);
                        continue;
                    }
                    if let Err(error) = spiffe::check_trust_domain(&domain.value) {
                        let help = if domain.value.starts_with("spiffe://") {
                            "write the trust domain without `spiffe://`, e.g. `prod.example`"
                        } else {
                            "a trust domain is a lowercase DNS-like name, e.g. `prod.example`"
                        };
                        cx.report(
                            Diagnostic::new(
                                Code::MalformedSpiffeId,
                                format!("invalid trust domain `{}`", domain.value),
                                domain.span,
                            )
                            .note(error.to_string())
                            .help(help),
                        );
                    }
                    seen.push(entry);
                }
                settings.trust_domains = seen.into_iter().map(|s| s.value).collect();
                settings.trust_domains_known = true;
            }
            PolicySetting::MaxCertLifetime { keyword, value } => {
                if let Some(first) = lifetime_keyword {
                    report_repeated_setting(cx, "max_cert_lifetime", *keyword, first);
                    continue;
                }
                lifetime_keyword = Some(*keyword);
                match parse_duration(&value.value) {
                    Ok(secs) => settings.max_cert_lifetime_secs = Some(secs),
                    Err(problem) => cx.report(
                        Diagnostic::new(
                            Code::BadDuration,
                            format!("invalid duration `{}`", value.value),
                            value.span,
                        )
                        .note(problem)
                        .help("write a positive whole number and one unit: `s`, `m`, `h` or `d`, e.g. `24h` or `90m`"),
                    ),
                }
            }
            PolicySetting::Mode { keyword, mode } => {
                if let Some(first) = mode_keyword {
                    report_repeated_setting(cx, "mode", *keyword, first);
                    continue;
                }
                mode_keyword = Some(*keyword);
                settings.dry_run = mode.value == Mode::DryRun;
            }
        }
    }
    if trust_keyword.is_none() {
        cx.report(
            Diagnostic::new(
                Code::MissingTrustDomains,
                format!("policy `{}` has no `trust_domains`", block.name.value),
                block.name.span,
            )
            .note("no trust domain is trusted, so no peer could ever be allowed")
            .help("add `trust_domains \"your.trust.domain\"` to the policy block"),
        );
    }
    settings
}

/// Seconds in `<n><unit>` with unit `s`, `m`, `h` or `d`, `n` positive;
/// `Err` says why not.
pub(super) fn parse_duration(text: &str) -> Result<u64, String> {
    match parse_duration_secs(text)? {
        0 => Err("a zero lifetime would reject every certificate".to_owned()),
        secs => Ok(secs),
    }
}

/// Seconds in `<n><unit>` with unit `s`, `m`, `h` or `d` (zero allowed: the
/// caller says what zero means); `Err` says why not.
pub(super) fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("a duration starts with a number".to_owned());
    }
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => return Err("the unit is missing".to_owned()),
        other if other.starts_with(['s', 'm', 'h', 'd']) && other.len() > 1 => {
            return Err("a duration has exactly one unit".to_owned())
        }
        other => return Err(format!("unknown unit `{other}`")),
    };
    let amount: u64 = digits
        .parse()
        .map_err(|_| "the number is too large".to_owned())?;
    amount
        .checked_mul(scale)
        .ok_or_else(|| "the number is too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::codes;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("0h").is_err());
        assert_eq!(parse_duration_secs("0h"), Ok(0));
        assert!(parse_duration("1h30m").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
    }

    #[test]
    fn policy_block_checks() {
        assert_eq!(codes(""), [Code::MissingPolicy]);
        assert_eq!(codes("policy \"p\" {\n}"), [Code::MissingTrustDomains]);
        assert_eq!(
            codes("policy \"p\" {\n trust_domains \"A.example\" \"spiffe://b\"\n}"),
            [Code::MalformedSpiffeId, Code::MalformedSpiffeId]
        );
        assert_eq!(
            codes("policy \"p\" {\n trust_domains \"a\" \"a\"\n mode dry-run\n mode enforce\n max_cert_lifetime 1y\n}"),
            [Code::DuplicateEntry, Code::RepeatedSetting, Code::BadDuration]
        );
        assert_eq!(
            codes(
                "policy \"p\" {\n trust_domains \"a\"\n}\npolicy \"q\" {\n trust_domains \"a\"\n}"
            ),
            [Code::Duplicate]
        );
    }
}
