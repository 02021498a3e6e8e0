// Command imagefetch times shipping an image to a node whose engine lacks
// it, the way raftswarm does it, against `docker save | docker load` on the
// same machine.
//
// It starts a second dockerd beside the machine's engine (own data root,
// exec root, pid file, socket, empty config file, own bridge; vfs storage,
// no iptables changes), builds on the first engine an image FROM scratch
// holding -size MB of random (incompressible) bytes, and per run:
//
//   - baseline: `docker save ID | docker -H SECOND load`, then removes the
//     image from the second engine;
//   - raftswarm: the second engine's executor prepares a task pinned to the
//     image's ID (Controller.Prepare: the image is missing, so it is fetched
//     from the first engine's executor (SaveImage) over a TLS 1.3 loopback
//     connection standing in for the nodes' data-path tunnel, rewritten so
//     it tags nothing, loaded, checked by ID and tagged), then removes the
//     container and the image.
//
// Everything it creates is removed at exit, also on failure or Ctrl-C.
//
//	sudo go run ./bench/imagefetch [-size 200] [-runs 3]
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	agentexec "github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/docker"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func main() {
	size := flag.Int("size", 200, "image size in MB")
	runs := flag.Int("runs", 3, "runs of each method")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	if err := run(ctx, *size, *runs, &cleanups); err != nil {
		fmt.Fprintln(os.Stderr, "imagefetch:", err)
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		os.Exit(1)
	}
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sh(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

func run(ctx context.Context, sizeMB, runs int, cleanups *[]func()) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it starts a second dockerd and a bridge)")
	}
	sfx := suffix()
	dir := filepath.Join(os.TempDir(), "rsbench-"+sfx)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	*cleanups = append(*cleanups, func() { os.RemoveAll(dir) })

	// The image, on the first engine only.
	fmt.Fprintf(os.Stderr, "building a %d MB image...\n", sizeMB)
	bctx := filepath.Join(dir, "ctx")
	if err := os.MkdirAll(bctx, 0o700); err != nil {
		return err
	}
	blob := make([]byte, sizeMB<<20)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(filepath.Join(bctx, "blob"), blob, 0o644); err != nil {
		return err
	}
	blob = nil
	if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte("FROM scratch\nCOPY blob /blob\nCMD [\"/blob\"]\n"), 0o644); err != nil {
		return err
	}
	tag := "raftswarm-bench/imagefetch:" + sfx
	build := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, bctx)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build: %v %s", err, out)
	}
	*cleanups = append(*cleanups, func() { _, _ = sh(context.Background(), "docker", "rmi", "-f", tag) })
	id, err := sh(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", tag)
	if err != nil {
		return err
	}

	hostB, err := secondEngine(ctx, dir, sfx, cleanups)
	if err != nil {
		return err
	}
	execA, err := docker.New("", "bench-a")
	if err != nil {
		return err
	}
	defer execA.Close()
	execB, err := docker.New(hostB, "bench-b")
	if err != nil {
		return err
	}
	defer execB.Close()
	tunnel, err := newTunnel(execA)
	if err != nil {
		return err
	}
	defer tunnel.Close()
	execB.SetImageFetcher(tunnel)

	var base, baseCreate, fetch, prepare []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("docker save %s | docker -H %s load -q", id, hostB))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("docker save | docker load: %v %s", err, out)
		}
		base = append(base, time.Since(start))
		cname := "rsbench-" + suffix()
		if _, err := sh(ctx, "docker", "-H", hostB, "create", "--name", cname, id); err != nil {
			return err
		}
		baseCreate = append(baseCreate, time.Since(start))
		if _, err := sh(ctx, "docker", "-H", hostB, "rm", "-f", cname); err != nil {
			return err
		}
		if _, err := sh(ctx, "docker", "-H", hostB, "rmi", "-f", id); err != nil {
			return err
		}

		task := &swarmpb.Task{Id: "bench" + suffix(), ServiceId: "s", ServiceName: "bench", Slot: 1,
			Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: tag, ImageId: id}}}
		ctl, err := execB.Controller(task)
		if err != nil {
			return err
		}
		start = time.Now()
		if err := ctl.Prepare(ctx); err != nil {
			return fmt.Errorf("prepare on the second engine: %w", err)
		}
		prepare = append(prepare, time.Since(start))
		note := ""
		if n, ok := ctl.(agentexec.PrepareNoter); ok {
			note = n.PrepareNote()
		}
		// "image fetched from node N (SIZE in DURATION)": the fetch alone,
		// from the request to the verified load.
		f, err := noteDuration(note)
		if err != nil {
			return err
		}
		fetch = append(fetch, f)
		got, err := sh(ctx, "docker", "-H", hostB, "image", "inspect", "--format", "{{.Id}}", tag)
		if err != nil || got != id {
			return fmt.Errorf("second engine has %s as %q (%v), want %s", tag, got, err, id)
		}
		if err := ctl.Remove(ctx); err != nil {
			return err
		}
		if _, err := sh(ctx, "docker", "-H", hostB, "rmi", "-f", tag); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "run %d: docker save|load %s (+create %s), raftswarm fetch %s (Prepare with create %s)\n", i+1,
			base[i].Round(time.Millisecond), baseCreate[i].Round(time.Millisecond), fetch[i], prepare[i].Round(time.Millisecond))
	}
	fmt.Printf("image %d MB (%s), %d runs, second engine on vfs\n", sizeMB, id[:19], runs)
	fmt.Printf("image shipped:      docker save | docker load  median %s  (%s)\n", median(base).Round(time.Millisecond), list(base))
	fmt.Printf("                    raftswarm fetch over TLS   median %s  (%s)\n", median(fetch), list(fetch))
	fmt.Printf("container created:  save | load + docker create median %s  (%s)\n", median(baseCreate).Round(time.Millisecond), list(baseCreate))
	fmt.Printf("                    raftswarm Prepare          median %s  (%s)\n", median(prepare).Round(time.Millisecond), list(prepare))
	fmt.Printf("ratio raftswarm / docker: shipped %.2f, created %.2f\n",
		float64(median(fetch))/float64(median(base)), float64(median(prepare))/float64(median(baseCreate)))
	return nil
}

