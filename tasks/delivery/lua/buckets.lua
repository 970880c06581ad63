-- What every rate-limit script shares; tasks/delivery/ratelimit.py puts it in front of each
-- operation's script (acquire.lua, confirm.lua, sent.lua, spread.lua, load.lua, quota.lua).
--
-- A bucket is a sorted set: member "<email id>:<attempt>", score = the slot in
-- microseconds, plus the sentinel "!built" (score -inf) that says the bucket is
-- whole. No bucket is ever rebuilt by a script that reserves: a missing sentinel
-- (the key was flushed, evicted or expired) answers "missing" and the caller
-- rebuilds it from PostgreSQL (load.lua) before anyone may reserve in it.
--
-- Windows: at most COUNT slots in any window of SPAN microseconds (SPAN is the
-- configured window plus its margin). Slots are only ever appended after the
-- bucket's last one, so a new slot s is legal for a window when the COUNT-th
-- latest slot is at or before s - SPAN: that is exact for sliding windows.
--
-- Every reply is named: a flat list of field names and values
-- ({'kind', 'go', 'slot', ...}), read into a dict by ratelimit.py.

local SENTINEL = '!built'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- Scores go to Redis as exact integer strings (tostring() would keep only 14 digits).
local function us(value) return string.format('%.0f', value) end

-- Whether a bucket is whole (its sentinel is there).
local function whole(key) return redis.call('ZSCORE', key, SENTINEL) end

-- A bucket's windows from ARGV at AT: n, then (count, span_us) n times.
-- Returns them as {{count, span}, ...} and the index of the next argument.
local function read_windows(at)
  local n = tonumber(ARGV[at])
  local list = {}
  for i = 1, n do
    list[i] = {tonumber(ARGV[at + 2 * i - 1]), tonumber(ARGV[at + 2 * i])}
  end
  return list, at + 2 * n + 1
end

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

-- How long a send of MEMBER at T must wait to keep every window (0: it may go),
-- its own entry aside: the N-th latest other entry at or before T must have left
-- the window. Sends are recorded when their DATA begins (confirm.lua), so an
-- earlier email that was slow to reach DATA may have moved into the window of a
-- slot reserved before it did.
local function wait_for(key, list, t, member)
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

-- Reserve SLOT for MEMBER in a bucket.
local function reserve(key, list, slot, member)
  redis.call('ZADD', key, us(slot), member)
  -- An idle bucket expires once its last slot has left every window; the next
  -- use rebuilds it (cheaply: nothing is left in the window).
  redis.call('PEXPIREAT', key, us(math.floor((slot + longest(list)) / 1000) + 1000), 'GT')
end
