//! Output: the comparison table or, with `--json`, one JSON document.
//!
//! The table puts factlog and each peer side by side with factlog's ratio to
//! each peer; factlog's share of the physical limit goes on each workload's
//! title line. Every line of it fits in [`TABLE_WIDTH_MAX`] columns, and its
//! figures are rounded to three significant digits ([`fmt_num`]). The JSON
//! document (machine, physical limits, parameters, every result row with all
//! its figures, exact) is what `docs/bench/` keeps; its fields only ever grow.
//! This module also words the one-line progress report of a finished row.

use crate::engines::{Durability, EngineKind};
use crate::machine::MachineInfo;
use crate::physical::Physical;
use crate::workloads::{Params, Row, Workload};
use serde::Serialize;

/// Widest line the text report prints, in characters.
pub const TABLE_WIDTH_MAX: usize = 100;

/// An engine whose run stopped early, and why.
#[derive(Clone, Debug, Serialize)]
pub struct EngineFailure {
    /// The engine.
    pub engine: EngineKind,
    /// The error, with its causes.
    pub error: String,
}

/// Everything a run produced; serializes as the `--json` document.
#[derive(Serialize)]
pub struct Report<'a> {
    /// Host description.
    pub machine: &'a MachineInfo,
    /// Physical limits, if measured.
    pub physical: Option<Physical>,
    /// Parameters the run used.
    pub params: &'a Params,
    /// Engines in column order.
    #[serde(skip)]
    pub engines: &'a [EngineKind],
    /// Result rows.
    #[serde(rename = "results")]
    pub rows: &'a [Row],
    /// Failures that cut an engine's run short.
    pub errors: &'a [EngineFailure],
    /// Total wall time of the run, seconds.
    pub wall_secs: f64,
}

/// Which direction is better for a metric.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// Context, not a contest: no ratio column.
    Info,
}

/// Where a metric's value comes from in a [`Row`].
#[derive(Clone, Copy)]
enum Source {
    EventsPerSec,
    MbPerSec,
    P50,
    P99,
    Extra(&'static str),
    /// An extra in bytes, shown in MiB.
    ExtraMib(&'static str),
    /// An extra that is a share, shown in percent.
    ExtraPercent(&'static str),
}

impl Source {
    fn get(self, r: &Row) -> Option<f64> {
        match self {
            Source::EventsPerSec => Some(r.events_per_sec()),
            Source::MbPerSec => Some(r.mb_per_sec()),
            Source::P50 => r.latency.map(|l| l.p50_us),
            Source::P99 => r.latency.map(|l| l.p99_us),
            Source::Extra(key) => r.extra_f64(key),
            Source::ExtraMib(key) => r.extra_f64(key).map(|b| b / 1_048_576.0),
            Source::ExtraPercent(key) => r.extra_f64(key).map(|share| share * 100.0),
        }
    }
}

/// One metric row of the table: name, direction, where its value is.
type Metric = (&'static str, Better, Source);

const APPENDS: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("p50 µs/append ↓", Better::Lower, Source::P50),
    ("p99 µs/append ↓", Better::Lower, Source::P99),
    ("fsyncs/s", Better::Lower, Source::Extra("fsyncs_per_sec")),
    ("events/fsync ↑", Better::Higher, Source::Extra("events_per_fsync")),
];
const APPENDS_MANY: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("÷ W2 same writers", Better::Info, Source::Extra("ratio_to_w2")),
    ("p50 µs/append_many ↓", Better::Lower, Source::P50),
    ("p99 µs/append_many ↓", Better::Lower, Source::P99),
    ("fsyncs/s", Better::Lower, Source::Extra("fsyncs_per_sec")),
    ("events/fsync ↑", Better::Higher, Source::Extra("events_per_fsync")),
];
const APPENDS_SUBSCRIBED: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("÷ W2 unsubscribed ↑", Better::Higher, Source::Extra("ratio_to_w2")),
    ("p50 µs/append ↓", Better::Lower, Source::P50),
    ("p99 µs/append ↓", Better::Lower, Source::P99),
    ("subscribers done, ms after", Better::Lower, Source::Extra("subscriber_catch_up_ms")),
];
const BULK_LOAD: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("MB/s logical ↑", Better::Higher, Source::MbPerSec),
    ("bytes/event used ↓", Better::Lower, Source::Extra("bytes_per_event")),
    ("bytes/event raw files", Better::Lower, Source::Extra("raw_file_bytes_per_event")),
    ("index bytes/event (mem) ↓", Better::Lower, Source::Extra("index_bytes_per_event")),
    ("peak RSS MiB ↓", Better::Lower, Source::ExtraMib("peak_rss_bytes")),
];
const REPLAY: &[Metric] = &[
    ("p50 µs/aggregate ↓", Better::Lower, Source::P50),
    ("p99 µs/aggregate ↓", Better::Lower, Source::P99),
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
];
const SCAN: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("GB/s logical ↑", Better::Higher, Source::Extra("gb_per_sec")),
    ("peak RSS MiB ↓", Better::Lower, Source::ExtraMib("peak_rss_bytes")),
];
const SCAN_UPCAST: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("plain scan, same passes", Better::Info, Source::Extra("plain_events_per_sec")),
    ("÷ plain scan ↑", Better::Higher, Source::Extra("ratio_to_plain")),
];
const FULL_LOAD: &[Metric] = &[
    ("p50 µs/load ↓", Better::Lower, Source::P50),
    ("p99 µs/load ↓", Better::Lower, Source::P99),
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
];
const SNAPSHOT_LOAD: &[Metric] = &[
    ("p50 µs/load ↓", Better::Lower, Source::P50),
    ("p99 µs/load ↓", Better::Lower, Source::P99),
    ("snapshot JSON bytes", Better::Lower, Source::Extra("snapshot_raw_bytes")),
    ("compression ratio ↑", Better::Higher, Source::Extra("compression_ratio")),
    ("snapshot saves/s ↑", Better::Higher, Source::Extra("snapshot_saves_per_sec")),
    ("snapshot reads/s ↑", Better::Higher, Source::Extra("snapshot_reads_per_sec")),
    ("small state JSON bytes", Better::Lower, Source::Extra("small_snapshot_json_bytes")),
    ("small: payload ratio ↑", Better::Higher, Source::Extra("small_snapshot_payload_ratio_plain")),
    ("small + dict: payload ↑", Better::Higher, Source::Extra("small_snapshot_payload_ratio_dict")),
    ("small: ratio on disk ↑", Better::Higher, Source::Extra("small_snapshot_ratio_plain")),
    ("small + dict: on disk ↑", Better::Higher, Source::Extra("small_snapshot_ratio_dict")),
];

