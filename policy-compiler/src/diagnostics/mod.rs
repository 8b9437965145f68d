//! Compiler diagnostics: what went wrong, where, and what to do about it.
//!
//! Every diagnostic has a stable [`Code`], a lowercase message with user input
//! in backticks, a primary span, optional secondary spans (for "first declared
//! here"), and a `help` line. [`render_text`] and [`render_json`] turn them
//! into rustc-style text or JSON; the codes never change meaning once
//! published.

mod render;

use std::fmt;

use crate::span::{SourceFile, Span};

pub use render::{render_json, render_text, warnings_json};

/// Whether a diagnostic stops compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The policy does not compile.
    Error,
    /// The policy compiles, but something looks unintended.
    Warning,
}

impl Severity {
    /// `error` / `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $severity:ident; )*) => {
        /// Stable diagnostic codes. `E…` are errors, `W…` warnings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in order (for docs and the golden-fixture check).
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable code text, e.g. `E004`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// Errors stop compilation; warnings do not.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }
        }
    };
}

codes! {
    /// A character or string the lexer cannot read.
    InvalidToken = "E001", Error;
    /// A token where the grammar expects something else.
    UnexpectedToken = "E002", Error;
    /// No `policy` block.
    MissingPolicy = "E003", Error;
    /// A rule or test names an intent that is not declared.
    UnknownIntent = "E004", Error;
    /// A rule names a group that is not declared.
    UnknownGroup = "E005", Error;
    /// A test expects a rule id that is not declared.
    UnknownRule = "E006", Error;
    /// A subject's trust domain is not in `trust_domains`.
    UntrustedTrustDomain = "E007", Error;
    /// A malformed SPIFFE ID, ID pattern or trust domain name.
    MalformedSpiffeId = "E008", Error;
    /// Two declarations with the same name or id.
    Duplicate = "E009", Error;
    /// An allow rule that an enforced deny rule always overrides.
    ShadowedAllow = "E010", Error;
    /// Two intents that can classify the same request at the same specificity.
    AmbiguousIntents = "E011", Error;
    /// A path template or gRPC method name that is not valid.
    InvalidPathTemplate = "E012", Error;
    /// An HTTP method that is not a standard method token.
    UnknownMethod = "E013", Error;
    /// Conditions of one rule that can never all hold.
    UnsatisfiableConditions = "E014", Error;
    /// A duration that is not `<positive integer><s|m|h|d>`.
    BadDuration = "E015", Error;
    /// A rule without any `subject`.
    RuleWithoutSubject = "E016", Error;
    /// A rule without any `intent`.
    RuleWithoutIntent = "E017", Error;
    /// A `host` that is not a lowercase-able DNS name without port.
    InvalidHost = "E018", Error;
    /// A header name that is not an HTTP token.
    InvalidHeaderName = "E019", Error;
    /// An intent without any `path` or `grpc`.
    IntentWithoutRoute = "E020", Error;
    /// A test without `peer`, `request` or `expect`.
    IncompleteTest = "E021", Error;
    /// A test expects a reason code the engine does not have.
    UnknownReason = "E022", Error;
    /// A setting that may appear once was given twice.
    RepeatedSetting = "E023", Error;
    /// A group without members.
    EmptyGroup = "E024", Error;
    /// An intent mixing `grpc` with `path` or `method`.
    MixedIntentForm = "E025", Error;
    /// The `policy` block has no `trust_domains`.
    MissingTrustDomains = "E026", Error;
    /// A `principal user` rule with `subject` lines (a user rule has none).
    SubjectWithUserPrincipal = "E027", Error;
    /// A `depth` bound no chain can meet (zero hops, `min > max`, beyond `max_depth`).
    ImpossibleDepth = "E028", Error;
    /// A `chain` setting out of range (`max_depth` 1..16, `lifetime` 1s..1h).
    ChainSettingOutOfRange = "E029", Error;
    /// A test's tokens, user or chain that no request could carry (a chain
    /// not ending at the peer, scopes without a user, …).
    InconsistentTestRequest = "E030", Error;
    /// Two rule ids, or two intent names, that read the same after the
    /// stats normalization (`ops-admin`, `ops.admin`, `ops_admin`): their
    /// counters would be one Prometheus series.
    StatNameCollision = "E031", Error;
    /// An `identity` setting that is malformed or out of range (a bad
    /// algorithm, audience list, header, scheme, fetch, a missing part).
    InvalidIdentitySetting = "E040", Error;
    /// A key set file that cannot be read, or a key document that is not a
    /// valid JWKS or SPIFFE bundle.
    UnreadableKeys = "E041", Error;
    /// A rule that can never be satisfied with the configured identity
    /// sources (a user rule with no issuer, a JWT-SVID rule with no
    /// `jwt_svid` settings or no bundle for its trust domain).
    MissingIdentitySource = "E042", Error;
    /// A rule reads a claim that no issuer's `claims` list exposes.
    UnexposedClaim = "E043", Error;
    /// A claim path that is not valid (empty key, unclosed `[`, too deep).
    InvalidClaimPath = "E044", Error;
    /// A group that no rule uses.
    UnusedGroup = "W001", Warning;
    /// An intent that no rule uses.
    UnusedIntent = "W002", Warning;
    /// The same entry listed twice in one list.
    DuplicateEntry = "W003", Warning;
    /// A `purpose` name that is not an intent here and looks like a typo.
    UnknownPurpose = "W004", Warning;
    /// A rule looks past its direct peer, but that peer is never trusted to
    /// forward the hops before it.
    ChainNotForwarded = "W005", Warning;
    /// An allow rule grants a write-capable, admin-looking or catch-all
    /// intent to a broad subject (`any_authenticated`, a whole trust domain,
    /// or a domain-wide `**` pattern).
    BroadGrant = "W006", Warning;
    /// A rule that another rule of the same effect and mode fully covers
    /// (subjects, intents and conditions): removing it changes no decision.
    CoveredRule = "W007", Warning;
    /// A group member that another member of the same group already matches.
    CoveredMember = "W008", Warning;
    /// A rule names an intent whose requests are partly classified as a
    /// more specific intent that the rule's subjects are neither granted nor
    /// denied.
    GrantLostToSpecificIntent = "W009", Warning;
    /// An identity source (JWT-SVID settings, an issuer, a trust bundle)
    /// that no rule can use.
    UnusedIdentitySource = "W020", Warning;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span with a short note, e.g. "first declared here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What about it (may be empty).
    pub note: String,
}

