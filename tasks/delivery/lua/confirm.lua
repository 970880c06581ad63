-- confirm: the last word before an attempt's DATA, on Redis's clock.
--
-- KEYS[1] transport bucket, KEYS[2] user bucket
-- ARGV: member, n_transport_windows, (count, span_us)..., n_user_windows, (count, span_us)..., soft
-- Reply (named): {'wait_us', 0} go: the attempt's entries now say "sent now";
--                {'wait_us', n} wait that long for every limit to allow it (nothing changed).
--
-- Only limits bind here (a soft lane merely paces a fair share); a missing bucket
-- is left to its rebuild, which counts this attempt as in flight.

local member = ARGV[1]
local tw, next_at = read_windows(2)
local uw, after = read_windows(next_at)
local soft = ARGV[after] == '1'
local buckets = {}
if #tw > 0 then buckets[#buckets + 1] = {KEYS[1], tw} end
if #uw > 0 then buckets[#buckets + 1] = {KEYS[2], uw} end

-- The attempt counted "in flight" by a rebuild is this one: it drops that entry.
for _, b in ipairs(buckets) do redis.call('ZREM', b[1], member .. ':flight') end

local wait = 0
for _, b in ipairs(buckets) do
  if whole(b[1]) and not (soft and b[1] == KEYS[2]) then
    wait = math.max(wait, wait_for(b[1], b[2], now, member))
  end
end
if wait > 0 then return {'wait_us', us(wait)} end
for _, b in ipairs(buckets) do
  if whole(b[1]) then reserve(b[1], b[2], now, member) end
end
return {'wait_us', 0}
