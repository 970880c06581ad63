-- spread: a burst queued in bulk, each of a user's other due emails given its next
-- slot in the user's lane while the lane is full.
--
-- KEYS[1] user bucket
-- ARGV: n_user_windows, (count, span_us)..., then the members
-- Reply (named): {'slots', {slot_us, ...}}: one per member from the first, fewer when the
-- lane has room (an email the lane has room for goes by itself); none when the lane is not whole.

local uw, first = read_windows(1)
local slots = {}
-- Only into a whole lane (the caller's own acquire has just built it), and only
-- future slots.
if #uw > 0 and whole(KEYS[1]) then
  for i = first, #ARGV do
    local slot = earliest(KEYS[1], uw)
    if slot <= now then break end
    reserve(KEYS[1], uw, slot, ARGV[i])
    slots[#slots + 1] = us(slot)
  end
end
return {'slots', slots}
