//! The `identity` block → [`checked::IdentitySettings`], and the cross-checks
//! between the identity sources it configures and the rules that need them.
//!
//! Every value is checked with the rule the filter applies when it loads the
//! plugin configuration (header names, schemes, algorithms, skew, sizes,
//! fetches, key documents parsed by the engine's own `KeySet::parse`), so
//! `meshward compile` never writes settings the filter would refuse. Key
//! files are read here, relative to the directory of the file that names
//! them (the policy, or a settings file given with `--settings`), and
//! embedded.
//!
//! Cross-checks (a rule that can never be satisfied is the silent deny-all
//! this block exists to prevent):
//! - `E042`: a rule needs a user token verified at this hop (`when user
//!   issuer`, `when user claim`) and no issuer is configured; a rule on the
//!   user at all (`principal user`, `when user present|subject|scope`) with
//!   no issuer and no chain forwarder; a JWT-SVID rule with no `jwt_svid`
//!   settings, or whose subjects' trust domain has no `trust_bundle`.
//! - `E043`: a rule reads a claim no issuer's `claims` lists, when some
//!   issuer lists its claims (claims rules read are otherwise added to the
//!   configuration automatically).
//! - `E044`: a malformed claim path, in rules, issuers and tests.
//! - `W020`: `jwt_svid` settings, a trust bundle or an issuer no rule uses.
//!
//! `external` in the block says the token and key settings are added to the
//! plugin configuration by another tool: no source may be written then, and
//! the cross-checks are skipped (the choice is explicit in the policy).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use meshward_engine::identity::normalize_serial;
use meshward_engine::identity::{Alg, KeyOwner, KeySet};
use meshward_engine::identity::{ClaimPath, ClaimPathError};
use meshward_engine::spiffe::{self, SpiffeId};

use super::settings::{parse_duration_secs, Settings};
use super::{report_repeated_setting, Context};
use crate::ast::{
    ConditionKind, FetchExpr, FetchOption, IdentityBlock, IdentitySetting, IssuerBlock, KeysExpr,
    PrincipalExpr, RevocationSetting, RuleBlock, RuleStatement, StrLit, TestBlock, TestStatement,
    TokenSetting, TrustBundleBlock, UserTestExpr,
};
use crate::checked::{
    ChainConfig, FetchSource, IdentitySettings, IssuerSource, JwtSvidSource, Principal, Rule,
    Subject, TokenSettings, TrustBundle, UserTokenSource,
};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};

/// Largest key file read at compile time (the filter's own JWKS limit).
const MAX_KEY_FILE_LEN: u64 = 1024 * 1024;

/// What the cross-checks need besides the identity block.
pub(super) struct RuleView<'a> {
    pub settings: &'a Settings,
    pub chain: &'a ChainConfig,
    pub rule_blocks: &'a [&'a RuleBlock],
    pub rules: &'a [Rule],
    pub test_blocks: &'a [&'a TestBlock],
}

/// Where the identity settings are written.
pub(super) enum IdentityInput<'a> {
    /// The policy's own `identity` blocks (at most one is allowed).
    Policy(&'a [&'a IdentityBlock]),
    /// A settings file given beside the policy: its block replaces the
    /// policy's, and findings about the block itself go to `cx` (the
    /// settings file's diagnostics).
    SettingsFile {
        /// The file's `identity` block, if it has one.
        block: Option<&'a IdentityBlock>,
        /// The settings file's diagnostics.
        cx: &'a mut Context,
    },
}

/// Checks the identity settings and the rules against them. Findings about
/// the rules go to `cx` (the policy's diagnostics).
pub(super) fn check_identity(
    cx: &mut Context,
    input: IdentityInput<'_>,
    view: &RuleView<'_>,
) -> IdentitySettings {
    let mut found = Found::default();
    let mut own = Context {
        base_dir: cx.base_dir.clone(),
        ..Context::default()
    };
    let (settings_cx, block) = match input {
        IdentityInput::Policy(blocks) => {
            if let Some((block, others)) = blocks.split_first() {
                for other in others {
                    cx.report(
                        Diagnostic::new(
                            Code::Duplicate,
                            "`identity` block is declared twice",
                            other.keyword,
                        )
                        .note("declared again here")
                        .with_label(block.keyword, "first declared here")
                        .help("a policy has one `identity` block: merge them"),
                    );
                }
            }
            (&mut own, blocks.first().copied())
        }
        IdentityInput::SettingsFile { block, cx } => (cx, block),
    };
    if let Some(block) = block {
        read_block(settings_cx, view.settings, block, &mut found);
    }
    let claims_read = check_claim_paths(cx, view);
    if found.external.is_none() {
        let usage = cross_check(cx, view, &found, &claims_read);
        warn_unused(settings_cx, &found, &usage);
    }
    cx.diagnostics.append(&mut own.diagnostics);
    found.into_settings(claims_read)
}

/// The block as read, with the spans the cross-checks point at.
#[derive(Default)]
struct Found {
    jwt_svid: Option<(Span, JwtSvidSource)>,
    user_tokens: Option<(Span, TokenSettings)>,
    issuers: Vec<(Span, IssuerSource, Option<Vec<String>>)>,
    bundles: Vec<(Span, TrustBundle)>,
    revocation_keyword: Option<Span>,
    revocation_fetch: Vec<FetchSource>,
    revoked_spiffe_ids: Vec<String>,
    revoked_serials: Vec<String>,
    revoked_jtis: Vec<String>,
    hand_off: Option<Spanned<String>>,
    external: Option<Span>,
}

