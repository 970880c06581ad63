-- acquire: reserve (or find) an attempt's send slot in its transport's and its user's buckets.
--
-- KEYS[1] transport bucket, KEYS[2] user bucket (either may be unused), KEYS[3] the "alive" marker
-- ARGV: member, validity_us, n_transport_windows, (count, span_us)..., n_user_windows, (count, span_us)...,
--       soft (1: the user's windows only pace a fair share, no limit of the user's own is among them)
-- Reply (named):
--   {'kind', 'go' | 'wait' | 'early', 'slot', slot_us, 'now', now_us, 'held', 'all' | 'lane' | 'none'}
--     go: send now; wait: a slot is reserved in the future; early: a reservation held for a later slot.
--     held: which buckets hold the slot: every one, only the user's lane, or none (nothing is
--     reserved: the provider's windows free up then, a soft lane's turn has come).
--   {'kind', 'missing', 'now', now_us, 'emptied', 0 | 1, 'rebuild', {'transport' | 'user', ...}}
--     a bucket lacks its sentinel: rebuild the ones named, then ask again (emptied: Redis lost its data).

local member = ARGV[1]
local validity = tonumber(ARGV[2])
local tw, next_at = read_windows(3)
local uw, after = read_windows(next_at)
local soft = ARGV[after] == '1'
local buckets = {}
if #tw > 0 then buckets[#buckets + 1] = {KEYS[1], tw} end
if #uw > 0 then buckets[#buckets + 1] = {KEYS[2], uw} end

local function answer(kind, slot, held)
  return {'kind', kind, 'slot', us(slot), 'now', us(now), 'held', held}
end

local missing = {}
for _, b in ipairs({{KEYS[1], tw, 'transport'}, {KEYS[2], uw, 'user'}}) do
  if #b[2] > 0 and not whole(b[1]) then
    missing[#missing + 1] = b[3]
    -- Say this attempt is waiting here, not in flight: the rebuild must not
    -- count it as a send (see load.lua).
    redis.call('SADD', b[1] .. ':blocked', member)
    redis.call('PEXPIRE', b[1] .. ':blocked', 60000)
  end
end
if #missing > 0 then
  -- KEYS[3] lives as long as Redis's data: without it, Redis was emptied and
  -- attempts may be in flight past this gate; with it, the bucket merely
  -- expired (idle) or never existed, and nothing can be in flight in it.
  return {'kind', 'missing', 'now', us(now), 'emptied', redis.call('EXISTS', KEYS[3]) == 0 and 1 or 0,
          'rebuild', missing}
end

-- A rebuild counts every attempt in flight as a send "now" (member ..":flight")
-- except those it knows were waiting here; one that is back here was waiting:
-- it drops its own.
for _, b in ipairs(buckets) do redis.call('ZREM', b[1], member .. ':flight') end

if soft and #tw > 0 then
  -- Fair share without a limit of the user's own: the user's lane paces the
  -- user's mail at the provider's rate (future turns reserved there), and the
  -- provider's bucket holds only sends, never plans. An email whose turn has
  -- come (now or long ago: a busy worker is late, never penalised) goes as soon
  -- as the provider's windows allow, exactly then; nothing reserved ahead can
  -- go unused while everyone runs late.
  local turn = redis.call('ZSCORE', KEYS[2], member)
  if turn and tonumber(turn) > now then return answer('early', tonumber(turn), 'lane') end
  if not turn then
    local slot = earliest(KEYS[2], uw)
    reserve(KEYS[2], uw, slot, member)
    if slot > now then return answer('wait', slot, 'lane') end
  end
  local wait = wait_for(KEYS[1], tw, now, member)
  if wait == 0 then
    reserve(KEYS[1], tw, now, member)
    return answer('go', now, 'all')
  end
  redis.call('ZREM', KEYS[1], member)
  return answer('wait', now + wait, 'none')
end

-- A reservation this email already holds: use it, or give it back if stale.
local held_t = #tw > 0 and redis.call('ZSCORE', KEYS[1], member) or false
local held_u = #uw > 0 and redis.call('ZSCORE', KEYS[2], member) or false
local held = held_t or (#tw == 0 and held_u)
if held then
  held = tonumber(held)
  if held > now then return answer('early', held, 'all') end
  if now <= held + validity and (#tw == 0 or wait_for(KEYS[1], tw, now, member) == 0) then
    return answer('go', held, 'all')
  end
elseif held_u and tonumber(held_u) > now then
  return answer('early', tonumber(held_u), 'lane')
elseif held_u and now <= tonumber(held_u) + validity then
  -- The user's slot has come: the transport serves it now, or it queues again.
  -- The transport slot is recorded at the user's slot (not the later moment the
  -- job ran), as a held slot is: a lane paced at the transport's own limit then
  -- finds the transport free at each of its slots, and the margin covers the lag.
  local slot = earliest(KEYS[1], tw, tonumber(held_u))
  if slot <= now then
    reserve(KEYS[1], tw, slot, member)
    return answer('go', slot, 'all')
  end
end
for _, b in ipairs(buckets) do redis.call('ZREM', b[1], member) end

-- A fresh reservation. Over the user's own limit (with fair share, the user's
-- lane carries the transport's windows too): hold only the user's slot, so the
-- provider's capacity is not taken from anyone meanwhile and a burst from one
-- user queues in its own lane instead of ahead of everyone else's mail.
if #uw > 0 then
  local user_slot = earliest(KEYS[2], uw)
  if user_slot > now then
    reserve(KEYS[2], uw, user_slot, member)
    return answer('wait', user_slot, 'lane')
  end
end
local slot = now
if #tw > 0 then slot = earliest(KEYS[1], tw) end
for _, b in ipairs(buckets) do reserve(b[1], b[2], slot, member) end
if slot <= now then return answer('go', slot, 'all') end
return answer('wait', slot, 'all')
