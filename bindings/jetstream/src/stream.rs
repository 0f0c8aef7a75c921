//! The relay's side of the JetStream stream: creating it or checking its
//! configuration ([`ensure`]), and reading where it ends ([`tail`]): the
//! last sequence, and the position its last message carries. Every broker
//! answer is sorted here into "wait and try again" or a typed error.

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{
    Config, LastRawMessageErrorKind, RawMessageErrorKind, RetentionPolicy, StorageType, Stream,
};
use async_nats::jetstream::{Context, ErrorCode};
use factlog::EventId;

use crate::envelope;
use crate::error::Error;
use crate::options::{RelayOptions, Storage};

/// Why a step of the relay did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The broker is down, slow or restarting: wait, then start again.
    Broker(String),
    /// The stream is not where the relay thought (another publisher, an
    /// acknowledgement that was lost): read where to resume, and go on.
    Resync(String),
    /// Nothing a retry changes.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Fatal(e)
    }
}

impl From<factlog::Error> for Failure {
    fn from(e: factlog::Error) -> Failure {
        Failure::Fatal(Error::Store(e))
    }
}

/// Where the stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// It never held a message: ship the store from its start.
    Empty,
    /// Its last message (or, if that one was deleted, the last one left).
    At {
        /// The stream's last sequence: what the next message must expect.
        last_sequence: u64,
        /// The sequence of the message read.
        sequence: u64,
        /// The position that message carries.
        position: u64,
        /// The event id it carries.
        event_id: EventId,
    },
    /// It held messages but none are left (purged or expired).
    Gone {
        /// Its last sequence.
        last_sequence: u64,
    },
}

/// A broker's JetStream error: 503s (JetStream restarting, no leader) pass;
/// anything else is the broker saying no.
fn refused(stream: &str, action: &'static str, api: &async_nats::jetstream::Error) -> Failure {
    if api.code() == 503 {
        return Failure::Broker(format!("{action} stream {stream:?}: {api}"));
    }
    Failure::Fatal(Error::StreamRefused {
        stream: stream.to_string(),
        action,
        code: api.error_code().0,
        description: api.to_string(),
    })
}

/// The stream configuration the relay creates.
fn wanted(o: &RelayOptions) -> Config {
    Config {
        name: o.stream.clone(),
        subjects: vec![o.stream_subject()],
        storage: match o.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        num_replicas: o.replicas,
        duplicate_window: o.duplicate_window,
        retention: RetentionPolicy::Limits,
        ..Default::default()
    }
}

/// Checks an existing stream's configuration against what the relay needs.
/// Limits (`max_age`, `max_msgs`, `max_msg_size`, ...) are the operator's
/// and not checked: a refused publish says so when it happens.
fn check(found: &Config, o: &RelayOptions) -> Result<(), Error> {
    let want = wanted(o);
    let conflict = |field, wanted: String, found: String| {
        Err(Error::StreamConfigConflict { stream: o.stream.clone(), field, wanted, found })
    };
    if found.subjects != want.subjects {
        // One subject, the relay's own: anything else could publish into the
        // stream and break the sequence the relay's publishes expect.
        return conflict("subjects", format!("{:?}", want.subjects), format!("{:?}", found.subjects));
    }
    if found.storage != want.storage {
        return conflict("storage", format!("{:?}", want.storage), format!("{:?}", found.storage));
    }
    if found.num_replicas.max(1) != want.num_replicas {
        return conflict("replicas", want.num_replicas.to_string(), found.num_replicas.to_string());
    }
    if found.duplicate_window != want.duplicate_window {
        return conflict(
            "duplicate_window",
            format!("{:?}", want.duplicate_window),
            format!("{:?}", found.duplicate_window),
        );
    }
    if found.retention != RetentionPolicy::Limits {
        // Work-queue and interest retention delete what consumers took: the
        // stream would no longer be the log.
        return conflict("retention", "Limits".into(), format!("{:?}", found.retention));
    }
    if found.sealed {
        return conflict("sealed", "false".into(), "true".into());
    }
    if found.mirror.is_some() {
        return conflict("mirror", "none".into(), "a mirror (it takes no publishes)".into());
    }
    Ok(())
}

