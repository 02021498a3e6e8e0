// Command showfile prints "PATH=CONTENT" for each path argument (or
// "PATH!ERROR"), then runs until SIGTERM: the secrets integration test
// reads what a task sees from its container's log.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for _, p := range os.Args[1:] {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("%s!%v\n", p, err)
			continue
		}
		fmt.Printf("%s=%s\n", p, b)
	}
	<-sig
}
