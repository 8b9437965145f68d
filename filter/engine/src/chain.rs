//! The caller chain: who called whom to get here, carried between
//! meshward-enabled proxies and sealed against the app in the middle.
//!
//! # Wire format (version 1)
//!
//! One header, `x-meshward-chain`, with `;`-separated fields in this fixed
//! order (optional ones may be left out, nothing may be repeated or added):
//!
//! ```text
//! v=1;iat=1764380000;exp=1764380060;complete=1;purpose=orders.read;
//!   user=alice%40example.com;scope=orders.read%20orders.write;
//!   hops=spiffe://shop.example/ns/edge/sa/gateway,spiffe://shop.example/ns/shop/sa/frontend
//! ```
//!
//! - `hops`: SPIFFE IDs from the origin to the *sender*; a receiver checks the
//!   last hop is its mTLS-verified direct peer.
//! - `user`, `scope`: percent-encoded end-user subject and space-separated scopes
//!   (present only when an edge verified a user token).
//! - `purpose`: the intent classified where the chain started.
//! - `iat`/`exp`: Unix seconds; a chain never outlives the lifetime set at its
//!   origin, and a receiver refuses one whose `exp - iat` exceeds its own
//!   policy's `lifetime` (see "Lifetime bound" below).
//! - `complete=0` marks a chain that lost earlier hops (an untrusted peer's
//!   chain was dropped).
//!
//! The copy handed to the app (the *sealed* form) appends
//! `;mac=<base64url HMAC-SHA256>` over everything before it, keyed by a secret
//! the proxy generated at start-up. The app propagates that header unchanged;
//! the same proxy's outbound side checks the MAC and expiry and strips the
//! MAC before the chain goes on the wire. An app cannot invent, edit, extend,
//! reorder or prolong a chain without the key, which never leaves the proxy.
//!
//! # Lifetime bound
//!
//! `exp` is asserted by whoever started the chain; only the sender's
//! trustworthiness vouches for it. So a receiver does not take it on trust:
//! [`inbound`] refuses (`chain_lifetime_exceeds_bound`, answered 403 like
//! every other chain failure) a chain whose `exp` is later than `iat` plus
//! the receiving policy's `lifetime`, and (as [`ChainError::Expired`]) one
//! whose `iat` is more than [`CLOCK_SKEW_SECS`] in the future or whose `exp`
//! has passed. [`for_app`] keeps `exp` as received (never extended); a chain
//! that starts here gets `now + lifetime`. [`outbound`] applies the same
//! bound to the sealed chain the app sends back, so a chain sealed under a
//! longer `lifetime` (before a policy update shortened it) is refused too.
//!
//! Refusing rather than capping `exp`: a chain whose asserted lifetime is
//! longer than the receiver allows comes from a compromised or misconfigured
//! forwarder; capping would quietly forward a rewritten assertion and hide
//! the mismatch, refusing makes it visible (a deny with its own reason and
//! counter) and keeps every chain exactly what its origin said. The cost:
//! every receiver's `lifetime` must be at least that of the workloads whose
//! chains it accepts (one mesh-wide value is simplest).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::spiffe::SpiffeId;

/// The chain header's name.
pub const CHAIN_HEADER: &str = "x-meshward-chain";
/// Largest chain header accepted, sealed or not.
pub const MAX_CHAIN_HEADER_LEN: usize = 8192;
/// Hard cap on hops, whatever the policy says.
pub const MAX_CHAIN_DEPTH: usize = 16;
/// Longest end-user subject or scope list, decoded.
const MAX_CLAIM_LEN: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// Why a chain header was not accepted. Each becomes a deny reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Not the v1 grammar (missing, repeated, unknown or misordered field, bad
    /// number, bad percent-encoding, bad SPIFFE ID).
    #[error("malformed chain header")]
    Malformed,
    /// A `v=` this proxy does not read.
    #[error("unknown chain format version")]
    UnknownVersion,
    /// Longer than [`MAX_CHAIN_HEADER_LEN`].
    #[error("chain header too large")]
    TooLarge,
    /// More hops than the policy (or [`MAX_CHAIN_DEPTH`]) allows.
    #[error("chain too deep")]
    TooDeep,
    /// `exp` has passed, `iat` is more than [`CLOCK_SKEW_SECS`] in the
    /// future, or `iat` is after `exp`.
    #[error("chain expired")]
    Expired,
    /// The header appeared more than once.
    #[error("duplicate chain headers")]
    Duplicate,
    /// The last hop is not the mTLS-verified peer that sent it.
    #[error("chain does not end at the direct peer")]
    PeerMismatch,
    /// The seal (MAC) is missing or wrong: the app forged or edited the chain.
    #[error("chain seal is missing or invalid")]
    BadSeal,
    /// `exp - iat` is longer than the receiving policy's `lifetime`.
    #[error("chain lifetime exceeds this policy's bound")]
    LifetimeExceedsBound,
}

