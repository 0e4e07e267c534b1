-- Wafer `feast` layout: writes (or deletes) one feature view's fields in
-- several entities' Feast hashes, each unless its `_ts:<feature view>` is a
-- later event time. Other feature views' fields in the same hash are left
-- alone. Atomic: Redis runs a script alone (so each entity's compare-and-write
-- is too).
-- KEYS[i] entity i's Feast key
-- ARGV[1] `_ts:<feature view>`
-- ARGV[2] TTL of the whole hash in seconds ("0": none)
-- then, entity after entity:
--   the update's event time: seconds, nanos
--   the same as a serialized google.protobuf.Timestamp
--   "set" or "del" (tombstone)
--   n: the number of arguments that follow for this entity
--   with "set": hashed feature field, serialized feast.types.Value, ...;
--   with "del": the hashed feature fields
-- Returns how many entities were written (the others were skipped as older).
local function varint(s, i)
  local v, scale = 0, 1
  while i <= #s do
    local b = string.byte(s, i)
    i = i + 1
    v = v + (b % 128) * scale
    if b < 128 then
      return v, i
    end
    scale = scale * 128
  end
  return v, i
end
local function newer(stored, new_seconds, new_nanos)
  local seconds, nanos, i = 0, 0, 1
  while i <= #stored do
    local tag = string.byte(stored, i)
    local v
    v, i = varint(stored, i + 1)
    if tag == 8 then
      seconds = v
    elseif tag == 16 then
      nanos = v
    end
  end
  -- A negative int64 is a 10-byte varint: past 2^63 as read here.
  if seconds >= 2 ^ 63 then
    seconds = seconds - 2 ^ 64
  end
  return seconds > new_seconds or (seconds == new_seconds and nanos > new_nanos)
end
local ts_field, ttl = ARGV[1], ARGV[2]
local a, written = 3, 0
for i = 1, #KEYS do
  local key, mode = KEYS[i], ARGV[a + 3]
  local seconds, nanos, ts = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local first = a + 5
  a = first + tonumber(ARGV[a + 4])
  local stored = redis.call('HGET', key, ts_field)
  if not (stored and newer(stored, seconds, nanos)) then
    if mode == 'del' then
      redis.call('HDEL', key, ts_field, unpack(ARGV, first, a - 1))
    else
      redis.call('HSET', key, ts_field, ts, unpack(ARGV, first, a - 1))
      if ttl ~= '0' then
        redis.call('EXPIRE', key, ttl)
      end
    end
    written = written + 1
  end
end
return written