const LIVE: &[Metric] = &[
    ("p50 µs ack→receipt ↓", Better::Lower, Source::P50),
    ("p99 µs ack→receipt ↓", Better::Lower, Source::P99),
    ("receipts before ack %", Better::Info, Source::ExtraPercent("receipts_before_ack_share")),
    ("p50 µs submit→receipt ↓", Better::Lower, Source::Extra("submit_to_receipt_p50_us")),
    ("p99 µs submit→receipt ↓", Better::Lower, Source::Extra("submit_to_receipt_p99_us")),
    ("p50 µs submit→ack", Better::Info, Source::Extra("append_p50_us")),
    ("appends/s achieved", Better::Info, Source::EventsPerSec),
];
const CATCH_UP: &[Metric] = &[
    ("events examined/s ↑", Better::Higher, Source::EventsPerSec),
    ("÷ W6 scan, same run ↑", Better::Higher, Source::Extra("ratio_to_w6")),
    ("÷ unfiltered ↑", Better::Higher, Source::Extra("ratio_to_unfiltered")),
    ("events delivered/s", Better::Higher, Source::Extra("delivered_per_sec")),
];

const CONSUMER: &[Metric] = &[
    ("events/s ↑", Better::Higher, Source::EventsPerSec),
    ("÷ W6 scan, same run ↑", Better::Higher, Source::Extra("ratio_to_w6")),
];

/// A table group within a workload: for W2 (live subscribers, writers), for
/// W7 (1 with a snapshot, 0 without), for W8 (subscribers, 0), for W9 (1
/// filtered, 0 not), otherwise (1, 0).
type Variant = (usize, usize);

/// The metrics shown for a table group.
fn metrics(workload: Workload, variant: Variant) -> &'static [Metric] {
    match workload {
        Workload::W2 if variant.0 > 0 => APPENDS_SUBSCRIBED,
        Workload::W1 | Workload::W2 | Workload::W3 => APPENDS,
        Workload::W2m => APPENDS_MANY,
        Workload::W4 => BULK_LOAD,
        Workload::W5 => REPLAY,
        Workload::W6 if variant.1 > 0 => SCAN_UPCAST,
        Workload::W6 => SCAN,
        Workload::W7 if variant.0 == 1 => SNAPSHOT_LOAD,
        Workload::W7 => FULL_LOAD,
        Workload::W8 => LIVE,
        Workload::W9 => CATCH_UP,
        Workload::W10 => CONSUMER,
    }
}

