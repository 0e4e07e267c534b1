//! Decoding raw events: JSON bytes into an entity id, an event time and the
//! typed input fields a plugin declared. Every failure names its reason, which
//! goes with the event to the dead-letter topic.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDateTime};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::entity::EntityKey;
use crate::plugin::ValueType;

mod fast;

/// A value of an input field, as the window state stores it. Text borrows
/// from the payload when it holds no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
    Bool(bool),
}

/// A decoded event, borrowing from its payload where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Entity id: the value of the entity-key field, or the id of the tuple of
    /// entity fields (see [`crate::entity`]).
    pub entity: Cow<'a, str>,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// Input fields, in the order of [`Schema::inputs`].
    pub fields: Vec<FieldValue<'a>>,
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
    ///
    /// One pass over the JSON: only the fields the schema names are read (the
    /// last occurrence of a repeated key wins), everything else is skipped
    /// without being built, and strings without escapes are borrowed. A flat
    /// object without escapes or unusual numbers is read by a hand-written
    /// scanner; anything else, errors included, by serde_json.
    pub fn decode<'a>(
        &self,
        payload: Option<&'a [u8]>,
        reference_ms: i64,
    ) -> Result<Event<'a>, DecodeError> {
        self.decode_into(payload, reference_ms, Vec::new())
    }

    /// [`Schema::decode`], with the event's fields in `fields` (cleared
    /// first): a caller that hands each event's fields back for the next one
    /// allocates them once, not once per event. Kept out of line (one call
    /// per event) so that profiles show decoding apart from its callers.
    #[inline(never)]
    pub fn decode_into<'a>(
        &self,
        payload: Option<&'a [u8]>,
        reference_ms: i64,
        fields: Vec<FieldValue<'a>>,
    ) -> Result<Event<'a>, DecodeError> {
        let payload = payload.ok_or(DecodeError::Empty)?;
        let n = self.entity.fields().len() + 1 + self.inputs.len();
        if n <= fast::MAX_SLOTS {
            let mut names = [""; fast::MAX_SLOTS];
            for (name, slot_name) in names.iter_mut().zip(self.slot_names()) {
                *name = slot_name;
            }
            let mut slots: [Option<Raw<'a>>; fast::MAX_SLOTS] = Default::default();
            let slots = &mut slots[..n];
            let scanned = fast::scan(payload, |key, value| {
                for (slot, name) in slots.iter_mut().zip(&names) {
                    if *name == key {
                        *slot = Some(value.clone());
                    }
                }
            });
            if scanned.is_some() {
                return self.event_of(slots, reference_ms, fields);
            }
        }
        self.decode_with_serde(payload, reference_ms, fields)
    }

    /// [`Schema::decode`] without the fast path: any JSON, and serde_json's
    /// wording of every syntax error.
    fn decode_with_serde<'a>(
        &self,
        payload: &'a [u8],
        reference_ms: i64,
        fields: Vec<FieldValue<'a>>,
    ) -> Result<Event<'a>, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let slots = de
            .deserialize_any(TopLevel { schema: self })
            .and_then(|top| de.end().map(|()| top))
            .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
        match slots {
            Ok(mut slots) => self.event_of(&mut slots, reference_ms, fields),
            Err(found) => Err(DecodeError::InvalidJson(format!(
                "expected an object, found {found}"
            ))),
        }
    }

    /// The event of the values found for each slot (see [`Schema::slot_names`]).
    fn event_of<'a>(
        &self,
        slots: &mut [Option<Raw<'a>>],
        reference_ms: i64,
        mut fields: Vec<FieldValue<'a>>,
    ) -> Result<Event<'a>, DecodeError> {
        let key_fields = self.entity.fields();
        let entity = if key_fields.len() == 1 {
            self.key_part(0, slots[0].take())?
        } else {
            let mut parts: Vec<Cow<'a, str>> = Vec::with_capacity(key_fields.len());
            for (i, slot) in slots[..key_fields.len()].iter_mut().enumerate() {
                parts.push(self.key_part(i, slot.take())?);
            }
            Cow::Owned(self.entity.id(&parts))
        };
        let time_slot = key_fields.len();
        let time_ms = match slots[time_slot].take() {
            None | Some(Raw::Null) => {
                return Err(DecodeError::MissingField(self.timestamp_field.clone()))
            }
            Some(Raw::Str(s)) => parse_timestamp(&s)?,
            Some(Raw::Int(n)) => n,
            Some(Raw::UInt(n)) => return Err(DecodeError::BadTimestamp(n.to_string())),
            Some(Raw::Float(f)) => return Err(DecodeError::BadTimestamp(float_text(f))),
            Some(other) => {
                return Err(wrong_type(
                    &self.timestamp_field,
                    "an ISO-8601 string or epoch milliseconds",
                    &other,
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
        fields.clear();
        fields.reserve(self.inputs.len());
        for ((name, kind), slot) in self.inputs.iter().zip(&mut slots[time_slot + 1..]) {
            match slot.take() {
                None | Some(Raw::Null) => return Err(DecodeError::MissingField(name.clone())),
                Some(raw) => fields.push(field_value(name, *kind, raw)?),
            }
        }
        Ok(Event {
            entity,
            time_ms,
            fields,
        })
    }

    /// The value of entity field `i` as a part of the entity id.
    fn key_part<'a>(&self, i: usize, raw: Option<Raw<'a>>) -> Result<Cow<'a, str>, DecodeError> {
        let field = &self.entity.fields()[i];
        let part = match raw {
            None | Some(Raw::Null) => return Err(DecodeError::MissingField(field.clone())),
            Some(Raw::Str(s)) => s,
            Some(Raw::Int(n)) => Cow::Owned(n.to_string()),
            Some(Raw::UInt(n)) => Cow::Owned(n.to_string()),
            Some(other) => return Err(wrong_type(field, "a string", &other)),
        };
        if self.entity.is_integer(i) && part.parse::<i64>().is_err() {
            return Err(DecodeError::WrongType {
                field: field.clone(),
                expected: "an integer (it is an integer Feast join key)",
                found: format!("`{part}`"),
            });
        }
        Ok(part)
    }

    /// The top-level keys read, one per slot: each entity field, the
    /// timestamp, then each input.
    fn slot_names(&self) -> impl Iterator<Item = &str> {
        self.entity
            .fields()
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(self.timestamp_field.as_str()))
            .chain(self.inputs.iter().map(|(name, _)| name.as_str()))
    }

    /// The slots a top-level key fills.
    fn slots_of<'s>(&'s self, key: &'s str) -> impl Iterator<Item = usize> + 's {
        self.slot_names()
            .enumerate()
            .filter(move |(_, name)| *name == key)
            .map(|(slot, _)| slot)
    }
}

