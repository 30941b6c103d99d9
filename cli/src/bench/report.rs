//! The rows `revstore bench` reports, and their table and JSON forms.

use serde_json::{json, Map, Value};

use super::measure::Samples;

/// What a row's figures count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds per operation: smaller is better.
    MicrosPerOp,
    /// Operations per second: larger is better.
    OpsPerSec,
    /// Milliseconds for one whole operation (a listing): smaller is better.
    Millis,
    /// Mebibytes of peak memory: smaller is better.
    MiB,
}

impl Unit {
    /// The unit's short name, as printed and in JSON.
    pub fn label(self) -> &'static str {
        match self {
            Unit::MicrosPerOp => "us/op",
            Unit::OpsPerSec => "ops/s",
            Unit::Millis => "ms",
            Unit::MiB => "MiB",
        }
    }
}

/// What a target is checked on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `ratio >= x` (the row's median over its baseline's).
    RatioAtLeast(f64),
    /// `ratio <= x`.
    RatioAtMost(f64),
    /// `median <= x`, in the row's unit.
    MedianAtMost(f64),
}

impl Target {
    /// The target as printed: `≥0.8×`, `≤1.2×`, `≤1000 ms`.
    pub fn text(self, unit: Unit) -> String {
        match self {
            Target::RatioAtLeast(x) => format!("≥{x}×"),
            Target::RatioAtMost(x) => format!("≤{x}×"),
            Target::MedianAtMost(x) => format!("≤{x} {}", unit.label()),
        }
    }
}

/// The figure a row is compared with, measured in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// What it is (`raw sqlite UPDATE`, `1 writer`, …).
    pub name: String,
    /// Its median, in the row's unit.
    pub median: f64,
}

/// One measured case.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The group (`ops`, `contention`, …).
    pub group: &'static str,
    /// The case within the group (`patch`, `hot key patch T=4 threads`, …).
    pub case: String,
    /// `memory`, `yaml`, `sqlite`, or `raw` for a baseline of its own.
    pub backend: String,
    /// `full`, `relaxed`, or `-` where durability does not apply.
    pub durability: String,
    /// The unit of `median`, `p90` and the baseline.
    pub unit: Unit,
    /// The median over the samples.
    pub median: f64,
    /// The 90th-percentile sample on the slow side (for a throughput, the
    /// lower figure).
    pub p90: f64,
    /// What it is compared with.
    pub baseline: Option<Baseline>,
    /// The target, if the issue sets one for this case.
    pub target: Option<Target>,
    /// Further counts (conflicts, retries, documents, …).
    pub notes: Map<String, Value>,
}

impl Row {
    /// A row of `samples`, as throughput or as latency.
    pub fn from_samples(
        group: &'static str,
        case: impl Into<String>,
        backend: impl Into<String>,
        durability: impl Into<String>,
        unit: Unit,
        samples: &Samples,
    ) -> Row {
        let (median, p90) = figures(unit, samples);
        Row {
            group,
            case: case.into(),
            backend: backend.into(),
            durability: durability.into(),
            unit,
            median,
            p90,
            baseline: None,
            target: None,
            notes: Map::new(),
        }
    }

    /// Sets the baseline.
    pub fn against(mut self, name: impl Into<String>, median: f64) -> Row {
        self.baseline = Some(Baseline {
            name: name.into(),
            median,
        });
        self
    }

    /// Sets the baseline from samples measured in the row's unit.
    pub fn against_samples(self, name: impl Into<String>, samples: &Samples) -> Row {
        let median = figures(self.unit, samples).0;
        self.against(name, median)
    }

    /// Sets the target.
    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    /// Adds a note.
    pub fn note(mut self, name: &str, value: impl Into<Value>) -> Row {
        self.notes.insert(name.to_owned(), value.into());
        self
    }

    /// The median over the baseline's median.
    pub fn ratio(&self) -> Option<f64> {
        let base = self.baseline.as_ref()?.median;
        (base > 0.0).then(|| self.median / base)
    }

    /// Whether the target is met; `None` without a target (or a ratio
    /// target without a baseline).
    pub fn met(&self) -> Option<bool> {
        match self.target? {
            Target::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Target::RatioAtMost(x) => self.ratio().map(|r| r <= x),
            Target::MedianAtMost(x) => Some(self.median <= x),
        }
    }