impl Found {
    fn into_settings(self, claims_read: Vec<String>) -> IdentitySettings {
        let user_tokens = (!self.issuers.is_empty()).then(|| {
            let mut claims: Vec<String> = Vec::new();
            let listed = self
                .issuers
                .iter()
                .flat_map(|(_, _, listed)| listed.iter().flatten());
            for claim in listed.chain(claims_read.iter()) {
                if !claims.contains(claim) {
                    claims.push(claim.clone());
                }
            }
            UserTokenSource {
                settings: self.user_tokens.map(|(_, s)| s).unwrap_or_default(),
                issuers: self.issuers.into_iter().map(|(_, i, _)| i).collect(),
                claims,
            }
        });
        IdentitySettings {
            jwt_svid: self.jwt_svid.map(|(_, s)| s),
            user_tokens,
            trust_bundles: self.bundles.into_iter().map(|(_, b)| b).collect(),
            revocation_fetch: self.revocation_fetch,
            revoked_spiffe_ids: self.revoked_spiffe_ids,
            revoked_serials: self.revoked_serials,
            revoked_jtis: self.revoked_jtis,
            chain_hand_off: self.hand_off.map(|h| h.value),
        }
    }

    fn has_bundle(&self, trust_domain: &str) -> bool {
        self.bundles
            .iter()
            .any(|(_, b)| b.trust_domain == trust_domain)
    }
}

fn invalid(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::new(Code::InvalidIdentitySetting, message, span)
}

fn read_block(cx: &mut Context, settings: &Settings, block: &IdentityBlock, found: &mut Found) {
    for setting in &block.settings {
        match setting {
            IdentitySetting::JwtSvid {
                keyword,
                settings: statements,
            } => {
                if let Some((first, _)) = &found.jwt_svid {
                    report_repeated_setting(cx, "jwt_svid", *keyword, *first);
                    continue;
                }
                let mut read = TokenRead::default();
                read.read(cx, statements);
                let audiences = read.audiences.unwrap_or_else(|| {
                    cx.report(
                        invalid("`jwt_svid` has no `audiences`", *keyword)
                            .note("a JWT-SVID must name this workload as its audience")
                            .help(
                                "add `audiences \"spiffe://your.domain/ns/NS/sa/THIS-WORKLOAD\"`",
                            ),
                    );
                    Vec::new()
                });
                let source = JwtSvidSource {
                    audiences,
                    settings: read.settings,
                };
                found.jwt_svid = Some((*keyword, source));
            }
            IdentitySetting::UserTokens {
                keyword,
                settings: statements,
            } => {
                if let Some((first, _)) = &found.user_tokens {
                    report_repeated_setting(cx, "user_tokens", *keyword, *first);
                    continue;
                }
                let mut read = TokenRead::default();
                read.read(cx, statements);
                found.user_tokens = Some((*keyword, read.settings));
            }
            IdentitySetting::Issuer(issuer) => read_issuer(cx, issuer, found),
            IdentitySetting::TrustBundle(bundle) => read_bundle(cx, settings, bundle, found),
            IdentitySetting::Revocation {
                keyword,
                settings: statements,
            } => {
                if let Some(first) = found.revocation_keyword {
                    report_repeated_setting(cx, "revocation", *keyword, first);
                    continue;
                }
                found.revocation_keyword = Some(*keyword);
                read_revocation(cx, statements, found);
            }
            IdentitySetting::External(keyword) => {
                if let Some(first) = found.external {
                    report_repeated_setting(cx, "external", *keyword, first);
                }
                found.external = Some(*keyword);
            }
            IdentitySetting::ChainHandOff { keyword, value } => {
                if let Some(first) = &found.hand_off {
                    report_repeated_setting(cx, "chain_hand_off", *keyword, first.span);
                    continue;
                }
                if !matches!(value.value.as_str(), "sealed" | "wire") {
                    cx.report(
                        invalid(format!("unknown chain hand-off `{}`", value.value), value.span)
                            .note("expected `sealed` or `wire`")
                            .help("`sealed` (the default) hands the chain to an app behind this proxy; `wire` hands it straight to the next meshward hop (an edge gateway)"),
                    );
                    continue;
                }
                found.hand_off = Some(Spanned::new(value.value.clone(), *keyword));
            }
        }
    }
    if let Some(external) = found.external {
        let sources = block.settings.iter().find(|s| {
            !matches!(
                s,
                IdentitySetting::External(_) | IdentitySetting::ChainHandOff { .. }
            )
        });
        if let Some(source) = sources {
            cx.report(
                invalid("`external` with identity sources in the same block", setting_span(source))
                    .note("`external` says the token and key settings come from outside this policy")
                    .with_label(external, "declared external here")
                    .help("either write every identity source here and remove `external`, or remove the sources"),
            );
        }
    }
    if found.user_tokens.is_some() && found.issuers.is_empty() {
        if let Some((keyword, _)) = &found.user_tokens {
            cx.report(
                invalid("`user_tokens` without any `issuer`", *keyword)
                    .note("every user token would be refused as from an untrusted issuer")
                    .help("add `issuer \"https://your.idp\" { audiences \"...\" keys ... }` to the identity block"),
            );
        }
    }
}