/// One metric line of the table: a value per engine, in column order.
struct Line {
    metric: &'static str,
    better: Better,
    values: Vec<Option<f64>>,
}

/// A workload variant's lines under their title.
struct Group {
    title: String,
    lines: Vec<Line>,
}

impl Report<'_> {
    /// The row of a table group (see [`Variant`]).
    fn row(&self, workload: Workload, variant: Variant, engine: EngineKind) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.engine == engine && variant_of(r) == variant)
    }

    /// The table groups, in workload order.
    fn groups(&self) -> Vec<Group> {
        let mut keys: Vec<(Workload, Variant)> = Vec::new();
        for r in self.rows {
            let key = (r.workload, variant_of(r));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.sort();
        keys.into_iter()
            .map(|(w, variant)| {
                let lines = metrics(w, variant)
                    .iter()
                    .map(|&(metric, better, source)| Line {
                        metric,
                        better,
                        values: self
                            .engines
                            .iter()
                            .map(|&e| self.row(w, variant, e).and_then(|r| source.get(r)))
                            .collect(),
                    })
                    .filter(|line| line.values.iter().any(Option::is_some))
                    .collect();
                let title = match self.physical_share(w, variant) {
                    Some(share) => format!("{}: factlog at {share}", self.label(w, variant)),
                    None => self.label(w, variant),
                };
                Group { title, lines }
            })
            .collect()
    }

    /// A group's title: the workload and its parameters.
    fn label(&self, w: Workload, variant: Variant) -> String {
        let p = self.params;
        let dur = p.durability.name();
        match w {
            Workload::W1 => format!("W1 append 1 ev, 1 writer, {dur}"),
            Workload::W2 if variant.0 > 0 => {
                format!("W2 append 1 ev, {}, {dur}, {} attached (factlog)", writers(variant.1), subscribers(variant.0))
            }
            Workload::W2 => format!("W2 append 1 ev, {}, {dur}", writers(variant.1)),
            Workload::W2m => {
                format!("W2m append_many 1 ev × {} aggregates, {}, {dur}", p.w2m_aggregates, writers(variant.1))
            }
            Workload::W3 => format!("W3 append {} ev, 1 writer, {dur}", p.batch),
            Workload::W4 => format!("W4 bulk load {} ev, buffered", fmt_int(p.events)),
            Workload::W5 => format!("W5 replay {}-ev aggregate", fmt_int((p.events / p.aggregates.max(1)).max(1))),
            Workload::W6 if variant.1 > 0 => format!(
                "W6 the same scan, {} upcasters registered, none matching, best of {} (factlog)",
                variant.1,
                crate::upcast::PASSES
            ),
            Workload::W6 => format!("W6 full scan {} ev", fmt_int(p.events)),
            Workload::W7 if variant.0 == 1 => format!(
                "W7 load {}-ev aggregate, snapshot + {} ev",
                fmt_int(p.w7_events),
                crate::snapshots::TAIL_EVENTS
            ),
            Workload::W7 => format!("W7 load {}-ev aggregate, no snapshot", fmt_int(p.w7_events)),
            Workload::W8 => format!(
                "W8 live delivery, 1 writer at {} appends/s, sync, {} (peers poll every {} ms)",
                fmt_int(p.w8_rate),
                subscribers(variant.0),
                crate::live::POLL_INTERVAL.as_millis()
            ),
            Workload::W9 if variant.0 == 1 => {
                format!("W9 the same catch-up, type filter matching 1 in {} (factlog)", crate::event::RARE_TYPE_EVERY)
            }
            Workload::W9 => format!("W9 subscription catch-up over the {} W4 ev (factlog)", fmt_int(p.events)),
            Workload::W10 => format!(
                "W10 durable consumer over the {} W4 ev, checkpoint every {} ev (factlog)",
                fmt_int(p.events),
                fmt_int(crate::catchup::CHECKPOINT_EVERY_EVENTS)
            ),
        }
    }

    /// factlog's figure as a share of the physical limit it is bound by
    /// (`98.2% of fsync/s`), where there is one.
    fn physical_share(&self, w: Workload, variant: Variant) -> Option<String> {
        let ph = self.physical?;
        let fl = self.row(w, variant, EngineKind::Factlog)?;
        let sync = self.params.durability == Durability::Sync;
        let (num, den, what) = match w {
            Workload::W1 | Workload::W2 | Workload::W2m if sync => {
                (fl.events_per_sec(), ph.fsync_per_sec, "fsync/s".to_owned())
            }
            Workload::W3 if sync => (
                fl.events_per_sec(),
                ph.fsync_per_sec * self.params.batch as f64,
                format!("fsync/s × {}", self.params.batch),
            ),
            Workload::W4 => {
                (fl.extra_f64("disk_mb_per_sec")?, ph.seq_write_mb_per_sec, "seq write (disk bytes)".into())
            }
            Workload::W6 => (fl.extra_f64("gb_per_sec")? * 1000.0, ph.memcpy_mb_per_sec, "memcpy".into()),
            _ => return None,
        };
        (den > 0.0).then(|| format!("{}% of {what}", fmt_num(100.0 * num / den)))
    }

    /// The human-readable report: machine and physical lines, the table, the
    /// notes; no line wider than [`TABLE_WIDTH_MAX`].
    pub fn to_table(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        out.extend(wrap_parts(&format!("machine: {}", self.machine.one_line())));
        if self.params.cpu_load > 0 {
            out.push(format!("cpu load: {} spinning thread(s) for the whole run (--cpu-load)", self.params.cpu_load));
        }
        match self.physical {
            Some(p) => out.extend(wrap_parts(&p.one_line())),
            None => out.push("physical limits: not measured".into()),
        }
        out.push(String::new());
        out.extend(self.table_lines());
        out.push(String::new());
        let factlog_and_peers =
            self.engines.contains(&EngineKind::Factlog) && self.engines.iter().any(|&e| e != EngineKind::Factlog);
        let notes = format!(
            "Figures are rounded to three significant digits; --json has them exact, with more figures per row. \
             {}MB/s and GB/s count logical event bytes (id+aggregate+type+timestamp+payload). \
             W4 syncs at the end (timed); W5/W6 read the W4 store. \
             Peak RSS is the whole process's VmHWM during that workload, reset per workload \
             (the harness's pre-generated events included).{}",
            if factlog_and_peers {
                "Ratios are factlog ÷ peer (↑ higher is better, ↓ lower is better; \"!\" marks factlog losing). "
            } else {
                ""
            },
            if self.rows.iter().any(|r| matches!(r.workload, Workload::W8 | Workload::W9 | Workload::W10)) {
                " W8 times each event from the writer's `append` returning (ack) or being called (submit) \
                 to each subscriber having it; a receipt before the ack counts as 0 µs. W9 rates count \
                 every event the catch-up examined. W9, W10 and the subscribed W2 are factlog's (the \
                 peers have no subscriptions)."
            } else {
                ""
            }
        );
        out.extend(wrap(&notes, ""));
        for failure in self.errors {
            out.extend(wrap(&format!("ERROR {}: {}", failure.engine, failure.error), "  "));
        }
        out.push(format!("total wall time: {} s", fmt_num(self.wall_secs)));
        let mut s = out.join("\n");
        s.push('\n');
        s
    }

    /// The table: a header, then each group's title and its metric lines.
    fn table_lines(&self) -> Vec<String> {
        let has_factlog = self.engines.contains(&EngineKind::Factlog);
        let fl_idx = self.engines.iter().position(|&e| e == EngineKind::Factlog);
        let peers: Vec<(usize, EngineKind)> = if has_factlog {
            self.engines.iter().copied().enumerate().filter(|&(_, e)| e != EngineKind::Factlog).collect()
        } else {
            Vec::new()
        };
        let mut header: Vec<String> = vec!["metric".into()];
        header.extend(self.engines.iter().map(|e| e.name().to_owned()));
        header.extend(peers.iter().map(|(_, e)| format!("÷ {e}")));

        let groups = self.groups();
        let cells_of = |line: &Line| -> Vec<String> {
            let mut cells = vec![format!("  {}", line.metric)];
            cells.extend(line.values.iter().map(|v| v.map_or("-".to_owned(), fmt_num)));
            for (pi, _) in &peers {
                let ratio = fl_idx.and_then(|fi| match (line.values[fi], line.values[*pi]) {
                    _ if line.better == Better::Info => None,
                    (Some(f), Some(q)) if q > 0.0 => Some(f / q),
                    _ => None,
                });
                cells.push(ratio.map_or("-".to_owned(), |r| fmt_ratio(r, line.better)));
            }
            cells
        };
        let rows: Vec<Vec<Vec<String>>> = groups.iter().map(|g| g.lines.iter().map(&cells_of).collect()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for cells in rows.iter().flatten() {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let render = |cells: &[String]| -> String {
            let mut line = String::new();
            for (c, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                if c == 0 {
                    line.push_str(cell);
                    line.push_str(&pad);
                } else {
                    line.push_str("  ");
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
            line.trim_end().to_owned()
        };
        let mut out = vec![render(&header)];
        let table_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        out.push("-".repeat(table_width.min(TABLE_WIDTH_MAX)));
        for (group, cells) in groups.iter().zip(&rows) {
            out.extend(wrap(&group.title, "    "));
            out.extend(cells.iter().map(|c| render(c)));
        }
        out
    }
}

/// Which table group a row belongs to within its workload.
fn variant_of(r: &Row) -> Variant {
    let flag = |key: &str| usize::from(r.extra.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false));
    let subscribers = r.extra.get("subscribers").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
    match r.workload {
        Workload::W2 => (subscribers, r.writers),
        Workload::W2m => (0, r.writers),
        Workload::W7 => (flag("snapshot"), 0),
        Workload::W8 => (subscribers, 0),
        Workload::W9 => (flag("filtered"), 0),
        Workload::W6 => (1, r.extra.get("upcasters").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize),
        _ => (1, 0),
    }
}

/// The progress report of a finished row, on one line:
/// `factlog W2 (16 writers): 51,900 events/s, p50 453 µs, measured 3.00 s`.
pub fn progress_line(r: &Row) -> String {
    let variant = match (r.workload, variant_of(r)) {
        (Workload::W2, (0, n)) => format!(" ({})", writers(n)),
        (Workload::W2, (s, n)) => format!(" ({}, {})", writers(n), subscribers(s)),
        (Workload::W2m, (_, n)) => format!(
            " ({} × {} aggregates)",
            writers(n),
            r.extra.get("aggregates_per_append").and_then(serde_json::Value::as_u64).unwrap_or(0)
        ),
        (Workload::W7, (1, _)) => " (snapshot)".to_owned(),
        (Workload::W7, _) => " (no snapshot)".to_owned(),
        (Workload::W8, (s, _)) => format!(" ({})", subscribers(s)),
        (Workload::W9, (1, _)) => " (type filter)".to_owned(),
        (Workload::W9, _) => " (unfiltered)".to_owned(),
        (Workload::W6, (_, n)) if n > 0 => format!(" ({n} upcasters, none matching)"),
        _ => String::new(),
    };
    let latency = r.latency.map_or(String::new(), |l| format!(", p50 {} µs", fmt_num(l.p50_us)));
    format!(
        "{} {}{variant}: {} events/s{latency}, measured {}",
        r.engine,
        r.workload.name(),
        fmt_num(r.events_per_sec()),
        fmt_secs(r.secs)
    )
}

/// `1 writer`, `16 writers`.
fn writers(n: usize) -> String {
    if n == 1 {
        "1 writer".to_owned()
    } else {
        format!("{n} writers")
    }
}

/// `1 subscriber`, `16 subscribers`.
fn subscribers(n: usize) -> String {
    if n == 1 {
        "1 subscriber".to_owned()
    } else {
        format!("{n} subscribers")
    }
}

/// A duration in seconds as `3.00 s`, `95.4 ms` or `59.5 µs`.
fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{} s", fmt_num(secs))
    } else if secs >= 1e-3 {
        format!("{} ms", fmt_num(secs * 1e3))
    } else {
        format!("{} µs", fmt_num(secs * 1e6))
    }
}

/// factlog ÷ peer as `1.36×`, with ` !` when factlog loses.
fn fmt_ratio(r: f64, better: Better) -> String {
    let good = match better {
        Better::Higher => r >= 1.0,
        Better::Lower => r <= 1.0,
        Better::Info => true,
    };
    format!("{}×{}", fmt_num(r), if good { "" } else { " !" })
}

/// `x` rounded to three significant digits, with thousands separators:
/// `191,896.4252` → `192,000`, `16.24` → `16.2`, `0.34` → `0.340`.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = |v: f64| {
        let mut m = v.abs().log10().floor() as i32;
        // NOTE: log10 may land one off at exact powers of ten.
        while v.abs() >= 10f64.powi(m + 1) {
            m += 1;
        }
        while v.abs() < 10f64.powi(m) {
            m -= 1;
        }
        m
    };
    let scale = 10f64.powi(magnitude(x) - 2);
    let rounded = (x / scale).round() * scale;
    let decimals = (2 - magnitude(rounded)).max(0) as usize;
    if decimals > 0 {
        return format!("{rounded:.decimals$}");
    }
    let n = rounded.round();
    let digits = fmt_int(n.abs() as u64);
    if n < 0.0 {
        format!("-{digits}")
    } else {
        digits
    }
}

