-- sent: an attempt's DATA has ended; its entries move up to now (never down, never added).
--
-- KEYS: the buckets (transport, user)
-- ARGV: member
-- Reply (named): {'at', now_us}

local member = ARGV[1]
for _, key in ipairs(KEYS) do redis.call('ZADD', key, 'XX', 'GT', us(now), member) end
return {'at', us(now)}
