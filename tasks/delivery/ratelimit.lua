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
-- ARGV: member, validity_us, n_transport_windows, (count, span_us)..., n_user_windows, (count, span_us)...,
--       soft (1: the user's windows only pace a fair share, no limit of the user's own is among them)
-- Member "*spread": ARGV continues with more members, each given the user's next slot while the
-- user's lane is full (a burst queued in bulk); reply: their slots, fewer when the lane has room.
-- Reply: {kind, slot_us, now_us, phase}
--   kind 0 = go (slot <= now: send now), 1 = wait (slot reserved in the future),
--        2 = missing (phase = 1 if Redis was emptied; the indexes of the buckets to rebuild follow),
--        3 = early (a reservation held for a later slot)
--   phase 1 = only the user bucket holds the slot, 2 = every bucket holds it,
--         0 = nothing is reserved: the provider's windows free up then (a soft lane's turn has come)

local SENTINEL = '!built'
local member = ARGV[1]
-- "*confirm:<member>": the send of <member> is about to begin DATA (see below).
local confirming = string.sub(member, 1, 9) == '*confirm:'
if confirming then member = string.sub(member, 10) end
-- "*sent:<member>": its DATA has ended; its entries move up to now (never down).
if string.sub(member, 1, 6) == '*sent:' then
  local clock = redis.call('TIME')
  local score = string.format('%.0f', tonumber(clock[1]) * 1000000 + tonumber(clock[2]))
  for _, key in ipairs(KEYS) do redis.call('ZADD', key, 'XX', 'GT', score, string.sub(member, 7)) end
  return 1
end
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
local uw, after = windows(next_at)
local soft = ARGV[after] == '1'
local buckets = {}
if #tw > 0 then buckets[#buckets + 1] = {KEYS[1], tw} end
if #uw > 0 then buckets[#buckets + 1] = {KEYS[2], uw} end

local missing = {}
local special = confirming or member == '*spread'
for i, b in ipairs(special and {} or {{KEYS[1], tw}, {KEYS[2], uw}}) do
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

-- How long a send at T must wait to keep every window (0: it may go), this
-- member's own entry aside: the N-th latest other entry at or before T must
-- have left the window. Sends are recorded when their DATA begins (confirm
-- below), so an earlier email that was slow to reach DATA may have moved into
-- the window of a slot reserved before it did.
local function wait_for(key, list, t)
  local wait = 0
  for _, w in ipairs(list) do
    local latest = redis.call('ZREVRANGEBYSCORE', key, us(t), '(' .. us(t - w[2]), 'WITHSCORES', 'LIMIT', 0, w[1] + 1)
    local seen = 0
    for i = 1, #latest, 2 do
      local score = tonumber(latest[i + 1])
      if latest[i] ~= member then
        seen = seen + 1
        if seen == w[1] then wait = math.max(wait, score + w[2] - t) end
      end
    end
  end
  return wait
end

local function reserve(key, list, slot, name)
  redis.call('ZADD', key, us(slot), name or member)
  -- An idle bucket expires once its last slot has left every window; the next
  -- use rebuilds it (cheaply: nothing is left in the window).
  redis.call('PEXPIREAT', key, us(math.floor((slot + longest(list)) / 1000) + 1000), 'GT')
end

if confirming then
  -- The last word before DATA: only limits bind here (a soft lane merely paces
  -- a fair share); a missing bucket is left to its rebuild, which counts this
  -- attempt as in flight. Go: the entries move to now. Else: how long to wait.
  local wait = 0
  for _, b in ipairs(buckets) do
    if redis.call('ZSCORE', b[1], SENTINEL) and not (soft and b[1] == KEYS[2]) then
      wait = math.max(wait, wait_for(b[1], b[2], now))
    end
  end
  if wait > 0 then return {1, us(now + wait), now, 2} end
  for _, b in ipairs(buckets) do
    if redis.call('ZSCORE', b[1], SENTINEL) then reserve(b[1], b[2], now) end
  end
  return {0, now, now, 2}
end

if member == '*spread' then
  -- Only into a whole lane (the caller's own acquire has just built it), and
  -- only future slots: an email the lane has room for goes by itself.
  if #uw == 0 or not redis.call('ZSCORE', KEYS[2], SENTINEL) then return {} end
  local slots = {}
  for i = after + 1, #ARGV do
    local slot = earliest(KEYS[2], uw)
    if slot <= now then break end
    reserve(KEYS[2], uw, slot, ARGV[i])
    slots[#slots + 1] = us(slot)
  end
  return slots
end

if soft and #tw > 0 then
  -- Fair share without a limit of the user's own: the user's lane paces the
  -- user's mail at the provider's rate (future turns reserved there), and the
  -- provider's bucket holds only sends, never plans. An email whose turn has
  -- come (now or long ago: a busy worker is late, never penalised) goes as soon
  -- as the provider's windows allow, exactly then; nothing reserved ahead can
  -- go unused while everyone runs late.
  local turn = redis.call('ZSCORE', KEYS[2], member)
  if turn and tonumber(turn) > now then return {3, tonumber(turn), now, 1} end
  if not turn then
    local slot = earliest(KEYS[2], uw)
    reserve(KEYS[2], uw, slot)
    if slot > now then return {1, slot, now, 1} end
  end
  local wait = wait_for(KEYS[1], tw, now)
  if wait == 0 then
    reserve(KEYS[1], tw, now)
    return {0, now, now, 2}
  end
  redis.call('ZREM', KEYS[1], member)
  return {1, now + wait, now, 0}
end

-- A reservation this email already holds: use it, or give it back if stale.
local held_t = #tw > 0 and redis.call('ZSCORE', KEYS[1], member) or false
local held_u = #uw > 0 and redis.call('ZSCORE', KEYS[2], member) or false
local held = held_t or (#tw == 0 and held_u)
if held then
  held = tonumber(held)
  if held > now then return {3, held, now, 2} end
  if now <= held + validity and (#tw == 0 or wait_for(KEYS[1], tw, now) == 0) then return {0, held, now, 2} end
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
