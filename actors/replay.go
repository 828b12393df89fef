package actors

import "github.com/switchboard/switchboard/messages"

// replayLog is what a session keeps for Socket.IO connection-state
// recovery: the frames with an offset that were written to (or, while
// away, held for) its socket, oldest first, and the offset of the last
// frame it dropped. A reconnecting client names the last offset it saw;
// everything after it is replayed, or, when anything after it is gone,
// nothing is (the client starts a fresh session: never a gap).
//
// Frames are dropped in two ways. A heartbeat's answer proves the client
// read everything written before the ping (one TCP stream, in order), so
// those frames are confirmed and dropped: an idle socket's log stays empty
// however long it lives, unlike Socket.IO's purge by age (socket.io
// #5282). Past the count or byte bound the oldest are dropped too, which
// only makes an older offset unrecoverable.
type replayLog struct {
	entries []logEntry
	bytes   int
	// base is the offset of the newest dropped frame: a client that saw
	// exactly up to it has missed everything in entries.
	base string
	// dropped tells whether any frame was ever dropped: a client that saw
	// no frame at all (no offset) can only recover if none was.
	dropped   bool
	maxFrames int
	maxBytes  int
}

type logEntry struct {
	frame *messages.Frame
	// seq is the session's write count when the frame was written to the
	// current connection (0: not written, held while away).
	seq uint64
}

func newReplayLog(maxFrames, maxBytes int) *replayLog {
	return &replayLog{maxFrames: maxFrames, maxBytes: maxBytes}
}

// add appends a frame; it reports false when the bounds dropped a frame
// that was never written (the client can no longer be brought up to date).
func (l *replayLog) add(f *messages.Frame, seq uint64) bool {
	l.entries = append(l.entries, logEntry{frame: f, seq: seq})
	l.bytes += len(f.Packet)
	intact := true
	for len(l.entries) > 1 && (len(l.entries) > l.maxFrames || l.bytes > l.maxBytes) {
		if l.entries[0].seq == 0 {
			intact = false
		}
		l.dropFirst()
	}
	return intact
}

// confirm drops the frames written at or before write number seq.
func (l *replayLog) confirm(seq uint64) {
	for len(l.entries) > 0 && l.entries[0].seq != 0 && l.entries[0].seq <= seq {
		l.dropFirst()
	}
}

func (l *replayLog) dropFirst() {
	e := l.entries[0]
	l.entries[0] = logEntry{}
	l.entries = l.entries[1:]
	l.bytes -= len(e.frame.Packet)
	l.base, l.dropped = e.frame.Offset, true
	if len(l.entries) == 0 {
		l.entries = nil // let the backing array go
	}
}

// after returns the frames after offset, or ok false when they cannot all
// be known. hasOffset false means the client saw no frame yet.
func (l *replayLog) after(offset string, hasOffset bool) (missed []logEntry, ok bool) {
	switch {
	case !hasOffset:
		return l.entries, !l.dropped
	case l.dropped && offset == l.base:
		return l.entries, true
	}
	for i := len(l.entries) - 1; i >= 0; i-- {
		if l.entries[i].frame.Offset == offset {
			return l.entries[i+1:], true
		}
	}
	return nil, false
}