/// The relay's stream: created with [`wanted`]'s configuration when it does
/// not exist, checked when it does.
pub(crate) async fn ensure(js: &Context, o: &RelayOptions) -> Result<Stream, Failure> {
    match js.get_stream(&o.stream).await {
        Ok(stream) => {
            check(&stream.cached_info().config, o)?;
            Ok(stream)
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                create(js, o).await
            }
            GetStreamErrorKind::JetStream(api) => Err(refused(&o.stream, "reading the configuration of", &api)),
            _ => Err(Failure::Broker(format!("read stream {:?}: {e}", o.stream))),
        },
    }
}

async fn create(js: &Context, o: &RelayOptions) -> Result<Stream, Failure> {
    match js.create_stream(wanted(o)).await {
        Ok(stream) => Ok(stream),
        Err(e) => match e.kind() {
            // Created by someone else meanwhile: the next attempt checks it.
            CreateStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NAME_EXIST => {
                Err(Failure::Resync(format!("stream {:?} was created meanwhile", o.stream)))
            }
            CreateStreamErrorKind::JetStream(api) => Err(refused(&o.stream, "creating", &api)),
            _ => Err(Failure::Broker(format!("create stream {:?}: {e}", o.stream))),
        },
    }
}

/// Where the stream ends: its last sequence and the position its last
/// message carries.
pub(crate) async fn tail(stream: &Stream, o: &RelayOptions) -> Result<Tail, Failure> {
    let info = stream.get_info().await.map_err(|e| Failure::Broker(format!("read stream {:?}: {e}", o.stream)))?;
    let last_sequence = info.state.last_sequence;
    if last_sequence == 0 {
        return Ok(Tail::Empty);
    }
    let message = match stream.get_raw_message(last_sequence).await {
        Ok(m) => m,
        Err(e) => match e.kind() {
            // The last message was deleted: the last one left on the relay's subjects tells.
            RawMessageErrorKind::NoMessageFound => {
                match stream.get_last_raw_message_by_subject(&o.stream_subject()).await {
                    Ok(m) => m,
                    Err(e) => match e.kind() {
                        LastRawMessageErrorKind::NoMessageFound => return Ok(Tail::Gone { last_sequence }),
                        LastRawMessageErrorKind::JetStream(api) => {
                            return Err(refused(&o.stream, "reading the last message of", &api))
                        }
                        _ => return Err(Failure::Broker(format!("read stream {:?}: {e}", o.stream))),
                    },
                }
            }
            RawMessageErrorKind::JetStream(api) => return Err(refused(&o.stream, "reading the last message of", &api)),
            _ => return Err(Failure::Broker(format!("read stream {:?}: {e}", o.stream))),
        },
    };
    let foreign = |e: Error| {
        Failure::Fatal(Error::ForeignMessage {
            stream: o.stream.clone(),
            sequence: message.sequence,
            reason: e.to_string(),
        })
    };
    let position = envelope::position(&message.headers).map_err(foreign)?;
    let event_id = envelope::event_id(&message.headers).map_err(foreign)?;
    Ok(Tail::At { last_sequence, sequence: message.sequence, position, event_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_the_relay_made_passes_its_check_and_each_difference_is_named() {
        let o = RelayOptions::new("nats://127.0.0.1:1", "ORDERS");
        assert!(check(&wanted(&o), &o).is_ok());
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 6] = [
            ("subjects", |c| c.subjects.push("other.>".into())),
            ("storage", |c| c.storage = StorageType::Memory),
            ("replicas", |c| c.num_replicas = 3),
            ("duplicate_window", |c| c.duplicate_window = std::time::Duration::from_secs(1)),
            ("retention", |c| c.retention = RetentionPolicy::WorkQueue),
            ("sealed", |c| c.sealed = true),
        ];
        for (field, change) in cases {
            let mut found = wanted(&o);
            change(&mut found);
            match check(&found, &o) {
                Err(Error::StreamConfigConflict { field: f, stream, .. }) => {
                    assert_eq!((f, stream.as_str()), (field, "ORDERS"))
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
