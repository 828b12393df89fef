package transport

import "time"

// SetParkAfter changes how long a GET waits before it is parked, and how
// quiet a session must be for its POST's connection to be parked, until
// the returned func restores it. Call it before starting a server.
func SetParkAfter(d time.Duration) (restore func()) {
	old := parkAfter
	parkAfter = d
	return func() { parkAfter = old }
}