fn setting_span(setting: &IdentitySetting) -> Span {
    match setting {
        IdentitySetting::JwtSvid { keyword, .. }
        | IdentitySetting::UserTokens { keyword, .. }
        | IdentitySetting::Revocation { keyword, .. }
        | IdentitySetting::ChainHandOff { keyword, .. }
        | IdentitySetting::External(keyword) => *keyword,
        IdentitySetting::Issuer(block) => block.keyword,
        IdentitySetting::TrustBundle(block) => block.keyword,
    }
}

/// Token settings as read, plus the issuer-only parts.
#[derive(Default)]
struct TokenRead {
    settings: TokenSettings,
    audiences: Option<Vec<String>>,
    key_exprs: Vec<KeysExpr>,
    claims: Option<Vec<String>>,
    seen: Vec<(&'static str, Span)>,
}

impl TokenRead {
    /// Whether `name` is seen for the first time (else reports `E023`).
    fn once(&mut self, cx: &mut Context, name: &'static str, keyword: Span) -> bool {
        if let Some((_, first)) = self.seen.iter().find(|(n, _)| *n == name) {
            report_repeated_setting(cx, name, keyword, *first);
            return false;
        }
        self.seen.push((name, keyword));
        true
    }

    fn read(&mut self, cx: &mut Context, statements: &[TokenSetting]) {
        for statement in statements {
            match statement {
                TokenSetting::Header { keyword, name } => {
                    if self.once(cx, "header", *keyword) && header_ok(cx, name) {
                        self.settings.header = Some(name.value.clone());
                    }
                }
                TokenSetting::Scheme { keyword, scheme } => {
                    if self.once(cx, "scheme", *keyword) && scheme_ok(cx, scheme) {
                        self.settings.scheme = Some(scheme.value.clone());
                    }
                }
                TokenSetting::Audiences { keyword, audiences } => {
                    if !self.once(cx, "audiences", *keyword) {
                        continue;
                    }
                    let mut list: Vec<String> = Vec::new();
                    for audience in audiences {
                        if audience.value.is_empty() {
                            cx.report(
                                invalid("empty audience", audience.span)
                                    .note("an empty audience matches no token")
                                    .help("write the audience your tokens carry in `aud`"),
                            );
                        } else if !list.contains(&audience.value) {
                            list.push(audience.value.clone());
                        }
                    }
                    self.audiences = Some(list);
                }
                TokenSetting::MaxLifetime { keyword, value } => {
                    if self.once(cx, "max_lifetime", *keyword) {
                        self.settings.max_lifetime_secs = duration(cx, value, 1, u64::MAX);
                    }
                }
                TokenSetting::ClockSkew { keyword, value } => {
                    if self.once(cx, "clock_skew", *keyword) {
                        self.settings.clock_skew_secs = duration(cx, value, 0, 300);
                    }
                }
                TokenSetting::Algorithms { keyword, names } => {
                    if self.once(cx, "algorithms", *keyword) {
                        self.settings.algorithms = algorithms(cx, names);
                    }
                }
                TokenSetting::MaxTokenBytes { keyword, value } => {
                    if !self.once(cx, "max_token_bytes", *keyword) {
                        continue;
                    }
                    match value.value.parse::<u64>() {
                        Ok(n) if (256..=65536).contains(&n) => {
                            self.settings.max_token_bytes = Some(n);
                        }
                        _ => cx.report(
                            invalid(format!("invalid token size `{}`", value.value), value.span)
                                .note("expected a whole number of bytes from 256 to 65536")
                                .help("e.g. `max_token_bytes 8192`"),
                        ),
                    }
                }
                TokenSetting::Keys(keys) => self.key_exprs.push(keys.clone()),
                TokenSetting::Claims { keyword, paths } => {
                    if !self.once(cx, "claims", *keyword) {
                        continue;
                    }
                    let mut list: Vec<String> = Vec::new();
                    for lit in paths {
                        if let Some(path) = claim_path(cx, lit) {
                            if !list.contains(&path) {
                                list.push(path);
                            }
                        }
                    }
                    self.claims = Some(list);
                }
            }
        }
    }
}

fn header_ok(cx: &mut Context, name: &StrLit) -> bool {
    let ok = !name.value.is_empty()
        && name.value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        });
    if !ok {
        cx.report(
            Diagnostic::new(
                Code::InvalidHeaderName,
                format!("invalid header name `{}`", name.value),
                name.span,
            )
            .note("a header name is a non-empty lowercase HTTP token")
            .help(format!(
                "write it in lowercase, e.g. `\"{}\"`",
                name.value.to_ascii_lowercase()
            )),
        );
    }
    ok
}

fn scheme_ok(cx: &mut Context, scheme: &StrLit) -> bool {
    let ok = scheme
        .value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        cx.report(
            invalid(
                format!("invalid authentication scheme `{}`", scheme.value),
                scheme.span,
            )
            .note("a scheme is an HTTP token such as `Bearer`")
            .help("write `scheme \"Bearer\"`, or `scheme \"\"` for a bare token"),
        );
    }
    ok
}