/// A caller chain, origin first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Origin first, the most recent hop last.
    pub hops: Vec<SpiffeId>,
    /// End-user subject, when an edge verified a user token.
    pub user: Option<String>,
    /// End-user scopes.
    pub scopes: Vec<String>,
    /// The intent where the chain started.
    pub purpose: Option<String>,
    /// Issue time at the origin, Unix seconds.
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// False when earlier hops were dropped.
    pub complete: bool,
}

impl Chain {
    /// A chain that starts at `origin` now.
    pub fn start(origin: SpiffeId, now: u64, lifetime_secs: u64) -> Chain {
        Chain {
            hops: vec![origin],
            user: None,
            scopes: Vec::new(),
            purpose: None,
            issued_at: now,
            expires_at: now.saturating_add(lifetime_secs),
            complete: true,
        }
    }

    /// The first hop.
    pub fn origin(&self) -> Option<&SpiffeId> {
        self.hops.first()
    }

    /// Number of hops.
    pub fn depth(&self) -> usize {
        self.hops.len()
    }

    /// Renders the unsealed wire form.
    pub fn to_wire(&self) -> String {
        // Sized once (percent-encoding at most triples a byte) and written
        // without `format!`: this runs on every request that publishes or
        // seals a chain.
        let encoded = |s: &str| 3 * s.len();
        let capacity = 80
            + self.purpose.as_deref().map_or(0, str::len)
            + self.user.as_deref().map_or(0, encoded)
            + self.scopes.iter().map(|s| encoded(s) + 3).sum::<usize>()
            + self
                .hops
                .iter()
                .map(|h| h.as_str().len() + 1)
                .sum::<usize>();
        let mut out = String::with_capacity(capacity);
        out.push_str("v=1;iat=");
        push_decimal(&mut out, self.issued_at);
        out.push_str(";exp=");
        push_decimal(&mut out, self.expires_at);
        out.push_str(if self.complete {
            ";complete=1"
        } else {
            ";complete=0"
        });
        if let Some(purpose) = &self.purpose {
            out.push_str(";purpose=");
            out.push_str(purpose);
        }
        if let Some(user) = &self.user {
            out.push_str(";user=");
            percent_encode_into(user, &mut out);
        }
        if !self.scopes.is_empty() {
            out.push_str(";scope=");
            for (i, scope) in self.scopes.iter().enumerate() {
                if i > 0 {
                    // The space that joins scopes, percent-encoded.
                    out.push_str("%20");
                }
                percent_encode_into(scope, &mut out);
            }
        }
        out.push_str(";hops=");
        for (i, hop) in self.hops.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(hop.as_str());
        }
        out
    }

    /// Parses the unsealed wire form and checks it against the clock and depth.
    pub fn from_wire(text: &str, now: u64, max_depth: usize) -> Result<Chain, ChainError> {
        if text.len() > MAX_CHAIN_HEADER_LEN {
            return Err(ChainError::TooLarge);
        }
        parse_fields(text, now, max_depth)
    }

    /// The sealed form handed to the app: wire + `;mac=`.
    pub fn seal(&self, key: &[u8]) -> String {
        let mut wire = self.to_wire();
        let mac = mac_of(key, wire.as_bytes());
        wire.push_str(";mac=");
        wire.push_str(&mac);
        wire
    }

    /// Checks a sealed header from the app and returns the chain.
    pub fn unseal(
        sealed: &str,
        key: &[u8],
        now: u64,
        max_depth: usize,
    ) -> Result<Chain, ChainError> {
        if sealed.len() > MAX_CHAIN_HEADER_LEN {
            return Err(ChainError::TooLarge);
        }
        let (wire, mac) = sealed.rsplit_once(";mac=").ok_or(ChainError::BadSeal)?;
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| ChainError::BadSeal)?;
        let mut verifier = HmacSha256::new_from_slice(key).map_err(|_| ChainError::BadSeal)?;
        verifier.update(wire.as_bytes());
        // Constant-time comparison.
        verifier
            .verify_slice(&mac)
            .map_err(|_| ChainError::BadSeal)?;
        Chain::from_wire(wire, now, max_depth)
    }
}

