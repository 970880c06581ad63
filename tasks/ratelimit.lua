-- Reserve a send slot in one or two rate-limit buckets, atomically, on Redis's clock.
--
-- A bucket is a sorted set: member "<email id>:<attempt>", score = the slot in
-- microseconds, plus the sentinel "!built" (score -inf) that says the bucket is
-- whole. No bucket is ever rebuilt here: a missing sentinel (the key was
-- flushed, evicted or expired) answers "missing" and the caller rebuilds it
-- from PostgreSQL before anyone may reserve in it.
--
-- Windows: at most COUNT slots in any window of SPAN microseconds (SPAN is the
-- configured window plus its margin). Slots are only ever appended after the
-- bucket's last one, so a new slot s is legal for a window when the COUNT-th
-- latest slot is at or before s - SPAN: that is exact for sliding windows.
--
-- KEYS[1] transport bucket, KEYS[2] user bucket (either may be unused), KEYS[3] the "alive" marker
-- ARGV: member, validity_us, n_transport_windows, (count, span_us)..., n_user_windows, (count, span_us)...
-- Reply: {kind, slot_us, now_us, phase}
--   kind 0 = go (slot <= now: send now), 1 = wait (slot reserved in the future),
--        2 = missing (phase = 1 if Redis was emptied; the indexes of the buckets to rebuild follow),
--        3 = early (a reservation held for a later slot)
--   phase 1 = only the user bucket holds the slot, 2 = every bucket holds it

local SENTINEL = '!built'
local member = ARGV[1]
local validity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function windows(at)
  local n = tonumber(ARGV[at])
  local list = {}
  for i = 1, n do
    list[i] = {tonumber(ARGV[at + 2 * i - 1]), tonumber(ARGV[at + 2 * i])}
  end
  return list, at + 2 * n + 1
end

local tw, next_at = windows(3)
local uw = windows(next_at)
local buckets = {}
if #tw > 0 then buckets[#buckets + 1] = {KEYS[1], tw} end
if #uw > 0 then buckets[#buckets + 1] = {KEYS[2], uw} end

local missing = {}
for i, b in ipairs({{KEYS[1], tw}, {KEYS[2], uw}}) do
  if #b[2] > 0 and not redis.call('ZSCORE', b[1], SENTINEL) then
    missing[#missing + 1] = i
    -- Say this attempt is waiting here, not in flight: the rebuild must not
    -- count it as a send (see the load script in ratelimit.py).
    redis.call('SADD', b[1] .. ':blocked', member)
    redis.call('PEXPIRE', b[1] .. ':blocked', 60000)
  end
end
if #missing > 0 then
  -- KEYS[3] lives as long as Redis's data: without it, Redis was emptied and
  -- attempts may be in flight past this gate; with it, the bucket merely
  -- expired (idle) or never existed, and nothing can be in flight in it.
  return {2, 0, now, redis.call('EXISTS', KEYS[3]) == 0 and 1 or 0, unpack(missing)}
end

-- Scores go to Redis as exact integer strings (tostring() would keep only 14 digits).
local function us(value) return string.format('%.0f', value) end

-- A rebuild counts every attempt in flight as a send "now" (member ..":flight")
-- except those it knows were waiting here; one that is back here was waiting:
-- it drops its own.
for _, b in ipairs(buckets) do redis.call('ZREM', b[1], member .. ':flight') end

local function longest(list)
  local span = 0
  for _, w in ipairs(list) do if w[2] > span then span = w[2] end end
  return span
end

-- The earliest slot that may be appended to a bucket: after its last slot and
-- after every window's COUNT-th latest slot has left the window.
-- BASE (default now) is the earliest time wanted: a user's slot that has come
-- asks for the transport from that slot, not from the moment its job ran.
local function earliest(key, list, base)
  -- (one extra second: entries just out of the window are harmless, too few are not)
  redis.call('ZREMRANGEBYSCORE', key, '(-inf', '(' .. us(now - longest(list) - 1000000))
  local at = base or now
  local last = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  if last[1] and last[1] ~= SENTINEL then at = math.max(at, tonumber(last[2])) end
  for _, w in ipairs(list) do
    local nth = redis.call('ZREVRANGE', key, w[1] - 1, w[1] - 1, 'WITHSCORES')
    if nth[1] and nth[1] ~= SENTINEL then at = math.max(at, tonumber(nth[2]) + w[2]) end
  end
  return at
end

local function reserve(key, list, slot)
  redis.call('ZADD', key, us(slot), member)
  -- An idle bucket expires once its last slot has left every window; the next
  -- use rebuilds it (cheaply: nothing is left in the window).
  redis.call('PEXPIREAT', key, us(math.floor((slot + longest(list)) / 1000) + 1000))
end

-- A reservation this email already holds: use it, or give it back if stale.
local held_t = #tw > 0 and redis.call('ZSCORE', KEYS[1], member) or false
local held_u = #uw > 0 and redis.call('ZSCORE', KEYS[2], member) or false
local held = held_t or (#tw == 0 and held_u)
if held then
  held = tonumber(held)
  if held > now then return {3, held, now, 2} end
  if now <= held + validity then return {0, held, now, 2} end
elseif held_u and tonumber(held_u) > now then
  return {3, tonumber(held_u), now, 1}
elseif held_u and now <= tonumber(held_u) + validity then
  -- The user's slot has come: the transport serves it now, or it queues again.
  -- The transport slot is recorded at the user's slot (not the later moment the
  -- job ran), as a held slot is: a lane paced at the transport's own limit then
  -- finds the transport free at each of its slots, and the margin covers the lag.
  local slot = earliest(KEYS[1], tw, tonumber(held_u))
  if slot <= now then
    reserve(KEYS[1], tw, slot)
    return {0, slot, now, 2}
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
    reserve(KEYS[2], uw, user_slot)
    return {1, user_slot, now, 1}
  end
end
local slot = now
if #tw > 0 then slot = earliest(KEYS[1], tw) end
for _, b in ipairs(buckets) do reserve(b[1], b[2], slot) end
if slot <= now then return {0, slot, now, 2} end
return {1, slot, now, 2}