/// A duration in `min..=max` seconds; reports `E015`/`E040` otherwise.
fn duration(cx: &mut Context, value: &Spanned<String>, min: u64, max: u64) -> Option<u64> {
    match parse_duration_secs(&value.value) {
        Err(problem) => {
            cx.report(
                Diagnostic::new(
                    Code::BadDuration,
                    format!("invalid duration `{}`", value.value),
                    value.span,
                )
                .note(problem)
                .help(
                    "write a whole number and one unit: `s`, `m`, `h` or `d`, e.g. `30s` or `5m`",
                ),
            );
            None
        }
        Ok(secs) if secs < min || secs > max => {
            let bound = if secs < min {
                "must be greater than zero".to_owned()
            } else {
                format!("must be at most {max}s")
            };
            cx.report(
                invalid(
                    format!("duration `{}` is out of range", value.value),
                    value.span,
                )
                .note(bound)
                .help("see the identity settings in docs/policy-language.md for each bound"),
            );
            None
        }
        Ok(secs) => Some(secs),
    }
}

fn algorithms(cx: &mut Context, names: &[Spanned<String>]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for name in names {
        match Alg::from_name(&name.value) {
            Some(alg) => {
                if !out.iter().any(|a| a == alg.name()) {
                    out.push(alg.name().to_owned());
                }
            }
            None => {
                ok = false;
                cx.report(
                    invalid(format!("unsupported algorithm `{}`", name.value), name.span)
                        .note("meshward verifies ES256, RS256, PS256 and EdDSA; `none` and HMAC (HS*) are never accepted")
                        .help("list some of `ES256 RS256 PS256 EdDSA`"),
                );
            }
        }
    }
    ok.then_some(out)
}

/// A claim path in canonical form; reports `E044` when malformed.
fn claim_path(cx: &mut Context, lit: &StrLit) -> Option<String> {
    match ClaimPath::parse(&lit.value) {
        Ok(path) => Some(path.as_str().to_owned()),
        Err(error) => {
            cx.report(claim_path_diagnostic(lit, error));
            None
        }
    }
}

fn claim_path_diagnostic(lit: &StrLit, error: ClaimPathError) -> Diagnostic {
    Diagnostic::new(
        Code::InvalidClaimPath,
        format!("invalid claim path `{}`", lit.value),
        lit.sub_span(error.range(&lit.value)),
    )
    .note(error.to_string())
    .help("separate nested keys with `.` (`realm_access.roles`) and bracket a key that contains `.` (`resource_access[shop.api].roles`)")
}

/// The canonical text of a claim path, or the text as written when it is
/// malformed (reported as `E044` by [`check_identity`]).
pub(super) fn canonical_claim(text: &str) -> String {
    ClaimPath::parse(text).map_or_else(|_| text.to_owned(), |p| p.as_str().to_owned())
}

fn read_issuer(cx: &mut Context, block: &IssuerBlock, found: &mut Found) {
    let mut read = TokenRead::default();
    read.read(cx, &block.settings);
    if block.issuer.value.is_empty() {
        cx.report(
            invalid("empty issuer", block.issuer.span)
                .note("tokens are matched on `iss` exactly")
                .help("write the issuer as your tokens carry it, e.g. `issuer \"https://idp.example/realms/shop\"`"),
        );
        return;
    }
    if let Some((first, _, _)) = found
        .issuers
        .iter()
        .find(|(_, i, _)| i.issuer == block.issuer.value)
    {
        cx.report(
            Diagnostic::new(
                Code::Duplicate,
                format!("issuer `{}` is declared twice", block.issuer.value),
                block.issuer.span,
            )
            .note("declared again here")
            .with_label(*first, "first declared here")
            .help("merge the two `issuer` blocks"),
        );
        return;
    }
    let owner = KeyOwner::Issuer(block.issuer.value.clone());
    let (keys, fetch) = key_sources(cx, &owner, &read.key_exprs, block.keyword);
    let audiences = read.audiences.clone().unwrap_or_else(|| {
        cx.report(
            invalid(
                format!("issuer `{}` has no `audiences`", block.issuer.value),
                block.issuer.span,
            )
            .note("a user token must name this service as its audience (`aud`)")
            .help("add `audiences \"your-api\"` to the issuer block"),
        );
        Vec::new()
    });
    let issuer = IssuerSource {
        issuer: block.issuer.value.clone(),
        audiences,
        keys,
        fetch,
    };
    found.issuers.push((block.issuer.span, issuer, read.claims));
}

fn read_bundle(cx: &mut Context, settings: &Settings, block: &TrustBundleBlock, found: &mut Found) {
    let domain = &block.domain;
    if let Err(error) = spiffe::check_trust_domain(&domain.value) {
        cx.report(
            Diagnostic::new(
                Code::MalformedSpiffeId,
                format!("invalid trust domain `{}`", domain.value),
                domain.span,
            )
            .note(error.to_string())
            .help("a trust domain is a lowercase DNS-like name without `spiffe://`, e.g. `prod.example`"),
        );
        return;
    }
    if !settings.trusts(&domain.value) {
        cx.report(
            Diagnostic::new(
                Code::UntrustedTrustDomain,
                format!(
                    "trust domain `{}` is not trusted by this policy",
                    domain.value
                ),
                domain.span,
            )
            .note("a bundle for a domain not in `trust_domains` would never be used")
            .help(format!(
                "add `\"{}\"` to `trust_domains` in the policy block, or remove this bundle",
                domain.value
            )),
        );
        return;
    }
    if let Some((first, _)) = found
        .bundles
        .iter()
        .find(|(_, b)| b.trust_domain == domain.value)
    {
        cx.report(
            Diagnostic::new(
                Code::Duplicate,
                format!("trust bundle for `{}` is declared twice", domain.value),
                domain.span,
            )
            .note("declared again here")
            .with_label(*first, "first declared here")
            .help("merge the two `trust_bundle` blocks"),
        );
        return;
    }
    let owner = KeyOwner::TrustDomain(domain.value.clone());
    let (keys, fetch) = key_sources(cx, &owner, &block.keys, block.keyword);
    found.bundles.push((
        domain.span,
        TrustBundle {
            trust_domain: domain.value.clone(),
            keys,
            fetch,
        },
    ));
}

