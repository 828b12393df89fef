package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/switchboard/switchboard/messages"
)

// Sessions across nodes. With a cluster and recovery on, every player's
// conversation lives in Redis beside its node's memory, so that a player
// whose node was stopped or killed recovers on any other:
//
//	P:epoch      string  the store's incarnation: new when Redis lost its data
//	P:s:<sid>    hash    pid, node (the owner), epoch, n (frames sequenced),
//	                     ident (what its token proved), member (its join)
//	P:l:<sid>    stream  the frames sent to it, entry id "<n>-0", MAXLEN bound
//
// Every frame with an offset for a player is sequenced by one Lua script
// (append.lua below) wherever it comes from: it numbers the frame, writes
// the offset "<epoch>.<n>" into the packet, appends it to the stream, trims
// and refreshes the TTLs, and publishes it to the owner's node channel, all
// in one step. So the stream's order is the order the player reads, and a
// frame for a player whose node is dead is kept for whichever node it
// comes back to. A reconnect on another node runs adopt.lua: it checks the
// private id, the identity, the epoch and that every frame after the offset
// is still there (their count, since ids are consecutive), makes this node
// the owner, tells the old owner, and returns the frames. Any doubt is a
// fresh session, never a guess.

// offsetSep separates a stored offset's epoch from its sequence number;
// offsets the router makes never contain it.
const offsetSep = '.'

// redisOffset splits an offset that the store made; ok false for others.
// It does not allocate.
func redisOffset(off string) (epoch string, n uint64, ok bool) {
	i := strings.IndexByte(off, offsetSep)
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(off[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return off[:i], n, true
}

var (
	registerScript = redis.NewScript(`
local e = redis.call('GET', KEYS[2])
if not e then redis.call('SET', KEYS[2], ARGV[5]); e = ARGV[5] end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'pid', ARGV[1], 'node', ARGV[2], 'epoch', e, 'n', 0, 'ident', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return e`)

	// member records a player's join (an operator's with its join
	// anchor); a record that is gone stays gone.
	memberScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'member', ARGV[1])
  if ARGV[2] then redis.call('HSET', KEYS[1], 'oa', ARGV[2]) end
end
return 1`)

	// append: ARGV head (the packet without its offset and closing
	// bracket), router offset, sender node, sender incarnation, at, event,
	// sid, maxlen, ttl ms, node channel prefix, fallback node, max bytes
	// (SWITCHBOARD_RECOVERY_MAX_BYTES, counted in packet bytes). Without a
	// record (never registered, ended, or Redis lost it) the frame goes
	// unsequenced to the node the sender believes owns the player: 0, or
	// -1 when no node heard it (neither stored nor delivered).
	appendScript = redis.NewScript(`
local node = redis.call('HGET', KEYS[1], 'node')
local hdr = '|' .. ARGV[3] .. '|'
if not node then
  if ARGV[11] ~= '' and redis.call('PUBLISH', ARGV[10] .. ARGV[11], 'C' .. hdr .. ARGV[4] .. '|0|' .. ARGV[5] .. '|' .. ARGV[6] .. '|' .. ARGV[7] .. '\n' .. ARGV[1] .. ',"' .. ARGV[2] .. '"]') > 0 then
    return 0
  end
  return -1
end
local e = redis.call('HGET', KEYS[1], 'epoch')
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local p = ARGV[1] .. ',"' .. e .. '.' .. n .. '"]'
redis.call('XADD', KEYS[2], n .. '-0', 'p', p, 'e', ARGV[6])
-- The oldest frames go past the count or the byte bound (one stays).
local b = redis.call('HINCRBY', KEYS[1], 'b', #p)
local len, trimmed = redis.call('XLEN', KEYS[2]), false
while len > 1 and (len > tonumber(ARGV[8]) or b > tonumber(ARGV[12])) do
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[2], first[1])
  b, len, trimmed = b - #first[2][2], len - 1, true
end
if trimmed then redis.call('HSET', KEYS[1], 'b', b) end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('PEXPIRE', KEYS[2], ARGV[9])
redis.call('PUBLISH', ARGV[10] .. node, 'S' .. hdr .. e .. '|' .. n .. '|' .. ARGV[5] .. '|' .. ARGV[6] .. '|' .. ARGV[7] .. '\n' .. p)
return n`)

	// adopt: ARGV pid, new node, ident, has offset ("1"/"0"), offset
	// epoch, offset n, ttl ms, node channel prefix, sid. Returns {why} or
	// {"", epoch, n, member, old node, packet1, event1, ...}.
	adoptScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'pid', 'epoch', 'n', 'member', 'ident', 'node')
if f[1] ~= ARGV[1] then return {'no such session in the store'} end
if f[2] ~= redis.call('GET', KEYS[3]) then return {'the store restarted'} end
if not f[4] then return {'the session never joined as a player'} end
if f[5] ~= ARGV[3] then return {'token does not prove the same identity'} end
local n = tonumber(f[3])
local from = 0
if ARGV[4] == '1' then
  if ARGV[5] ~= f[2] then return {'offset from another store incarnation or not stored'} end
  from = tonumber(ARGV[6])
  if not from or from > n then return {'unknown offset'} end
end
local out = {'', f[2], n, f[4], f[6]}
if n > from then
  local entries = redis.call('XRANGE', KEYS[2], (from + 1) .. '-0', '+')
  if #entries ~= n - from then return {'frames after the offset are gone'} end
  for _, en in ipairs(entries) do
    out[#out + 1] = en[2][2]
    out[#out + 1] = en[2][4]
  end
end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if f[6] ~= ARGV[2] then redis.call('PUBLISH', ARGV[8] .. f[6], 'M|' .. ARGV[2] .. '||0|0||' .. ARGV[9] .. '\n') end
return out`)

	// reloadKeys: KEYS record, then the keys a reload finds it by; ARGV
	// sid, ttl ms. Only for a record that exists.
	reloadKeysScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
return 1`)

	// forget ends a record, unless another node owns it now.
	forgetScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1`)

	// adoptOp: an operator's takeover. ARGV pid, new node, ident, node
	// channel prefix, sid, ttl ms, its join anchor as read before (it must
	// not have changed). Returns {why} or {"", member, old node}.
	adoptOpScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'pid', 'epoch', 'member', 'ident', 'node', 'oa')