// noteDuration reads the duration out of a controller's note.
func noteDuration(note string) (time.Duration, error) {
	i := strings.LastIndex(note, " in ")
	if i < 0 || !strings.HasSuffix(note, ")") {
		return 0, fmt.Errorf("the image was not fetched: %q", note)
	}
	return time.ParseDuration(note[i+4 : len(note)-1])
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func list(d []time.Duration) string {
	var parts []string
	for _, x := range d {
		parts = append(parts, x.Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

// secondEngine starts a dockerd of its own and returns its host URL.
func secondEngine(ctx context.Context, dir, sfx string, cleanups *[]func()) (string, error) {
	bridge := "rsbench" + sfx
	host := "unix://" + filepath.Join(dir, "d.sock")
	addrs, _ := sh(ctx, "ip", "-4", "addr")
	subnet := ""
	for i := 0; i < 200 && subnet == ""; i++ {
		if c := fmt.Sprintf("10.214.%d.", i); !strings.Contains(addrs, c) {
			subnet = c + "1/24"
		}
	}
	*cleanups = append(*cleanups, func() { _, _ = sh(context.Background(), "ip", "link", "del", bridge) })
	for _, args := range [][]string{{"link", "add", bridge, "type", "bridge"}, {"addr", "add", subnet, "dev", bridge}, {"link", "set", bridge, "up"}} {
		if _, err := sh(ctx, "ip", args...); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}\n"), 0o600); err != nil {
		return "", err
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", host, "--config-file", filepath.Join(dir, "config.json"),
		"--bridge", bridge, "--iptables=false", "--ip-masq=false", "--storage-driver", "vfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", fmt.Errorf("start dockerd: %w", err)
	}
	*cleanups = append(*cleanups, func() {
		if ids, err := sh(context.Background(), "docker", "-H", host, "ps", "-aq"); err == nil && ids != "" {
			_, _ = sh(context.Background(), "docker", append([]string{"-H", host, "rm", "-f"}, strings.Fields(ids)...)...)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := sh(ctx, "docker", "-H", host, "version"); err == nil {
			return host, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("the second dockerd did not answer within 60 s; see " + filepath.Join(dir, "dockerd.log"))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tunnel serves the first engine's images over TLS 1.3 on loopback, one
// connection per fetch, as the nodes' data-path listener does, and is the
// second executor's image fetcher.
type tunnel struct {
	ln     net.Listener
	client *tls.Config
}

func newTunnel(src *docker.Executor) (*tunnel, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"}, DNSNames: []string{"bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	parsed, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	srv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var idBuf [71]byte // "sha256:" + 64 hex
				if _, err := io.ReadFull(c, idBuf[:]); err != nil {
					return
				}
				rc, err := src.SaveImage(context.Background(), string(idBuf[:]))
				if err != nil {
					return
				}
				defer rc.Close()
				_, _ = io.Copy(c, rc)
			}()
		}
	}()
	return &tunnel{ln: ln, client: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "bench"}}, nil
}

func (t *tunnel) Close() error { return t.ln.Close() }

func (t *tunnel) ImagePeers(string) []agentexec.ImagePeer {
	return []agentexec.ImagePeer{{NodeID: "bench-a", Addr: t.ln.Addr().String()}}
}

func (t *tunnel) FetchImage(ctx context.Context, p agentexec.ImagePeer, id string) (io.ReadCloser, error) {
	d := tls.Dialer{Config: t.client}
	c, err := d.DialContext(ctx, "tcp", p.Addr)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, id); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