impl ChainError {
    /// The deny reason for this error.
    pub fn reason(self) -> crate::decision::Reason {
        use crate::decision::Reason;
        match self {
            ChainError::Malformed => Reason::ChainMalformed,
            ChainError::UnknownVersion => Reason::ChainUnknownVersion,
            ChainError::TooLarge => Reason::ChainTooLarge,
            ChainError::TooDeep => Reason::ChainTooDeep,
            ChainError::Expired => Reason::ChainExpired,
            ChainError::Duplicate => Reason::ChainDuplicate,
            ChainError::PeerMismatch => Reason::ChainPeerMismatch,
            ChainError::BadSeal => Reason::ChainForged,
            ChainError::LifetimeExceedsBound => Reason::ChainLifetimeExceedsBound,
        }
    }
}

fn mac_of(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn parse_fields(text: &str, now: u64, max_depth: usize) -> Result<Chain, ChainError> {
    let mut fields = text.split(';').peekable();
    let mut take = |key: &str, required: bool| -> Result<Option<&str>, ChainError> {
        match fields.peek().and_then(|f| f.split_once('=')) {
            Some((k, v)) if k == key => {
                fields.next();
                Ok(Some(v))
            }
            _ if required => Err(ChainError::Malformed),
            _ => Ok(None),
        }
    };
    let version = take("v", true)?;
    if version != Some("1") {
        return Err(ChainError::UnknownVersion);
    }
    let issued_at = parse_secs(take("iat", true)?)?;
    let expires_at = parse_secs(take("exp", true)?)?;
    let complete = match take("complete", true)? {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(ChainError::Malformed),
    };
    let purpose = take("purpose", false)?
        .map(|p| {
            if !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                Ok(p.to_owned())
            } else {
                Err(ChainError::Malformed)
            }
        })
        .transpose()?;
    let user = take("user", false)?.map(percent_decode).transpose()?;
    let scopes = match take("scope", false)? {
        Some(s) => percent_decode(s)?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let hops_text = take("hops", true)?.ok_or(ChainError::Malformed)?;
    if fields.next().is_some() {
        return Err(ChainError::Malformed);
    }
    let mut hops = Vec::new();
    for hop in hops_text.split(',') {
        if hops.len() >= max_depth.min(MAX_CHAIN_DEPTH) {
            return Err(ChainError::TooDeep);
        }
        hops.push(SpiffeId::parse(hop).map_err(|_| ChainError::Malformed)?);
    }
    if issued_at > expires_at || issued_at > now.saturating_add(CLOCK_SKEW_SECS) || now > expires_at
    {
        return Err(ChainError::Expired);
    }
    Ok(Chain {
        hops,
        user,
        scopes,
        purpose,
        issued_at,
        expires_at,
        complete,
    })
}

/// Tolerated clock difference between proxies for `iat`.
pub const CLOCK_SKEW_SECS: u64 = 30;

fn parse_secs(v: Option<&str>) -> Result<u64, ChainError> {
    let v = v.ok_or(ChainError::Malformed)?;
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ChainError::Malformed);
    }
    v.parse().map_err(|_| ChainError::Malformed)
}

/// Appends `n` in decimal (what `Display` writes), without the formatting
/// machinery.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            // `n % 10 < 10`: the cast cannot truncate.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits.get(start..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'@')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0xf] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
}

