//! `factlog delete`, `factlog erase` and `factlog meta`: an aggregate's
//! lifecycle ([`factlog::Store::delete_aggregate`], [`factlog::Store::erase`],
//! [`factlog::Store::set_stream_meta`]). Each change is durable when the
//! command returns; reads hide what it hides at once, and `factlog scavenge`
//! reclaims the space.
//!
//! `meta` without a setter opens the store read-only and prints the
//! aggregate's state: the versions a reader sees, its retention rules, and
//! whether it is deleted or erased. With setters it changes only the rules
//! it is given (`--clear` drops the others first) and prints the new state.
//!
//! `erase` cannot be undone, so it first shows what it erases (from a
//! read-only open, so that the store stays free for its writer while the
//! question waits) and asks for `yes` on standard input, as `repair` does;
//! `--yes` skips the question. An aggregate already erased is an error
//! before the question (a hard-deleted one can still be erased).

use std::io;
use std::path::Path;
use std::time::Duration;

use factlog::{DeleteMode, Direction, Store, StreamMeta, StreamState};
use serde_json::{json, Value};

use crate::error::{CliError, CliResult};
use crate::{confirm, duration, open, output, DeleteArgs, EraseArgs, MetaArgs};

/// What a reader sees of an aggregate, with its lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    /// The aggregate.
    aggregate_id: String,
    /// First and last version a reader sees (versions in between are all
    /// visible: every rule hides a prefix), `None` when it sees none.
    visible: Option<(u64, u64)>,
    /// Its rules and deletion; the default when it has none.
    state: StreamState,
}

impl View {
    /// How many events a reader sees.
    fn visible_events(&self) -> u64 {
        self.visible.map_or(0, |(first, last)| last - first + 1)
    }
}

/// What `store` shows of `aggregate_id` now.
fn view(store: &Store, aggregate_id: &str) -> CliResult<View> {
    let reader = store.reader();
    let first = reader.read_aggregate(aggregate_id, 0, Direction::Forward).next().transpose()?.map(|e| e.version());
    let last =
        reader.read_aggregate(aggregate_id, u64::MAX, Direction::Backward).next().transpose()?.map(|e| e.version());
    Ok(View {
        aggregate_id: aggregate_id.to_string(),
        visible: first.zip(last),
        state: store.stream_state(aggregate_id).unwrap_or_default(),
    })
}

/// Runs `factlog delete`.
pub fn run_delete(args: &DeleteArgs, wait: Duration) -> CliResult {
    let store = open::open_for_change(&args.dir, wait, "delete from it")?;
    let before = view(&store, &args.aggregate)?;
    let mode = if args.hard { DeleteMode::Hard } else { DeleteMode::Soft };
    store.delete_aggregate(&args.aggregate, mode)?;
    let after = view(&store, &args.aggregate)?;
    close(store)?;
    if args.json {
        return output::print(&format!("{}\n", view_json(&after)));
    }
    let id = &args.aggregate;
    let next = match mode {
        DeleteMode::Soft => {
            // The version floor is what the next event gets once the log holds none of its events.
            let restart = after.state.version_floor.or(after.state.meta.truncate_before).unwrap_or(0);
            format!("a new append starts it again at version {restart}")
        }
        DeleteMode::Hard => "every later append to it is refused, forever".to_string(),
    };
    output::print(&format!(
        "deleted aggregate {id:?} ({}): {} hidden from reads; {next}\n{}",
        if args.hard { "hard" } else { "soft" },
        hidden(&before),
        reclaim_hint(&args.dir)
    ))
}

/// Runs `factlog erase`: the preview, the question, then the erasure.
pub fn run_erase(args: &EraseArgs, wait: Duration) -> CliResult {
    let id = &args.aggregate;
    let before = {
        let store = open::open_existing(&args.dir, wait)?;
        view(&store, id)?
    };
    refuse_erase(&before, &args.dir)?;
    if !args.yes {
        eprintln!(
            "erase aggregate {id:?} of {}: {} hidden at once, every later append to it refused forever, and \
             its bytes (data, metadata, id) removed from every file of the store by the next scavenge",
            args.dir.display(),
            hidden(&before)
        );
        let question = format!("Erase aggregate {id:?}? This cannot be undone.");
        if !confirm::ask(&question, io::stdin().lock())? {
            return Err(CliError::new("erase cancelled: nothing was changed"));
        }
    }
    let store = open::open_for_change(&args.dir, wait, "erase from it")?;
    // NOTE: the store was unlocked while the question waited; say what it
    // holds now, not what the preview saw.
    let before = view(&store, id)?;
    store.erase(id)?;
    let after = view(&store, id)?;
    close(store)?;
    if args.json {
        return output::print(&format!("{}\n", view_json(&after)));
    }
    output::print(&format!(
        "erased aggregate {id:?}: {} hidden from reads, every later append to it refused\n\
         its bytes stay in the store's files until `factlog scavenge {}` completes\n",
        hidden(&before),
        args.dir.display()
    ))
}

/// Why the engine would refuse to erase the aggregate `before` shows, said
/// before the question is asked.
fn refuse_erase(before: &View, dir: &Path) -> CliResult {
    let id = &before.aggregate_id;
    if before.state.erased {
        return Err(CliError::new(format!(
            "aggregate {id:?} is already erased: `factlog scavenge {}` completes the erasure",
            dir.display()
        )));
    }
    Ok(())
}

