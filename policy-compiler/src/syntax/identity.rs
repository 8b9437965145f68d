//! The `identity { ... }` block: token and key settings as source.
//!
//! ```text
//! identity {
//!   jwt_svid { audiences "spiffe://..." ... }
//!   user_tokens { header "authorization" ... }
//!   issuer "https://idp.example" { audiences "shop"  keys fetch cluster "idp" path "/jwks" }
//!   trust_bundle "prod.example" { keys file "bundle.json" }
//!   revocation { fetch cluster "rev" path "/revoked.json" }
//!   chain_hand_off wire
//! }
//! ```
//!
//! Sub-blocks are statements of the outer block whose body is a nested
//! block; every statement still ends at the end of its line.

use super::{list, Parsed, Parser};
use crate::ast::*;
use crate::span::{Span, Spanned};
use crate::syntax::lexer::TokenKind;

const IDENTITY_KEYWORDS: [&str; 7] = [
    "external",
    "jwt_svid",
    "user_tokens",
    "issuer",
    "trust_bundle",
    "revocation",
    "chain_hand_off",
];
const JWT_SVID_KEYWORDS: [&str; 7] = [
    "audiences",
    "header",
    "scheme",
    "max_lifetime",
    "clock_skew",
    "algorithms",
    "max_token_bytes",
];
const USER_TOKENS_KEYWORDS: [&str; 6] = [
    "header",
    "scheme",
    "max_lifetime",
    "clock_skew",
    "algorithms",
    "max_token_bytes",
];
const ISSUER_KEYWORDS: [&str; 3] = ["audiences", "keys", "claims"];
const TRUST_BUNDLE_KEYWORDS: [&str; 1] = ["keys"];
const REVOCATION_KEYWORDS: [&str; 4] = ["fetch", "spiffe_id", "serial", "jti"];
const KEY_SOURCES: [&str; 3] = ["file", "inline", "fetch"];
const FETCH_OPTIONS: [&str; 6] = [
    "cluster",
    "path",
    "authority",
    "refresh",
    "max_staleness",
    "timeout",
];

