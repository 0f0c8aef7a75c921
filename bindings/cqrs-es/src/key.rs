//! The aggregate key: one factlog aggregate id for a cqrs-es
//! (`aggregate_type`, `aggregate_id`) pair, and back.
//!
//! `key = escape(aggregate_type) + "/" + aggregate_id`, where `escape` puts a
//! `\` before every `\` and `/` of the type. The escaped type never holds an
//! unescaped `/`, so the first unescaped `/` of a key is the separator and
//! everything after it is the id, verbatim: two different pairs never share
//! a key, and every key decodes to the pair it came from.

use crate::error::Error;

/// The separator between the escaped aggregate type and the aggregate id.
pub const SEPARATOR: char = '/';
/// The escape character inside the aggregate type.
pub const ESCAPE: char = '\\';

/// The factlog aggregate id of (`aggregate_type`, `aggregate_id`). Fails with
/// [`Error::InvalidKey`] when it would be longer than factlog's
/// [`factlog::NAME_BYTES_MAX`] bytes.
pub fn encode(aggregate_type: &str, aggregate_id: &str) -> Result<String, Error> {
    let mut key = type_prefix(aggregate_type);
    key.push_str(aggregate_id);
    if key.len() > factlog::NAME_BYTES_MAX {
        return Err(Error::InvalidKey {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            reason: format!(
                "the factlog aggregate id would be {} bytes, over factlog's limit of {}",
                key.len(),
                factlog::NAME_BYTES_MAX
            ),
        });
    }
    Ok(key)
}

/// The start every key of `aggregate_type` has, and no other key has: the
/// escaped type and the separator.
pub fn type_prefix(aggregate_type: &str) -> String {
    let mut out = String::with_capacity(aggregate_type.len() + 1);
    for c in aggregate_type.chars() {
        if c == SEPARATOR || c == ESCAPE {
            out.push(ESCAPE);
        }
        out.push(c);
    }
    out.push(SEPARATOR);
    out
}

/// The (`aggregate_type`, `aggregate_id`) a key was made from; `None` for a
/// string no [`encode`] call makes (no unescaped separator).
pub fn decode(key: &str) -> Option<(String, &str)> {
    let mut aggregate_type = String::new();
    let mut chars = key.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ESCAPE => aggregate_type.push(chars.next()?.1),
            SEPARATOR => return Some((aggregate_type, key.get(i + 1..)?)),
            c => aggregate_type.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_collides() {
        let types = ["BankAccount", "", "a/b", "a\\", "a\\/b", "/", "\\", "Ü/ñ"];
        let ids = ["", "1", "/", "\\", "x/y\\z", "ключ-🦀"];
        let mut seen = std::collections::HashMap::new();
        for t in types {
            for i in ids {
                let key = encode(t, i).unwrap();
                assert_eq!(decode(&key), Some((t.to_string(), i)), "{key:?}");
                assert!(key.starts_with(&type_prefix(t)));
                assert_eq!(seen.insert(key.clone(), (t, i)), None, "{key:?} made twice");
            }
        }
        // A type's prefix is not the prefix of another type's keys.
        assert!(!encode("a/b", "c").unwrap().starts_with(&type_prefix("a")));
        assert!(!encode("a\\", "c").unwrap().starts_with(&type_prefix("a")));
    }

    #[test]
    fn refuses_what_factlog_cannot_store() {
        let long = "x".repeat(factlog::NAME_BYTES_MAX);
        assert!(matches!(encode("T", &long), Err(Error::InvalidKey { .. })));
        assert_eq!(decode("no separator"), None);
        assert_eq!(decode("dangling\\"), None);
    }
}
