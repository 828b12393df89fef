package actors

import (
	"cmp"
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/messages"
)

// redisAssignments is the cluster's one place of decision for routing
// (docs/ROUTING.md, "Across nodes"): each claim, assignment and release is
// one Lua script over the owners, the operators' loads and capacities and
// who is available, so that two nodes never give one chat to two operators.
// It does blocking I/O: only a worker of its own may call it, never the
// router. It is not wired to the router yet; the atomic step is tested
// against a real redis-server (assign_redis_test.go).
type redisAssignments struct {
	rdb *redis.Client
	// keys: prefix+"owner:"+clientId → operator; prefix+"load", "cap" and
	// "avail" (operator → tick of its last assignment) are hashes.
	prefix   string
	capacity int
}

func newRedisAssignments(rdb *redis.Client, prefix string, capacity int) *redisAssignments {
	if capacity <= 0 {
		capacity = DefaultMaxChatsPerOperator
	}
	return &redisAssignments{rdb: rdb, prefix: prefix + "rt:", capacity: capacity}
}

func (a *redisAssignments) keys(client string) []string {
	return []string{a.prefix + "owner:" + client, a.prefix + "load", a.prefix + "cap", a.prefix + "avail", a.prefix + "tick"}
}

// claimScript gives a chat to the operator that asks, when nobody owns it
// and the operator has room: {1, op}, or {0, owner} (already claimed), or
// {-1, ""} (over capacity).
var claimScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if owner then return {0, owner} end
local load = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local cap = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[2])
if load >= cap then return {-1, ''} end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[4], ARGV[1], redis.call('INCR', KEYS[5]))
end
return {1, ARGV[1]}
`)

// assignScript gives a chat nobody owns to the available operator with
// room that is least busy, and of equals has waited longest: {1, op}, or
// {0, owner} when it has one already, or {-1, ""} when nobody has room.
var assignScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if owner then return {0, owner} end
local avail = redis.call('HGETALL', KEYS[4])
local best, bestLoad, bestSince = nil, 0, 0
for i = 1, #avail, 2 do
  local op, since = avail[i], tonumber(avail[i+1])
  local load = tonumber(redis.call('HGET', KEYS[2], op) or '0')
  local cap = tonumber(redis.call('HGET', KEYS[3], op) or ARGV[1])
  if load < cap and (best == nil or load < bestLoad or (load == bestLoad and (since < bestSince or (since == bestSince and op < best)))) then
    best, bestLoad, bestSince = op, load, since
  end
end
if best == nil then return {-1, ''} end
redis.call('SET', KEYS[1], best, 'NX')
redis.call('HINCRBY', KEYS[2], best, 1)
redis.call('HSET', KEYS[4], best, redis.call('INCR', KEYS[5]))
return {1, best}
`)

// releaseScript frees a chat its owner gives back (or that ended): 1 when
// the operator owned it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
return 1
`)

// availableScript marks an operator as taking new chats, with its
// capacity; one that was not available waits from now.
var availableScript = redis.NewScript(`
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[4], ARGV[1], redis.call('INCR', KEYS[5]))
end
return 1
`)

// available marks an operator as taking new chats (with its capacity), or
// not (away, or gone: its load stays until its chats are released).
func (a *redisAssignments) available(ctx context.Context, op string, capacity int, on bool) error {
	k := a.keys("")
	var err error
	if on {
		err = availableScript.Run(ctx, a.rdb, k, op, cmp.Or(capacity, a.capacity)).Err()
	} else {
		err = a.rdb.HDel(ctx, k[3], op).Err()
	}
	if err != nil {
		return fmt.Errorf("routing: available %s: %w", op, err)
	}
	return nil
}

// claim asks for a chat for op: it returns the owner after the step, and
// the refusal's code ("" when op owns it now).
func (a *redisAssignments) claim(ctx context.Context, client, op string) (owner, code string, err error) {
	res, err := claimScript.Run(ctx, a.rdb, a.keys(client), op, a.capacity).Slice()
	if err != nil {
		return "", "", fmt.Errorf("routing: claim %s: %w", client, err)
	}
	owner, _ = res[1].(string)
	switch res[0].(int64) {
	case 0:
		if owner == op {
			return owner, "", nil
		}
		return owner, messages.CodeAlreadyClaimed, nil
	case -1:
		return "", messages.CodeOverCapacity, nil
	}
	return owner, "", nil
}

// assign gives a chat to the cluster's next free operator: its owner, or
// "" when nobody has room.
func (a *redisAssignments) assign(ctx context.Context, client string) (string, error) {
	res, err := assignScript.Run(ctx, a.rdb, a.keys(client), a.capacity).Slice()
	if err != nil {
		return "", fmt.Errorf("routing: assign %s: %w", client, err)
	}
	owner, _ := res[1].(string)
	return owner, nil
}

// release frees a chat that op owned; false when it did not own it.
func (a *redisAssignments) release(ctx context.Context, client, op string) (bool, error) {
	n, err := releaseScript.Run(ctx, a.rdb, a.keys(client), op).Int()
	if err != nil {
		return false, fmt.Errorf("routing: release %s: %w", client, err)
	}
	return n == 1, nil
}
