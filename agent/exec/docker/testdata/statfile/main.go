// Command statfile is the process inside the secrets test image: for each
// path argument it prints one line "PATH CONTENT MODE UID GID ro|rw|ERR",
// where ro means opening the file for writing failed (read-only mount).
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	for _, p := range os.Args[1:] {
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("%s ERR %v\n", p, err)
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			fmt.Printf("%s ERR %v\n", p, err)
			continue
		}
		w := "rw"
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err != nil {
			w = "ro"
		} else {
			f.Close()
		}
		fmt.Printf("%s %s %o %d %d %s\n", p, data, st.Mode&0o777, st.Uid, st.Gid, w)
	}
}