/// At most one document (file or inline) and one fetch; at least one of them.
fn key_sources(
    cx: &mut Context,
    owner: &KeyOwner,
    exprs: &[KeysExpr],
    block: Span,
) -> (Option<serde_json::Value>, Option<FetchSource>) {
    let mut doc: Option<(Span, Option<serde_json::Value>)> = None;
    let mut fetch: Option<(Span, Option<FetchSource>)> = None;
    for expr in exprs {
        match expr {
            KeysExpr::File { keyword, .. } | KeysExpr::Inline { keyword, .. } => {
                if let Some((first, _)) = &doc {
                    report_repeated_setting(cx, "keys file|inline", *keyword, *first);
                    continue;
                }
                doc = Some((*keyword, key_document(cx, owner, expr)));
            }
            KeysExpr::Fetch {
                keyword,
                fetch: spec,
            } => {
                if let Some((first, _)) = &fetch {
                    report_repeated_setting(cx, "keys fetch", *keyword, *first);
                    continue;
                }
                fetch = Some((*keyword, fetch_source(cx, spec, true)));
            }
        }
    }
    if doc.is_none() && fetch.is_none() {
        cx.report(
            invalid(format!("{owner} has no keys"), block)
                .note("no token could ever be verified")
                .help("add `keys fetch cluster \"CLUSTER\" path \"/jwks.json\"`, `keys file \"jwks.json\"` or `keys inline \"...\"`"),
        );
    }
    (doc.and_then(|(_, d)| d), fetch.and_then(|(_, f)| f))
}

/// Reads (for `file`) and validates a key document with the engine's parser.
fn key_document(cx: &mut Context, owner: &KeyOwner, expr: &KeysExpr) -> Option<serde_json::Value> {
    let (text, lit, origin) = match expr {
        KeysExpr::Inline { document, .. } => (document.value.clone(), document, None),
        KeysExpr::File { path, .. } => {
            let full = cx.resolve(&path.value);
            match read_key_file(&full) {
                Ok(text) => (text, path, Some(full)),
                Err(cause) => {
                    cx.report(
                        Diagnostic::new(
                            Code::UnreadableKeys,
                            format!("cannot read key file `{}`", full.display()),
                            path.span,
                        )
                        .note(cause)
                        .help("paths are relative to the policy file's directory; the file is read by `meshward compile` and embedded in the plugin configuration"),
                    );
                    return None;
                }
            }
        }
        KeysExpr::Fetch { .. } => return None,
    };
    let what = origin.map_or_else(
        || "inline key document".to_owned(),
        |p| format!("key file `{}`", p.display()),
    );
    let parsed = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|value| {
            KeySet::parse(text.as_bytes(), owner.purpose())
                .map(|_| value)
                .map_err(|e| e.to_string())
        });
    match parsed {
        Ok(value) => Some(value),
        Err(cause) => {
            cx.report(
                Diagnostic::new(
                    Code::UnreadableKeys,
                    format!("{what} is not a valid key set for {owner}"),
                    lit.span,
                )
                .note(cause)
                .help("give a JWKS (`{\"keys\": [...]}`) or a SPIFFE bundle; JWT-SVID keys need a `kid` and, in a SPIFFE bundle, `\"use\": \"jwt-svid\"`"),
            );
            None
        }
    }
}

