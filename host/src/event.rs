//! Decoding raw events: JSON bytes into an entity id, an event time and the
//! typed input fields a plugin declared. Every failure names its reason, which
//! goes with the event to the dead-letter topic.

use chrono::{DateTime, NaiveDateTime};

use crate::entity::EntityKey;
use crate::plugin::ValueType;

/// A value of an input field, as the window state stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Entity id: the value of the entity-key field, or the id of the tuple of
    /// entity fields (see [`crate::entity`]).
    pub entity: String,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// Input fields, in the order of [`Schema::inputs`].
    pub fields: Vec<FieldValue>,
}

/// Why an event was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not a JSON object.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The record has no value.
    #[error("empty record value")]
    Empty,
    /// A required field is absent or null.
    #[error("missing field `{0}`")]
    MissingField(String),
    /// A field holds a value of another type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    /// The timestamp is neither ISO-8601 nor epoch milliseconds.
    #[error("unparsable timestamp `{0}`: expected ISO-8601 (e.g. 2026-01-01T12:00:00Z) or epoch milliseconds")]
    BadTimestamp(String),
    /// The timestamp is implausibly far past the reference time.
    #[error("timestamp {time} is {ahead_ms} ms after the record time {reference}, more than the allowed {max_ms} ms")]
    FutureTimestamp {
        time: String,
        reference: String,
        ahead_ms: i64,
        max_ms: i64,
    },
}

/// What to read from each event.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Fields identifying the entity (strings, or integers turned into strings).
    pub entity: EntityKey,
    /// Field holding the event time.
    pub timestamp_field: String,
    /// Input fields and their types.
    pub inputs: Vec<(String, ValueType)>,
    /// Largest allowed lead of the event time over the reference time, in ms.
    pub max_future_ms: i64,
}

impl Schema {
    /// Decodes `payload`. `reference_ms` is the record's Kafka timestamp (or the wall
    /// clock), against which absurd future timestamps are judged; using the record
    /// timestamp keeps the decision the same when a partition is replayed.
    pub fn decode(&self, payload: Option<&[u8]>, reference_ms: i64) -> Result<Event, DecodeError> {
        let payload = payload.ok_or(DecodeError::Empty)?;
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| {
            DecodeError::InvalidJson(format!("expected an object, found {}", kind_of(&value)))
        })?;
        let mut parts = Vec::with_capacity(self.entity.fields().len());
        for (i, field) in self.entity.fields().iter().enumerate() {
            let part = match object.get(field) {
                None | Some(serde_json::Value::Null) => {
                    return Err(DecodeError::MissingField(field.clone()))
                }
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                Some(other) => return Err(wrong_type(field, "a string", other)),
            };
            if self.entity.is_integer(i) && part.parse::<i64>().is_err() {
                return Err(DecodeError::WrongType {
                    field: field.clone(),
                    expected: "an integer (it is an integer Feast join key)",
                    found: format!("`{part}`"),
                });
            }
            parts.push(part);
        }
        let entity = self.entity.id(&parts);
        let time_ms = match object.get(&self.timestamp_field) {
            None | Some(serde_json::Value::Null) => {
                return Err(DecodeError::MissingField(self.timestamp_field.clone()))
            }
            Some(serde_json::Value::String(s)) => parse_timestamp(s)?,
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| DecodeError::BadTimestamp(n.to_string()))?,
            Some(other) => {
                return Err(wrong_type(
                    &self.timestamp_field,
                    "an ISO-8601 string or epoch milliseconds",
                    other,
                ))
            }
        };
        let ahead_ms = time_ms.saturating_sub(reference_ms);
        if ahead_ms > self.max_future_ms {
            return Err(DecodeError::FutureTimestamp {
                time: format_time(time_ms),
                reference: format_time(reference_ms),
                ahead_ms,
                max_ms: self.max_future_ms,
            });
        }
        let mut fields = Vec::with_capacity(self.inputs.len());
        for (name, kind) in &self.inputs {
            let raw = match object.get(name) {
                None | Some(serde_json::Value::Null) => {
                    return Err(DecodeError::MissingField(name.clone()))
                }
                Some(v) => v,
            };
            fields.push(field_value(name, *kind, raw)?);
        }
        Ok(Event {
            entity,
            time_ms,
            fields,
        })
    }
}

