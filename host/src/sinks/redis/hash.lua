-- Wafer `hash` layout: replaces (or deletes) one entity's hash unless the
-- stored one is as of a later event time. Atomic: Redis runs a script alone.
-- KEYS[1] the entity's key
-- ARGV[1] as-of time of the update, epoch milliseconds (the `_as_of_ms` field)
-- ARGV[2] "set" or "del" (tombstone)
-- ARGV[3] TTL in seconds (0: none)
-- ARGV[4..] feature field, value, field, value, ... (with "set"; nulls left out)
-- Returns 1 when written, 0 when skipped as older.
local stored = redis.call('HGET', KEYS[1], '_as_of_ms')
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], '_as_of_ms', ARGV[1], unpack(ARGV, 4))
  if tonumber(ARGV[3]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
end
return 1
