//! Exact comparison of JSON numbers (i64, u64 and finite f64 mixed).

use std::cmp::Ordering;

use serde_json::Number;

/// An integer value of a JSON number, if it has one (i64 or u64, never f64).
pub(crate) fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Compares two JSON numbers exactly, without the rounding a plain
/// conversion to f64 would bring for integers beyond 2^53.
///
/// `None` only for a non-finite float, which a valid body never holds.
pub(crate) fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    match (as_integer(a), as_integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => compare_float_int(b.as_f64()?, x).map(Ordering::reverse),
        (None, Some(y)) => compare_float_int(a.as_f64()?, y),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn compare_float_int(f: f64, n: i128) -> Option<Ordering> {
    if !f.is_finite() {
        return None;
    }
    // `n as f64` is the float nearest to n, so a strict inequality against
    // it is exact; on equality f is either a small exact integer or an
    // integral float whose own integer value decides.
    #[allow(clippy::cast_precision_loss)]
    let rounded = n as f64;
    match f.partial_cmp(&rounded)? {
        Ordering::Equal if f.fract() == 0.0 && f.abs() < 1e38 => {
            #[allow(clippy::cast_possible_truncation)]
            let exact = f as i128;
            Some(exact.cmp(&n))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(v: serde_json::Value) -> Number {
        match v {
            serde_json::Value::Number(n) => n,
            other => panic!("{other} is not a number"),
        }
    }

    #[test]
    fn mixed_comparisons_are_exact() {
        let cases = [
            (json!(1), json!(2), Ordering::Less),
            (json!(-1), json!(u64::MAX), Ordering::Less),
            (json!(1.5), json!(1), Ordering::Greater),
            (json!(1.0), json!(1), Ordering::Equal),
            (json!(2.5), json!(2.5), Ordering::Equal),
            // 2^53 + 1 is not a float; 2^53 as a float must compare below it.
            (
                json!(9_007_199_254_740_992.0),
                json!(9_007_199_254_740_993_i64),
                Ordering::Less,
            ),
            (
                json!(18_446_744_073_709_551_615_u64),
                json!(1.8446744073709552e19),
                Ordering::Less,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                compare(&num(a.clone()), &num(b.clone())),
                Some(want),
                "{a} vs {b}"
            );
            assert_eq!(
                compare(&num(b.clone()), &num(a.clone())),
                Some(want.reverse()),
                "{b} vs {a}"
            );
        }
    }
}
