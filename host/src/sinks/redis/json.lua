-- Wafer `json` layout: writes (or deletes) several entities' feature JSON, each
-- unless its stored record is as of a later event time. Atomic: Redis runs a
-- script alone (so each entity's compare-and-write is too).
-- KEYS[i]      entity i's key
-- ARGV[1]      the TTL in seconds of every key written ("0": none)
-- ARGV[2i]     entity i's as-of time, as the record's `computed_at` text
--              (fixed-width ISO-8601 UTC, so text order is time order)
-- ARGV[2i + 1] its feature JSON, or "" for a tombstone (delete)
-- Returns how many entities were written (the others were skipped as older).
-- The stored records are read in one MGET (one command instead of one per
-- entity); a key holding no string reads as nil and is overwritten, as is a
-- value that is not a Wafer record.
local ttl = ARGV[1]
local current = redis.call('MGET', unpack(KEYS))
local written = 0
for i = 1, #KEYS do
  local stored, j = current[i], 2 * i
  -- `computed_at` closes the record and is always 24 characters: it is read
  -- at its fixed place from the end (cheaper than a pattern match).
  stored = stored
    and string.sub(stored, -42, -27) == ',"computed_at":"'
    and string.sub(stored, -26, -3)
  if not (stored and stored > ARGV[j]) then
    local key, value = KEYS[i], ARGV[j + 1]
    if value == '' then
      redis.call('DEL', key)
    elseif ttl ~= '0' then
      redis.call('SETEX', key, ttl, value)
    else
      redis.call('SET', key, value)
    end
    written = written + 1
  end
end
return written
