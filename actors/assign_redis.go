package actors

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/switchboard/switchboard/messages"
)

// redisAssignments is the cluster's one place of decision for routing
// (docs/ROUTING.md, "Across nodes"): each open, claim, assignment, release,
// transfer, status change and close is one Lua script over the owners, the
// queue, the operators' loads, capacities and availability, so that two
// nodes never give one chat to two operators. Each script publishes what
// it decided on the cluster's events channel in the same atomic step, so
// every node (the deciding one too) applies the decisions in one order to
// its own read model (assign.go) and sends the frames to its own sockets.
//
// It does blocking I/O: only its worker (routeWorker) calls it, never the
// router.
type redisAssignments struct {
	rdb     *redis.Client
	keys    []string // owner, seq, queue, load, cap, avail, away, tick, nseq, on
	channel string   // the bridge's events channel
	node    string
	// where names this node's incarnation in the operators' sockets (ON):
	// "node/incarnation".
	where    string
	capacity int
	auto     bool
}

// Keys under P:rt: — owner: client → operator; seq: client → arrival
// number; queue: sorted set of waiting clients by arrival; load, cap and
// avail (operator → tick of its last assignment, present while it takes
// chats): hashes; away: operators that said so; tick, nseq: counters.
func newRedisAssignments(rdb *redis.Client, prefix, node string, capacity int, auto bool) *redisAssignments {
	if capacity <= 0 {
		capacity = DefaultMaxChatsPerOperator
	}
	p := prefix + ":rt:"
	return &redisAssignments{
		rdb:      rdb,
		keys:     []string{p + "owner", p + "seq", p + "queue", p + "load", p + "cap", p + "avail", p + "away", p + "tick", p + "nseq", p + "on", prefix + ":feed"},
		channel:  prefix + ":events",
		node:     node,
		where:    node + "/",
		capacity: capacity,
		auto:     auto,
	}
}

// routeLib is the head of every script: its keys, how a decision is
// published, and the auto step. A decision is an envelope of kind 'R'
// that the bridge hands to the router, appended to the operators' feed
// (cluster_feed.go) and published with its entry id, as every event for
// all operators is: a node whose subscription was down reads what it
// missed from the feed, in order, once.
var routeLib = `
local OWNER, SEQ, Q, LOAD, CAP, AVAIL, AWAY, TICK, NSEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local FEED = KEYS[11]
local CH, NODE, DEFCAP, AUTO = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local function pub(ev)
  local env = 'R|' .. NODE .. '|0|0|0||\n' .. cjson.encode(ev)
  local id = redis.call('XADD', FEED, 'MAXLEN', '~', ` + strconv.Itoa(feedMaxLen) + `, '*', 'm', env)
  redis.call('PUBLISH', CH, '` + feedPrefix + `' .. id .. '\n' .. env)
end
local function seqOf(c) return tonumber(redis.call('HGET', SEQ, c) or '0') end
local function best(skip)
  local avail = redis.call('HGETALL', AVAIL)
  local b, bl, bs = nil, 0, 0
  for i = 1, #avail, 2 do
    local op, since = avail[i], tonumber(avail[i+1])
    if op ~= skip then
      local load = tonumber(redis.call('HGET', LOAD, op) or '0')
      local cap = tonumber(redis.call('HGET', CAP, op) or DEFCAP)
      if load < cap and (b == nil or load < bl or (load == bl and (since < bs or (since == bs and op < b)))) then
        b, bl, bs = op, load, since
      end
    end
  end
  return b
end
local function own(c, op)
  redis.call('ZREM', Q, c)
  redis.call('HSET', OWNER, c, op)
  redis.call('HINCRBY', LOAD, op, 1)
  if redis.call('HEXISTS', AVAIL, op) == 1 then redis.call('HSET', AVAIL, op, redis.call('INCR', TICK)) end
end
-- drain gives waiting chats, oldest first, to free operators while there
-- are both; skipC (just released by skipO) waits for another operator.
local function drain(skipC, skipO)
  if not AUTO then return end
  local q = redis.call('ZRANGE', Q, 0, -1)
  for _, c in ipairs(q) do
    local skip = nil
    if c == skipC then skip = skipO end
    local op = best(skip)
    if op == nil then
      if skip == nil or best(nil) == nil then return end
    else
      own(c, op)
      pub({t='assign', c=c, o=op, s=seqOf(c)})
    end
  end
end
`

