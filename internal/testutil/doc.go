// Package testutil holds the one polling helper tests use instead of sleeps.
//
// testutil imports only the standard library.
package testutil