if f[1] ~= ARGV[1] then return {'no such session in the store'} end
if f[2] ~= redis.call('GET', KEYS[2]) then return {'the store restarted'} end
if not f[3] or f[6] ~= ARGV[7] then return {'the operator joined again meanwhile'} end
if f[4] ~= ARGV[3] then return {'token does not prove the same identity'} end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if f[5] ~= ARGV[2] then redis.call('PUBLISH', ARGV[4] .. f[5], 'M|' .. ARGV[2] .. '||0|0||' .. ARGV[5] .. '\n') end
return {'', f[3], f[5]}`)

	allScripts = []*redis.Script{registerScript, memberScript, appendScript, adoptScript, forgetScript, feedScript, reloadKeysScript, adoptOpScript, goneScript}
)

// storeKeys names a session's keys and the store's shared ones.
type storeKeys struct{ prefix string }

func (k storeKeys) record(sid string) string { return k.prefix + ":s:" + sid }
func (k storeKeys) stream(sid string) string { return k.prefix + ":l:" + sid }
func (k storeKeys) epoch() string            { return k.prefix + ":epoch" }
func (k storeKeys) reload(key string) string { return k.prefix + ":rk:" + key }
func (k storeKeys) nodeChannel() string      { return k.prefix + ":node:" }

// identKey is what a session's token proved, as adopt.lua compares it:
// exactly what sameIdentity compares.
func identKey(id *messages.Identity) string {
	if id == nil {
		return "-"
	}
	b, _ := json.Marshal([]string{id.Role.String(), id.Subject, id.OperatorID.String(), strconv.Itoa(int(id.OperatorID.Kind)), id.Username.V, strconv.FormatBool(id.Username.Set)})
	return string(b)
}

// clusterStore is the synchronous side of the store, for the transport's
// goroutines (never an actor's): a session's record is written before its
// CONNECT reply carries the private id, and a reconnect on another node
// waits for its frames.
type clusterStore struct {
	rdb     *redis.Client
	keys    storeKeys
	node    string
	ttl     time.Duration
	maxLen  int
	timeout time.Duration
	// opGone, under claim and auto routing, tells whether an operator's
	// old node is known gone here: only then is it taken over (nil: any).
	opGone func(sid string) bool
}

func newClusterStore(o ClusterOptions, window time.Duration, maxFrames int) (*clusterStore, error) {
	opt, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cluster store: REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = time.Second, time.Second, time.Second, time.Second
	opt.MaxRetries = 1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return &clusterStore{
		rdb: redis.NewClient(opt), keys: storeKeys{o.Prefix}, node: o.NodeID,
		ttl: recordTTL(o, window), maxLen: maxFrames, timeout: time.Second,
	}, nil
}

// recordTTL keeps a dead node's sessions about as long as the other nodes
// keep its players away: the window, from when its heartbeat stopped.
func recordTTL(o ClusterOptions, window time.Duration) time.Duration {
	return window + o.DeadAfter + 2*o.Heartbeat
}

// register writes a new session's record. An error leaves the session
// recoverable on its own node only.
func (cs *clusterStore) register(sid, pid string, id *messages.Identity) error {
	ctx, cancel := context.WithTimeout(context.Background(), cs.timeout)
	defer cancel()
	keys := []string{cs.keys.record(sid), cs.keys.epoch(), cs.keys.stream(sid)}
	err := registerScript.Run(ctx, cs.rdb, keys, pid, cs.node, identKey(id), cs.ttl.Milliseconds(), newIncarnation()).Err()
	if err != nil {
		return fmt.Errorf("register session %s: %w", sid, err)
	}
	return nil
}

// adoption is what adopt.lua hands a node taking a session over.
type adoption struct {
	epoch   string
	n       uint64
	member  *Member
	oldNode string
	frames  []*messages.Frame
	// op: an operator's takeover, whose missed events come from the
	// feed after opFrom (cluster_operators.go).
	op     bool
	opFrom opAnchor
}

// adopt makes this node the owner of the session pid names, when r proves
// it and every frame after its offset is stored.
func (cs *clusterStore) adopt(r ResumeRequest) (*adoption, string) {
	sid, _, ok := strings.Cut(r.PrivateID, string(offsetSep))
	if !ok || sid == "" {
		return nil, "not a cluster private id"
	}
	hasOffset, offEpoch, offN := "0", "", uint64(0)
	if r.HasOffset {
		ep, n, ok := redisOffset(r.Offset)
		if !ok {
			return nil, "offset not from the store"
		}
		hasOffset, offEpoch, offN = "1", ep, n
	}
	ctx, cancel := context.WithTimeout(context.Background(), cs.timeout)
	defer cancel()
	keys := []string{cs.keys.record(sid), cs.keys.stream(sid), cs.keys.epoch()}
	res, err := adoptScript.Run(ctx, cs.rdb, keys, r.PrivateID, cs.node, identKey(r.Identity), hasOffset, offEpoch, offN,
		cs.ttl.Milliseconds(), cs.keys.nodeChannel(), sid).Slice()
	if err != nil {
		return nil, "store unreachable: " + err.Error()
	}
	return parseAdoption(res)
}

func parseAdoption(res []any) (*adoption, string) {
	if len(res) == 0 {
		return nil, "empty answer from the store"
	}
	if why, _ := res[0].(string); why != "" || len(res) < 5 {
		return nil, cmpOr(why, "short answer from the store")
	}
	a := &adoption{}
	a.epoch, _ = res[1].(string)
	n, _ := res[2].(int64)
	a.n = uint64(n)
	raw, _ := res[3].(string)
	a.member = &Member{}
	if err := json.Unmarshal([]byte(raw), a.member); err != nil {
		return nil, "stored member unreadable"
	}
	a.oldNode, _ = res[4].(string)
	rest := res[5:]
	if len(rest)%2 != 0 {
		return nil, "stored frames unreadable"
	}
	from := a.n - uint64(len(rest)/2)
	for i := 0; i < len(rest); i += 2 {
		p, _ := rest[i].(string)
		ev, _ := rest[i+1].(string)
		from++
		a.frames = append(a.frames, &messages.Frame{Event: ev, Packet: []byte(p), Offset: a.epoch + string(offsetSep) + strconv.FormatUint(from, 10)})
	}
	return a, ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (cs *clusterStore) close() { _ = cs.rdb.Close() }

// loadScripts makes EVALSHA work in pipelines (after a Redis restart too).
func loadScripts(ctx context.Context, rdb *redis.Client) error {
	var errs []error
	for _, s := range allScripts {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reloadTarget finds the stored session a reload's key (resume token or
// token sub) names: its private id and, as an offset, the last frame its
// client confirmed ("" when none is known: all stored frames).
func (cs *clusterStore) reloadTarget(key string) (pid, offset string, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), cs.timeout)
	defer cancel()
	sid, err := cs.rdb.Get(ctx, cs.keys.reload(key)).Result()
	if err != nil {
		return "", "", "no such session in the store"
	}
	f, err := cs.rdb.HMGet(ctx, cs.keys.record(sid), "pid", "epoch", "c").Result()
	if err != nil || len(f) != 3 {
		return "", "", "no such session in the store"
	}
	pid, _ = f[0].(string)
	epoch, _ := f[1].(string)
	if pid == "" || epoch == "" {
		return "", "", "no such session in the store"
	}
	if c, _ := f[2].(string); c != "" {
		offset = epoch + string(offsetSep) + c
	}
	return pid, offset, ""
}

// adoptOperator takes over an operator's stored session: ok false when
// the record is not an operator's (a player's takeover goes on as
// before). Its offset must be past its join's newChat list and carry a
// feed anchor; the feed read comes later (cluster_operators.go).
func (cs *clusterStore) adoptOperator(r ResumeRequest) (a *adoption, why string, ok bool) {
	sid, _, found := strings.Cut(r.PrivateID, string(offsetSep))
	if !found || sid == "" {
		return nil, "not a cluster private id", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), cs.timeout)
	defer cancel()
	oa, err := cs.rdb.HGet(ctx, cs.keys.record(sid), "oa").Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, "", false
		}
		return nil, "store unreachable: " + err.Error(), true
	}
	ja, valid := parseJoinAnchor(oa)
	if !valid {
		return nil, "stored join anchor unreadable", true
	}
	from, why := ja.replayFrom(r.Offset, r.HasOffset)
	if why != "" {
		return nil, why, true
	}
	if cs.opGone != nil && !cs.opGone(sid) {
		// Its old node may still count its socket in Redis's routing:
		// both counts could cross and give its chats away. Not moved.
		return nil, "its old node is not known gone yet", true
	}
	res, err := adoptOpScript.Run(ctx, cs.rdb, []string{cs.keys.record(sid), cs.keys.epoch()}, r.PrivateID, cs.node, identKey(r.Identity),
		cs.keys.nodeChannel(), sid, cs.ttl.Milliseconds(), oa).Slice()
	if err != nil {
		return nil, "store unreachable: " + err.Error(), true
	}
	if w, _ := res[0].(string); w != "" || len(res) < 3 {
		return nil, cmpOr(w, "short answer from the store"), true
	}
	raw, _ := res[1].(string)
	a = &adoption{member: &Member{}, op: true, opFrom: from}
	if err := json.Unmarshal([]byte(raw), a.member); err != nil {
		return nil, "stored member unreadable", true
	}
	a.oldNode, _ = res[2].(string)
	return a, "", true
}
