-- Wafer `hash` layout: replaces (or deletes) several entities' hashes, each
-- unless its stored hash is as of a later event time. Atomic: Redis runs a
-- script alone (so each entity's compare-and-write is too).
-- KEYS[i] entity i's key
-- ARGV[1] the TTL in seconds of every key written ("0": none)
-- then, entity after entity, from ARGV[2]:
--   as-of time of the update, epoch milliseconds (the `_as_of_ms` field)
--   n: the number of feature field/value pairs that follow (nulls left out),
--      or -1 for a tombstone (delete; nothing follows)
--   field, value, ... (n pairs)
-- Returns how many entities were written (the others were skipped as older).
local ttl, a, written = ARGV[1], 2, 0
for i = 1, #KEYS do
  local key, as_of, n = KEYS[i], ARGV[a], tonumber(ARGV[a + 1])
  local first = a + 2
  a = first + 2 * math.max(n, 0)
  local stored = redis.call('HGET', key, '_as_of_ms')
  if not (stored and tonumber(stored) > tonumber(as_of)) then
    redis.call('DEL', key)
    if n >= 0 then
      redis.call('HSET', key, '_as_of_ms', as_of, unpack(ARGV, first, a - 1))
      if ttl ~= '0' then
        redis.call('EXPIRE', key, ttl)
      end
    end
    written = written + 1
  end
end
return written