    /// The row as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "group": self.group,
            "case": self.case,
            "backend": self.backend,
            "durability": self.durability,
            "unit": self.unit.label(),
            "median": finite(self.median),
            "p90": finite(self.p90),
            "baseline": self.baseline.as_ref().map(|b| json!({"name": b.name, "median": finite(b.median)})),
            "ratio": self.ratio().map(finite),
            "target": self.target.map(|t| t.text(self.unit)),
            "met": self.met(),
            "notes": self.notes,
        })
    }
}

/// The median and p90 of samples (kept in µs/op, or as the plain value
/// for [`Unit::MiB`]) in `unit`.
fn figures(unit: Unit, samples: &Samples) -> (f64, f64) {
    match unit {
        Unit::OpsPerSec => (samples.median_rate(), samples.p90_rate()),
        Unit::Millis => (samples.median_micros() / 1e3, samples.p90_micros() / 1e3),
        Unit::MicrosPerOp | Unit::MiB => (samples.median_micros(), samples.p90_micros()),
    }
}

/// A number JSON can carry (NaN and infinities become 0).
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// A figure with about four significant digits.
pub fn figure(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The notes as `name=value` pairs.
fn notes_text(notes: &Map<String, Value>) -> String {
    notes
        .iter()
        .map(|(k, v)| match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{k}={}", figure(f)),
                _ => format!("{k}={n}"),
            },
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The rows as an aligned text table, with a summary of targets met.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "group",
        "case",
        "backend",
        "durability",
        "median",
        "p90",
        "unit",
        "baseline",
        "ratio",
        "target",
        "ok",
        "notes",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in rows {
        cells.push(vec![
            row.group.to_owned(),
            row.case.clone(),
            row.backend.clone(),
            row.durability.clone(),
            figure(row.median),
            figure(row.p90),
            row.unit.label().to_owned(),
            row.baseline.as_ref().map_or_else(
                || "-".to_owned(),
                |b| format!("{} {}", figure(b.median), b.name),
            ),
            row.ratio()
                .map_or_else(|| "-".to_owned(), |r| format!("{}×", figure(r))),
            row.target
                .map_or_else(|| "-".to_owned(), |t| t.text(row.unit)),
            match row.met() {
                Some(true) => "✓".to_owned(),
                Some(false) => "✗".to_owned(),
                None => "".to_owned(),
            },
            notes_text(&row.notes),
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric = |c: usize| matches!(c, 4 | 5 | 8);
    let mut out = String::new();
    for r in &cells {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if numeric(c) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < columns {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let judged: Vec<bool> = rows.iter().filter_map(Row::met).collect();
    let met = judged.iter().filter(|m| **m).count();
    out.push_str(&format!(
        "\ntargets met: {met} of {} (medians; ratio = median / baseline median, both from this run)\n",
        judged.len()
    ));
    out
}

/// The rows as one JSON document: `{"rows": [...], "targets": {...}}`.
pub fn to_json(rows: &[Row], settings: Value) -> Value {
    let judged: Vec<bool> = rows.iter().filter_map(Row::met).collect();
    json!({
        "settings": settings,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "targets": {
            "judged": judged.len(),
            "met": judged.iter().filter(|m| **m).count(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(median: f64) -> Row {
        let mut s = Samples::default();
        s.push(median);
        Row::from_samples("ops", "patch", "yaml", "full", Unit::MicrosPerOp, &s)
    }

    #[test]
    fn ratios_and_targets() {
        let r = row(12.0)
            .against("raw", 10.0)
            .target(Target::RatioAtMost(1.5));
        assert!((r.ratio().unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(r.met(), Some(true));
        let r = r.target(Target::RatioAtLeast(1.5));
        assert_eq!(r.met(), Some(false));
        assert_eq!(
            row(5.0).target(Target::MedianAtMost(4.0)).met(),
            Some(false)
        );
        assert_eq!(row(5.0).met(), None);
        assert_eq!(row(5.0).target(Target::RatioAtLeast(1.0)).met(), None);
    }

    #[test]
    fn table_has_a_line_per_row_and_a_summary() {
        let rows = vec![
            row(12.0)
                .against("raw", 10.0)
                .target(Target::RatioAtMost(1.5)),
            row(3.0).note("conflicts", 4),
        ];
        let text = table(&rows);
        assert_eq!(text.lines().count(), 1 + 2 + 2);
        assert!(text.contains("✓"));
        assert!(text.contains("conflicts=4"));
        assert!(text.contains("targets met: 1 of 1"));
        let json = to_json(&rows, json!({}));
        assert_eq!(json["rows"].as_array().unwrap().len(), 2);
        assert_eq!(json["rows"][0]["met"], true);
    }
}
