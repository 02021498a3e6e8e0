// Command tlscost measures what one data-path connection between two node
// daemons costs in TLS: mutual TLS 1.3 with ECDSA P-256 certificates (as
// package ca issues them), session resumption, both ends in this process
// over loopback, with Go's default key shares (hybrid X25519MLKEM768) and
// with X25519 only. It prints wall time and CPU (both ends) per connection.
// Used for BENCHMARKS.md section 9.
//
//	go run ./bench/discovery/tlscost [-n 1500]
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"syscall"
	"time"
)

// cert issues a P-256 certificate for name, self-signed when ca is nil.
func cert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if ca == nil {
		ca, caKey = t, k
	}
	der, _ := x509.CreateCertificate(rand.Reader, t, ca, &k.PublicKey, caKey)
	c, _ := x509.ParseCertificate(der)
	return c, k, der
}

// cpu is this process's user+system CPU time.
func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	n := flag.Int("n", 1500, "connections per configuration")
	flag.Parse()
	ca, caKey, _ := cert(nil, nil, "ca", true)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, sk, sder := cert(ca, caKey, "server", false)
	_, ck, cder := cert(ca, caKey, "client", false)
	for _, curves := range [][]tls.CurveID{nil, {tls.X25519}} {
		scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{sder}, PrivateKey: sk}}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, CurvePreferences: curves}
		ccfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{cder}, PrivateKey: ck}}, RootCAs: pool, ServerName: "server", ClientSessionCache: tls.NewLRUClientSessionCache(16), CurvePreferences: curves}
		ln, _ := tls.Listen("tcp", "127.0.0.1:0", scfg)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { c.(*tls.Conn).Handshake(); c.Write([]byte("x")); io.Copy(io.Discard, c); c.Close() }()
			}
		}()
		resumed := 0
		c0, t0 := cpu(), time.Now()
		for i := 0; i < *n; i++ {
			c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
			if err != nil {
				fail(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				fail(err)
			}
			if c.ConnectionState().DidResume {
				resumed++
			}
			c.Close()
		}
		fmt.Printf("curves %v: %d connections (%d resumed), wall %v each, CPU (both sides) %v each\n", curves, *n, resumed, time.Since(t0)/time.Duration(*n), (cpu()-c0)/time.Duration(*n))
		ln.Close()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tlscost:", err)
	os.Exit(1)
}
