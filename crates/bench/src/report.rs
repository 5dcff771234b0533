//! Output: a human table per run, one JSON line per run, and medians over runs.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value, json};

use crate::error::BenchError;

/// What one run of a workload produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The workload's parameters (also in the JSON line).
    pub params: Value,
    /// Everything measured (also in the JSON line).
    pub results: Value,
    /// Rows of the human table.
    pub table: Vec<(String, String)>,
    /// JSON paths (dotted) of the headline figures, for the median table.
    pub headline: Vec<String>,
}

/// Writes a two-column table.
pub fn write_table(
    out: &mut dyn Write,
    title: &str,
    rows: &[(String, String)],
) -> Result<(), BenchError> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = format!("\n{title}\n{}\n", "─".repeat(title.chars().count()));
    for (k, v) in rows {
        text.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out.write_all(text.as_bytes()).map_err(BenchError::Output)
}

/// Writes one JSON value on one line.
pub fn write_json(out: &mut dyn Write, value: &Value) -> Result<(), BenchError> {
    let line = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    writeln!(out, "{line}").map_err(BenchError::Output)
}

/// Numeric leaves of `v` by dotted path.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        Value::Number(_) | Value::Bool(_) => {
            out.insert(prefix.to_owned(), v.clone());
        }
        _ => {}
    }
}

/// The value at a dotted path.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn set(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut node = root;
    while let Some(k) = parts.next() {
        if parts.peek().is_none() {
            node.insert(k.to_owned(), value);
            return;
        }
        let entry = node
            .entry(k.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(m) => node = m,
            _ => return,
        }
    }
}

/// The median of every numeric leaf over the runs (flags: true if any run had it), in the same
/// shape as one run's results.
pub fn medians(results: &[Value]) -> Value {
    let mut all: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in results {
        let mut l = BTreeMap::new();
        leaves(r, "", &mut l);
        for (k, v) in l {
            all.entry(k).or_default().push(v);
        }
    }
    let mut root = Map::new();
    for (path, values) in all {
        let value = if values.iter().all(Value::is_boolean) {
            json!(values.iter().any(|v| v.as_bool() == Some(true)))
        } else {
            let mut nums: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
            if nums.is_empty() {
                continue;
            }
            nums.sort_by(f64::total_cmp);
            let m = nums.len();
            let med = if !m.is_multiple_of(2) {
                nums[m / 2]
            } else {
                (nums[m / 2 - 1] + nums[m / 2]) / 2.0
            };
            json!((med * 1000.0).round() / 1000.0)
        };
        set(&mut root, &path, value);
    }
    Value::Object(root)
}

/// A compact rendering of a JSON number.
pub fn num(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                format!("{f:.3}")
            }
        }
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
        None => "-".to_owned(),
    }
}

/// Rows of a median table: each headline figure's median, and every run's value.
pub fn median_rows(headline: &[String], med: &Value, runs: &[Value]) -> Vec<(String, String)> {
    headline
        .iter()
        .map(|path| {
            let each: Vec<String> = runs.iter().map(|r| num(at(r, path))).collect();
            (
                path.clone(),
                format!("{}   (runs: {})", num(at(med, path)), each.join(", ")),
            )
        })
        .collect()
}

/// The names of the two sides of a comparison: in tables, in JSON, and of their ratio.
#[derive(Debug, Clone, Copy)]
pub struct Sides {
    /// Table labels.
    pub labels: (&'static str, &'static str),
    /// JSON keys.
    pub keys: (&'static str, &'static str),
    /// The ratio's table label and JSON key.
    pub ratio: (&'static str, &'static str),
}

impl Sides {
    /// Plain GC/1 beside TLS.
    pub const TLS: Self = Self {
        labels: ("plain", "TLS"),
        keys: ("plain", "tls"),
        ratio: ("TLS/plain", "tls_over_plain"),
    };
    /// The flat file beside PostgreSQL.
    pub const STORES: Self = Self {
        labels: ("flat", "PG"),
        keys: ("flat", "postgres"),
        ratio: ("PG/flat", "postgres_over_flat"),
    };
}

