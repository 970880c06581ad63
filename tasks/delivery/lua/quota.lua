-- quota: count an email against its organization's daily quota, once per email and day.
--
-- KEYS[1] the organization's set for the day (member: the email's id; the sentinel says it is whole)
-- ARGV: email id, quota
-- Reply (named): {'kind', 'ok' | 'over' | 'missing', 'used', n}
--   ok: counted (or already counted today); over: the day's quota is spent, nothing counted;
--   missing: the set lacks its sentinel: rebuild it from PostgreSQL, then ask again.

local member, quota = ARGV[1], tonumber(ARGV[2])
if not whole(KEYS[1]) then return {'kind', 'missing', 'used', 0} end
local used = redis.call('ZCARD', KEYS[1]) - 1
if redis.call('ZSCORE', KEYS[1], member) then return {'kind', 'ok', 'used', used} end
if used >= quota then return {'kind', 'over', 'used', used} end
redis.call('ZADD', KEYS[1], us(now), member)
return {'kind', 'ok', 'used', used + 1}
