// Package ws serves websocket connections (RFC 6455, server side) without
// a goroutine or a buffer per idle connection: a few poller goroutines wait
// on epoll for every connection, read what has arrived and hand whole
// messages to a Handler; writes are queued per connection and leave in
// batches, one system call for all the frames a connection got within the
// write window. A Socket.IO library's transport keeps two goroutines and
// two 4 KB buffers per connection, which is most of what an idle chat
// connection costs (docs/PERFORMANCE.md).
package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// ErrNotWebSocket is returned for a request that is not a websocket handshake.
var ErrNotWebSocket = errors.New("not a websocket handshake")

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// IsUpgrade tells whether r asks for a websocket.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

// checkHandshake returns the Sec-WebSocket-Accept value for r.
func checkHandshake(r *http.Request) (string, error) {
	if !IsUpgrade(r) {
		return "", ErrNotWebSocket
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errors.New("websocket: unsupported version (13 required)")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", errors.New("websocket: bad Sec-WebSocket-Key")
	}
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