/// A JSON value the schema asked for, kept only as far as decoding needs.
#[derive(Debug, Clone, PartialEq)]
enum Raw<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'de> serde::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(i64::try_from(v).map_or(Raw::UInt(v), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Object)
    }
}

/// An object key, borrowed unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The event as a whole: the schema's slots if it is an object, otherwise
/// the kind of value found.
struct TopLevel<'s> {
    schema: &'s Schema,
}

type Slots<'a> = Result<Vec<Option<Raw<'a>>>, &'static str>;

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Slots<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slots<'de>, A::Error> {
        let schema = self.schema;
        let mut slots = vec![None; schema.entity.fields().len() + 1 + schema.inputs.len()];
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let mut wanted = self.schema.slots_of(&key).peekable();
            if wanted.peek().is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Raw = map.next_value()?;
            for slot in wanted {
                slots[slot] = Some(value.clone());
            }
        }
        Ok(Ok(slots))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slots<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
    fn visit_unit<E>(self) -> Result<Slots<'de>, E> {
        Ok(Err("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Slots<'de>, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Slots<'de>, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Slots<'de>, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Slots<'de>, E> {
        Ok(Err("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Slots<'de>, E> {
        Ok(Err("a string"))
    }
}

/// How serde_json prints a float (the text of a bad timestamp).
fn float_text(f: f64) -> String {
    serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string())
}

fn field_value<'a>(
    name: &str,
    kind: ValueType,
    raw: Raw<'a>,
) -> Result<FieldValue<'a>, DecodeError> {
    match (kind, raw) {
        (ValueType::Text, Raw::Str(s)) => Ok(FieldValue::Text(s)),
        (ValueType::Float64, Raw::Int(n)) => Ok(FieldValue::Float(n as f64)),
        (ValueType::Float64, Raw::UInt(n)) => Ok(FieldValue::Float(n as f64)),
        (ValueType::Float64, Raw::Float(f)) if f.is_finite() => Ok(FieldValue::Float(f)),
        (ValueType::Float64, raw @ Raw::Float(_)) => Err(wrong_type(name, "a finite number", &raw)),
        (ValueType::Int64, Raw::Int(n)) => Ok(FieldValue::Int(n)),
        (ValueType::Int64, raw @ (Raw::UInt(_) | Raw::Float(_))) => {
            Err(wrong_type(name, "an integer", &raw))
        }
        (ValueType::Boolean, Raw::Bool(b)) => Ok(FieldValue::Bool(b)),
        (ValueType::Text, raw) => Err(wrong_type(name, "a string", &raw)),
        (ValueType::Float64, raw) => Err(wrong_type(name, "a number", &raw)),
        (ValueType::Int64, raw) => Err(wrong_type(name, "an integer", &raw)),
        (ValueType::Boolean, raw) => Err(wrong_type(name, "a boolean", &raw)),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Raw) -> DecodeError {
    DecodeError::WrongType {
        field: field.to_owned(),
        expected,
        found: kind_of(found).to_owned(),
    }
}

