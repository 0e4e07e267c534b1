-- Wafer `feast` layout: writes (or deletes) one feature view's fields in an
-- entity's Feast hash unless its `_ts:<feature view>` is a later event time.
-- Other feature views' fields in the same hash are left alone. Atomic: Redis
-- runs a script alone.
-- KEYS[1] the entity's Feast key
-- ARGV[1] `_ts:<feature view>`
-- ARGV[2], ARGV[3] the update's event time: seconds, nanos
-- ARGV[4] the same as a serialized google.protobuf.Timestamp
-- ARGV[5] "set" or "del" (tombstone)
-- ARGV[6] TTL of the whole hash in seconds (0: none)
-- ARGV[7..] with "set": hashed feature field, serialized feast.types.Value, ...;
--           with "del": the hashed feature fields
-- Returns 1 when written, 0 when skipped as older.
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
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
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
  local new_seconds, new_nanos = tonumber(ARGV[2]), tonumber(ARGV[3])
  if seconds > new_seconds or (seconds == new_seconds and nanos > new_nanos) then
    return 0
  end
end
if ARGV[5] == 'del' then
  redis.call('HDEL', KEYS[1], ARGV[1], unpack(ARGV, 7))
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4], unpack(ARGV, 7))
if tonumber(ARGV[6]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return 1