fn field_value(
    name: &str,
    kind: ValueType,
    raw: &serde_json::Value,
) -> Result<FieldValue, DecodeError> {
    use serde_json::Value as J;
    match (kind, raw) {
        (ValueType::Text, J::String(s)) => Ok(FieldValue::Text(s.clone())),
        (ValueType::Float64, J::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(FieldValue::Float)
            .ok_or_else(|| wrong_type(name, "a finite number", raw)),
        (ValueType::Int64, J::Number(n)) => n
            .as_i64()
            .map(FieldValue::Int)
            .ok_or_else(|| wrong_type(name, "an integer", raw)),
        (ValueType::Boolean, J::Bool(b)) => Ok(FieldValue::Bool(*b)),
        (ValueType::Text, _) => Err(wrong_type(name, "a string", raw)),
        (ValueType::Float64, _) => Err(wrong_type(name, "a number", raw)),
        (ValueType::Int64, _) => Err(wrong_type(name, "an integer", raw)),
        (ValueType::Boolean, _) => Err(wrong_type(name, "a boolean", raw)),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &serde_json::Value) -> DecodeError {
    DecodeError::WrongType {
        field: field.to_owned(),
        expected,
        found: kind_of(found).to_owned(),
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parses an ISO-8601 date-time, with an offset (`Z`, `+02:00`, `+0200`) or without
/// one (taken as UTC), `T` or a space between date and time, optional fractions;
/// or a string of digits as epoch milliseconds. Returns epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Result<i64, DecodeError> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map_err(|_| DecodeError::BadTimestamp(s.to_owned()));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Ok(dt.timestamp_millis());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    Err(DecodeError::BadTimestamp(s.to_owned()))
}

/// Formats epoch milliseconds as ISO-8601 UTC with millisecond precision and `Z`.
pub fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema {
            entity: EntityKey::single("user_id"),
            timestamp_field: "timestamp".into(),
            inputs: vec![
                ("action".into(), ValueType::Text),
                ("value".into(), ValueType::Float64),
            ],
            max_future_ms: 86_400_000,
        }
    }

    // 2026-03-01T12:00:00Z, worked out by hand: 20513 days * 86400 s + 12 h.
    const NOON: i64 = (20_513 * 86_400 + 12 * 3600) * 1000;

    #[test]
    fn timestamps_in_every_accepted_form() {
        assert_eq!(parse_timestamp("2026-03-01T12:00:00Z").unwrap(), NOON);
        assert_eq!(parse_timestamp("2026-03-01T12:00:00").unwrap(), NOON);
        assert_eq!(parse_timestamp("2026-03-01 12:00:00").unwrap(), NOON);
        assert_eq!(parse_timestamp("2026-03-01T14:00:00+02:00").unwrap(), NOON);
        assert_eq!(parse_timestamp("2026-03-01T14:00:00+0200").unwrap(), NOON);
        assert_eq!(
            parse_timestamp("2026-03-01T12:00:00.250").unwrap(),
            NOON + 250
        );
        assert_eq!(
            parse_timestamp("2026-03-01T12:00:00.123456Z").unwrap(),
            NOON + 123
        );
        assert_eq!(parse_timestamp(&NOON.to_string()).unwrap(), NOON);
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2026-13-01T00:00:00").is_err());
    }

    #[test]
    fn formats_back_to_utc() {
        assert_eq!(format_time(NOON + 5), "2026-03-01T12:00:00.005Z");
    }

    #[test]
    fn decodes_the_python_pipelines_events() {
        let e = schema()
            .decode(
                Some(br#"{"user_id":"u1","action":"click","value":2,"timestamp":"2026-03-01T12:00:00"}"#),
                NOON,
            )
            .unwrap();
        assert_eq!(e.entity, "u1");
        assert_eq!(e.time_ms, NOON);
        assert_eq!(
            e.fields,
            vec![FieldValue::Text("click".into()), FieldValue::Float(2.0)]
        );
        let e = schema()
            .decode(
                Some(br#"{"user_id":42,"action":"a","value":1.5,"timestamp":1000}"#),
                0,
            )
            .unwrap();
        assert_eq!((e.entity.as_str(), e.time_ms), ("42", 1000));
    }

    #[test]
    fn composite_keys_take_every_field() {
        let mut s = schema();
        s.entity = EntityKey::new(vec!["user_id".into(), "shop".into()]);
        s.entity.require_integer("shop");
        let e = s
            .decode(
                Some(br#"{"user_id":"a:b","shop":7,"action":"x","value":1,"timestamp":1}"#),
                NOON,
            )
            .unwrap();
        assert_eq!(e.entity, r"a\:b:7");
        let e = s
            .decode(
                Some(br#"{"user_id":"u","shop":"12","action":"x","value":1,"timestamp":1}"#),
                NOON,
            )
            .unwrap();
        assert_eq!(e.entity, "u:12");
        let missing = s.decode(
            Some(br#"{"user_id":"u","action":"x","value":1,"timestamp":1}"#),
            NOON,
        );
        assert_eq!(missing, Err(DecodeError::MissingField("shop".into())));
        let not_integer = s
            .decode(
                Some(br#"{"user_id":"u","shop":"web","action":"x","value":1,"timestamp":1}"#),
                NOON,
            )
            .unwrap_err();
        assert!(
            not_integer
                .to_string()
                .contains("field `shop` must be an integer"),
            "{not_integer}"
        );
    }

    #[test]
    fn rejects_bad_events_with_a_reason() {
        let s = schema();
        let cases: [(&[u8], &str); 7] = [
            (b"{not json", "invalid JSON"),
            (b"[1,2]", "expected an object"),
            (
                br#"{"action":"a","value":1,"timestamp":1}"#,
                "missing field `user_id`",
            ),
            (
                br#"{"user_id":"u","action":"a","value":"x","timestamp":1}"#,
                "field `value` must be a number",
            ),
            (
                br#"{"user_id":"u","action":7,"value":1,"timestamp":1}"#,
                "field `action` must be a string",
            ),
            (
                br#"{"user_id":"u","action":"a","value":1,"timestamp":"soon"}"#,
                "unparsable timestamp",
            ),
            (
                br#"{"user_id":"u","action":"a","value":1,"timestamp":"2099-01-01T00:00:00Z"}"#,
                "after the record time",
            ),
        ];
        for (payload, reason) in cases {
            let err = s.decode(Some(payload), NOON).unwrap_err().to_string();
            assert!(
                err.contains(reason),
                "{} -> {err}",
                String::from_utf8_lossy(payload)
            );
        }
        assert_eq!(s.decode(None, 0).unwrap_err(), DecodeError::Empty);
    }
}