// routeHereLib follows routeLib in the scripts that follow operators'
// sockets: ON is a hash "node/incarnation|operator" → "sockets up", each
// field written by that node alone.
const routeHereLib = `
local ON = KEYS[10]
local function sockets(op)
  local f = redis.call('HGETALL', ON)
  local n, up = 0, 0
  for i = 1, #f, 2 do
    local bar = string.find(f[i], '|', 1, true)
    if bar and string.sub(f[i], bar + 1) == op then
      local a, b = string.match(f[i+1], '^(%d+) (%d+)$')
      n, up = n + tonumber(a), up + tonumber(b)
    end
  end
  return n, up
end
local function avail(op)
  if redis.call('SISMEMBER', AWAY, op) == 0 and redis.call('HEXISTS', AVAIL, op) == 0 then
    redis.call('HSET', AVAIL, op, redis.call('INCR', TICK))
  end
end
-- settleOps follows each operator's sockets: none up, no new chats; none
-- at all, its chats go back to the queue. The chats of all the operators
-- gone go back together, in their original order.
local function settleOps(ops)
  local gone = {}
  for op in pairs(ops) do
    local n, up = sockets(op)
    if n == 0 then
      gone[op] = true
      redis.call('HDEL', AVAIL, op)
      redis.call('SREM', AWAY, op)
    elseif up == 0 then
      redis.call('HDEL', AVAIL, op)
    else
      avail(op)
    end
  end
  local released = {}
  if next(gone) == nil then return released end
  local owners = redis.call('HGETALL', OWNER)
  for i = 1, #owners, 2 do
    if gone[owners[i+1]] then table.insert(released, {seqOf(owners[i]), owners[i], owners[i+1]}) end
  end
  table.sort(released, function(x, y) return x[1] < y[1] end)
  for _, m in ipairs(released) do
    redis.call('HDEL', OWNER, m[2])
    redis.call('ZADD', Q, m[1], m[2])
    pub({t='queue', c=m[2], s=m[1], by=m[3], p=redis.call('ZRANK', Q, m[2]) + 1})
  end
  for op in pairs(gone) do redis.call('HDEL', LOAD, op) end
  return released
end
`

