-- load: fill a rebuilt bucket with what PostgreSQL recorded.
--
-- KEYS[1] the bucket, KEYS[2] its rebuild lock, KEYS[3] the attempts known to be waiting
-- at the gate (acquire.lua's ":blocked" set), KEYS[4] the "alive" marker
-- ARGV: span_us (the longest window), then (slot_us, member) pairs
-- Reply (named): {'loaded', n}
--
-- Only adds or raises (ZADD GT), so a late or duplicate rebuild can never lower
-- a slot; attempts known to be waiting at the gate are not in flight and are
-- not counted. Sets the "alive" marker: from then on a missing bucket merely
-- expired, Redis kept its data.

local loaded = 0
for i = 2, #ARGV, 2 do
  local member = ARGV[i + 1]
  local flight = string.match(member, '^(.*):flight$')
  if not (flight and redis.call('SISMEMBER', KEYS[3], flight) == 1) then
    redis.call('ZADD', KEYS[1], 'GT', ARGV[i], member)
    loaded = loaded + 1
  end
end
redis.call('DEL', KEYS[3])
redis.call('ZADD', KEYS[1], '-inf', SENTINEL)
-- Redis holds our data from now on: a bucket missing later merely expired.
redis.call('SET', KEYS[4], '1')
local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local top = tonumber(last[2]) or 0
if top < now then top = now end
redis.call('PEXPIREAT', KEYS[1], us(math.floor((top + tonumber(ARGV[1])) / 1000) + 1000))
redis.call('DEL', KEYS[2])
return {'loaded', loaded}
