//! Output: the one comparison table (factlog and each peer side by side, with
//! factlog's ratio to each peer and to the physical limit) or, with `--json`,
//! one JSON document holding machine, physical limits and every result row.

use crate::engines::EngineKind;
use crate::machine::MachineInfo;
use crate::physical::Physical;
use crate::workloads::{Params, Row, Workload};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Everything a run produced.
pub struct Report<'a> {
    /// Host description.
    pub machine: &'a MachineInfo,
    /// Physical limits, if measured.
    pub physical: Option<Physical>,
    /// Parameters the run used.
    pub params: &'a Params,
    /// Engines in column order.
    pub engines: &'a [EngineKind],
    /// Result rows.
    pub rows: &'a [Row],
    /// Failures (engine and message) that cut an engine's run short.
    pub errors: &'a [(EngineKind, String)],
    /// Total wall time of the run, seconds.
    pub wall_secs: f64,
}

/// Which direction is better for a metric.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// One line of the table.
struct Line {
    workload: String,
    metric: &'static str,
    better: Better,
    values: Vec<Option<f64>>,
    physical: Option<String>,
}

impl Report<'_> {
    /// The JSON document.
    pub fn to_json(&self) -> Value {
        json!({
            "machine": self.machine.to_json(),
            "physical": self.physical.map_or(Value::Null, |p| p.to_json()),
            "params": {
                "events": self.params.events,
                "aggregates": self.params.aggregates,
                "payload_bytes": self.params.payload_bytes,
                "writers": self.params.writers,
                "batch": self.params.batch,
                "durability": self.params.durability.name(),
                "duration_secs": self.params.duration.as_secs_f64(),
                "replays": self.params.replays,
                "w7_events": self.params.w7_events,
                "w7_loads": self.params.w7_loads,
            },
            "results": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "errors": self.errors.iter().map(|(e, m)| json!({"engine": e.name(), "error": m})).collect::<Vec<_>>(),
            "wall_secs": self.wall_secs,
        })
    }

    /// The row of a table group: `variant` is the writer count for W2 and
    /// 1 (snapshot) or 0 (none) for W7.
    fn row(&self, workload: Workload, variant: usize, engine: EngineKind) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.engine == engine && variant_of(r) == variant)
    }

    /// The table lines, in workload order.
    fn lines(&self) -> Vec<Line> {
        let mut out = Vec::new();
        let mut groups: Vec<(Workload, usize)> = Vec::new();
        for r in self.rows {
            let key = (r.workload, variant_of(r));
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
        groups.sort();
        let p = self.params;
        let dur = p.durability.name();
        for (w, writers) in groups {
            let label = match w {
                Workload::W1 => format!("W1 append 1 ev, 1 writer, {dur}"),
                Workload::W2 => format!("W2 append 1 ev, {writers} writers, {dur}"),
                Workload::W3 => format!("W3 append {} ev, 1 writer, {dur}", p.batch),
                Workload::W4 => format!("W4 bulk load {} ev, buffered", p.events),
                Workload::W5 => format!("W5 replay {}-ev aggregate", (p.events / p.aggregates.max(1)).max(1)),
                Workload::W6 => format!("W6 full scan {} ev", p.events),
                Workload::W7 if writers == 1 => {
                    format!("W7 load {}-ev aggregate, snapshot + {} ev", p.w7_events, crate::snapshots::TAIL_EVENTS)
                }
                Workload::W7 => format!("W7 load {}-ev aggregate, no snapshot", p.w7_events),
            };
            let get = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<Option<f64>> {
                self.engines.iter().map(|&e| self.row(w, writers, e).and_then(f)).collect()
            };
            let factlog = self.row(w, writers, EngineKind::Factlog);
            let phys = self.physical;
            let frac = |num: Option<f64>, den: Option<f64>, what: &str| -> Option<String> {
                match (num, den) {
                    (Some(n), Some(d)) if d > 0.0 => Some(format!("{:.0}% of {what}", 100.0 * n / d)),
                    _ => None,
                }
            };
            let mut push =
                |metric: &'static str, better: Better, values: Vec<Option<f64>>, physical: Option<String>| {
                    if values.iter().any(Option::is_some) {
                        out.push(Line { workload: label.clone(), metric, better, values, physical });
                    }
                };
            match w {
                Workload::W1 | Workload::W2 | Workload::W3 => {
                    let limit =
                        phys.map(
                            |ph| {
                                if w == Workload::W3 {
                                    ph.fsync_per_sec * p.batch as f64
                                } else {
                                    ph.fsync_per_sec
                                }
                            },
                        );
                    let what = if w == Workload::W3 { "fsync/s×batch" } else { "fsync/s" };
                    let fl = factlog.map(Row::events_per_sec);
                    let physical =
                        if p.durability == crate::engines::Durability::Sync { frac(fl, limit, what) } else { None };
                    push("events/s ↑", Better::Higher, get(&|r| Some(r.events_per_sec())), physical);
                    push("p50 µs/append ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p50_us)), None);
                    push("p99 µs/append ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p99_us)), None);
                    push("fsyncs/s", Better::Lower, get(&|r| r.extra_f64("fsyncs_per_sec")), None);
                    push("events/fsync ↑", Better::Higher, get(&|r| r.extra_f64("events_per_fsync")), None);
                }
                Workload::W4 => {
                    push("events/s ↑", Better::Higher, get(&|r| Some(r.events_per_sec())), None);
                    let disk = factlog.and_then(|r| r.extra_f64("disk_mb_per_sec"));
                    push(
                        "MB/s logical ↑",
                        Better::Higher,
                        get(&|r| Some(r.mb_per_sec())),
                        frac(disk, phys.map(|ph| ph.seq_write_mb_per_sec), "seq write (disk bytes)"),
                    );
                    push("bytes/event used ↓", Better::Lower, get(&|r| r.extra_f64("bytes_per_event")), None);
                    push(
                        "bytes/event raw files",
                        Better::Lower,
                        get(&|r| r.extra_f64("raw_file_bytes_per_event")),
                        None,
                    );
                    push(
                        "index bytes/event (mem) ↓",
                        Better::Lower,
                        get(&|r| r.extra_f64("index_bytes_per_event")),
                        None,
                    );
                    push(
                        "peak RSS MiB ↓",
                        Better::Lower,
                        get(&|r| r.extra_f64("peak_rss_bytes").map(|b| b / 1048576.0)),
                        None,
                    );
                }
                Workload::W5 => {
                    push("p50 µs/aggregate ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p50_us)), None);
                    push("p99 µs/aggregate ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p99_us)), None);
                    push("events/s ↑", Better::Higher, get(&|r| Some(r.events_per_sec())), None);
                }
                Workload::W7 => {
                    push("p50 µs/load ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p50_us)), None);
                    push("p99 µs/load ↓", Better::Lower, get(&|r| r.latency.map(|l| l.p99_us)), None);
                    if writers == 0 {
                        push("events/s ↑", Better::Higher, get(&|r| Some(r.events_per_sec())), None);
                    } else {
                        push("snapshot JSON bytes", Better::Lower, get(&|r| r.extra_f64("snapshot_raw_bytes")), None);
                        push("compression ratio ↑", Better::Higher, get(&|r| r.extra_f64("compression_ratio")), None);
                        push(
                            "snapshot saves/s ↑",
                            Better::Higher,
                            get(&|r| r.extra_f64("snapshot_saves_per_sec")),
                            None,
                        );
                        push(
                            "snapshot reads/s ↑",
                            Better::Higher,
                            get(&|r| r.extra_f64("snapshot_reads_per_sec")),
                            None,
                        );
                        push(
                            "small state JSON bytes",
                            Better::Lower,
                            get(&|r| r.extra_f64("small_snapshot_json_bytes")),
                            None,
                        );
                        for (label, key) in [
                            ("small: payload ratio ↑", "small_snapshot_payload_ratio_plain"),
                            ("small + dict: payload ↑", "small_snapshot_payload_ratio_dict"),
                            ("small: ratio on disk ↑", "small_snapshot_ratio_plain"),
                            ("small + dict: on disk ↑", "small_snapshot_ratio_dict"),
                        ] {
                            push(label, Better::Higher, get(&|r| r.extra_f64(key)), None);
                        }
                    }
                }
                Workload::W6 => {
                    push("events/s ↑", Better::Higher, get(&|r| Some(r.events_per_sec())), None);
                    let gb = factlog.and_then(|r| r.extra_f64("gb_per_sec"));
                    push(
                        "GB/s logical ↑",
                        Better::Higher,
                        get(&|r| r.extra_f64("gb_per_sec")),
                        frac(gb.map(|g| g * 1000.0), phys.map(|ph| ph.memcpy_mb_per_sec), "memcpy"),
                    );
                    push(
                        "peak RSS MiB ↓",
                        Better::Lower,
                        get(&|r| r.extra_f64("peak_rss_bytes").map(|b| b / 1048576.0)),
                        None,
                    );
                }
            }
        }
        out
    }

    /// The human-readable report: machine and physical lines, then the table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "machine: {}", self.machine.one_line());
        match self.physical {
            Some(p) => {
                let _ = writeln!(s, "{}", p.one_line());
            }
            None => {
                let _ = writeln!(s, "physical limits: not measured");
            }
        }
        let fl_idx = self.engines.iter().position(|&e| e == EngineKind::Factlog);
        let peers: Vec<(usize, EngineKind)> =
            self.engines.iter().copied().enumerate().filter(|&(_, e)| e != EngineKind::Factlog).collect();

        let mut header: Vec<String> = vec!["workload".into(), "metric".into()];
        header.extend(self.engines.iter().map(|e| e.name().to_owned()));
        if fl_idx.is_some() {
            header.extend(peers.iter().map(|(_, e)| format!("factlog/{e}")));
            header.push("factlog vs physical".into());
        }
        let mut table: Vec<Vec<String>> = vec![header];
        for line in self.lines() {
            let mut cells = vec![line.workload.clone(), line.metric.to_owned()];
            cells.extend(line.values.iter().map(|v| v.map_or("-".to_owned(), fmt_num)));
            if let Some(fi) = fl_idx {
                for (pi, _) in &peers {
                    let cell = match (line.values[fi], line.values[*pi]) {
                        (Some(f), Some(q)) if q > 0.0 => {
                            let r = f / q;
                            let good = match line.better {
                                Better::Higher => r >= 1.0,
                                Better::Lower => r <= 1.0,
                            };
                            format!("{:.2}×{}", r, if good { "" } else { " !" })
                        }
                        _ => "-".to_owned(),
                    };
                    cells.push(cell);
                }
                cells.push(line.physical.clone().unwrap_or_default());
            }
            table.push(cells);
        }
        let ncols = table[0].len();
        let widths: Vec<usize> =
            (0..ncols).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut prev_workload = String::new();
        for (i, r) in table.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                let shown = if c == 0 && i > 0 && *cell == prev_workload { "" } else { cell.as_str() };
                let pad = widths[c] - shown.chars().count();
                if c >= 2 && i > 0 && c < 2 + self.engines.len() + peers.len() {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(shown);
                } else {
                    line.push_str(shown);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str("  ");
            }
            if i > 0 {
                prev_workload = r[0].clone();
            }
            let _ = writeln!(s, "{}", line.trim_end());
            if i == 0 {
                let _ = writeln!(s, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * (ncols - 1)));
            }
        }
        let _ = writeln!(
            s,
            "{}MB/s and GB/s count logical event bytes (id+aggregate+type+timestamp+payload). \
             W4 syncs at the end (timed); W5/W6 read the W4 store. \
             Peak RSS is the whole process's VmHWM during that workload, reset per workload \
             (the harness's pre-generated events included).",
            if fl_idx.is_some() && !peers.is_empty() {
                "ratios are factlog ÷ peer (↑ higher is better, ↓ lower is better; \"!\" marks factlog losing). "
            } else {
                ""
            }
        );
        for (e, m) in self.errors {
            let _ = writeln!(s, "ERROR {e}: {m}");
        }
        let _ = writeln!(s, "total wall time: {:.1} s", self.wall_secs);
        s
    }
}

/// Which table group a row belongs to within its workload.
fn variant_of(r: &Row) -> usize {
    match r.workload {
        Workload::W2 => r.writers,
        Workload::W7 => usize::from(r.extra.get("snapshot").and_then(serde_json::Value::as_bool).unwrap_or(false)),
        _ => 1,
    }
}

/// Thousands-separated integers for large numbers, 1–2 decimals for small ones.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x.abs() >= 1000.0 {
        let n = x.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(999.94), "999.9");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(1000.0), "1,000");
    }
}