fn kind_of(v: &Raw) -> &'static str {
    match v {
        Raw::Null => "null",
        Raw::Bool(_) => "a boolean",
        Raw::Int(_) | Raw::UInt(_) | Raw::Float(_) => "a number",
        Raw::Str(_) => "a string",
        Raw::Array => "an array",
        Raw::Object => "an object",
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
    if let Some(ms) = fast::utc_timestamp(t.as_bytes()) {
        return Ok(ms);
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
/// Years 0 to 9999 are formatted here (it runs once per Redis update); others
/// go through chrono.
pub fn format_time(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return match DateTime::from_timestamp_millis(ms) {
            Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => ms.to_string(),
        };
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1000 % 60);
    put(20, 3, ms_of_day % 1000);
    out.iter().map(|&b| char::from(b)).collect()
}

/// The proleptic Gregorian date (year, month, day) of a day number counted
/// from 1970-01-01, by the era arithmetic of 400-year cycles (146,097 days)
/// whose years start on 1 March, so that the leap day ends the year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    /// chrono's formatting, the reference for the hand-written one.
    fn chrono_format(ms: i64) -> String {
        let dt = DateTime::from_timestamp_millis(ms).expect("in chrono's range");
        dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    #[test]
    fn formats_every_day_as_chrono_does() {
        let day = 86_400_000i64;
        // Day boundaries around the epoch, leap days and century years
        // (1900 and 2100 have no 29 February, 2000 has), and the range's ends.
        let edges = [
            0,
            -1,
            day - 1,
            -day,
            chrono_ms("1900-02-28T23:59:59.999Z"),
            chrono_ms("1900-03-01T00:00:00.000Z"),
            chrono_ms("2000-02-29T12:00:00.000Z"),
            chrono_ms("2100-03-01T00:00:00.000Z"),
            chrono_ms("2024-12-31T23:59:59.999Z"),
            chrono_ms("0000-01-01T00:00:00.000Z"),
            chrono_ms("0000-02-29T00:00:00.000Z"),
            chrono_ms("9999-12-31T23:59:59.999Z"),
        ];
        for ms in edges {
            assert_eq!(format_time(ms), chrono_format(ms), "{ms}");
        }
        // Every day from 1600 to 2400, at a time of day that moves with it.
        let (from, to) = (
            chrono_ms("1600-01-01T00:00:00.000Z"),
            chrono_ms("2400-01-01T00:00:00.000Z"),
        );
        let mut d = from;
        let mut k = 0i64;
        while d < to {
            let ms = d + (k * 7_919_993) % day;
            assert_eq!(format_time(ms), chrono_format(ms), "{ms}");
            d += day;
            k += 1;
        }
        // Outside years 0 to 9999, chrono's own text (a sign, more digits).
        let far = chrono_ms("9999-12-31T23:59:59.999Z") + 1;
        assert_eq!(format_time(far), "+10000-01-01T00:00:00.000Z");
        assert_eq!(format_time(far), chrono_format(far));
    }

    fn chrono_ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("a valid time")
            .timestamp_millis()
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
        assert_eq!((e.entity.as_ref(), e.time_ms), ("42", 1000));
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

    /// The decoder as it was first written: the whole payload parsed into a
    /// `serde_json::Value` tree, then fields looked up. The streaming decoder
    /// must agree with it on every payload, error messages included.
    fn reference_decode(
        s: &Schema,
        payload: &[u8],
        reference_ms: i64,
    ) -> Result<Event<'static>, String> {
        use serde_json::Value as J;
        let value: J = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
        let kind = |v: &J| match v {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Number(_) => "a number",
            J::String(_) => "a string",
            J::Array(_) => "an array",
            J::Object(_) => "an object",
        };
        let wrong = |field: &str, expected: &str, v: &J| {
            format!("field `{field}` must be {expected}, found {}", kind(v))
        };
        let object = value
            .as_object()
            .ok_or_else(|| format!("invalid JSON: expected an object, found {}", kind(&value)))?;
        let present = |name: &str| object.get(name).filter(|v| !v.is_null());
        let mut parts = Vec::new();
        for (i, field) in s.entity.fields().iter().enumerate() {
            let part = match present(field) {
                None => return Err(format!("missing field `{field}`")),
                Some(J::String(x)) => x.clone(),
                Some(J::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                Some(v) => return Err(wrong(field, "a string", v)),
            };
            if s.entity.is_integer(i) && part.parse::<i64>().is_err() {
                return Err(format!(
                    "field `{field}` must be an integer (it is an integer Feast join key), found `{part}`"
                ));
            }
            parts.push(part);
        }
        let entity = s.entity.id(&parts);
        let time_ms = match present(&s.timestamp_field) {
            None => return Err(format!("missing field `{}`", s.timestamp_field)),
            Some(J::String(x)) => parse_timestamp(x).map_err(|e| e.to_string())?,
            Some(J::Number(n)) => n
                .as_i64()
                .ok_or_else(|| DecodeError::BadTimestamp(n.to_string()).to_string())?,
            Some(v) => {
                return Err(wrong(
                    &s.timestamp_field,
                    "an ISO-8601 string or epoch milliseconds",
                    v,
                ))
            }
        };
        if time_ms.saturating_sub(reference_ms) > s.max_future_ms {
            return Err("future".into());
        }
        let mut fields = Vec::new();
        for (name, kind) in &s.inputs {
            let Some(v) = present(name) else {
                return Err(format!("missing field `{name}`"));
            };
            fields.push(match (kind, v) {
                (ValueType::Text, J::String(x)) => FieldValue::Text(Cow::Owned(x.clone())),
                (ValueType::Float64, J::Number(n)) => match n.as_f64().filter(|f| f.is_finite()) {
                    Some(f) => FieldValue::Float(f),
                    None => return Err(wrong(name, "a finite number", v)),
                },
                (ValueType::Int64, J::Number(n)) => match n.as_i64() {
                    Some(i) => FieldValue::Int(i),
                    None => return Err(wrong(name, "an integer", v)),
                },
                (ValueType::Boolean, J::Bool(b)) => FieldValue::Bool(*b),
                (ValueType::Text, _) => return Err(wrong(name, "a string", v)),
                (ValueType::Float64, _) => return Err(wrong(name, "a number", v)),
                (ValueType::Int64, _) => return Err(wrong(name, "an integer", v)),
                (ValueType::Boolean, _) => return Err(wrong(name, "a boolean", v)),
            });
        }
        Ok(Event {
            entity: Cow::Owned(entity),
            time_ms,
            fields,
        })
    }

    /// A small deterministic generator (xorshift) for the random tests.
    struct Rng(u64, bool);

    impl Rng {
        /// Whether the values drawn next stay within the fast path's shapes.
        fn plain(&mut self, plain: bool) {
            self.1 = plain;
        }

        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'x>(&mut self, from: &[&'x str]) -> &'x str {
            from[self.below(from.len())]
        }

        fn digits(&mut self, n: usize) -> String {
            (0..n)
                .map(|_| char::from(b'0' + self.below(10) as u8))
                .collect()
        }

        /// A JSON number, or now and then something almost like one.
        fn number(&mut self) -> String {
            let mut n = String::new();
            if self.below(3) == 0 {
                n.push('-');
            }
            match if self.1 {
                3 * self.below(2)
            } else {
                self.below(8)
            } {
                0 => n.push('0'),
                1 => n += &format!("0{}", self.digits(1)),
                2 => {
                    let len = 15 + self.below(8);
                    n += &format!("{}{}", 1 + self.below(9), self.digits(len));
                }
                _ => {
                    let len = self.below(6);
                    n += &format!("{}{}", 1 + self.below(9), self.digits(len));
                }
            }
            if self.below(2) == 0 {
                n.push('.');
                let len = [1, 2, 3, 6, 0, 12, 17, 25][self.below(if self.1 { 4 } else { 8 })];
                n += &self.digits(len);
            }
            if self.below(4) == 0 {
                n += self.pick(&["e", "E"]);
                n += self.pick(&["", "+", "-"]);
                let len = [1, 2, 0, 3, 4][self.below(if self.1 { 2 } else { 5 })];
                n += &self.digits(len);
            }
            n
        }

        /// A date-time near the fast path's form, often valid, sometimes not.
        fn timestamp(&mut self) -> String {
            let year = if self.below(2) == 0 {
                1960 + self.below(120)
            } else {
                self.below(10_000)
            };
            let mut t = if self.1 {
                format!(
                    "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    1 + self.below(12),
                    1 + self.below(28),
                    self.below(24),
                    self.below(60),
                    self.below(60)
                )
            } else {
                format!(
                    "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    self.below(14),
                    self.below(33),
                    self.below(25),
                    self.below(61),
                    self.below(61)
                )
            };
            if self.below(2) == 0 {
                t.push('.');
                let len = self.below(11);
                t += &self.digits(len);
            }
            t += if self.1 {
                "Z"
            } else {
                self.pick(&["Z", "Z", "Z", "z", "+00:00", "+02:00", ""])
            };
            t
        }

        fn string(&mut self) -> String {
            // Escapes and control characters (the last three) now and then.
            let pieces = [
                "a", "b", "Z", "0", " ", "é", "😀", "a", "b", "Z", "0", " ", "é", "😀", "\\u00e9",
                "\\n", "\u{1}",
            ];
            // Mostly short; a third up to 24 pieces, past the decoder's 8-byte steps.
            let len = if self.below(3) == 0 {
                self.below(24)
            } else {
                self.below(6)
            };
            let kinds = if self.1 { 14 } else { pieces.len() };
            (0..len).map(|_| pieces[self.below(kinds)]).collect()
        }
    }

    /// Payloads of the shapes the fast path reads and of shapes close to them
    /// (whitespace, numbers of every form, unicode, escapes, control
    /// characters, nesting, trailing commas or text, truncation), decoded
    /// with the fast path and by serde_json alone: results (floats to the
    /// bit) and errors, wording included, must be the same.
    #[test]
    fn the_fast_path_agrees_with_serde_json() {
        let mut composite = EntityKey::new(vec!["user_id".into(), "n".into()]);
        composite.require_integer("n");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15, false);
        let (mut fast, mut fast_ok) = (0, 0);
        for entity in [EntityKey::single("user_id"), composite] {
            let s = random_test_schema(entity, i64::MAX);
            let ws = ["", "", " ", "\n", "\t ", "\r\n"];
            for i in 0..40_000 {
                rng.plain(i % 2 == 0);
                let mut entries = vec![
                    ("user_id", format!("\"{}\"", rng.string())),
                    ("ts", format!("\"{}\"", rng.timestamp())),
                    ("action", format!("\"{}\"", rng.string())),
                    ("value", rng.number()),
                    ("n", rng.number()),
                    ("flag", rng.pick(&["true", "false"]).to_owned()),
                ];
                for _ in 0..rng.below(3) {
                    let key = rng.pick(&["other", "é", "ts", "value", "user_id", "n"]);
                    let value = match rng.below(8) {
                        0 => rng
                            .pick(&["null", "true", "false", "nul", "tru", "[1]", "{\"a\":1}"])
                            .to_owned(),
                        1 => format!("\"{}\"", rng.string()),
                        2 => rng.timestamp(),
                        3 => format!("{}", rng.below(2_000_000_000_000)),
                        _ => rng.number(),
                    };
                    entries.insert(rng.below(entries.len() + 1), (key, value));
                }
                if rng.below(6) == 0 {
                    entries.remove(rng.below(entries.len()));
                }
                let mut doc = String::from(rng.pick(&ws));
                doc.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        doc.push(',');
                    }
                    doc += &format!(
                        "{}\"{key}\"{}:{}{value}{}",
                        rng.pick(&ws),
                        rng.pick(&ws),
                        rng.pick(&ws),
                        rng.pick(&ws)
                    );
                }
                doc.push('}');
                doc += rng.pick(&ws);
                match rng.below(30) {
                    1 => doc = doc.replacen('}', ",}", 1),
                    2 => doc += " x",
                    _ => {}
                }
                let mut payload = doc.into_bytes();
                if rng.below(30) == 0 {
                    // Possibly inside a character: invalid UTF-8.
                    payload.truncate(rng.below(payload.len()));
                }
                let payload = &payload[..];
                let got = s.decode(Some(payload), NOON);
                let want = s.decode_with_serde(payload, NOON, Vec::new());
                assert_eq!(
                    format!("{got:?}"),
                    format!("{want:?}"),
                    "payload {}",
                    String::from_utf8_lossy(payload)
                );
                if fast::scan(payload, |_, _| {}).is_some() {
                    fast += 1;
                    fast_ok += usize::from(got.is_ok());
                }
            }
        }
        assert!(
            fast > 15_000 && fast_ok > 4_000,
            "only {fast} payloads took the fast path, {fast_ok} of them valid events"
        );
    }

    /// The fast timestamp parser answers only where chrono agrees, and for
    /// most valid UTC date-times of its form.
    #[test]
    fn fast_timestamps_agree_with_chrono() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d, false);
        let (mut answered, mut valid_utc) = (0, 0_usize);
        for _ in 0..200_000 {
            let t = rng.timestamp();
            let chrono = DateTime::parse_from_rfc3339(&t).map(|d| d.timestamp_millis());
            match fast::utc_timestamp(t.as_bytes()) {
                Some(ms) => {
                    assert_eq!(Ok(ms), chrono.map_err(|_| ()), "{t}");
                    answered += 1;
                }
                None => assert!(
                    chrono.is_err() || !t.ends_with('Z') || t.contains(":60") || t.len() > 30,
                    "{t} declined though chrono reads it"
                ),
            }
            valid_utc += usize::from(chrono.is_ok() && t.ends_with('Z'));
        }
        assert!(answered > 20_000, "{answered} of {valid_utc}");
        // Worked by hand: NOON is 2026-03-01T12:00:00Z; 2024-02-29 is 19,782
        // days after 1970-01-01 (54 years of 365 days plus 13 leap days, plus
        // 31 + 28 days).
        assert_eq!(
            fast::utc_timestamp(b"2026-03-01T12:00:00.1239Z"),
            Some(NOON + 123)
        );
        assert_eq!(
            fast::utc_timestamp(b"2024-02-29T00:00:01Z"),
            Some(19_782 * 86_400_000 + 1000)
        );
        assert_eq!(fast::utc_timestamp(b"2023-02-29T00:00:00Z"), None);
    }

    /// Deterministic pseudo-random payloads: fields in any order, repeated,
    /// missing, null, of every JSON type, keys and strings with escapes,
    /// nesting, unknown fields, and truncated (invalid) documents.
    #[test]
    fn streaming_decoder_agrees_with_the_value_tree_decoder() {
        let mut composite = EntityKey::new(vec!["user_id".into(), "n".into()]);
        composite.require_integer("n");
        for entity in [EntityKey::single("user_id"), composite] {
            agrees_on_random_payloads(entity);
        }
    }

    /// The schema of the random-payload tests: the entity key is also an
    /// input, so one key fills two slots.
    fn random_test_schema(entity: EntityKey, max_future_ms: i64) -> Schema {
        Schema {
            entity,
            timestamp_field: "ts".into(),
            inputs: vec![
                ("action".into(), ValueType::Text),
                ("value".into(), ValueType::Float64),
                ("n".into(), ValueType::Int64),
                ("flag".into(), ValueType::Boolean),
                ("user_id".into(), ValueType::Text),
            ],
            max_future_ms,
        }
    }

    fn agrees_on_random_payloads(entity: EntityKey) {
        let s = random_test_schema(entity, 86_400_000);
        let keys = [
            "\"user_id\"",
            "\"user\\u005fid\"",
            "\"ts\"",
            "\"action\"",
            "\"value\"",
            "\"n\"",
            "\"flag\"",
            "\"other\"",
            "\"acti\\\"on\"",
        ];
        let values = [
            "null",
            "true",
            "false",
            "0",
            "-7",
            "42",
            "9223372036854775807",
            "18446744073709551615",
            "1.5",
            "-0.0",
            "1e3",
            "2.5e-3",
            "\"u1\"",
            "\"a\\\"b\\n\\u00e9\"",
            "\"\"",
            "\"2026-03-01T12:00:00Z\"",
            "\"1772366400000\"",
            "\"soon\"",
            "1772366400000",
            "[1,{\"a\":[]}]",
            "{\"ts\":1,\"x\":{}}",
            "\"click\"",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut agreed_ok = 0;
        for _ in 0..20_000 {
            // Half the documents start from a valid event, in a random order,
            // then get random extra entries (which may repeat and override).
            let mut entries: Vec<(&str, &str)> = Vec::new();
            if next(2) == 0 {
                let valid = [
                    (keys[0], "\"u1\""),
                    (keys[2], "1772366400000"),
                    (keys[3], "\"click\""),
                    (keys[4], "2.5"),
                    (keys[5], "-7"),
                    (keys[6], "true"),
                ];
                for _ in 0..valid.len() {
                    let (k, v) = valid[next(valid.len())];
                    if !entries.iter().any(|(e, _)| *e == k) {
                        entries.push((k, v));
                    }
                }
                entries.extend(
                    valid
                        .iter()
                        .filter(|(k, _)| !entries.iter().any(|(e, _)| e == k))
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
            for _ in 0..next(if entries.is_empty() { 9 } else { 3 }) {
                entries.push((keys[next(keys.len())], values[next(values.len())]));
            }
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let doc = format!("{{{}}}", body.join(","));
            let payload = match next(20) {
                0 => doc[..next(doc.len())].to_owned(),
                1 => values[next(values.len())].to_owned(),
                2 => format!("{doc} x"),
                _ => doc,
            };
            // serde_json words a syntax error differently depending on what
            // was being parsed; only the kind of rejection has to agree there.
            let syntax = |e: String| {
                if e.starts_with("invalid JSON") && !e.contains("expected an object") {
                    "invalid JSON".to_owned()
                } else {
                    e
                }
            };
            let got = s
                .decode(Some(payload.as_bytes()), NOON)
                .map_err(|e| match e {
                    DecodeError::FutureTimestamp { .. } => "future".to_owned(),
                    e => e.to_string(),
                })
                .map_err(syntax);
            let want = reference_decode(&s, payload.as_bytes(), NOON).map_err(syntax);
            assert_eq!(got, want, "payload {payload}");
            agreed_ok += usize::from(got.is_ok());
        }
        assert!(agreed_ok > 1_000, "only {agreed_ok} valid events generated");
    }
}
