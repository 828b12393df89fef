//go:build !unix

package loadtest

// raiseFileLimit has nothing to raise here; 0 means unknown.
func raiseFileLimit() (int, error) { return 0, nil }
