package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
)

// appendLua defines append(key, maxlen, gapOK, from, to), which
// appends the events ARGV[from..to] (one triple seq, type, data per event,
// in ascending seq order) to the stream key, atomically. The top of the
// stream is the seq of its last entry (or its last generated id when every
// entry was deleted; 0 without a stream). If the first event leaves a hole
// above the top and gapOK is not "1", nothing is written and it returns 0,
// top. Otherwise every event above the top is added and it returns 1, the
// new top: events already there count as success.
const appendLua = `
local function append(key, maxlen, gapOK, from, to)
  local top = 0
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last > 0 then
    top = tonumber(string.match(last[1][1], '^%d+'))
  elseif redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        top = tonumber(string.match(info[i + 1], '^%d+'))
      end
    end
  end
  if top + 1 < tonumber(ARGV[from]) and gapOK ~= '1' then
    return 0, top
  end
  for i = from, to, 3 do
    local seq = tonumber(ARGV[i])
    if seq > top then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, ARGV[i] .. '-0', 't', ARGV[i + 1], 'd', ARGV[i + 2])
      top = seq
    end
  end
  return 1, top
end
`

// appendScript appends a batch of events to one stream: KEYS[1] is the
// stream; ARGV is maxlen, gapOK ("1" or "0"), then the events. It returns
// {ok, top} (see appendLua).
var appendScript = goredis.NewScript(appendLua + `
local ok, top = append(KEYS[1], ARGV[1], ARGV[2], 3, #ARGV)
return {ok, top}
`)

// appendRoomsScript appends to several streams in one call, each as
// appendScript does without gapOK; a stream may appear more than once and is
// then appended to in order. ARGV is maxlen, then per key its number of
// events and the events. It returns {ok, top} per key, flattened. On a Redis
// Cluster the keys of one call must share a hash slot.
var appendRoomsScript = goredis.NewScript(appendLua + `
local res = {}
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  local ok, top = append(KEYS[k], ARGV[1], '0', i + 1, i + 3 * n)
  res[#res + 1] = ok
  res[#res + 1] = top
  i = i + 1 + 3 * n
end
return res
`)

// appendBatch runs appendScript over evs (ascending seqs of one room), split
// into calls of bounded size. It returns whether the events were appended
// and the stream's top afterwards (or the top that refused them).
func (l *Log) appendBatch(ctx context.Context, room string, evs []roomfeed.Event, gapOK bool) (bool, int64, error) {
	var top int64
	for len(evs) > 0 {
		n := chunk(evs)
		ok, t, err := appendResult(appendScript.Run(ctx, l.client, []string{l.streamKey(room)}, l.appendArgs(evs[:n], gapOK)...))
		if err != nil || !ok {
			return false, t, err
		}
		top = t
		evs = evs[n:]
		gapOK = false
	}
	l.reader.appended(ctx, []roomfeed.RoomHead{{Room: room, Seq: top}})
	return true, top, nil
}

// chunk returns how many of evs (at least one) go in one script call.
func chunk(evs []roomfeed.Event) int {
	n, size := 0, 0
	for n < len(evs) && (n == 0 || size+eventSize(evs[n]) <= batchBytes) {
		size += eventSize(evs[n])
		n++
	}
	return n
}

// eventSize is what an event counts against batchBytes.
func eventSize(ev roomfeed.Event) int { return len(ev.Data) + len(ev.Type) }

// appendArgs returns the ARGV of appendScript for evs.
func (l *Log) appendArgs(evs []roomfeed.Event, gapOK bool) []any {
	return appendEventArgs(append(make([]any, 0, 2+3*len(evs)), l.opts.MaxLen, boolArg(gapOK)), evs)
}

// appendEventArgs appends the seq, type, data triple of every event to args.
func appendEventArgs(args []any, evs []roomfeed.Event) []any {
	for _, ev := range evs {
		args = append(args, ev.Seq, ev.Type, []byte(ev.Data))
	}
	return args
}

// appendResult reads the answer of an appendScript call: whether the
// events were appended, and the stream's top.
func appendResult(cmd *goredis.Cmd) (bool, int64, error) {
	res, err := cmd.Int64Slice()
	if err != nil {
		return false, 0, err
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("append script returned %v", res)
	}
	return res[0] == 1, res[1], nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
