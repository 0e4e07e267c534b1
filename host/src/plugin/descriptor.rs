//! Checks on a plugin's self-description, so that a plugin that asks for
//! something impossible is rejected at load with the reason.

use std::collections::HashSet;

use super::{AggregationKind, Descriptor, ValueType, WindowKind, WindowSpec};

/// A descriptor that cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptorError {
    /// A name that must be unique appears twice.
    #[error("duplicate {what} `{name}`")]
    Duplicate { what: &'static str, name: String },
    /// An aggregation names a window that is not declared.
    #[error("aggregation {index} uses undeclared window `{window}`")]
    UnknownWindow { index: usize, window: String },
    /// An aggregation names a field that is not a declared input.
    #[error("aggregation {index} uses undeclared input field `{field}`")]
    UnknownField { index: usize, field: String },
    /// An aggregation lacks a field, or has one it cannot use.
    #[error("aggregation {index}: {reason}")]
    BadAggregation { index: usize, reason: String },
    /// A window has a length of zero or beyond the supported range.
    #[error("window `{0}` must be between 1 ms and 10 years long")]
    BadWindow(String),
    /// A window's hop, gap, grace or early-results setting does not fit its kind.
    #[error("window `{window}`: {reason}")]
    BadWindowSpec { window: String, reason: String },
    /// Something required is empty.
    #[error("the descriptor declares no {0}")]
    Empty(&'static str),
}

const MAX_WINDOW_MS: u64 = 10 * 366 * 86_400_000;

/// The most raw events an `events` aggregation may ask for per row: every row
/// of a batch copies them into the plugin.
pub const MAX_EVENTS: u32 = 10_000;

/// Validates `d`: unique names, aggregations that refer to declared windows and
/// inputs with fitting types, at least one window, aggregation and feature.
pub fn validate(d: &Descriptor) -> Result<(), DescriptorError> {
    if d.entity_key.is_empty() {
        return Err(DescriptorError::Empty("entity key"));
    }
    for (what, empty) in [
        ("windows", d.windows.is_empty()),
        ("aggregations", d.aggregations.is_empty()),
        ("features", d.features.is_empty()),
    ] {
        if empty {
            return Err(DescriptorError::Empty(what));
        }
    }
    unique("input", d.inputs.iter().map(|i| i.name.as_str()))?;
    unique("window", d.windows.iter().map(|w| w.name.as_str()))?;
    unique("feature", d.features.iter().map(|f| f.name.as_str()))?;
    for w in &d.windows {
        if w.length_ms == 0 || w.length_ms > MAX_WINDOW_MS {
            return Err(DescriptorError::BadWindow(w.name.clone()));
        }
        window_spec(w).map_err(|reason| DescriptorError::BadWindowSpec {
            window: w.name.clone(),
            reason,
        })?;
    }
    for (index, a) in d.aggregations.iter().enumerate() {
        if !d.windows.iter().any(|w| w.name == a.window) {
            return Err(DescriptorError::UnknownWindow {
                index,
                window: a.window.clone(),
            });
        }
        let bad = |reason: &str| DescriptorError::BadAggregation {
            index,
            reason: reason.to_owned(),
        };
        match (a.kind, a.quantile) {
            (AggregationKind::ApproxQuantile, Some(q)) if (0.0..=1.0).contains(&q) => {}
            (AggregationKind::ApproxQuantile, Some(q)) => {
                return Err(bad(&format!(
                    "approx-quantile needs `quantile` between 0 and 1 (0.5 is the median), \
                     not {q}"
                )))
            }
            (AggregationKind::ApproxQuantile, None) => {
                return Err(bad(
                    "approx-quantile needs `quantile`, between 0 and 1 (0.5 is the median)",
                ))
            }
            (_, Some(_)) => return Err(bad("`quantile` is only for approx-quantile")),
            (_, None) => {}
        }
        match (a.kind, a.max_events) {
            (AggregationKind::Events, Some(1..=MAX_EVENTS)) => {}
            (AggregationKind::Events, _) => {
                return Err(bad(&format!(
                    "events needs `max-events` between 1 and {MAX_EVENTS} (the most events \
                     handed per row, the newest)"
                )))
            }
            (_, Some(_)) => return Err(bad("`max-events` is only for events")),
            (_, None) => {}
        }
        let field = match (&a.kind, &a.field) {
            (AggregationKind::Count, None) => continue,
            (AggregationKind::Count, Some(_)) => return Err(bad("count takes no field")),
            (_, None) => return Err(bad("this aggregation needs a field")),
            (_, Some(f)) => f,
        };
        let input = d.inputs.iter().find(|i| &i.name == field).ok_or_else(|| {
            DescriptorError::UnknownField {
                index,
                field: field.clone(),
            }
        })?;
        let numeric = matches!(input.kind, ValueType::Int64 | ValueType::Float64);
        let needs_number = matches!(
            a.kind,
            AggregationKind::Sum
                | AggregationKind::Mean
                | AggregationKind::Min
                | AggregationKind::Max
                | AggregationKind::Variance
                | AggregationKind::Stddev
                | AggregationKind::ApproxQuantile
        );
        if needs_number && !numeric {
            return Err(bad(&format!("field `{field}` is not numeric")));
        }
    }
    Ok(())
}

/// Checks the kind-specific settings of a window whose length is in range.
fn window_spec(w: &WindowSpec) -> Result<(), String> {
    let (hop, gap) = (w.hop_ms, w.gap_ms);
    match w.kind {
        WindowKind::Sliding => {
            if hop.is_some() || gap.is_some() || w.grace_ms != 0 || w.early_results {
                return Err(
                    "a sliding window takes no hop, gap, grace or early results (it always shows \
                     the last `length` of stream time)"
                        .into(),
                );
            }
        }
        WindowKind::Tumbling => {
            if hop.is_some() || gap.is_some() {
                return Err("a tumbling window takes no hop or gap (use hopping)".into());
            }
            if w.grace_ms >= w.length_ms {
                return Err(format!(
                    "grace {} ms must be shorter than the length {} ms, so that every \
                     correction lands in the instance being shown",
                    w.grace_ms, w.length_ms
                ));
            }
        }
        WindowKind::Hopping => {
            let Some(hop) = hop.filter(|h| *h > 0 && *h <= w.length_ms) else {
                return Err("a hopping window needs a hop between 1 ms and its length".into());
            };
            if gap.is_some() {
                return Err("a hopping window takes no gap".into());
            }
            if w.grace_ms >= hop {
                return Err(format!(
                    "grace {} ms must be shorter than the hop {hop} ms, so that every \
                     correction lands in the instance being shown",
                    w.grace_ms
                ));
            }
        }
        WindowKind::Session => {
            let Some(gap) = gap.filter(|g| *g > 0 && *g <= MAX_WINDOW_MS) else {
                return Err("a session window needs a gap between 1 ms and 10 years".into());
            };
            if hop.is_some() {
                return Err("a session window takes no hop".into());
            }
            if w.grace_ms > gap {
                return Err(format!(
                    "grace {} ms must not exceed the gap {gap} ms",
                    w.grace_ms
                ));
            }
            if w.length_ms < gap + w.grace_ms {
                return Err(format!(
                    "length (how long the latest session stays visible after its end) {} ms \
                     must be at least gap + grace = {} ms",
                    w.length_ms,
                    gap + w.grace_ms
                ));
            }
        }
    }
    Ok(())
}

fn unique<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), DescriptorError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(DescriptorError::Duplicate {
                what,
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{AggregationSpec, FeatureSpec, InputField, WindowKind, WindowSpec};

    fn good() -> Descriptor {
        Descriptor {
            name: "p".into(),
            version: "1".into(),
            entity_key: "user_id".into(),
            inputs: vec![
                InputField {
                    name: "action".into(),
                    kind: ValueType::Text,
                },
                InputField {
                    name: "value".into(),
                    kind: ValueType::Float64,
                },
            ],
            windows: vec![WindowSpec {
                name: "1h".into(),
                kind: WindowKind::Sliding,
                length_ms: 3_600_000,
                hop_ms: None,
                gap_ms: None,
                grace_ms: 0,
                early_results: false,
            }],
            aggregations: vec![
                AggregationSpec {
                    window: "1h".into(),
                    kind: AggregationKind::Count,
                    field: None,
                    quantile: None,
                    max_events: None,
                },
                AggregationSpec {
                    window: "1h".into(),
                    kind: AggregationKind::Sum,
                    field: Some("value".into()),
                    quantile: None,
                    max_events: None,
                },
            ],
            features: vec![FeatureSpec {
                name: "n".into(),
                kind: ValueType::Int64,
            }],
        }
    }

    #[test]
    fn accepts_a_sound_descriptor() {
        validate(&good()).unwrap();
    }

    #[test]
    fn rejects_what_cannot_be_served() {
        let mut d = good();
        d.aggregations[1].field = Some("action".into());
        assert!(validate(&d)
            .unwrap_err()
            .to_string()
            .contains("not numeric"));
        let mut d = good();
        d.aggregations[0].window = "1d".into();
        assert!(matches!(
            validate(&d),
            Err(DescriptorError::UnknownWindow { .. })
        ));
        let mut d = good();
        d.aggregations[1].field = Some("price".into());
        assert!(matches!(
            validate(&d),
            Err(DescriptorError::UnknownField { .. })
        ));
        let mut d = good();
        d.windows[0].length_ms = 0;
        assert!(matches!(validate(&d), Err(DescriptorError::BadWindow(_))));
        let mut d = good();
        d.features.push(d.features[0].clone());
        assert!(matches!(
            validate(&d),
            Err(DescriptorError::Duplicate { .. })
        ));
    }

    fn window(kind: WindowKind, length_ms: u64) -> WindowSpec {
        WindowSpec {
            name: "w".into(),
            kind,
            length_ms,
            hop_ms: None,
            gap_ms: None,
            grace_ms: 0,
            early_results: false,
        }
    }

    fn check_window(w: WindowSpec) -> Result<(), DescriptorError> {
        let mut d = good();
        d.windows.push(w);
        validate(&d)
    }

    #[test]
    fn window_kinds_take_their_own_settings() {
        use WindowKind::*;
        let ok = |w: WindowSpec| check_window(w).unwrap();
        let err = |w: WindowSpec, text: &str| {
            let e = check_window(w).unwrap_err().to_string();
            assert!(e.contains(text), "{e}");
        };
        ok(WindowSpec {
            grace_ms: 59_999,
            early_results: true,
            ..window(Tumbling, 60_000)
        });
        err(
            WindowSpec {
                grace_ms: 60_000,
                ..window(Tumbling, 60_000)
            },
            "shorter than the length",
        );
        ok(WindowSpec {
            hop_ms: Some(10_000),
            grace_ms: 9_999,
            ..window(Hopping, 60_000)
        });
        err(window(Hopping, 60_000), "needs a hop");
        err(
            WindowSpec {
                hop_ms: Some(10_000),
                grace_ms: 10_000,
                ..window(Hopping, 60_000)
            },
            "shorter than the hop",
        );
        ok(WindowSpec {
            gap_ms: Some(1_000),
            grace_ms: 1_000,
            ..window(Session, 2_000)
        });
        err(
            WindowSpec {
                gap_ms: Some(1_000),
                grace_ms: 1_001,
                ..window(Session, 5_000)
            },
            "must not exceed the gap",
        );
        err(
            WindowSpec {
                gap_ms: Some(1_000),
                grace_ms: 500,
                ..window(Session, 1_499)
            },
            "at least gap + grace",
        );
        err(window(Session, 5_000), "needs a gap");
        err(
            WindowSpec {
                grace_ms: 1,
                ..window(Sliding, 5_000)
            },
            "sliding window takes no",
        );
    }

    #[test]
    fn events_need_a_field_and_a_bounded_max_events() {
        let events = |field: Option<&str>, max_events| {
            let mut d = good();
            d.aggregations[1].kind = AggregationKind::Events;
            d.aggregations[1].field = field.map(Into::into);
            d.aggregations[1].max_events = max_events;
            validate(&d).map_err(|e| e.to_string())
        };
        events(Some("value"), Some(1)).unwrap();
        events(Some("action"), Some(MAX_EVENTS)).unwrap();
        for bad in [None, Some(0), Some(MAX_EVENTS + 1)] {
            let e = events(Some("value"), bad).unwrap_err();
            assert!(
                e.contains("events needs `max-events` between 1 and 10000"),
                "{bad:?}: {e}"
            );
        }
        let e = events(None, Some(5)).unwrap_err();
        assert!(e.contains("needs a field"), "{e}");
        let mut d = good();
        d.aggregations[1].max_events = Some(5);
        let e = validate(&d).unwrap_err().to_string();
        assert!(e.contains("`max-events` is only for events"), "{e}");
    }

    #[test]
    fn approx_quantile_needs_a_quantile_in_range_over_a_number() {
        let quantile = |field: &str, q: Option<f64>| {
            let mut d = good();
            d.aggregations[1].kind = AggregationKind::ApproxQuantile;
            d.aggregations[1].field = Some(field.into());
            d.aggregations[1].quantile = q;
            validate(&d).map_err(|e| e.to_string())
        };
        for q in [0.0, 0.5, 0.99, 1.0] {
            quantile("value", Some(q)).unwrap();
        }
        for q in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = quantile("value", Some(q)).unwrap_err();
            assert!(e.contains("needs `quantile` between 0 and 1"), "{q}: {e}");
        }
        let e = quantile("value", None).unwrap_err();
        assert!(e.contains("approx-quantile needs `quantile`"), "{e}");
        let e = quantile("action", Some(0.5)).unwrap_err();
        assert!(e.contains("not numeric"), "{e}");
        let mut d = good();
        d.aggregations[1].kind = AggregationKind::Variance;
        validate(&d).unwrap();
        d.aggregations[1].quantile = Some(0.5);
        assert!(matches!(
            validate(&d),
            Err(DescriptorError::BadAggregation { .. })
        ));
    }
}