impl Parser<'_> {
    pub(super) fn identity_block(&mut self) -> Parsed<IdentityBlock> {
        let keyword = self.keyword();
        let settings = self.block_body("identity", &IDENTITY_KEYWORDS, |p, word| {
            Some(match word {
                "jwt_svid" => p.keyed(
                    |p| p.token_settings("jwt_svid", &JWT_SVID_KEYWORDS),
                    |keyword, settings| IdentitySetting::JwtSvid { keyword, settings },
                ),
                "user_tokens" => p.keyed(
                    |p| p.token_settings("user_tokens", &USER_TOKENS_KEYWORDS),
                    |keyword, settings| IdentitySetting::UserTokens { keyword, settings },
                ),
                "issuer" => {
                    let keyword = p.keyword();
                    p.string("the issuer (`iss`)").and_then(|issuer| {
                        p.token_settings("issuer", &ISSUER_KEYWORDS)
                            .map(|settings| {
                                IdentitySetting::Issuer(IssuerBlock {
                                    keyword,
                                    issuer,
                                    settings,
                                })
                            })
                    })
                }
                "trust_bundle" => {
                    let keyword = p.keyword();
                    p.string("a trust domain").and_then(|domain| {
                        p.block_body("trust_bundle", &TRUST_BUNDLE_KEYWORDS, |p, word| {
                            (word == "keys").then(|| p.keys())
                        })
                        .map(|keys| {
                            IdentitySetting::TrustBundle(TrustBundleBlock {
                                keyword,
                                domain,
                                keys,
                            })
                        })
                    })
                }
                "revocation" => {
                    let keyword = p.keyword();
                    p.block_body("revocation", &REVOCATION_KEYWORDS, |p, word| {
                        Some(match word {
                            "fetch" => p.fetch().map(RevocationSetting::Fetch),
                            "spiffe_id" => p.keyed(
                                |p| p.strings("a SPIFFE ID"),
                                |keyword, ids| RevocationSetting::SpiffeIds { keyword, ids },
                            ),
                            "serial" => p.keyed(
                                |p| p.strings("a certificate serial"),
                                |keyword, serials| RevocationSetting::Serials { keyword, serials },
                            ),
                            "jti" => p.keyed(
                                |p| p.strings("a token id"),
                                |keyword, jtis| RevocationSetting::Jtis { keyword, jtis },
                            ),
                            _ => return None,
                        })
                    })
                    .map(|settings| IdentitySetting::Revocation { keyword, settings })
                }
                "external" => Ok(IdentitySetting::External(p.keyword())),
                "chain_hand_off" => p.keyed(
                    |p| p.name("`sealed` or `wire`"),
                    |keyword, value| IdentitySetting::ChainHandOff { keyword, value },
                ),
                _ => return None,
            })
        })?;
        Ok(IdentityBlock { keyword, settings })
    }

    /// The body of `jwt_svid`, `user_tokens` or `issuer`, with `keywords`
    /// the statements allowed there.
    fn token_settings(&mut self, block: &str, keywords: &[&str]) -> Parsed<Vec<TokenSetting>> {
        self.block_body(block, keywords, |p, word| {
            if !keywords.contains(&word) {
                return None;
            }
            Some(match word {
                "header" => p.keyed(
                    |p| p.string("a header name"),
                    |keyword, name| TokenSetting::Header { keyword, name },
                ),
                "scheme" => p.keyed(
                    |p| p.string("an authentication scheme"),
                    |keyword, scheme| TokenSetting::Scheme { keyword, scheme },
                ),
                "audiences" => p.keyed(
                    |p| p.strings("an audience"),
                    |keyword, audiences| TokenSetting::Audiences {
                        keyword,
                        audiences,
                    },
                ),
                "max_lifetime" => p.keyed(
                    |p| p.duration("`5m`"),
                    |keyword, value| TokenSetting::MaxLifetime { keyword, value },
                ),
                "clock_skew" => p.keyed(
                    |p| p.duration("`30s`"),
                    |keyword, value| TokenSetting::ClockSkew { keyword, value },
                ),
                "algorithms" => p.keyed(
                    |p| p.names("an algorithm name (ES256, RS256, PS256, EdDSA)"),
                    |keyword, names| TokenSetting::Algorithms { keyword, names },
                ),
                "max_token_bytes" => p.keyed(
                    |p| {
                        p.number(
                            "a number of bytes",
                            "write a whole number of bytes from 256 to 65536, e.g. `max_token_bytes 8192`",
                        )
                    },
                    |keyword, value| TokenSetting::MaxTokenBytes { keyword, value },
                ),
                "keys" => p.keys().map(TokenSetting::Keys),
                "claims" => p.keyed(
                    |p| p.strings("a claim path"),
                    |keyword, paths| TokenSetting::Claims { keyword, paths },
                ),
                _ => return None,
            })
        })
    }

    /// A statement of one keyword and its value: consumes the keyword, reads
    /// the value with `value`, and builds the statement with `make`.
    fn keyed<T, R>(
        &mut self,
        value: impl FnOnce(&mut Self) -> Parsed<T>,
        make: impl FnOnce(Span, T) -> R,
    ) -> Parsed<R> {
        let keyword = self.keyword();
        value(self).map(|v| make(keyword, v))
    }

    /// A duration word such as `5m` (checked later, for a precise message).
    fn duration(&mut self, example: &str) -> Parsed<Spanned<String>> {
        match self.peek().clone() {
            TokenKind::Quantity(word) | TokenKind::Ident(word) => {
                let span = self.bump().span;
                Ok(Spanned::new(word, span))
            }
            _ => Err(self.error_expected(
                "a duration",
                format!("write a duration such as {example} (units `s`, `m`, `h`, `d`)"),
            )),
        }
    }

    /// `keys file "p"`, `keys inline "{...}"` or `keys fetch ...`.
    fn keys(&mut self) -> Parsed<KeysExpr> {
        let keyword = self.keyword();
        match self.peek_ident() {
            Some("file") => {
                self.bump();
                self.string("a file path")
                    .map(|path| KeysExpr::File { keyword, path })
            }
            Some("inline") => {
                self.bump();
                self.string("a JWKS or SPIFFE bundle document")
                    .map(|document| KeysExpr::Inline { keyword, document })
            }
            Some("fetch") => self.fetch().map(|fetch| KeysExpr::Fetch { keyword, fetch }),
            _ => Err(self.error_expected(
                &list(&KEY_SOURCES),
                "keys come from a file read at compile time (`keys file \"jwks.json\"`), an inline document (`keys inline \"...\"`), or an Envoy cluster (`keys fetch cluster \"idp\" path \"/jwks.json\"`)",
            )),
        }
    }

    /// `fetch cluster "c" path "/p" [authority "a"] [refresh D] [max_staleness D] [timeout D]`
    fn fetch(&mut self) -> Parsed<FetchExpr> {
        let keyword = self.keyword();
        let mut options = Vec::new();
        while !self.at_line_end() {
            let word = self.peek_ident().unwrap_or("").to_owned();
            let option = match word.as_str() {
                "cluster" => {
                    self.keyed(|p| p.string("an Envoy cluster name"), FetchOption::Cluster)?
                }
                "path" => self.keyed(|p| p.string("a request path"), FetchOption::Path)?,
                "authority" => self.keyed(|p| p.string("an authority"), FetchOption::Authority)?,
                "refresh" => self.keyed(|p| p.duration("`5m`"), FetchOption::Refresh)?,
                "max_staleness" => self.keyed(|p| p.duration("`1h`"), FetchOption::MaxStaleness)?,
                "timeout" => self.keyed(|p| p.duration("`5s`"), FetchOption::Timeout)?,
                _ => {
                    let help = crate::suggest::did_you_mean(&word, FETCH_OPTIONS, || {
                        format!("a fetch takes {}", list(&FETCH_OPTIONS))
                    });
                    return Err(self.error_expected("a fetch option", help));
                }
            };
            options.push(option);
        }
        Ok(FetchExpr { keyword, options })
    }
}
