// Package retry is the one way raftswarm waits between attempts: a capped,
// doubling backoff for loops that reconnect or resend, and a sleep that
// ends with its context. Every retry loop in the project uses it, so the
// policy (how fast to start, how slow to get, when to give up) is read in
// one place.
//
// retry imports only the standard library.
package retry
