//! The `chain` block: which peers may forward the hops before them, the
//! deepest chain accepted and how long a chain lives. Without the block no
//! peer forwards (every chain restarts at the direct peer), `max_depth` is 8
//! and `lifetime` 60s.

use super::settings::parse_duration_secs;
use super::subjects::SubjectResolver;
use super::{report_repeated_setting, Context};
use crate::ast::{ChainBlock, ChainSetting};
use crate::checked::ChainConfig;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// The checked chain settings.
pub(super) struct ChainChecked {
    pub config: ChainConfig,
    /// The `max_depth` that depth bounds are checked against: the configured
    /// one, or the hard cap when it was invalid (no follow-on errors).
    pub depth_limit: u8,
}

pub(super) fn check_chain_blocks(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    blocks: &[&ChainBlock],
) -> ChainChecked {
    let mut checked = ChainChecked {
        config: ChainConfig::default(),
        depth_limit: ChainConfig::default().max_depth,
    };
    let Some((block, others)) = blocks.split_first() else {
        return checked;
    };
    for other in others {
        cx.report(
            Diagnostic::new(
                Code::Duplicate,
                "`chain` block is declared twice",
                other.keyword,
            )
            .note("declared again here")
            .with_label(block.keyword, "first declared here")
            .help("a policy has one `chain` block: merge them"),
        );
    }
    let mut depth_at: Option<Span> = None;
    let mut lifetime_at: Option<Span> = None;
    for setting in &block.settings {
        match setting {
            ChainSetting::Forwarder { subjects, .. } => {
                let Some(subjects) = resolver.resolve_list(cx, "forwarder", subjects) else {
                    continue;
                };
                for subject in subjects {
                    if !checked.config.forwarders.contains(&subject) {
                        checked.config.forwarders.push(subject);
                    }
                }
            }
            ChainSetting::MaxDepth { keyword, value } => {
                if let Some(first) = depth_at {
                    report_repeated_setting(cx, "max_depth", *keyword, first);
                    continue;
                }
                depth_at = Some(*keyword);
                match value.value.parse::<u8>() {
                    Ok(depth @ 1..=ChainConfig::MAX_DEPTH) => {
                        checked.config.max_depth = depth;
                        checked.depth_limit = depth;
                    }
                    _ => {
                        checked.depth_limit = ChainConfig::MAX_DEPTH;
                        cx.report(
                            Diagnostic::new(
                                Code::ChainSettingOutOfRange,
                                format!("`max_depth {}` is out of range", value.value),
                                value.span,
                            )
                            .note(format!(
                                "a chain has 1 to {} hops, the direct peer included",
                                ChainConfig::MAX_DEPTH
                            ))
                            .help(format!(
                                "write a whole number from 1 to {}, e.g. `max_depth 5`",
                                ChainConfig::MAX_DEPTH
                            )),
                        );
                    }
                }
            }
            ChainSetting::Lifetime { keyword, value } => {
                if let Some(first) = lifetime_at {
                    report_repeated_setting(cx, "lifetime", *keyword, first);
                    continue;
                }
                lifetime_at = Some(*keyword);
                match parse_duration_secs(&value.value) {
                    Err(problem) => cx.report(
                        Diagnostic::new(
                            Code::BadDuration,
                            format!("invalid duration `{}`", value.value),
                            value.span,
                        )
                        .note(problem)
                        .help("write a whole number and one unit: `s`, `m`, `h` or `d`, e.g. `60s` or `5m`"),
                    ),
                    Ok(secs) => match u32::try_from(secs) {
                        Ok(secs @ 1..=ChainConfig::MAX_LIFETIME_SECS) => {
                            checked.config.lifetime_secs = secs;
                        }
                        _ => cx.report(
                            Diagnostic::new(
                                Code::ChainSettingOutOfRange,
                                format!("chain `lifetime {}` is out of range", value.value),
                                value.span,
                            )
                            .note(if secs == 0 {
                                "a chain that lives 0 seconds expires before it arrives"
                            } else {
                                "a chain may be replayed for as long as it lives"
                            })
                            .help("choose a lifetime from 1s to 1h; a minute or less is typical"),
                        ),
                    },
                }
            }
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    fn rule() -> &'static str {
        "intent i {\n  method GET\n  path \"/\"\n}\nallow r {\n  subject any_authenticated\n  intent i\n}\n"
    }

    #[test]
    fn reads_settings_and_expands_forwarder_groups() {
        let (policy, diagnostics) = check_source(&format!(
            "{PREAMBLE}group mesh {{ member \"spiffe://a.example/ns/*/sa/*\" }}\nchain {{\n  forwarder group mesh \"spiffe://b.example/gw\"\n  forwarder domain \"a.example\"\n  max_depth 5\n  lifetime 2m\n}}\n{}",
            rule()
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let chain = policy.unwrap().chain;
        assert_eq!(chain.forwarders.len(), 3);
        assert_eq!((chain.max_depth, chain.lifetime_secs), (5, 120));
    }

    #[test]
    fn defaults_without_a_chain_block() {
        let (policy, _) = check_source(&format!("{PREAMBLE}{}", rule()));
        let chain = policy.unwrap().chain;
        assert!(chain.forwarders.is_empty());
        assert_eq!((chain.max_depth, chain.lifetime_secs), (8, 60));
    }

    #[test]
    fn reports_chain_block_problems() {
        let source = format!(
            "{PREAMBLE}chain {{\n  forwarder group nope \"spiffe://c.example/x\" \"spiffe://a.example/**/x\"\n  max_depth 17\n  max_depth 3\n  lifetime 2h\n}}\nchain {{\n  lifetime 0s\n  max_depth 0\n}}\n{}",
            rule()
        );
        assert_eq!(
            codes(&source),
            [
                Code::Duplicate,
                Code::UnknownGroup,
                Code::UntrustedTrustDomain,
                Code::MalformedSpiffeId,
                Code::ChainSettingOutOfRange,
                Code::RepeatedSetting,
                Code::ChainSettingOutOfRange,
            ]
        );
    }
}
