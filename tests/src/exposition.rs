//! Reading values out of a text exposition.

/// The value of the sample written exactly as `series` (name and labels as the exporter
/// writes them) in a classic text exposition.
pub fn value_of(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_series_only() {
        let text = "# TYPE a gauge\na 1\na_b 2\na{x=\"y\"} 3\n";
        assert_eq!(value_of(text, "a"), Some(1.0));
        assert_eq!(value_of(text, "a_b"), Some(2.0));
        assert_eq!(value_of(text, "a{x=\"y\"}"), Some(3.0));
        assert_eq!(value_of(text, "b"), None);
    }
}