/// One finding of the compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code; its severity is the diagnostic's severity.
    pub code: Code,
    /// Lowercase message, user input in backticks.
    pub message: String,
    /// The main location (underlined with `^`).
    pub primary: Label,
    /// Related locations (underlined with `-`).
    pub secondary: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with a primary span and no note.
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            primary: Label {
                span,
                note: String::new(),
            },
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Sets the note under the primary span.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.primary.note = note.into();
        self
    }

    /// Adds a related location.
    pub fn with_label(mut self, span: Span, note: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            note: note.into(),
        });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The code's severity.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

/// The diagnostics of one source file, renderable on their own.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    source: SourceFile,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Diagnostics for `source`, sorted by position (stable for equal positions).
    pub fn new(source: SourceFile, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| d.primary.span.start);
        Diagnostics { source, items }
    }

    /// The source file they refer to.
    pub fn source(&self) -> &SourceFile {
        &self.source
    }

    /// All diagnostics, in source order.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many errors.
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    /// How many warnings.
    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// The JSON form: `{"file", "ok", "error_count", "warning_count",
    /// "errors": [...], "warnings": [...]}` (docs/cli-json.md).
    pub fn to_json(&self) -> serde_json::Value {
        render_json(self)
    }
}

impl fmt::Display for Diagnostics {
    /// The rendered text, as `meshward check` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_text(self))
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_prefixed_by_severity() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            let prefix = match code.severity() {
                Severity::Error => 'E',
                Severity::Warning => 'W',
            };
            assert!(code.as_str().starts_with(prefix), "{code}");
        }
    }

    #[test]
    fn diagnostics_sort_by_position_and_count() {
        let source = SourceFile::new("a.policy", "abc");
        let diags = Diagnostics::new(
            source,
            vec![
                Diagnostic::new(Code::UnusedGroup, "b", Span::new(2, 3)),
                Diagnostic::new(Code::UnknownGroup, "a", Span::new(0, 1)),
            ],
        );
        assert_eq!(diags.items()[0].message, "a");
        assert_eq!(diags.error_count(), 1);
        assert_eq!(diags.warning_count(), 1);
        assert!(diags.has_errors());
    }
}
