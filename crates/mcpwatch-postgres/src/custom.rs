//! Queries of the user's: each row becomes one series per value column, labelled by the
//! label columns. They run with the simple protocol, so any column type is read as text.

use std::collections::HashSet;

use mcpwatch_core::metrics::Label;
use mcpwatch_core::{CollectError, MetricFamily, MetricSink};
use tokio_postgres::SimpleQueryMessage;

use crate::config::{CustomKind, CustomQuery};
use crate::connection::{Session, describe};

/// Runs `query` and adds its families; a failure names the query, never its data.
pub(crate) async fn run(
    session: &Session,
    query: &CustomQuery,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    let context =
        |message: String| CollectError::msg(format_args!("query {}: {message}", query.metric));
    let messages = session
        .client
        .simple_query(&query.sql)
        .await
        .map_err(|e| context(describe(&e)))?;
    let help = query
        .help
        .clone()
        .unwrap_or_else(|| format!("Column of the custom query {}.", query.metric));
    let mut families: Vec<MetricFamily> = query
        .values
        .iter()
        .map(|value| {
            let name = query.metric_name(value);
            match query.kind {
                CustomKind::Gauge => MetricFamily::gauge(name, help.clone()),
                CustomKind::Counter => MetricFamily::counter(name, help.clone()),
            }
        })
        .collect();
    let mut rows = 0_u32;
    let mut truncated = false;
    // Rows whose label values an earlier row had: served once, as the first row, since
    // a series written twice is dropped by Prometheus.
    let mut seen: HashSet<Vec<Label>> = HashSet::new();
    let mut repeated = 0_u32;
    for message in messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if rows == query.max_rows {
            truncated = true;
            break;
        }
        rows += 1;
        let mut labels = Vec::with_capacity(query.labels.len());
        for label in &query.labels {
            let value = row
                .try_get(label.as_str())
                .map_err(|_| context(format!("no column {label:?} in the result")))?
                .unwrap_or_default();
            labels.push((std::borrow::Cow::Owned(label.clone()), value.to_owned()));
        }
        if seen.contains(&labels) {
            repeated += 1;
            continue;
        }
        seen.insert(labels.clone());
        for (family, column) in families.iter_mut().zip(&query.values) {
            let text = row
                .try_get(column.as_str())
                .map_err(|_| context(format!("no column {column:?} in the result")))?;
            // NULL gives no sample rather than a made-up zero.
            let Some(text) = text else { continue };
            let value = parse_number(text)
                .ok_or_else(|| context(format!("column {column:?} is not a number")))?;
            family.add_labels(
                labels.clone(),
                mcpwatch_core::metrics::SampleValue::Number(value),
            );
        }
    }
    for family in families {
        sink.family(family);
    }
    if truncated {
        tracing::debug!(query = %query.metric, max_rows = query.max_rows, "Custom query cut at max_rows.");
    }
    if repeated > 0 {
        return Err(context(format!(
            "{repeated} of {rows} rows repeat the label values ({}) of an earlier row and \
             were left out: add the columns that tell them apart to labels",
            query.labels.join(", ")
        )));
    }
    Ok(())
}

/// Numbers, and PostgreSQL's booleans as 1 and 0.
fn parse_number(text: &str) -> Option<f64> {
    match text {
        "t" | "true" => Some(1.0),
        "f" | "false" => Some(0.0),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_text() {
        assert_eq!(parse_number("42"), Some(42.0));
        assert_eq!(parse_number("1.5e3"), Some(1500.0));
        assert_eq!(parse_number("t"), Some(1.0));
        assert_eq!(parse_number("f"), Some(0.0));
        assert_eq!(parse_number("NaN").map(f64::is_nan), Some(true));
        assert_eq!(parse_number("abc"), None);
    }
}