// Each script answers {code, owner}: code 1 done, 0 nothing to do (owner:
// the current owner), and below 0 a refusal (routeCodes).
var (
	openScript = redis.NewScript(routeLib + `
local c = ARGV[5]
if redis.call('HEXISTS', SEQ, c) == 1 then return {0, redis.call('HGET', OWNER, c) or ''} end
local s = redis.call('INCR', NSEQ)
redis.call('HSET', SEQ, c, s)
local op = nil
if AUTO and redis.call('ZCARD', Q) == 0 then op = best(nil) end
if op then
  own(c, op)
  pub({t='open', c=c, s=s, o=op})
  return {1, op}
end
redis.call('ZADD', Q, s, c)
pub({t='open', c=c, s=s, p=redis.call('ZRANK', Q, c) + 1})
drain(nil, nil)
return {1, redis.call('HGET', OWNER, c) or ''}
`)
	closeScript = redis.NewScript(routeLib + `
local c = ARGV[5]
local s = seqOf(c)
if s == 0 then return {0, ''} end
local op = redis.call('HGET', OWNER, c)
if op then
  redis.call('HDEL', OWNER, c)
  redis.call('HINCRBY', LOAD, op, -1)
end
redis.call('ZREM', Q, c)
redis.call('HDEL', SEQ, c)
pub({t='close', c=c, s=s})
drain(nil, nil)
return {1, ''}
`)
	claimScript = redis.NewScript(routeLib + `
local c, op = ARGV[5], ARGV[6]
local owner = redis.call('HGET', OWNER, c)
if owner then return {0, owner} end
if not redis.call('ZSCORE', Q, c) then return {-2, ''} end
local load = tonumber(redis.call('HGET', LOAD, op) or '0')
local cap = tonumber(redis.call('HGET', CAP, op) or DEFCAP)
if load >= cap then return {-1, ''} end
own(c, op)
pub({t='assign', c=c, o=op, s=seqOf(c)})
return {1, op}
`)
	releaseScript = redis.NewScript(routeLib + `
local c, op = ARGV[5], ARGV[6]
local s = seqOf(c)
if s == 0 then return {-2, ''} end
if redis.call('HGET', OWNER, c) ~= op then return {-3, redis.call('HGET', OWNER, c) or ''} end
redis.call('HDEL', OWNER, c)
redis.call('HINCRBY', LOAD, op, -1)
redis.call('ZADD', Q, s, c)
pub({t='queue', c=c, s=s, by=op, p=redis.call('ZRANK', Q, c) + 1})
drain(c, op)
return {1, ''}
`)
	transferScript = redis.NewScript(routeLib + `
local c, op, to = ARGV[5], ARGV[6], ARGV[7]
local s = seqOf(c)
if s == 0 then return {-2, ''} end
if redis.call('HGET', OWNER, c) ~= op then return {-3, redis.call('HGET', OWNER, c) or ''} end
if to == op then return {0, op} end
if redis.call('HEXISTS', AVAIL, to) == 0 then return {-4, ''} end
local load = tonumber(redis.call('HGET', LOAD, to) or '0')
local cap = tonumber(redis.call('HGET', CAP, to) or DEFCAP)
if load >= cap then return {-1, ''} end
redis.call('HINCRBY', LOAD, op, -1)
own(c, to)
pub({t='assign', c=c, o=to, s=s, by=op})
drain(nil, nil)
return {1, to}
`)
	// hereScript records how many sockets an operator has on one node
	// (ARGV[6], "node/incarnation") and how many of them are up, as that
	// node counts them: Redis adds the nodes up, so an operator moving
	// from one node to another is never taken for gone in between. With
	// no socket left anywhere its chats go back to the queue in their
	// order; with none up it takes no new chats. ARGV[9]: its capacity
	// (0: unchanged).
	hereScript = redis.NewScript(routeLib + routeHereLib + `
local op, where, n, up, cap = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if cap > 0 then redis.call('HSET', CAP, op, cap) end
local field = where .. '|' .. op
if n > 0 then redis.call('HSET', ON, field, n .. ' ' .. up) else redis.call('HDEL', ON, field) end
local released = settleOps({[op]=true})
if #released == 0 and n > 0 then
  pub({t='status', o=op, away=redis.call('SISMEMBER', AWAY, op) == 1, cap=tonumber(redis.call('HGET', CAP, op) or '0')})
end
drain(nil, nil)
return {1, ''}
`)
	// nodeScript settles the operators of a node incarnation that is gone
	// (ARGV[5]): "down" (it stopped beating) marks its sockets down, so
	// its operators take no new chats; "gone" (the recovery window is
	// over) forgets them, and the chats of operators left with no socket
	// anywhere go back to the queue, all in their original order. Every
	// live node asks for both; the second asking finds nothing to do.
	nodeScript = redis.NewScript(routeLib + routeHereLib + `
local where, what = ARGV[5], ARGV[6]
local f = redis.call('HGETALL', ON)
local ops = {}
local prefix = where .. '|'
for i = 1, #f, 2 do
  if string.sub(f[i], 1, #prefix) == prefix then
    ops[string.sub(f[i], #prefix + 1)] = true
    if what == 'gone' then
      redis.call('HDEL', ON, f[i])
    else
      redis.call('HSET', ON, f[i], string.match(f[i+1], '^%d+') .. ' 0')
    end
  end
end
if next(ops) == nil then return {0, ''} end
settleOps(ops)
drain(nil, nil)
return {1, ''}
`)
	// statusScript is an operator's setStatus: ARGV[6] away or available
	// (it takes chats again if a socket of it is up).
	statusScript = redis.NewScript(routeLib + routeHereLib + `
local op, what = ARGV[5], ARGV[6]
if what == 'away' then
  redis.call('SADD', AWAY, op)
  redis.call('HDEL', AVAIL, op)
else
  redis.call('SREM', AWAY, op)
  local _, up = sockets(op)
  if up > 0 then avail(op) end
end
pub({t='status', o=op, away=redis.call('SISMEMBER', AWAY, op) == 1, cap=tonumber(redis.call('HGET', CAP, op) or '0')})
drain(nil, nil)
return {1, ''}
`)
	watchScript = redis.NewScript(routeLib + `
local c, op, on = ARGV[5], ARGV[6], ARGV[7] == '1'
local s = seqOf(c)
if s == 0 then return {-2, ''} end
pub({t='watch', c=c, o=op, s=s, on=on})
return {1, ''}
`)
)

// routeCodes are the scripts' refusals.
var routeCodes = map[int64]string{
	-1: messages.CodeOverCapacity,
	-2: messages.CodeUnknownChat,
	-3: messages.CodeNotYours,
	-4: messages.CodeOperatorAway,
}

