// Package test holds Switchboard's end-to-end suites: the Go suite here
// drives an in-process server over a real port with a Go Socket.IO client;
// e2e/ drives the built binary with the npm socket.io-client.
package test
