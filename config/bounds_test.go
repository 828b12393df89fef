package config

import (
	"testing"
	"time"
)

// What a peer may make the server hold has documented defaults, each of
// which can be set; the memory budget follows the machine unless given.
func TestHoldingBounds(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBufferedBytes != 256<<20 || c.MessageTimeout != 30*time.Second || c.ConnectTimeout != 45*time.Second {
		t.Fatalf("defaults: buffered %d, message timeout %s, connect timeout %s", c.MaxBufferedBytes, c.MessageTimeout, c.ConnectTimeout)
	}
	if auto := autoMemoryLimit(); c.MemoryLimit != auto || (memTotal() > 0 && (auto <= 0 || auto > memTotal())) {
		t.Fatalf("memory limit %d, auto %d, RAM %d", c.MemoryLimit, auto, memTotal())
	}
	c, err = Load([]string{"--message-timeout", "2s", "--memory-limit", "2GiB"}, env(
		"SWITCHBOARD_MAX_BUFFERED_BYTES", "67108864", "SWITCHBOARD_CONNECT_TIMEOUT", "5s"))
	if err != nil || c.MaxBufferedBytes != 64<<20 || c.MessageTimeout != 2*time.Second || c.ConnectTimeout != 5*time.Second || c.MemoryLimit != 2<<30 {
		t.Fatalf("set: %+v %v", c, err)
	}
	// Input alone may not fill the memory budget: auto is half of it when
	// that is under 256 MiB, and never under one largest message.
	for limit, want := range map[string]int{"256MiB": 128 << 20, "2GiB": 256 << 20, "0": 256 << 20, "64MiB": 0} {
		// Images of 30 MB: one largest message (60 MB) is more than half
		// of 64 MiB.
		c, err := Load(nil, env("SWITCHBOARD_MEMORY_LIMIT", limit, "SWITCHBOARD_MAX_BUFFERED_BYTES", "auto", "SWITCHBOARD_MAX_IMAGE_BYTES", "30000000"))
		if err != nil {
			t.Fatalf("SWITCHBOARD_MEMORY_LIMIT=%s: %v", limit, err)
		}
		if want == 0 {
			want = c.MaxPayload()
		}
		if c.MaxBufferedBytes != want {
			t.Fatalf("SWITCHBOARD_MEMORY_LIMIT=%s: buffered %d, want %d", limit, c.MaxBufferedBytes, want)
		}
	}
	for val, want := range map[string]int64{"0": 0, "268435456": 256 << 20, "512MiB": 512 << 20, "auto": autoMemoryLimit()} {
		c, err := Load(nil, env("SWITCHBOARD_MEMORY_LIMIT", val))
		if err != nil || c.MemoryLimit != want {
			t.Fatalf("SWITCHBOARD_MEMORY_LIMIT=%s: %v, want %d", val, err, want)
		}
	}
}
