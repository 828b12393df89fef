package actors

import "github.com/asynkron/protoactor-go/actor"

// How actors get a goroutine. protoactor's default starts a goroutine each
// time an idle mailbox gets a message; its stack then grows afresh on the
// hot path, which cost more CPU than the actors' own work at 1,000
// messages a second (docs/PERFORMANCE.md).

// throughput is how many messages a mailbox handles before yielding.
const throughput = 300

// sessionDispatcher runs a session's mailbox on the goroutine that posts to
// it (the router delivering, the transport receiving). A session's work is
// short and never blocks (its socket's writes are queued), and the
// mailbox still runs one message at a time.
var sessionDispatcher = actor.NewSynchronizedDispatcher(throughput)

// dedicated runs one actor's mailbox on a goroutine of its own, for the
// router, which is always busy. stop ends the goroutine with the system;
// a turn scheduled after that is dropped, as the actor is gone.
type dedicated struct {
	work chan func()
	stop chan struct{}
}

func newDedicated() *dedicated {
	d := &dedicated{work: make(chan func(), 4), stop: make(chan struct{})}
	go func() {
		for {
			select {
			case fn := <-d.work:
				fn()
			case <-d.stop:
				return
			}
		}
	}()
	return d
}

// Schedule is called once per idle-to-busy turn of the mailbox, so the
// channel never holds more than one.
func (d *dedicated) Schedule(fn func()) {
	select {
	case d.work <- fn:
	case <-d.stop:
	}
}

func (d *dedicated) Throughput() int { return throughput }

// close ends the goroutine; call it once, when the system has shut down.
func (d *dedicated) close() { close(d.stop) }
