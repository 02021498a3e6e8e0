package e2e

import (
	"os"
	"sort"
	"strings"
	"syscall"
)

// unmountBelow detaches every mount at or below dir, deepest first: a
// daemon killed by the harness leaves the tmpfs it keeps its tasks'
// secrets on mounted in its state dir.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := f[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var first error
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && first == nil {
			first = err
		}
	}
	return first
}
