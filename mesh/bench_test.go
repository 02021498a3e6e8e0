package mesh

import (
	"io"
	"net"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const benchMsgSize = 64

// echoServer echoes every byte until EOF, then closes the connection.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newEchoServer(b *testing.B) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(c, c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// benchTarget returns the address to dial: the echo server itself, or a
// mesh port in front of it.
func benchTarget(b *testing.B, proxied bool) string {
	srv := newEchoServer(b)
	if !proxied {
		return srv.ln.Addr().String()
	}
	port := freePort(b, "127.0.0.1")
	m := New("127.0.0.1", nil)
	b.Cleanup(func() { m.Close() })
	if err := m.Update([]*swarmpb.ServiceEndpoint{endpoint("tcp", port, srv.ln.Addr().String())}); err != nil {
		b.Fatal(err)
	}
	return hostPort("127.0.0.1", port)
}

func roundTrip(c net.Conn, req, resp []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	_, err := io.ReadFull(c, resp)
	return err
}

func benchTCP(b *testing.B, proxied bool) {
	addr := benchTarget(b, proxied)

	// Request/response round trips over one persistent connection.
	b.Run("RoundTrip", func(b *testing.B) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		req, resp := make([]byte, benchMsgSize), make([]byte, benchMsgSize)
		b.SetBytes(2 * benchMsgSize)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := roundTrip(c, req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})

	// The same with GOMAXPROCS persistent connections in parallel.
	b.Run("RoundTripParallel", func(b *testing.B) {
		b.SetBytes(2 * benchMsgSize)
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			req, resp := make([]byte, benchMsgSize), make([]byte, benchMsgSize)
			for pb.Next() {
				if err := roundTrip(c, req, resp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	// Bulk transfer: 32 KiB chunks streamed through and echoed back.
	b.Run("Stream32K", func(b *testing.B) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		const chunk = 32 << 10
		b.SetBytes(chunk)
		b.ResetTimer()
		werr := make(chan error, 1)
		go func() {
			buf := make([]byte, chunk)
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		if _, err := io.CopyN(io.Discard, c, int64(b.N)*chunk); err != nil {
			b.Fatal(err)
		}
		if err := <-werr; err != nil {
			b.Fatal(err)
		}
	})

	// A new connection per request, HTTP/1.0 style: write, half-close,
	// read the response to EOF.
	b.Run("ConnPerRequest", func(b *testing.B) {
		req, resp := make([]byte, benchMsgSize), make([]byte, benchMsgSize)
		for i := 0; i < b.N; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadFull(c, resp); err != nil {
				b.Fatal(err)
			}
			if n, err := c.Read(resp); n != 0 || err != io.EOF {
				b.Fatalf("want EOF, got %d %v", n, err)
			}
			c.Close()
		}
	})
}

func BenchmarkTCPProxy(b *testing.B)  { benchTCP(b, true) }
func BenchmarkTCPDirect(b *testing.B) { benchTCP(b, false) }