fn percent_decode(s: &str) -> Result<String, ChainError> {
    if s.len() > MAX_CLAIM_LEN * 3 {
        return Err(ChainError::TooLarge);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(|c| (c as char).to_digit(16));
                let lo = bytes.next().and_then(|c| (c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(ChainError::Malformed);
                };
                out.push(((hi << 4) | lo) as u8);
            }
            b';' | b',' | b'=' | b' ' => return Err(ChainError::Malformed),
            0x21..=0x7e => out.push(b),
            _ => return Err(ChainError::Malformed),
        }
    }
    let text = String::from_utf8(out).map_err(|_| ChainError::Malformed)?;
    if text.chars().any(char::is_control) {
        return Err(ChainError::Malformed);
    }
    Ok(text)
}

/// How the receiving side treats chains, from the policy.
#[derive(Debug, Clone, Copy)]
pub struct ChainLimits {
    /// Most hops a chain may have (including the direct peer).
    pub max_depth: usize,
    /// Longest a chain may live from its origin, seconds: a chain whose
    /// `exp` is later than `iat + lifetime_secs` is refused.
    pub lifetime_secs: u64,
}

impl ChainLimits {
    /// Refuses a chain that claims to live longer than `lifetime_secs`.
    pub fn check_lifetime(&self, chain: &Chain) -> Result<(), ChainError> {
        // Parsed chains have `issued_at <= expires_at` (else `Expired`).
        if chain.expires_at.saturating_sub(chain.issued_at) > self.lifetime_secs {
            return Err(ChainError::LifetimeExceedsBound);
        }
        Ok(())
    }
}

/// Inbound: rebuilds the chain for a request from its verified direct peer
/// and the chain header values it carried (all of them, to catch duplicates).
///
/// A chain is believed only from a peer the policy trusts to forward chains;
/// from anyone else it is dropped and the rebuilt chain is marked incomplete.
/// A believed chain must also fit the policy's lifetime
/// ([`ChainLimits::check_lifetime`]) and the clock.
pub fn inbound(
    peer: &SpiffeId,
    peer_may_forward: bool,
    header_values: &[&str],
    now: u64,
    limits: ChainLimits,
) -> Result<Chain, ChainError> {
    let max_depth = limits.max_depth.min(MAX_CHAIN_DEPTH);
    let fresh = |complete: bool| {
        let mut chain = Chain::start(peer.clone(), now, limits.lifetime_secs);
        chain.complete = complete;
        chain
    };
    match (header_values, peer_may_forward) {
        ([], _) => Ok(fresh(true)),
        (_, false) => Ok(fresh(false)),
        ([_, _, ..], true) => Err(ChainError::Duplicate),
        ([value], true) => {
            let chain = Chain::from_wire(value, now, max_depth)?;
            if chain.hops.last() != Some(peer) {
                return Err(ChainError::PeerMismatch);
            }
            limits.check_lifetime(&chain)?;
            Ok(chain)
        }
    }
}

/// Inbound, after an allow: the chain the app gets (sealed), extended with
/// this workload so the next hop sees it as the sender. The policy's
/// `max_depth` bounds received chains (the next receiver applies its own);
/// only the format's hard cap stops the extension here. `iat` and `exp` are
/// kept as received: a chain is never prolonged.
pub fn for_app(
    mut chain: Chain,
    this_workload: &SpiffeId,
    intent: Option<&str>,
) -> Result<Chain, ChainError> {
    if chain.hops.len() >= MAX_CHAIN_DEPTH {
        return Err(ChainError::TooDeep);
    }
    chain.hops.push(this_workload.clone());
    if chain.purpose.is_none() {
        chain.purpose = intent.map(str::to_owned);
    }
    Ok(chain)
}