fn read_key_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(format!("{} bytes, more than the 1 MiB limit", meta.len()));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// `cluster`, `path`, `authority`, `refresh`, `max_staleness` (key sets
/// only), `timeout`, each once, checked as the filter checks `key_fetch`.
fn fetch_source(cx: &mut Context, spec: &FetchExpr, keys: bool) -> Option<FetchSource> {
    let mut source = FetchSource::default();
    let mut seen: Vec<(&'static str, Span)> = Vec::new();
    let mut ok = true;
    let mut cluster = None;
    let mut path = None;
    let mut refresh_span = None;
    let mut staleness_span = None;
    for option in &spec.options {
        let (name, at) = match option {
            FetchOption::Cluster(at, _) => ("cluster", at),
            FetchOption::Path(at, _) => ("path", at),
            FetchOption::Authority(at, _) => ("authority", at),
            FetchOption::Refresh(at, _) => ("refresh", at),
            FetchOption::MaxStaleness(at, _) => ("max_staleness", at),
            FetchOption::Timeout(at, _) => ("timeout", at),
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            report_repeated_setting(cx, name, *at, *first);
            ok = false;
            continue;
        }
        seen.push((name, *at));
        match option {
            FetchOption::Cluster(_, lit) => {
                if lit.value.is_empty() {
                    cx.report(
                        invalid("empty cluster name", lit.span)
                            .help("name the Envoy cluster that reaches the key server"),
                    );
                    ok = false;
                }
                cluster = Some(lit.value.clone());
            }
            FetchOption::Path(_, lit) => {
                if !lit.value.starts_with('/')
                    || lit.value.bytes().any(|b| b.is_ascii_control() || b == b' ')
                {
                    cx.report(
                        invalid(format!("invalid fetch path `{}`", lit.value), lit.span)
                            .note(
                                "a path starts with `/` and holds no spaces or control characters",
                            )
                            .help("e.g. `path \"/.well-known/jwks.json\"`"),
                    );
                    ok = false;
                }
                path = Some(lit.value.clone());
            }
            FetchOption::Authority(_, lit) => source.authority = Some(lit.value.clone()),
            FetchOption::Refresh(_, value) => {
                refresh_span = Some(value.span);
                source.refresh_secs = duration(cx, value, 1, u64::MAX);
                ok &= source.refresh_secs.is_some();
            }
            FetchOption::MaxStaleness(_, value) => {
                if !keys {
                    cx.report(
                        invalid("`max_staleness` applies to key sets only", value.span)
                            .note(
                                "a revocation list that cannot be fetched keeps the last good list",
                            )
                            .help("remove `max_staleness` from the revocation fetch"),
                    );
                    ok = false;
                    continue;
                }
                staleness_span = Some(value.span);
                source.max_staleness_secs = duration(cx, value, 1, u64::MAX);
                ok &= source.max_staleness_secs.is_some();
            }
            FetchOption::Timeout(_, value) => {
                source.timeout_ms = duration(cx, value, 1, 60).map(|s| s * 1000);
                ok &= source.timeout_ms.is_some();
            }
        }
    }
    for (missing, name, example) in [
        (cluster.is_none(), "cluster", "cluster \"NAME\""),
        (path.is_none(), "path", "path \"/...\""),
    ] {
        if missing {
            cx.report(
                invalid(format!("fetch without `{name}`"), spec.keyword)
                    .note("the filter fetches over an Envoy cluster with a GET of a path")
                    .help(format!("add `{example}` to the fetch")),
            );
            ok = false;
        }
    }
    let refresh = source
        .refresh_secs
        .unwrap_or(meshward_engine::config::DEFAULT_REFRESH_SECS);
    if let (Some(max), Some(span)) = (source.max_staleness_secs, staleness_span) {
        if max < refresh {
            let mut d = invalid("`max_staleness` is shorter than `refresh`", span)
                .note("the keys would go stale between two fetches")
                .help("make `max_staleness` at least `refresh` (the default refresh is 5m)");
            if let Some(r) = refresh_span {
                d = d.with_label(r, "refresh");
            }
            cx.report(d);
            ok = false;
        }
    }
    source.cluster = cluster.unwrap_or_default();
    source.path = path.unwrap_or_default();
    ok.then_some(source)
}

fn read_revocation(cx: &mut Context, statements: &[RevocationSetting], found: &mut Found) {
    let mut fetch_keyword: Option<Span> = None;
    for statement in statements {
        match statement {
            RevocationSetting::Fetch(spec) => {
                if let Some(first) = fetch_keyword {
                    report_repeated_setting(cx, "fetch", spec.keyword, first);
                    continue;
                }
                fetch_keyword = Some(spec.keyword);
                found.revocation_fetch.extend(fetch_source(cx, spec, false));
            }
            RevocationSetting::SpiffeIds { ids, .. } => {
                for id in ids {
                    match SpiffeId::parse(&id.value) {
                        Ok(parsed) => push_new(&mut found.revoked_spiffe_ids, parsed.as_str()),
                        Err(error) => cx.report(
                            Diagnostic::new(
                                Code::MalformedSpiffeId,
                                format!("malformed SPIFFE ID `{}`", id.value),
                                id.span,
                            )
                            .note(error.to_string())
                            .help("revoke an exact ID such as `spiffe://prod.example/ns/shop/sa/frontend`"),
                        ),
                    }
                }
            }
            RevocationSetting::Serials { serials, .. } => {
                for serial in serials {
                    match normalize_serial(&serial.value) {
                        Some(hex) => push_new(&mut found.revoked_serials, &hex),
                        None => cx.report(
                            invalid(
                                format!("invalid certificate serial `{}`", serial.value),
                                serial.span,
                            )
                            .note("a serial is hexadecimal, optionally with `:` separators")
                            .help("copy it from `openssl x509 -noout -serial`"),
                        ),
                    }
                }
            }
            RevocationSetting::Jtis { jtis, .. } => {
                for jti in jtis {
                    if jti.value.is_empty() {
                        cx.report(
                            invalid("empty token id", jti.span)
                                .help("write the `jti` of the token to revoke"),
                        );
                    } else {
                        push_new(&mut found.revoked_jtis, &jti.value);
                    }
                }
            }
        }
    }
}

fn push_new(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
    }
}

