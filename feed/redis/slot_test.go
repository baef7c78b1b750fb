package redis

import (
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"foo", 12182},
		{"somekey", 11058},
		{"hello", 866},
		{"{foo}.bar", 12182},   // the hash tag alone
		{"x{foo}{bar}", 12182}, // the first tag
		{"", 0},
	}
	for _, tt := range tests {
		if got := keySlot(tt.key); got != tt.want {
			t.Errorf("keySlot(%q): got %d, want %d", tt.key, got, tt.want)
		}
	}
	if keySlot("{}foo") == keySlot("foo") {
		t.Errorf(`keySlot("{}foo") equals keySlot("foo"): an empty tag must hash the whole key`)
	}
}

// TestKeySlotMatchesCluster checks keySlot against CLUSTER KEYSLOT of a real
// Redis Cluster, over stream keys as the log names them.
func TestKeySlotMatchesCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t, 3)
	c := goredis.NewClient(&goredis.Options{Addr: addrs[0]})
	t.Cleanup(func() { c.Close() })
	l := &Log{opts: Options{Prefix: "rf:"}}
	for i := range 200 {
		key := l.streamKey("room-" + strconv.Itoa(i*7919))
		want, err := c.ClusterKeySlot(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(key); got != int(want) {
			t.Errorf("keySlot(%q): got %d, want %d (CLUSTER KEYSLOT)", key, got, want)
		}
	}
}