/// An integer with thousands separators: `1234567` → `1,234,567`.
pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A `part | part | part` summary on as few lines of at most
/// [`TABLE_WIDTH_MAX`] characters as keep each part whole (a part that does
/// not fit on a line of its own is broken at spaces).
fn wrap_parts(text: &str) -> Vec<String> {
    const SEP: &str = " | ";
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for part in text.split(SEP) {
        if line.is_empty() {
            line = part.to_owned();
        } else if line.chars().count() + SEP.len() + part.chars().count() <= TABLE_WIDTH_MAX {
            line.push_str(SEP);
            line.push_str(part);
        } else {
            lines.extend(wrap(&line, "  "));
            line = format!("  | {part}");
        }
    }
    lines.extend(wrap(&line, "  "));
    lines
}

/// `text` broken at spaces into lines of at most [`TABLE_WIDTH_MAX`]
/// characters, continuation lines starting with `indent`. A single word
/// longer than that (a long path) stays whole.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    let lead = &text[..text.len() - text.trim_start().len()];
    let mut lines = Vec::new();
    let mut line = lead.to_owned();
    let mut has_word = false;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if has_word && line.chars().count() + 1 + word.chars().count() > TABLE_WIDTH_MAX {
            lines.push(std::mem::replace(&mut line, indent.to_owned()));
            has_word = false;
        }
        if has_word {
            line.push(' ');
        }
        line.push_str(word);
        has_word = true;
    }
    if has_word {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Summary;
    use crate::progress::{Mode, Progress};
    use std::time::Duration;

    #[test]
    fn numbers_have_three_significant_digits() {
        assert_eq!(fmt_num(191_896.425_2), "192,000");
        assert_eq!(fmt_num(1_234_567.4), "1,230,000");
        assert_eq!(fmt_num(10_256.0), "10,300");
        assert_eq!(fmt_num(1000.0), "1,000");
        assert_eq!(fmt_num(999.6), "1,000");
        assert_eq!(fmt_num(999.4), "999");
        assert_eq!(fmt_num(99.96), "100");
        assert_eq!(fmt_num(16.24), "16.2");
        assert_eq!(fmt_num(8.9), "8.90");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.34), "0.340");
        assert_eq!(fmt_num(0.000_123_4), "0.000123");
        assert_eq!(fmt_num(-1234.0), "-1,230");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(f64::NAN), "-");
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(1_000_000), "1,000,000");
    }

    #[test]
    fn wrapping_keeps_words_and_width() {
        let text = "word ".repeat(60);
        let lines = wrap(&text, "  ");
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= TABLE_WIDTH_MAX), "{lines:?}");
        assert!(lines[1].starts_with("  word"));
        assert_eq!(lines.join(" ").split_whitespace().count(), 60);
    }

    fn params() -> Params {
        Params {
            events: 10_000_000,
            aggregates: 100_000,
            payload_bytes: 200,
            writers: vec![4, 16, 64],
            w2m_aggregates: 8,
            batch: 100,
            durability: Durability::Sync,
            duration: Duration::from_secs(3),
            replays: 5000,
            w7_events: 100_000,
            w7_loads: 30,
            w2_subscribers: 16,
            w8_rate: 2000,
            w8_duration: Duration::from_secs(2),
            w8_subscribers: vec![1, 16],
            cpu_load: 0,
            w6_upcasters: 8,
            progress: Progress::new(Mode::Off),
        }
    }

    /// A row of every workload for every engine, with wide figures.
    fn rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for engine in [EngineKind::Factlog, EngineKind::Sqlite, EngineKind::Fjall] {
            for (w, writers, snapshot) in [
                (Workload::W1, 1, false),
                (Workload::W2, 64, false),
                (Workload::W2, 16, true),
                (Workload::W2m, 64, false),
                (Workload::W3, 1, false),
                (Workload::W4, 1, false),
                (Workload::W5, 1, false),
                (Workload::W6, 1, false),
                (Workload::W6, 1, true),
                (Workload::W7, 1, false),
                (Workload::W7, 1, true),
                (Workload::W8, 1, false),
                (Workload::W8, 1, true),
                (Workload::W9, 1, false),
                (Workload::W9, 1, true),
                (Workload::W10, 1, false),
            ] {
                if engine != EngineKind::Factlog
                    && (matches!(w, Workload::W9 | Workload::W10)
                        || (matches!(w, Workload::W2 | Workload::W6) && snapshot))
                {
                    continue;
                }
                let mut r = Row::new(w, engine, writers, 1, Durability::Sync);
                r.events = 1_234_567_891;
                r.secs = 0.7;
                r.logical_bytes = r.events * 246;
                r.latency = Some(Summary {
                    count: 10,
                    mean_us: 123_456.7,
                    p50_us: 123_456.7,
                    p99_us: 9_876_543.2,
                    max_us: 1e7,
                });
                for key in ["fsyncs_per_sec", "bytes_per_event", "gb_per_sec", "compression_ratio", "disk_mb_per_sec"] {
                    r.set(key, 123_456.789);
                }
                for key in
                    ["ratio_to_w2", "ratio_to_w6", "ratio_to_unfiltered", "receipts_before_ack_share", "ratio_to_plain"]
                {
                    r.set(key, 0.987_654);
                }
                for key in ["subscriber_catch_up_ms", "append_p50_us", "delivered_per_sec", "submit_to_receipt_p99_us"]
                {
                    r.set(key, 123_456.789);
                }
                r.set_u64("peak_rss_bytes", 123_456_789_012);
                if w == Workload::W2m {
                    r.set_u64("aggregates_per_append", 8);
                }
                // The flag that picks each workload's second variant.
                match (w, snapshot) {
                    (Workload::W2 | Workload::W8, true) => r.set_u64("subscribers", 16),
                    (Workload::W8, false) => r.set_u64("subscribers", 1),
                    (Workload::W6, true) => {
                        r.set_u64("upcasters", 8);
                        r.set("plain_events_per_sec", 123_456_789.0);
                    }
                    _ => {}
                }
                r.extra.insert("snapshot".into(), serde_json::Value::Bool(snapshot));
                r.extra.insert("filtered".into(), serde_json::Value::Bool(snapshot));
                rows.push(r);
            }
        }
        rows
    }

    #[test]
    fn the_table_fits_in_100_columns() {
        let machine = MachineInfo {
            cpu_model: "AMD EPYC 7B13 64-Core Processor with a rather long model name".into(),
            cores: 2,
            mem_bytes: 24 << 30,
            kernel: "Linux 6.18.44".into(),
            fs_type: "ext4".into(),
            fs_source: "/dev/vda1".into(),
            fs_mount: "/".into(),
        };
        let physical = Physical {
            fsync_per_sec: 10_492.3,
            fsync_p50_us: 85.2,
            seq_write_mb_per_sec: 427.1,
            seq_write_bytes: 256 << 20,
            memcpy_mb_per_sec: 12_100.4,
        };
        let (params, rows) = (params(), rows());
        let engines = [EngineKind::Factlog, EngineKind::Sqlite, EngineKind::Fjall];
        let errors = [EngineFailure { engine: EngineKind::Fjall, error: "x ".repeat(120) }];
        let report = Report {
            machine: &machine,
            physical: Some(physical),
            params: &params,
            engines: &engines,
            rows: &rows,
            errors: &errors,
            wall_secs: 87.25,
        };
        let table = report.to_table();
        for line in table.lines() {
            assert!(line.chars().count() <= TABLE_WIDTH_MAX, "{} chars: {line}\n{table}", line.chars().count());
        }
        assert!(table.contains("W1 append 1 ev, 1 writer, sync: factlog at "), "{table}");
        assert!(table.contains("W4 bulk load 10,000,000 ev, buffered"), "{table}");
        assert!(table.contains("÷ sqlite") && table.contains("÷ fjall"), "{table}");
        assert!(table.contains("1,760,000,000"), "events/s rounded, with separators: {table}");
        assert!(!table.contains("1763668415"), "{table}");
        assert!(table.contains("total wall time: 87.3 s"), "{table}");
        assert!(table.contains("W2 append 1 ev, 16 writers, sync, 16 subscribers attached (factlog)"), "{table}");
        assert!(table.contains("W2m append_many 1 ev × 8 aggregates, 64 writers, sync: factlog at "), "{table}");
        assert!(table.contains("÷ W2 same writers") && table.contains("p50 µs/append_many"), "{table}");
        assert!(table.contains("W8 live delivery, 1 writer at 2,000 appends/s, sync, 16 subscribers"), "{table}");
        assert!(table.contains("W9 the same catch-up, type filter matching 1 in 100"), "{table}");
        assert!(table.contains("W10 durable consumer over the 10,000,000 W4 ev, checkpoint every 1,000"), "{table}");
        assert!(table.contains("W6 the same scan, 8 upcasters registered, none matching, best of 9"), "{table}");
        for metric in
            ["÷ W2 unsubscribed", "p99 µs ack→receipt", "receipts before ack %", "÷ W6 scan, same run", "÷ plain scan"]
        {
            assert!(table.contains(metric), "{metric}: {table}");
        }
    }

    #[test]
    fn the_json_keeps_the_documented_fields() {
        let machine = MachineInfo::default();
        let (params, rows) = (params(), rows());
        let report = Report {
            machine: &machine,
            physical: Some(Physical::default()),
            params: &params,
            engines: &[EngineKind::Factlog],
            rows: &rows,
            errors: &[EngineFailure { engine: EngineKind::Sqlite, error: "boom".into() }],
            wall_secs: 1.5,
        };
        let v = serde_json::to_value(&report).expect("serializes");
        for key in ["cpu_model", "cores", "mem_bytes", "kernel", "fs_type", "fs_source", "fs_mount"] {
            assert!(v["machine"].get(key).is_some(), "machine.{key}: {v}");
        }
        for key in ["fsync_per_sec", "fsync_p50_us", "seq_write_mb_per_sec", "seq_write_bytes", "memcpy_mb_per_sec"] {
            assert!(v["physical"][key].is_number(), "physical.{key}: {v}");
        }
        let p = &v["params"];
        assert_eq!(p["durability"], "sync");
        assert_eq!(p["duration_secs"], 3.0);
        assert_eq!(p["writers"], serde_json::json!([4, 16, 64]));
        for key in ["events", "aggregates", "payload_bytes", "batch", "replays", "w7_events", "w7_loads"] {
            assert!(p[key].is_u64(), "params.{key}: {v}");
        }
        assert!(p.get("progress").is_none());
        let r = &v["results"][0];
        assert_eq!((&r["workload"], &r["engine"], &r["durability"]), (&"W1".into(), &"factlog".into(), &"sync".into()));
        for key in ["writers", "batch", "events", "ops"] {
            assert!(r[key].is_u64(), "{key}: {r}");
        }
        for key in ["secs", "events_per_sec", "mb_per_sec", "p50_us", "p99_us", "mean_us", "max_us", "fsyncs_per_sec"] {
            assert!(r[key].is_f64(), "{key}: {r}");
        }
        assert_eq!(r["peak_rss_bytes"], 123_456_789_012u64);
        assert!(r.get("latency").is_none() && r.get("extra").is_none(), "flattened: {r}");
        assert_eq!(v["errors"], serde_json::json!([{"engine": "sqlite", "error": "boom"}]));
        assert_eq!(v["wall_secs"], 1.5);
    }

    #[test]
    fn progress_lines_name_engine_workload_and_rate() {
        let rows = rows();
        let w2 = rows.iter().find(|r| r.workload == Workload::W2).expect("W2 row");
        let line = progress_line(w2);
        assert!(line.starts_with("factlog W2 (64 writers): 1,760,000,000 events/s, p50 123,000 µs"), "{line}");
        let snap = rows.iter().find(|r| r.workload == Workload::W7 && variant_of(r).0 == 1).expect("W7 row");
        assert!(progress_line(snap).starts_with("factlog W7 (snapshot): "), "{}", progress_line(snap));
        assert!(progress_line(snap).ends_with(", measured 700 ms"), "{}", progress_line(snap));
        let subscribed = rows.iter().find(|r| r.workload == Workload::W2 && variant_of(r).0 == 16).expect("W2 row");
        assert!(progress_line(subscribed).starts_with("factlog W2 (16 writers, 16 subscribers): "));
        let many = rows.iter().find(|r| r.workload == Workload::W2m).expect("W2m row");
        assert!(
            progress_line(many).starts_with("factlog W2m (64 writers × 8 aggregates): "),
            "{}",
            progress_line(many)
        );
        let live = rows.iter().find(|r| r.workload == Workload::W8 && variant_of(r).0 == 1).expect("W8 row");
        assert!(progress_line(live).starts_with("factlog W8 (1 subscriber): "), "{}", progress_line(live));
        assert_eq!(fmt_secs(3.0), "3.00 s");
        assert_eq!(fmt_secs(0.0000595), "59.5 µs");
    }

    #[test]
    fn summaries_wrap_between_parts() {
        let text = format!("physical limits: {} | seq write 884 MB/s | memcpy 15,000 MB/s", "x".repeat(70));
        let lines = wrap_parts(&text);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1], "  | seq write 884 MB/s | memcpy 15,000 MB/s");
        assert_eq!(wrap_parts("a | b"), ["a | b"]);
    }
}
