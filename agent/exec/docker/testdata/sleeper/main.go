// Command sleeper is the process inside the docker executor's test image.
// With no arguments it runs until SIGTERM and then exits 0; "exit N" exits
// with code N at once; "listen PORT" also serves TCP on PORT, writing
// "hello <TASK_ID>\n" to every connection; "health" is a healthcheck
// command that exits 0; "print N" writes "out 1".."out N" to stdout and
// "err 1" to stderr, then runs until SIGTERM and prints "bye" (log tests).
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "exit" {
		code, _ := strconv.Atoi(os.Args[2])
		os.Exit(code)
	}
	if len(os.Args) == 2 && os.Args[1] == "health" {
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == "listen" {
		l, err := net.Listen("tcp", ":"+os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "hello %s\n", os.Getenv("TASK_ID"))
				c.Close()
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) == 3 && os.Args[1] == "print" {
		n, _ := strconv.Atoi(os.Args[2])
		for i := 1; i <= n; i++ {
			fmt.Printf("out %d\n", i)
		}
		fmt.Fprintln(os.Stderr, "err 1")
		<-sig
		fmt.Println("bye")
		return
	}
	<-sig
}