/// `E044` for malformed claim paths in rules and tests; returns the
/// canonical paths rules read, in source order.
fn check_claim_paths(cx: &mut Context, view: &RuleView<'_>) -> Vec<String> {
    let mut read: Vec<String> = Vec::new();
    for block in view.rule_blocks {
        for statement in &block.statements {
            if let RuleStatement::When(cond) = statement {
                if let ConditionKind::User(UserTestExpr::Claim { name, .. }) = &cond.kind {
                    // An empty name is `E014` (the condition can never hold).
                    if name.value.is_empty() {
                        continue;
                    }
                    if let Some(path) = claim_path(cx, name) {
                        if !read.contains(&path) {
                            read.push(path);
                        }
                    }
                }
            }
        }
    }
    for block in view.test_blocks {
        for statement in &block.statements {
            if let TestStatement::Claim { name, .. } = statement {
                claim_path(cx, name);
            }
        }
    }
    read
}

/// What one rule needs from the identity sources.
struct Needs {
    /// A user token verified at this hop, and where that is written.
    local_user: Option<Span>,
    /// A user (possibly from the chain), and where.
    any_user: Option<Span>,
    /// A JWT-SVID, and where.
    jwt_svid: Option<Span>,
}

fn needs(block: &RuleBlock) -> Needs {
    let mut needs = Needs {
        local_user: None,
        any_user: None,
        jwt_svid: None,
    };
    for statement in &block.statements {
        match statement {
            RuleStatement::Principal { principal, .. } => match principal {
                // A user verified here, or carried in a forwarded chain.
                PrincipalExpr::User(span) => needs.any_user = Some(*span),
                PrincipalExpr::JwtSvid(span)
                | PrincipalExpr::JwtSvidVia { span, .. }
                | PrincipalExpr::PeerBoundJwtSvid(span) => needs.jwt_svid = Some(*span),
                PrincipalExpr::Peer(_) => {}
            },
            RuleStatement::When(cond) => match &cond.kind {
                ConditionKind::User(UserTestExpr::Issuer(_) | UserTestExpr::Claim { .. }) => {
                    needs.local_user.get_or_insert(cond.span);
                }
                ConditionKind::User(_) => {
                    needs.any_user.get_or_insert(cond.span);
                }
                _ => {}
            },
            _ => {}
        }
    }
    needs
}

/// Trust domains whose JWT-SVIDs a rule's subjects can match (`None`: any).
fn svid_domains(rule: &Rule) -> Option<BTreeSet<String>> {
    let mut domains = BTreeSet::new();
    for subject in &rule.subjects {
        match subject {
            Subject::AnyAuthenticated => return None,
            Subject::TrustDomain(td) => {
                domains.insert(td.clone());
            }
            Subject::Exact(id) => {
                domains.insert(id.trust_domain().to_owned());
            }
            Subject::Pattern(p) => {
                domains.insert(p.trust_domain.clone());
            }
        }
    }
    Some(domains)
}

/// Which sources the rules use.
struct Usage {
    jwt: bool,
    user: bool,
    any_domain: bool,
    domains: BTreeSet<String>,
}