/// TLS over plain for one figure, when both are numbers and plain is not zero.
pub fn ratio(plain: Option<&Value>, tls: Option<&Value>) -> Option<f64> {
    let (p, t) = (plain?.as_f64()?, tls?.as_f64()?);
    (p != 0.0).then(|| t / p)
}

/// Rows putting each headline figure of a plain and a TLS result side by side, with their ratio.
pub fn side_by_side(headline: &[String], plain: &Value, tls: &Value) -> Vec<(String, String)> {
    side_by_side_as(Sides::TLS, headline, plain, tls)
}

/// Rows putting each headline figure of two results side by side, with their ratio (b / a).
pub fn side_by_side_as(
    sides: Sides,
    headline: &[String],
    a: &Value,
    b: &Value,
) -> Vec<(String, String)> {
    let (la, lb) = sides.labels;
    headline
        .iter()
        .map(|path| {
            let (p, t) = (at(a, path), at(b, path));
            let r = ratio(p, t).map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×"));
            (
                path.clone(),
                format!("{la} {} · {lb} {} · {} {r}", num(p), num(t), sides.ratio.0),
            )
        })
        .collect()
}

/// The same as JSON: `{path: {"plain": …, "tls": …, "tls_over_plain": …}}`.
pub fn compare_json(headline: &[String], plain: &Value, tls: &Value) -> Value {
    compare_json_as(Sides::TLS, headline, plain, tls)
}

/// The same as JSON with `sides`' keys: `{path: {a: …, b: …, ratio: …}}`.
pub fn compare_json_as(sides: Sides, headline: &[String], a: &Value, b: &Value) -> Value {
    let mut out = Map::new();
    for path in headline {
        let (p, t) = (at(a, path), at(b, path));
        let mut m = Map::new();
        m.insert(sides.keys.0.into(), json!(p));
        m.insert(sides.keys.1.into(), json!(t));
        m.insert(
            sides.ratio.1.into(),
            json!(ratio(p, t).map(|r| (r * 1000.0).round() / 1000.0)),
        );
        out.insert(path.clone(), Value::Object(m));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_nested_results() {
        let runs = [
            json!({"a": {"x": 1, "f": false}, "b": 5}),
            json!({"a": {"x": 3, "f": true}, "b": 6}),
            json!({"a": {"x": 2, "f": false}, "b": 7}),
        ];
        let m = medians(&runs);
        assert_eq!(at(&m, "a.x"), Some(&json!(2.0)));
        assert_eq!(at(&m, "a.f"), Some(&json!(true)));
        assert_eq!(at(&m, "b"), Some(&json!(6.0)));
    }

    #[test]
    fn plain_and_tls_side_by_side() {
        let headline = vec!["a.x".to_owned(), "b".to_owned(), "gone".to_owned()];
        let plain = json!({"a": {"x": 2.0}, "b": 0});
        let tls = json!({"a": {"x": 3}, "b": 5});
        let rows = side_by_side(&headline, &plain, &tls);
        assert_eq!(
            rows[0],
            ("a.x".into(), "plain 2 · TLS 3 · TLS/plain 1.50×".into())
        );
        // Nothing to divide by, or nothing at all: no ratio.
        assert_eq!(rows[1].1, "plain 0 · TLS 5 · TLS/plain -");
        assert_eq!(rows[2].1, "plain - · TLS - · TLS/plain -");
        let j = compare_json(&headline, &plain, &tls);
        assert_eq!(
            j["a.x"],
            json!({"plain": 2.0, "tls": 3, "tls_over_plain": 1.5})
        );
        assert_eq!(j["b"]["tls_over_plain"], Value::Null);
        assert_eq!(j["gone"]["plain"], Value::Null);
    }

    #[test]
    fn median_rows_show_every_run() {
        let runs = [json!({"x": 1}), json!({"x": 3}), json!({"x": 2})];
        let rows = median_rows(&["x".to_owned()], &medians(&runs), &runs);
        assert_eq!(
            rows,
            vec![("x".to_owned(), "2   (runs: 1, 3, 2)".to_owned())]
        );
    }
}