/// Outbound: checks the sealed chain the app sent (if any) and returns the
/// wire form to forward. `Ok(None)`: the app sent none, so the call starts a
/// fresh chain at this workload.
///
/// The seal, the clock and the policy's lifetime bound are checked (the same
/// bound [`inbound`] applies); depth only against [`MAX_CHAIN_DEPTH`], since
/// the app's copy may hold one hop more than the policy's `max_depth` (the
/// next receiver applies its own).
pub fn outbound(
    header_values: &[&str],
    key: &[u8],
    now: u64,
    limits: ChainLimits,
) -> Result<Option<String>, ChainError> {
    match header_values {
        [] => Ok(None),
        [sealed] => {
            let chain = Chain::unseal(sealed, key, now, MAX_CHAIN_DEPTH)?;
            limits.check_lifetime(&chain)?;
            Ok(Some(chain.to_wire()))
        }
        _ => Err(ChainError::Duplicate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "spiffe://shop.example/ns/edge/sa/gateway";
    const FE: &str = "spiffe://shop.example/ns/shop/sa/frontend";
    const OR: &str = "spiffe://shop.example/ns/shop/sa/orders";
    const LIMITS: ChainLimits = ChainLimits {
        max_depth: 8,
        lifetime_secs: 60,
    };
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn sample() -> Chain {
        let mut c = Chain::start(id(GW), 1000, 60);
        c.user = Some("alice@example.com".into());
        c.scopes = vec!["orders.read".into(), "orders:write".into()];
        c.purpose = Some("orders.read".into());
        c.hops.push(id(FE));
        c
    }

    #[test]
    fn wire_round_trip() {
        let c = sample();
        let wire = c.to_wire();
        assert_eq!(
            wire,
            "v=1;iat=1000;exp=1060;complete=1;purpose=orders.read;user=alice@example.com;\
             scope=orders.read%20orders:write;hops=spiffe://shop.example/ns/edge/sa/gateway,\
             spiffe://shop.example/ns/shop/sa/frontend"
        );
        assert_eq!(Chain::from_wire(&wire, 1001, 8), Ok(c));
    }

    #[test]
    fn decimals_and_incomplete_chains_as_display_writes_them() {
        for n in [0, 7, 10, 99, 1_796_564_784, u64::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let mut c = Chain::start(id(GW), 0, 0);
        c.complete = false;
        c.scopes = vec!["a b".into(), "c".into(), "d%".into()];
        assert_eq!(
            c.to_wire(),
            format!("v=1;iat=0;exp=0;complete=0;scope=a%20b%20c%20d%25;hops={GW}")
        );
    }

    #[test]
    fn strict_parsing() {
        let ok = sample().to_wire();
        let cases = [
            (ok.replace("v=1", "v=2"), ChainError::UnknownVersion),
            (ok.replace("iat=1000;", ""), ChainError::Malformed),
            (
                ok.replace("complete=1", "complete=yes"),
                ChainError::Malformed,
            ),
            (format!("{ok};extra=1"), ChainError::Malformed),
            (
                ok.replace(";purpose=orders.read", ";purpose=orders.read;purpose=x"),
                ChainError::Malformed,
            ),
            (
                ok.replace(
                    "hops=spiffe://shop.example/ns/edge",
                    "hops=spiffe://Shop/ns/edge",
                ),
                ChainError::Malformed,
            ),
            (ok.replace("alice@", "alice%zz"), ChainError::Malformed),
            (ok.replace("iat=1000", "iat=-1"), ChainError::Malformed),
            (
                format!("{ok}{}", ",spiffe://shop.example/a".repeat(400)),
                ChainError::TooLarge,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Chain::from_wire(&input, 1001, 8), Err(want), "{input}");
        }
        assert_eq!(Chain::from_wire(&ok, 1061, 8), Err(ChainError::Expired));
        assert_eq!(Chain::from_wire(&ok, 1001, 1), Err(ChainError::TooDeep));
    }

    #[test]
    fn seal_catches_every_edit() {
        let sealed = sample().seal(KEY);
        assert_eq!(Chain::unseal(&sealed, KEY, 1001, 8), Ok(sample()));
        let edits = [
            sealed.replace("alice", "mallory"),
            sealed.replace("purpose=orders.read", "purpose=orders.admin"),
            sealed.replace(GW, OR),
            sealed.replace(&format!("{GW},{FE}"), &format!("{FE},{GW}")),
            sealed.replace(";hops=", &format!(";hops={OR},")),
            sealed.replace("exp=1060", "exp=9999"),
            sealed.split(";mac=").next().unwrap().to_owned(),
            format!("{};mac=AAAA", sealed.split(";mac=").next().unwrap()),
        ];
        for forged in edits {
            assert_eq!(
                Chain::unseal(&forged, KEY, 1001, 8),
                Err(ChainError::BadSeal),
                "{forged}"
            );
        }
        assert_eq!(
            Chain::unseal(&sealed, b"another key", 1001, 8),
            Err(ChainError::BadSeal)
        );
        assert_eq!(
            Chain::unseal(&sealed, KEY, 2000, 8),
            Err(ChainError::Expired)
        );
    }

    #[test]
    fn inbound_trusts_only_forwarders() {
        let wire = sample().to_wire();
        let c = inbound(&id(FE), true, &[&wire], 1001, LIMITS).unwrap();
        assert_eq!(
            (c.depth(), c.complete, c.origin()),
            (2, true, Some(&id(GW)))
        );

        let c = inbound(&id(FE), false, &[&wire], 1001, LIMITS).unwrap();
        assert_eq!(
            (c.depth(), c.complete, c.origin()),
            (1, false, Some(&id(FE)))
        );

        let c = inbound(&id(FE), true, &[], 1001, LIMITS).unwrap();
        assert_eq!((c.depth(), c.complete, c.expires_at), (1, true, 1061));

        assert_eq!(
            inbound(&id(OR), true, &[&wire], 1001, LIMITS),
            Err(ChainError::PeerMismatch)
        );
        assert_eq!(
            inbound(&id(FE), true, &[&wire, &wire], 1001, LIMITS),
            Err(ChainError::Duplicate)
        );
    }

    #[test]
    fn app_copy_extends_and_outbound_unseals() {
        let c = inbound(&id(FE), true, &[&sample().to_wire()], 1001, LIMITS).unwrap();
        let app = for_app(c, &id(OR), Some("orders.get")).unwrap();
        assert_eq!(app.depth(), 3);
        assert_eq!(app.purpose.as_deref(), Some("orders.read"));
        let sealed = app.seal(KEY);
        let wire = outbound(&[&sealed], KEY, 1002, LIMITS).unwrap().unwrap();
        assert_eq!(wire, app.to_wire());
        assert_eq!(outbound(&[], KEY, 1002, LIMITS), Ok(None));
        assert_eq!(
            outbound(&[&sealed, &sealed], KEY, 1002, LIMITS),
            Err(ChainError::Duplicate)
        );
        // A chain of exactly max_depth hops is accepted, and the app's copy
        // may hold one more: the next receiver applies its own limit.
        let tight = ChainLimits {
            max_depth: 2,
            ..LIMITS
        };
        let c = inbound(&id(FE), true, &[&sample().to_wire()], 1001, tight).unwrap();
        assert_eq!(for_app(c, &id(OR), None).map(|c| c.depth()), Ok(3));
        let mut full = sample();
        full.hops = (0..MAX_CHAIN_DEPTH)
            .map(|i| id(&format!("spiffe://shop.example/w{i}")))
            .collect();
        assert_eq!(for_app(full, &id(OR), None), Err(ChainError::TooDeep));
    }

    /// A chain from `GW` through `FE` issued at `iat`, expiring at `exp`.
    fn lived(iat: u64, exp: u64) -> Chain {
        let mut c = sample();
        c.issued_at = iat;
        c.expires_at = exp;
        c
    }

    #[test]
    fn inbound_bounds_the_lifetime_a_forwarder_asserts() {
        const YEAR: u64 = 365 * 24 * 3600;
        let take = |c: &Chain, now| inbound(&id(FE), true, &[&c.to_wire()], now, LIMITS);
        // A year ahead, from a trusted forwarder: refused, not capped.
        assert_eq!(
            take(&lived(1000, 1000 + YEAR), 1001),
            Err(ChainError::LifetimeExceedsBound)
        );
        // Exactly the lifetime is fine, one second more is not.
        assert_eq!(
            take(&lived(1000, 1060), 1001).map(|c| c.expires_at),
            Ok(1060)
        );
        assert_eq!(
            take(&lived(1000, 1061), 1001),
            Err(ChainError::LifetimeExceedsBound)
        );
        // `iat` in the future: within the skew accepted, beyond it refused.
        assert!(take(&lived(1001 + CLOCK_SKEW_SECS, 1050 + CLOCK_SKEW_SECS), 1001).is_ok());
        assert_eq!(
            take(&lived(1002 + CLOCK_SKEW_SECS, 1050 + CLOCK_SKEW_SECS), 1001),
            Err(ChainError::Expired)
        );
        // A longer local lifetime accepts what a shorter one refuses.
        let long = ChainLimits {
            lifetime_secs: YEAR,
            ..LIMITS
        };
        let wire = lived(1000, 1000 + YEAR).to_wire();
        assert!(inbound(&id(FE), true, &[&wire], 1001, long).is_ok());
        // From a peer that may not forward, the chain is not believed at
        // all: it restarts here with this policy's lifetime.
        let c = inbound(&id(FE), false, &[&wire], 1001, LIMITS).unwrap();
        assert_eq!((c.issued_at, c.expires_at, c.complete), (1001, 1061, false));
        assert_eq!(
            ChainError::LifetimeExceedsBound.reason().code(),
            "chain_lifetime_exceeds_bound"
        );
    }

    #[test]
    fn the_app_copy_is_never_prolonged() {
        let c = inbound(&id(FE), true, &[&lived(990, 1040).to_wire()], 1001, LIMITS).unwrap();
        let app = for_app(c, &id(OR), None).unwrap();
        assert_eq!((app.issued_at, app.expires_at), (990, 1040));
        let fresh = inbound(&id(FE), true, &[], 1001, LIMITS).unwrap();
        assert_eq!((fresh.issued_at, fresh.expires_at), (1001, 1061));
    }

    #[test]
    fn outbound_applies_the_same_bound_to_sealed_chains() {
        // Sealed by this proxy under a longer lifetime (a policy update
        // shortened it since): the seal is good, the bound is not.
        let sealed = lived(1000, 4600).seal(KEY);
        assert_eq!(
            outbound(&[&sealed], KEY, 1002, LIMITS),
            Err(ChainError::LifetimeExceedsBound)
        );
        let long = ChainLimits {
            lifetime_secs: 3600,
            ..LIMITS
        };
        assert_eq!(
            outbound(&[&sealed], KEY, 1002, long),
            Ok(Some(lived(1000, 4600).to_wire()))
        );
        let sealed = lived(1000, 1060).seal(KEY);
        assert!(outbound(&[&sealed], KEY, 1002, LIMITS).is_ok());
        assert_eq!(
            outbound(&[&sealed], KEY, 1061, LIMITS),
            Err(ChainError::Expired)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever a forwarder asserts and whatever the clocks say, no
            /// chain accepted inbound or outbound lives longer than the
            /// policy's lifetime, or has expired, or was issued beyond the skew.
            #[test]
            fn no_accepted_chain_outlives_the_lifetime(
                iat in 0u64..4000,
                life in 0u64..4000,
                now in 0u64..8000,
                lifetime_secs in 0u64..3000,
                forwarder in any::<bool>(),
            ) {
                let limits = ChainLimits { max_depth: 8, lifetime_secs };
                let sent = lived(iat, iat + life);
                let bounded = |c: &Chain| {
                    c.expires_at <= c.issued_at + lifetime_secs
                        && c.issued_at <= now + CLOCK_SKEW_SECS
                        && now <= c.expires_at
                };
                if let Ok(c) = inbound(&id(FE), forwarder, &[&sent.to_wire()], now, limits) {
                    prop_assert!(bounded(&c), "{:?}", c);
                    let app = for_app(c.clone(), &id(OR), None).unwrap();
                    prop_assert_eq!((app.issued_at, app.expires_at), (c.issued_at, c.expires_at));
                }
                if let Ok(Some(wire)) = outbound(&[&sent.seal(KEY)], KEY, now, limits) {
                    let c = Chain::from_wire(&wire, now, MAX_CHAIN_DEPTH).unwrap();
                    prop_assert!(bounded(&c), "{:?}", c);
                }
            }

            #[test]
            fn parsers_never_panic(s in ".{0,300}") {
                let _ = Chain::from_wire(&s, 1000, 8);
                let _ = Chain::unseal(&s, KEY, 1000, 8);
            }

            #[test]
            fn user_and_scopes_round_trip(user in "\\PC{1,40}", scopes in proptest::collection::vec("[a-z:./]{1,12}", 0..4)) {
                let mut c = sample();
                c.user = Some(user);
                c.scopes = scopes;
                prop_assert_eq!(Chain::from_wire(&c.to_wire(), 1001, 8), Ok(c));
            }
        }
    }
}
