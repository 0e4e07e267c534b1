//! Checks on a plugin's self-description, so that a plugin that asks for
//! something impossible is rejected at load with the reason.

use std::collections::HashSet;

use super::{AggregationKind, Descriptor, ValueType};

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
    /// Something required is empty.
    #[error("the descriptor declares no {0}")]
    Empty(&'static str),
}

const MAX_WINDOW_MS: u64 = 10 * 366 * 86_400_000;

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
        );
        if needs_number && !numeric {
            return Err(bad(&format!("field `{field}` is not numeric")));
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
            }],
            aggregations: vec![
                AggregationSpec {
                    window: "1h".into(),
                    kind: AggregationKind::Count,
                    field: None,
                },
                AggregationSpec {
                    window: "1h".into(),
                    kind: AggregationKind::Sum,
                    field: Some("value".into()),
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
}
