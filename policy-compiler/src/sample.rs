//! Requests as a policy test or the CLI describes them: the verified peer,
//! method, path, headers, tokens and caller chain of one sample request.
//!
//! A leaf module (engine types only), so `checked` (test cases),
//! `check::cases`, `outcome` (which runs them) and the CLI share these types
//! without depending on each other.

use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{Claim, Reason, UserInfo};

/// A request as a test or the CLI describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    /// The verified peer, or the identity reason there is none.
    pub peer: Result<SpiffeId, Reason>,
    /// `:method`.
    pub method: String,
    /// `:path` (query allowed).
    pub path: String,
    /// `:authority` (port allowed; empty when unknown).
    pub authority: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// A JWT-SVID: its verified subject, or why verification failed;
    /// `None` = no token.
    pub jwt_svid: Option<Result<SpiffeId, Reason>>,
    /// An end-user token verified at this hop, or why it failed; `None` =
    /// no token.
    pub user: Option<Result<SampleUser, Reason>>,
    /// The caller chain the direct peer sent; `None` = no chain header.
    pub chain: Option<SampleChain>,
}

impl SampleRequest {
    /// A request identified only by its mTLS peer (no tokens, no chain).
    pub fn new(
        peer: Result<SpiffeId, Reason>,
        method: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        SampleRequest {
            peer,
            method: method.into(),
            path: path.into(),
            authority: String::new(),
            headers: Vec::new(),
            jwt_svid: None,
            user: None,
            chain: None,
        }
    }

    /// Why this request cannot be sent as described (the checks a policy
    /// test gets as diagnostics), or `Ok`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(chain) = &self.chain {
            let Ok(peer) = &self.peer else {
                return Err(
                    "a caller chain arrives only from a verified mTLS peer: give `--peer`"
                        .to_owned(),
                );
            };
            if let Some(last) = chain.hops.last() {
                if last != peer {
                    return Err(format!(
                        "the chain's last hop `{last}` must be the direct peer `{peer}`"
                    ));
                }
            }
            if chain.user.is_none() && !chain.scopes.is_empty() {
                return Err("chain scopes need a chain user".to_owned());
            }
            if let Some(scope) = chain.scopes.iter().find(|s| !valid_scope(s)) {
                return Err(format!(
                    "scope `{scope}` cannot be carried in a chain (empty or has whitespace)"
                ));
            }
        }
        Ok(())
    }
}

/// Whether a scope is one non-empty word (scopes travel space-separated).
pub(crate) fn valid_scope(scope: &str) -> bool {
    !scope.is_empty() && !scope.chars().any(char::is_whitespace)
}

/// An end user verified at this hop, as a test or the CLI describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleUser {
    /// `sub`.
    pub subject: String,
    /// `iss`; `None` when not stated.
    pub issuer: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Other claims by name.
    pub claims: Vec<(String, ClaimValue)>,
}

/// A user-token claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A string claim.
    Str(String),
    /// A list-of-strings claim.
    List(Vec<String>),
}

impl UserInfo for SampleUser {
    fn subject(&self) -> &str {
        &self.subject
    }

    fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    fn claim(&self, name: &str) -> Option<Claim<'_>> {
        self.claims
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| match value {
                ClaimValue::Str(s) => Claim::Str(s),
                ClaimValue::List(items) => Claim::List(items),
            })
    }
}

/// The caller chain a direct peer sends, as a test or the CLI describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleChain {
    /// Hops from the origin to the direct peer (which must be last); empty =
    /// the chain starts at the direct peer.
    pub hops: Vec<SpiffeId>,
    /// False when earlier hops were dropped on the way.
    pub incomplete: bool,
    /// The intent the chain started with.
    pub purpose: Option<String>,
    /// The end user carried in the chain.
    pub user: Option<String>,
    /// The chain user's scopes.
    pub scopes: Vec<String>,
}
