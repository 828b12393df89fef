// Package adversarial attacks a real Switchboard process the way a hostile
// peer would (stalled frames, huge polling bodies, unfinished binary
// events, unread pongs, floods, idle and slow HTTP connections, bad close
// frames) while an honest operator and player chat beside it. Each test
// asserts the server's resident memory stays within a stated budget, the
// bystander loses nothing and stays fast, and the attacker gets the answer
// the protocol prescribes. docs/SECURITY.md cites these tests.
package adversarial
