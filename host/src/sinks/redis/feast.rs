//! Feast's Redis online-store encoding, byte for byte (Feast 0.67,
//! `entity_key_serialization_version: 3`; see docs/config.md, "The feast
//! layout"): entity keys, hashed field names, `feast.types.Value` and
//! `google.protobuf.Timestamp` protobuf messages, written by hand (each is a
//! tag byte and a varint or a few raw bytes).

use crate::config::JoinKeyType;
use crate::pipeline::FeatureValue;

/// A join key's value, typed as its Feast entity declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue<'a> {
    String(&'a str),
    Int64(i64),
    Int32(i32),
}

impl<'a> KeyValue<'a> {
    /// `text` as a join key of type `kind`; `None` when it is not an integer of that width.
    pub fn parse(kind: JoinKeyType, text: &'a str) -> Option<Self> {
        match kind {
            JoinKeyType::String => Some(Self::String(text)),
            JoinKeyType::Int64 => text.parse().ok().map(Self::Int64),
            JoinKeyType::Int32 => text.parse().ok().map(Self::Int32),
        }
    }
}

/// `serialize_entity_key(key, 3) ++ project`: the Redis key of an entity's hash.
/// Join keys are sorted by name (UTF-8 bytes, as Feast does); all integers are
/// little-endian u32 except the values.
pub fn redis_key(join_keys: &[(&str, KeyValue<'_>)], project: &str) -> Vec<u8> {
    let mut sorted: Vec<&(&str, KeyValue<'_>)> = join_keys.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::with_capacity(64);
    let u32_le = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    u32_le(&mut out, sorted.len());
    for (name, _) in &sorted {
        u32_le(&mut out, 2); // ValueType.STRING, the type of the name
        u32_le(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
    }
    for (_, value) in &sorted {
        let (tag, payload): (usize, Vec<u8>) = match value {
            KeyValue::String(s) => (2, s.as_bytes().to_vec()),
            KeyValue::Int64(v) => (4, v.to_le_bytes().to_vec()),
            KeyValue::Int32(v) => (3, v.to_le_bytes().to_vec()),
        };
        u32_le(&mut out, tag);
        u32_le(&mut out, payload.len());
        out.extend_from_slice(&payload);
    }
    out.extend_from_slice(project.as_bytes());
    out
}

/// The hash field of a feature: murmur3 x86 32-bit (seed 0) of
/// `<feature view>:<feature>`, as 4 little-endian bytes.
pub fn field_name(feature_view: &str, feature: &str) -> [u8; 4] {
    let text = format!("{feature_view}:{feature}");
    let hash = murmur3::murmur3_32(&mut std::io::Cursor::new(text.as_bytes()), 0)
        .expect("reading from memory cannot fail");
    hash.to_le_bytes()
}

/// The hash field of a feature view's event time: `_ts:<feature view>`.
pub fn timestamp_field(feature_view: &str) -> Vec<u8> {
    format!("_ts:{feature_view}").into_bytes()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A serialized `feast.types.Value`; a null is the empty message (no bytes).
/// Int64 → `int64_val` (4), Float64 → `double_val` (5), Boolean → `bool_val` (7),
/// Text → `string_val` (2).
pub fn encode_value(value: FeatureValue<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    match value {
        FeatureValue::Null => {}
        FeatureValue::Int64(v) => {
            out.push(0x20);
            varint(&mut out, v as u64);
        }
        FeatureValue::Float64(v) => {
            out.push(0x29);
            out.extend_from_slice(&v.to_le_bytes());
        }
        FeatureValue::Boolean(v) => {
            out.push(0x38);
            out.push(u8::from(v));
        }
        FeatureValue::Text(s) => {
            out.push(0x12);
            varint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// A feature value read back from Feast's store.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    Text(String),
}

impl OwnedValue {
    /// The value, borrowed.
    pub fn as_value(&self) -> FeatureValue<'_> {
        match self {
            OwnedValue::Null => FeatureValue::Null,
            OwnedValue::Int64(v) => FeatureValue::Int64(*v),
            OwnedValue::Float64(v) => FeatureValue::Float64(*v),
            OwnedValue::Boolean(v) => FeatureValue::Boolean(*v),
            OwnedValue::Text(s) => FeatureValue::Text(s),
        }
    }
}

/// Decodes a serialized `feast.types.Value` of one of the kinds [`encode_value`]
/// writes (whatever the declared type, as Feast does); `None` when it is not one.
pub fn decode_value(bytes: &[u8]) -> Option<OwnedValue> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return Some(OwnedValue::Null);
    };
    let mut at = 0;
    let value = match tag {
        0x20 => OwnedValue::Int64(read_varint(rest, &mut at)? as i64),
        0x29 => {
            let raw: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            at = 8;
            OwnedValue::Float64(f64::from_le_bytes(raw))
        }
        0x38 => OwnedValue::Boolean(read_varint(rest, &mut at)? != 0),
        0x12 => {
            let len = read_varint(rest, &mut at)? as usize;
            let text = rest.get(at..at.checked_add(len)?)?;
            at += len;
            OwnedValue::Text(String::from_utf8(text.to_vec()).ok()?)
        }
        _ => return None,
    };
    (at == rest.len()).then_some(value)
}

/// A serialized `google.protobuf.Timestamp` of `ms` since the epoch: `seconds`
/// (field 1) and `nanos` (field 2), each left out when zero.
pub fn encode_timestamp(ms: i64) -> Vec<u8> {
    let (seconds, nanos) = seconds_nanos(ms);
    let mut out = Vec::with_capacity(12);
    if seconds != 0 {
        out.push(0x08);
        varint(&mut out, seconds as u64);
    }
    if nanos != 0 {
        out.push(0x10);
        varint(&mut out, nanos as u64);
    }
    out
}

/// `ms` since the epoch as (seconds, nanos), nanos in `0..1e9`.
pub fn seconds_nanos(ms: i64) -> (i64, i32) {
    (
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as i32,
    )
}

/// Milliseconds since the epoch of a serialized `google.protobuf.Timestamp`
/// (nanos truncated to ms); `None` when malformed.
pub fn decode_timestamp(bytes: &[u8]) -> Option<i64> {
    let (mut seconds, mut nanos, mut at) = (0i64, 0i64, 0usize);
    while at < bytes.len() {
        let tag = bytes[at];
        at += 1;
        let v = read_varint(bytes, &mut at)?;
        match tag {
            0x08 => seconds = v as i64,
            0x10 => nanos = i64::from(v as i32),
            _ => return None,
        }
    }
    Some(seconds * 1000 + nanos.div_euclid(1_000_000))
}

#[cfg(test)]
mod tests {
    //! Vectors from the layout reference (produced by Feast 0.67's own
    //! functions and checked by an independent writer), section 9.
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn entity_keys_match_feast() {
        assert_eq!(
            hex(&redis_key(&[("user_id", KeyValue::String("u1"))], "demo")),
            "01000000020000000700000075736572 5f6964020000000200000075316465 6d6f".replace(' ', "")
        );
        assert_eq!(
            hex(&redis_key(&[("driver_id", KeyValue::Int64(1002))], "")),
            "0100000002000000090000006472697665725f69640400000008000000ea03000000000000"
        );
        assert_eq!(
            hex(&redis_key(&[("k", KeyValue::Int32(5))], "")),
            "0100000002000000010000006b030000000400000005000000"
        );
        // merchant_id sorts before user_id whatever the configured order.
        let want = "02000000 02000000 0b000000 6d65726368616e745f6964 \
                    02000000 07000000 757365725f6964 04000000 08000000 ea03000000000000 \
                    02000000 02000000 7531 64656d6f"
            .replace(' ', "");
        let key = redis_key(
            &[
                ("user_id", KeyValue::String("u1")),
                ("merchant_id", KeyValue::Int64(1002)),
            ],
            "demo",
        );
        assert_eq!(hex(&key), want);
        assert_eq!(
            KeyValue::parse(JoinKeyType::Int64, "1002"),
            Some(KeyValue::Int64(1002))
        );
        assert_eq!(KeyValue::parse(JoinKeyType::Int32, "99999999999"), None);
    }

    #[test]
    fn field_names_match_feast() {
        assert_eq!(
            hex(&field_name("user_activity", "event_count_1h")),
            "99f00dc9"
        );
        assert_eq!(
            hex(&field_name("user_activity", "avg_value_1h")),
            "0349ac3c"
        );
        assert_eq!(
            hex(&timestamp_field("user_activity")),
            "5f74733a757365725f6163746976697479"
        );
    }

    #[test]
    fn values_match_feast() {
        let cases: [(FeatureValue<'_>, &str); 10] = [
            (FeatureValue::Int64(42), "202a"),
            (FeatureValue::Int64(0), "2000"),
            (FeatureValue::Int64(300), "20ac02"),
            (FeatureValue::Int64(-1), "20ffffffffffffffffff01"),
            (FeatureValue::Float64(3.5), "290000000000000c40"),
            (FeatureValue::Float64(0.0), "290000000000000000"),
            (FeatureValue::Boolean(true), "3801"),
            (FeatureValue::Boolean(false), "3800"),
            (FeatureValue::Text("abc"), "1203616263"),
            (FeatureValue::Null, ""),
        ];
        for (value, want) in cases {
            let bytes = encode_value(value);
            assert_eq!(hex(&bytes), want, "{value:?}");
            assert_eq!(
                decode_value(&bytes).as_ref().map(OwnedValue::as_value),
                Some(value)
            );
        }
        assert_eq!(decode_value(&[0x29, 0, 0]), None);
        assert_eq!(decode_value(&[0x12, 5, b'a']), None);
        assert_eq!(decode_value(&[0x98, 0x01, 0x00]), None);
    }

    #[test]
    fn timestamps_match_feast() {
        // 2024-01-01T00:00:00.5Z and 2024-01-01T00:00:00Z.
        assert_eq!(
            hex(&encode_timestamp(1_704_067_200_500)),
            "088081c8ac061080cab5ee01"
        );
        assert_eq!(hex(&encode_timestamp(1_704_067_200_000)), "088081c8ac06");
        assert_eq!(
            decode_timestamp(&encode_timestamp(1_704_067_200_500)),
            Some(1_704_067_200_500)
        );
        assert_eq!(seconds_nanos(-1), (-1, 999_000_000));
        assert_eq!(decode_timestamp(&encode_timestamp(-1)), Some(-1));
        assert_eq!(decode_timestamp(&[]), Some(0));
        assert_eq!(decode_timestamp(&[0x18, 1]), None);
    }
}