/// Runs `factlog meta`: prints the state, or changes the rules given and
/// prints the new state.
pub fn run_meta(args: &MetaArgs, wait: Duration) -> CliResult {
    let changing = args.clear || args.max_count.is_some() || args.max_age.is_some() || args.truncate_before.is_some();
    let after = if changing {
        let store = open::open_for_change(&args.dir, wait, "change it")?;
        let current = store.stream_state(&args.aggregate).map(|s| s.meta);
        let meta = merged(if args.clear { StreamMeta::default() } else { current.unwrap_or_default() }, args);
        store.set_stream_meta(&args.aggregate, meta)?;
        let after = view(&store, &args.aggregate)?;
        close(store)?;
        after
    } else {
        let store = open::open_existing(&args.dir, wait)?;
        view(&store, &args.aggregate)?
    };
    if after.visible.is_none() && !args.json {
        eprintln!("note: a reader sees no event of aggregate {:?} in {}", args.aggregate, args.dir.display());
    }
    let text = if args.json { format!("{}\n", view_json(&after)) } else { view_text(&after) };
    output::print(&text)
}

/// `meta` with the setters of `args` applied.
fn merged(mut meta: StreamMeta, args: &MetaArgs) -> StreamMeta {
    if let Some(n) = args.max_count {
        meta.max_count = Some(n);
    }
    if let Some(age) = args.max_age {
        meta.max_age = Some(age);
    }
    if let Some(v) = args.truncate_before {
        meta.truncate_before = Some(v);
    }
    meta
}

/// Closes a store the command changed, so that a failing final sync is
/// reported rather than lost.
fn close(store: Store) -> CliResult {
    store.close().map_err(|e| CliError::new(format!("closing the store: {e}")))
}

/// `N event(s) (versions A..=B)` for what a reader saw before the change.
fn hidden(before: &View) -> String {
    match before.visible {
        Some((first, last)) => format!("its {} event(s) (versions {first} to {last}) are", before.visible_events()),
        None => "no visible event was".to_string(),
    }
}

/// The line pointing at the scavenge, after a delete.
fn reclaim_hint(dir: &Path) -> String {
    format!("their space is reclaimed by `factlog scavenge {}`\n", dir.display())
}

/// `none`, or the value.
fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// The `meta` rows: label, value.
fn rows(v: &View) -> Vec<(&'static str, String)> {
    let s = &v.state;
    vec![
        ("aggregate", output::cell_name(&v.aggregate_id).into_owned()),
        (
            "visible versions",
            v.visible.map_or_else(
                || "none".to_string(),
                |(first, last)| format!("{first} to {last} ({} events)", v.visible_events()),
            ),
        ),
        ("max count", or_none(s.meta.max_count)),
        ("max age", or_none(s.meta.max_age.map(duration::format))),
        ("truncate before", or_none(s.meta.truncate_before)),
        ("deleted", delete_mode(s.deleted).unwrap_or("no").to_string()),
        ("erased", if s.erased { "yes (until the next scavenge completes it)" } else { "no" }.to_string()),
    ]
}

fn delete_mode(mode: Option<DeleteMode>) -> Option<&'static str> {
    mode.map(|m| match m {
        DeleteMode::Soft => "soft",
        DeleteMode::Hard => "hard",
    })
}

/// One `label  value` line per row, values aligned.
fn view_text(v: &View) -> String {
    let rows = rows(v);
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter().map(|(label, value)| format!("{label:<width$}  {value}\n")).collect()
}

/// The state as one JSON object.
fn view_json(v: &View) -> Value {
    let s = &v.state;
    json!({
        "aggregate_id": v.aggregate_id,
        "first_visible_version": v.visible.map(|(first, _)| first),
        "last_visible_version": v.visible.map(|(_, last)| last),
        "visible_events": v.visible_events(),
        "max_count": s.meta.max_count,
        "max_age": s.meta.max_age.map(duration::format),
        "max_age_ns": s.meta.max_age.map(|a| u64::try_from(a.as_nanos()).unwrap_or(u64::MAX)),
        "truncate_before": s.meta.truncate_before,
        "deleted": delete_mode(s.deleted),
        "erased": s.erased,
        "version_floor": s.version_floor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> View {
        View {
            aggregate_id: "acct 1".into(),
            visible: Some((4, 9)),
            state: StreamState {
                meta: StreamMeta {
                    max_count: Some(6),
                    max_age: Some(Duration::from_secs(86_400)),
                    truncate_before: None,
                },
                ..StreamState::default()
            },
        }
    }

    #[test]
    fn text_rows_are_aligned_and_name_every_rule() {
        let text = view_text(&sample());
        assert_eq!(
            text,
            "aggregate         \"acct 1\"\n\
             visible versions  4 to 9 (6 events)\n\
             max count         6\n\
             max age           1d\n\
             truncate before   none\n\
             deleted           no\n\
             erased            no\n"
        );
    }

    #[test]
    fn json_has_every_key() {
        let mut v = sample();
        v.visible = None;
        v.state.deleted = Some(DeleteMode::Soft);
        assert_eq!(
            view_json(&v),
            json!({
                "aggregate_id": "acct 1", "first_visible_version": null, "last_visible_version": null,
                "visible_events": 0, "max_count": 6, "max_age": "1d", "max_age_ns": 86_400_000_000_000u64,
                "truncate_before": null, "deleted": "soft", "erased": false, "version_floor": null,
            })
        );
    }
}