fn cross_check(
    cx: &mut Context,
    view: &RuleView<'_>,
    found: &Found,
    claims_read: &[String],
) -> Usage {
    let has_issuer = !found.issuers.is_empty();
    let mut jwt_used = false;
    let mut user_used = false;
    let mut domains_used: BTreeSet<String> = BTreeSet::new();
    let mut any_domain_used = false;
    // Rules by id, first declared wins (a linear search per block is
    // quadratic in the rule count).
    let mut by_id: HashMap<&str, &Rule> = HashMap::with_capacity(view.rules.len());
    for rule in view.rules {
        by_id.entry(rule.id.as_str()).or_insert(rule);
    }
    for block in view.rule_blocks {
        let Some(rule) = by_id.get(block.id.value.as_str()).copied() else {
            continue;
        };
        let needs = needs(block);
        user_used |= needs.local_user.is_some() || needs.any_user.is_some();
        if let Some(span) = needs.local_user.filter(|_| !has_issuer) {
            cx.report(
                Diagnostic::new(
                    Code::MissingIdentitySource,
                    format!("rule `{}` needs a verified user token, but no issuer is configured", rule.id),
                    span,
                )
                .note("with no `issuer`, no user token is ever verified, so this rule can never match")
                .with_label(block.id.span, "rule declared here")
                .help("add `identity { issuer \"https://your.idp\" { audiences \"...\" keys fetch cluster \"idp\" path \"/jwks.json\" } }`"),
            );
        } else if let Some(span) = needs
            .any_user
            .filter(|_| !has_issuer && view.chain.forwarders.is_empty())
        {
            cx.report(
                Diagnostic::new(
                    Code::MissingIdentitySource,
                    format!("rule `{}` reads the end user, but no issuer is configured and no chain forwarder can carry one", rule.id),
                    span,
                )
                .note("no request can have a user here, so this rule can never match")
                .with_label(block.id.span, "rule declared here")
                .help("add an `issuer` to the identity block, or trust the hops that carry the user with `chain { forwarder ... }`"),
            );
        }
        let Some(span) = needs.jwt_svid else { continue };
        jwt_used = true;
        let domains = match &rule.principal {
            Principal::JwtSvid | Principal::JwtSvidVia(_) | Principal::PeerBoundJwtSvid => {
                svid_domains(rule)
            }
            Principal::Peer | Principal::User => continue,
        };
        match &domains {
            None => any_domain_used = true,
            Some(domains) => domains_used.extend(domains.iter().cloned()),
        }
        if found.jwt_svid.is_none() {
            cx.report(
                Diagnostic::new(
                    Code::MissingIdentitySource,
                    format!("rule `{}` matches JWT-SVIDs, but no `jwt_svid` settings are configured", rule.id),
                    span,
                )
                .note("with no `jwt_svid` settings, JWT-SVIDs are never read, so this rule can never match")
                .with_label(block.id.span, "rule declared here")
                .help("add `identity { jwt_svid { audiences \"spiffe://...this workload...\" } }` and a `trust_bundle` for each trust domain"),
            );
            continue;
        }
        match domains {
            None => {
                if found.bundles.is_empty() {
                    cx.report(
                        Diagnostic::new(
                            Code::MissingIdentitySource,
                            format!("rule `{}` matches JWT-SVIDs, but no trust bundle is configured", rule.id),
                            span,
                        )
                        .note("JWT-SVIDs are verified against their trust domain's bundle; with none, this rule can never match")
                        .with_label(block.id.span, "rule declared here")
                        .help("add `trust_bundle \"your.domain\" { keys fetch cluster \"spire\" path \"/\" }` to the identity block"),
                    );
                }
            }
            Some(domains) => {
                let missing: Vec<&String> =
                    domains.iter().filter(|td| !found.has_bundle(td)).collect();
                if let Some(first) = missing.first() {
                    let list = missing
                        .iter()
                        .map(|td| format!("`{td}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    cx.report(
                        Diagnostic::new(
                            Code::MissingIdentitySource,
                            format!("rule `{}` matches JWT-SVIDs of {list}, which has no trust bundle", rule.id),
                            span,
                        )
                        .note("a JWT-SVID is verified against its trust domain's bundle; with none, it is always refused")
                        .with_label(block.id.span, "rule declared here")
                        .help(format!("add `trust_bundle \"{first}\" {{ keys ... }}` to the identity block")),
                    );
                }
            }
        }
    }
    check_exposed_claims(cx, view, found, claims_read);
    Usage {
        jwt: jwt_used,
        user: user_used,
        any_domain: any_domain_used,
        domains: domains_used,
    }
}

/// `E043`: when issuers list their claims, a rule may read only those.
fn check_exposed_claims(
    cx: &mut Context,
    view: &RuleView<'_>,
    found: &Found,
    claims_read: &[String],
) {
    let listed: Vec<&String> = found
        .issuers
        .iter()
        .filter_map(|(_, _, claims)| claims.as_ref())
        .flatten()
        .collect();
    let any_list = found.issuers.iter().any(|(_, _, c)| c.is_some());
    if !any_list || claims_read.iter().all(|c| listed.contains(&c)) {
        return;
    }
    for block in view.rule_blocks {
        for statement in &block.statements {
            let RuleStatement::When(cond) = statement else {
                continue;
            };
            let ConditionKind::User(UserTestExpr::Claim { name, .. }) = &cond.kind else {
                continue;
            };
            let Ok(path) = ClaimPath::parse(&name.value) else {
                continue;
            };
            if listed.iter().any(|l| l.as_str() == path.as_str()) {
                continue;
            }
            let names = listed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>();
            let help = crate::suggest::closest(path.as_str(), listed.iter().map(|c| c.as_str()))
                .map_or_else(
                    || {
                        format!(
                            "add `\"{}\"` to the `claims` of the issuer that puts it in its tokens",
                            path.as_str()
                        )
                    },
                    |c| format!("did you mean `{c}`?"),
                );
            cx.report(
                Diagnostic::new(
                    Code::UnexposedClaim,
                    format!("claim `{}` is not exposed by any issuer", path.as_str()),
                    name.span,
                )
                .note(format!("the issuers list only {}", names.join(", ")))
                .help(help),
            );
        }
    }
}

fn warn_unused(cx: &mut Context, found: &Found, usage: &Usage) {
    if let Some((keyword, _)) = &found.jwt_svid {
        if !usage.jwt {
            cx.report(
                Diagnostic::new(
                    Code::UnusedIdentitySource,
                    "no rule uses the `jwt_svid` settings",
                    *keyword,
                )
                .note("no rule has `principal jwt_svid` or `principal peer_bound_jwt_svid`")
                .help("remove the `jwt_svid` block, or add a rule for JWT-SVID callers"),
            );
        }
    }
    for (span, bundle) in &found.bundles {
        if !usage.any_domain && !usage.domains.contains(&bundle.trust_domain) {
            cx.report(
                Diagnostic::new(
                    Code::UnusedIdentitySource,
                    format!("no rule uses the trust bundle for `{}`", bundle.trust_domain),
                    *span,
                )
                .note("trust bundles verify JWT-SVIDs, and no JWT-SVID rule matches this trust domain")
                .help("remove the bundle, or add a JWT-SVID rule for this trust domain"),
            );
        }
    }
    let wire = found.hand_off.as_ref().is_some_and(|h| h.value == "wire");
    if !usage.user && !wire {
        for (span, issuer, _) in &found.issuers {
            cx.report(
                Diagnostic::new(
                    Code::UnusedIdentitySource,
                    format!("no rule uses issuer `{}`", issuer.issuer),
                    *span,
                )
                .note("no rule here reads the end user (`principal user` or `when user ...`)")
                .help("remove the issuer; an edge that only verifies users for later hops hands the chain on with `chain_hand_off wire`"),
            );
        }
    }
}
