// whoami is a test task: on every TCP connection to :80 it answers one
// line, "client=ADDR proxy=SRC", where ADDR is the peer it sees and SRC the
// source a PROXY protocol v2 header carried ("-" without one), then closes.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"time"

	"github.com/raftswarm/raftswarm/mesh"
)

func main() {
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	proxy := "-"
	// A PROXY v2 header starts with \r\n\r\n\0; without one the client
	// sends nothing, so wait briefly for it.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if b, err := r.Peek(5); err == nil && bytes.Equal(b, []byte("\r\n\r\n\x00")) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if src, _, err := mesh.ReadProxyV2(r); err == nil {
			proxy = src.String()
		} else {
			proxy = "error:" + err.Error()
		}
	}
	fmt.Fprintf(c, "client=%s proxy=%s\n", c.RemoteAddr(), proxy)
}
