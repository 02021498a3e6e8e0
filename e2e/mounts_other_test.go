//go:build !linux

package e2e

// unmountBelow does nothing where the daemons mount nothing.
func unmountBelow(string) error { return nil }
