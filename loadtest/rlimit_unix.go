//go:build unix

package loadtest

import (
	"fmt"
	"syscall"
)

// raiseFileLimit lifts the soft open-file limit to the hard one (each
// participant holds a socket) and returns the limit now in force.
func raiseFileLimit() (int, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur < r.Max {
		want := r.Cur
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return int(want), fmt.Errorf("setrlimit %d: %w", r.Max, err)
		}
	}
	return int(min(r.Cur, 1<<30)), nil
}
