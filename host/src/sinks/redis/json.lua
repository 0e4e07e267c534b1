-- Wafer `json` layout: writes (or deletes) several entities' feature JSON, each
-- unless its stored record is as of a later event time. Atomic: Redis runs a
-- script alone (so each entity's compare-and-write is too).
-- KEYS[i] entity i's key
-- ARGV[3i-2] entity i's as-of time, as the record's `computed_at` text
--            (fixed-width ISO-8601 UTC, so text order is time order)
-- ARGV[3i-1] its TTL in seconds ("0": none)
-- ARGV[3i]   its feature JSON, or "" for a tombstone (delete)
-- Returns how many entities were written (the others were skipped as older).
local written = 0
for i = 1, #KEYS do
  local key, j = KEYS[i], 3 * i
  local current = redis.call('GET', key)
  -- `computed_at` closes the record and is always 24 characters: it is read
  -- at its fixed place from the end (cheaper than a pattern match). A value
  -- not ending that way is not a Wafer record and is overwritten.
  local stored = current
    and string.sub(current, -42, -27) == ',"computed_at":"'
    and string.sub(current, -26, -3)
  if not (stored and stored > ARGV[j - 2]) then
    local value, ttl = ARGV[j], ARGV[j - 1]
    if value == '' then
      redis.call('DEL', key)
    elseif ttl ~= '0' then
      redis.call('SET', key, value, 'EX', ttl)
    else
      redis.call('SET', key, value)
    end
    written = written + 1
  end
end
return written
