// Package identity generates object IDs.
//
// identity imports only the standard library.
package identity
