//! [`EventId`]: the 16 bytes of a UUID that identify an event (and its
//! causation and correlation), with generation (time-ordered v7, random v4),
//! parsing and display as UUID text. This module never touches files.

use std::fmt;
use std::str::FromStr;

/// A 16-byte event, causation or correlation id: the bytes of a UUID.
/// Displays and parses as hyphenated UUID text. Prefer [`EventId::new_v7`]:
/// time-ordered ids keep recent ids close together in every index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub [u8; 16]);

/// Text that is not a UUID, given to [`EventId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a UUID (expected 32 hex digits, optionally hyphenated)")]
pub struct ParseEventIdError {
    /// The text refused (at most 64 characters of it).
    pub text: String,
}

impl EventId {
    /// A new time-ordered (UUID version 7) id: milliseconds since the epoch,
    /// then random bits.
    pub fn new_v7() -> EventId {
        EventId(uuid::Uuid::now_v7().into_bytes())
    }

    /// A new random (UUID version 4) id.
    pub fn new_v4() -> EventId {
        EventId(uuid::Uuid::new_v4().into_bytes())
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses UUID text (hyphenated, simple, braced or URN form).
    pub fn parse(text: &str) -> Result<EventId, ParseEventIdError> {
        uuid::Uuid::try_parse(text)
            .map(|u| EventId(u.into_bytes()))
            .map_err(|_| ParseEventIdError { text: text.chars().take(64).collect() })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = ParseEventIdError;
    fn from_str(s: &str) -> Result<EventId, ParseEventIdError> {
        EventId::parse(s)
    }
}

impl From<[u8; 16]> for EventId {
    fn from(bytes: [u8; 16]) -> EventId {
        EventId(bytes)
    }
}

impl From<EventId> for [u8; 16] {
    fn from(id: EventId) -> [u8; 16] {
        id.0
    }
}

impl PartialEq<[u8; 16]> for EventId {
    fn eq(&self, other: &[u8; 16]) -> bool {
        self.0 == *other
    }
}

#[cfg(feature = "uuid-conversions")]
impl From<uuid::Uuid> for EventId {
    fn from(u: uuid::Uuid) -> EventId {
        EventId(u.into_bytes())
    }
}

#[cfg(feature = "uuid-conversions")]
impl From<EventId> for uuid::Uuid {
    fn from(id: EventId) -> uuid::Uuid {
        uuid::Uuid::from_bytes(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_v7_ids_sort_by_time() {
        let a = EventId::new_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::new_v7();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<EventId>(), Ok(a));
        assert_eq!(EventId::parse(&a.to_string().replace('-', "")), Ok(a));
        assert_ne!(EventId::new_v4(), EventId::new_v4());
        let bad = EventId::parse("not-a-uuid").unwrap_err();
        assert!(bad.to_string().contains("not-a-uuid"));
        assert_eq!(EventId::from([1; 16]), [1u8; 16]);
    }
}
