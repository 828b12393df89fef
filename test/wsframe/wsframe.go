// Package wsframe writes raw client websocket frames for the tests that
// must send what no well-behaved client library would: frames announced
// and never finished, headers alone, sizes past every limit.
package wsframe

import "encoding/binary"

// Header is a client frame's header announcing n bytes, masked with the
// zero key: the payload goes on the wire as it is, so a large one needs no
// copy (servers cannot tell, nor need to).
func Header(op byte, fin bool, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch {
	case n <= 125:
		h = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		h = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	return append(h, 0, 0, 0, 0)
}