// run executes one script with the common arguments first.
func (a *redisAssignments) run(ctx context.Context, s *redis.Script, args ...any) (code int64, owner string, err error) {
	argv := append([]any{a.channel, a.node, a.capacity, boolArg(a.auto)}, args...)
	res, err := s.Run(ctx, a.rdb, a.keys, argv...).Slice()
	if err != nil {
		return 0, "", err
	}
	if len(res) != 2 {
		return 0, "", fmt.Errorf("routing script answered %v", res)
	}
	code, _ = res[0].(int64)
	owner, _ = res[1].(string)
	return code, owner, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// routeJob is one decision for the worker; what it answers goes back to
// the router as a *routeDone with the same job.
type routeJob struct {
	kind   routeKind
	client string
	op     string
	arg    string // transfer: the target; status: what
	cap    int
	flag   bool // watch: on
	// n, up: here, the operator's sockets on this node and how many are up.
	n, up int
	// where: node, the gone node incarnation ("node/incarnation").
	where string
	// origin, event: the request to answer (nil origin: none).
	origin *messages.Origin
	event  string
	// join: origin is an operator's join, accepted whatever the answer.
	join bool
}

type routeKind uint8

const (
	routeOpen routeKind = iota
	routeClose
	routeClaim
	routeRelease
	routeTransfer
	routeStatus
	routeWatch
	routeHere
	routeNode
)

// routeDone is a decision's answer: code is "" when accepted.
type routeDone struct {
	job   *routeJob
	code  string
	owner string
	err   error
}

// do runs a job's script.
func (a *redisAssignments) do(ctx context.Context, j *routeJob) *routeDone {
	var n int64
	var owner string
	var err error
	switch j.kind {
	case routeOpen:
		n, owner, err = a.run(ctx, openScript, j.client)
	case routeClose:
		n, owner, err = a.run(ctx, closeScript, j.client)
	case routeClaim:
		n, owner, err = a.run(ctx, claimScript, j.client, j.op)
		if err == nil && n == 0 && owner != j.op {
			return &routeDone{job: j, code: messages.CodeAlreadyClaimed, owner: owner}
		}
	case routeRelease:
		n, owner, err = a.run(ctx, releaseScript, j.client, j.op)
	case routeTransfer:
		n, owner, err = a.run(ctx, transferScript, j.client, j.op, j.arg)
	case routeStatus:
		n, owner, err = a.run(ctx, statusScript, j.op, j.arg)
	case routeHere:
		n, owner, err = a.run(ctx, hereScript, j.op, a.where, j.n, j.up, j.cap)
	case routeNode:
		n, owner, err = a.run(ctx, nodeScript, j.where, j.arg)
	case routeWatch:
		n, owner, err = a.run(ctx, watchScript, j.client, j.op, boolArg(j.flag))
	}
	if err != nil {
		return &routeDone{job: j, err: fmt.Errorf("routing %d %s: %w", j.kind, j.client, err)}
	}
	return &routeDone{job: j, code: routeCodes[n], owner: owner}
}

// routeWorker runs the scripts in order on a goroutine and connection of
// its own: the router hands it jobs without waiting and gets each answer
// back as a message. One connection keeps the decisions of this node in
// the order the router asked for them.
type routeWorker struct {
	url, prefix, node string
	// inc is this process's cluster incarnation (the bridge's).
	inc      string
	capacity int
	auto     bool
	jobs     chan *routeJob
	started  bool
}

// routeJobQueue bounds the decisions waiting for Redis; past it requests
// are refused rather than the router blocked.
const routeJobQueue = 4096

func (w *routeWorker) start(send func(any)) error {
	opt, err := redis.ParseURL(w.url)
	if err != nil {
		return fmt.Errorf("routing: REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	// No retry: a script whose answer timed out may have run, and run
	// again it could answer otherwise (a release would be not_yours).
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	a := newRedisAssignments(redis.NewClient(opt), w.prefix, w.node, w.capacity, w.auto)
	a.where = w.node + "/" + w.inc
	w.jobs = make(chan *routeJob, routeJobQueue)
	w.started = true
	go func() {
		ctx := context.Background()
		for j := range w.jobs {
			send(a.do(ctx, j))
		}
	}()
	return nil
}

// submit hands a job over without blocking; false when the queue is full.
func (w *routeWorker) submit(j *routeJob) bool {
	select {
	case w.jobs <- j:
		return true
	default:
		return false
	}
}
