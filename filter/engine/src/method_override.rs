//! Method-override headers: a request that says `GET` on the wire but asks
//! the app, through `x-http-method-override: DELETE`, to act as a `DELETE`.
//! The policy judges the real `:method`, so an app that honours the header
//! would perform a method nobody authorized. The inbound filter denies such
//! requests (`method_override`) or strips the headers, as configured
//! ([`crate::config::MethodOverride`]).

use crate::evaluate::Headers;

/// The override headers that common frameworks honour (lowercase, as Envoy
/// hands them over).
pub(crate) const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The first override header that would make an app act on another method
/// than `method`. An override naming the same method (any case) changes
/// nothing; a repeated override header is ambiguous and always conflicts.
pub(crate) fn conflicting_override<H: Headers + ?Sized>(
    headers: &H,
    method: &str,
) -> Option<&'static str> {
    METHOD_OVERRIDE_HEADERS.into_iter().find(|name| {
        headers.get(name).is_some_and(|value| {
            headers.is_repeated(name) || !value.trim().eq_ignore_ascii_case(method)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(Vec<(&'static str, &'static str)>);

    impl Headers for Map {
        fn get(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
        fn is_repeated(&self, name: &str) -> bool {
            self.0.iter().filter(|(k, _)| *k == name).count() > 1
        }
    }

    #[test]
    fn finds_overrides_that_change_the_method() {
        let none = Map(vec![("x-other", "DELETE")]);
        assert_eq!(conflicting_override(&none, "GET"), None);
        for name in METHOD_OVERRIDE_HEADERS {
            let other = Map(vec![(name, "DELETE")]);
            assert_eq!(conflicting_override(&other, "GET"), Some(name));
            let same = Map(vec![(name, " post ")]);
            assert_eq!(conflicting_override(&same, "POST"), None);
            let empty = Map(vec![(name, "")]);
            assert_eq!(conflicting_override(&empty, "GET"), Some(name));
            let repeated = Map(vec![(name, "GET"), (name, "GET")]);
            assert_eq!(conflicting_override(&repeated, "GET"), Some(name));
        }
        let second = Map(vec![
            ("x-http-method-override", "GET"),
            ("x-method-override", "PUT"),
        ]);
        assert_eq!(
            conflicting_override(&second, "GET"),
            Some("x-method-override")
        );
    }
}
