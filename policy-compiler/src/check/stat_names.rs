//! Rule ids and intent names become Prometheus label values after the
//! filter's stats normalization (`meshward_engine::pipeline::publish::
//! stat_value`: every character but `[A-Za-z0-9_]` becomes `_`). Two rules
//! (or two intents) whose values coincide would share one counter and the
//! dashboards could not tell them apart, so that is an error (`E031`)
//! pointing at both declarations.

use std::collections::HashMap;

use meshward_engine::pipeline::publish::stat_value;

use super::Context;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// Reports every name of one kind (`rule` ids or `intent` names) whose
/// label value equals an earlier one's. Exact duplicates are `E009`'s and
/// never reach here (the checked lists hold each name once).
pub(super) fn check_stat_names<'a>(
    cx: &mut Context,
    kind: &'static str,
    names: impl Iterator<Item = (&'a str, Span)>,
) {
    let mut first: HashMap<String, (&'a str, Span)> = HashMap::new();
    for (name, span) in names {
        let value = stat_value(name).into_owned();
        match first.get(&value) {
            Some((earlier, earlier_span)) if *earlier != name => {
                cx.report(
                    Diagnostic::new(
                        Code::StatNameCollision,
                        format!(
                            "{kind} `{name}` and {kind} `{earlier}` have the same stats label `{value}`"
                        ),
                        span,
                    )
                    .note("collides here")
                    .with_label(*earlier_span, "with this one")
                    .help(format!(
                        "counters label each {kind} with its name, every character other than \
                         letters, digits and `_` turned into `_`: rename one of them"
                    )),
                );
            }
            Some(_) => {}
            None => {
                first.insert(value, (name, span));
            }
        }
    }
}
