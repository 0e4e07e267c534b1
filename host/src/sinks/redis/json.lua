-- Wafer `json` layout: writes (or deletes) one entity's feature JSON unless the
-- stored record is as of a later event time. Atomic: Redis runs a script alone.
-- KEYS[1] the entity's key
-- ARGV[1] as-of time of the update, as the record's `computed_at` text
--         (fixed-width ISO-8601 UTC, so text order is time order)
-- ARGV[2] "set" or "del" (tombstone)
-- ARGV[3] TTL in seconds (0: none)
-- ARGV[4] the feature JSON (with "set")
-- Returns 1 when written, 0 when skipped as older.
local current = redis.call('GET', KEYS[1])
if current then
  local stored = string.match(current, '"computed_at":"([^"]*)"}$')
  if stored and stored > ARGV[1] then
    return 0
  end
end
if ARGV[2] == 'del' then
  redis.call('DEL', KEYS[1])
elseif tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return 1
