//! [`Filter`]: which events a subscription or a filtered read delivers, by
//! event type, aggregate-id prefix or a predicate on the zero-copy envelope.
//! It only looks at envelopes; it never reads files or payloads.

use std::sync::Arc;

use crate::event::Envelope;

/// Which events a subscription or a filtered read delivers: every event that
/// matches all the conditions set (an empty filter matches everything).
/// Conditions look only at the envelope; a skipped event's payload is never
/// read (only its envelope's checksum is verified: frame format 2), except
/// by the one full validation of a sealed segment loaded from its index
/// checkpoint, which a first read of it runs once per process.
#[derive(Clone, Default)]
pub struct Filter {
    event_types: Vec<String>,
    aggregate_prefixes: Vec<String>,
    predicate: Option<Predicate>,
}

/// A caller's condition on the envelope.
type Predicate = Arc<dyn Fn(&Envelope<'_>) -> bool + Send + Sync>;

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("event_types", &self.event_types)
            .field("aggregate_prefixes", &self.aggregate_prefixes)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

impl Filter {
    /// A filter that matches every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Only events whose type is one of `types`.
    pub fn event_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Filter {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only events whose aggregate id starts with one of `prefixes`.
    pub fn aggregate_prefixes<S: Into<String>>(mut self, prefixes: impl IntoIterator<Item = S>) -> Filter {
        self.aggregate_prefixes.extend(prefixes.into_iter().map(Into::into));
        self
    }

    /// Only events for which `predicate` holds. It sees the zero-copy
    /// envelope (every field but the payload), so a skipped event's payload
    /// is never read.
    pub fn predicate(mut self, predicate: impl Fn(&Envelope<'_>) -> bool + Send + Sync + 'static) -> Filter {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether the filter sets no condition (matches every event).
    pub(crate) fn is_all(&self) -> bool {
        self.event_types.is_empty() && self.aggregate_prefixes.is_empty() && self.predicate.is_none()
    }

    /// Whether the event of `envelope` passes the filter (an
    /// [`crate::EventRef`] derefs to its envelope).
    #[inline]
    pub fn matches(&self, event: &Envelope<'_>) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event.event_type()))
            && (self.aggregate_prefixes.is_empty()
                || self.aggregate_prefixes.iter().any(|p| event.aggregate_id().starts_with(p.as_str())))
            && self.predicate.as_ref().is_none_or(|p| p(event))
    }
}
