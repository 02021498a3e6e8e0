// Package testdocker gives tests a second Docker engine beside the
// machine's, and the locally built test images.
//
// A second engine stands in for a second host: tests give one node its
// engine (the daemons' --docker-host), so that node lacks the images the
// others have and its containers live on a bridge of their own. Start runs
// dockerd with its own --data-root, --exec-root, --pidfile, unix socket and
// an empty --config-file, and its own default bridge: an interface created
// with `ip link add NAME type bridge` and given the first address of a
// private /24 that no route of the host covers (--bridge NAME). It must
// never run with --bridge=none: that makes dockerd delete docker0, the
// first engine's bridge, and no container could start there after.
//
// It runs with --iptables=false: a dockerd setting up its iptables chains
// may flush the DOCKER chains the machine's engine relies on, and the
// tests do not need it (published ports are served by docker-proxy, and
// the node daemons reach containers from the host). Networks it creates
// take their subnets from a --default-address-pool of its own, the /16
// around its bridge, so they never clash with the first engine's.
//
// Everything an Engine creates (containers, networks, volumes, images, its
// bridge, its directories and mounts) is removed when the test ends, even
// when it fails; an engine left behind by a killed test process is removed
// by the next Start.
//
// Images (images.go) builds the raftswarm-test/* images with
// deploy/images/build.sh; they are cached and kept between runs (`make
// clean-images` removes them).
//
// testdocker imports only the standard library.
package testdocker
