// Package nft runs the nft command for the nftables tables a node daemon
// owns. The service-discovery data plane (netplane) and the routing mesh's
// kernel path (mesh) each own one table per node (family ip), named for
// the node so that daemons sharing a host never touch each other's, and
// replace it whole with one atomic `nft -f` transaction on every change.
// This package holds what the two have in common: the table's name, the
// probe at start, apply, remove, and bounded runs whose errors quote nft.
package nft

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Path is the nft CLI the tables are written with.
const Path = "/usr/sbin/nft"

// Timeout bounds one nft run; a transaction of a few thousand rules takes
// milliseconds.
const Timeout = 10 * time.Second

// TableName is prefix followed by the first 12 characters of nodeID that
// nft accepts in a name (lower-case letters, digits, '_'), or "" if there
// are none.
func TableName(prefix, nodeID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(nodeID) {
		if b.Len() == 12 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return prefix + b.String()
}

// Table is one nftables table (family ip) a daemon owns.
type Table struct {
	Name string
	Bin  string // the nft command; Path when empty
}

// Probe tells whether this nft and kernel will take script for the table:
// listing the tables needs the rights and kernel support a commit needs,
// and a check run (-c) of script commits nothing. Errors start with hint.
func (t Table) Probe(ctx context.Context, script, hint string) error {
	if _, err := t.Run(ctx, "", "list", "tables"); err != nil {
		return fmt.Errorf("%s: %w", hint, err)
	}
	if out, err := t.Run(ctx, script, "-c", "-f", "-"); err != nil {
		return fmt.Errorf("%s: %w%s", hint, err, Excerpt(out))
	}
	return nil
}

// Apply runs script, a transaction that replaces the table, in one commit.
func (t Table) Apply(ctx context.Context, script string) error {
	if out, err := t.Run(ctx, script, "-f", "-"); err != nil {
		return fmt.Errorf("apply nftables table %s: %w%s", t.Name, err, Excerpt(out))
	}
	return nil
}

// Remove deletes the table; a missing table is not an error.
func (t Table) Remove(ctx context.Context) error {
	// "table" first, so that the delete never fails on a missing table.
	script := "table ip " + t.Name + "\ndelete table ip " + t.Name + "\n"
	if out, err := t.Run(ctx, script, "-f", "-"); err != nil {
		return fmt.Errorf("remove nftables table %s: %w%s", t.Name, err, Excerpt(out))
	}
	return nil
}

// Run runs nft with args and stdin, bounded by Timeout, and returns its
// output. An error carries the first line nft printed.
func (t Table) Run(ctx context.Context, stdin string, args ...string) (string, error) {
	bin := t.Bin
	if bin == "" {
		bin = Path
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if msg != "" {
			return out.String(), fmt.Errorf("%s: %w: %s", bin, err, msg)
		}
		return out.String(), fmt.Errorf("%s: %w", bin, err)
	}
	return out.String(), nil
}

// Excerpt returns nft's whole output (it names the failing line), bounded,
// for an error that already quotes its first line; "" when that is all.
func Excerpt(out string) string {
	out = strings.TrimSpace(out)
	if !strings.Contains(out, "\n") {
		return ""
	}
	if len(out) > 2000 {
		out = out[:2000] + "..."
	}
	return "\n" + out
}
