package cli

import (
	"context"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

type dashDaemon struct {
	swarmpb.UnimplementedLocalServer
	swarmpb.UnimplementedControlServer
	token string
}

func (d *dashDaemon) GetDashboardToken(_ context.Context, req *swarmpb.GetDashboardTokenRequest) (*swarmpb.GetDashboardTokenResponse, error) {
	if req.Rotate || d.token == "" {
		d.token += "SWDASH-1-x"
	}
	return &swarmpb.GetDashboardTokenResponse{Token: d.token}, nil
}

func TestDashboardToken(t *testing.T) {
	d := &dashDaemon{}
	host := serveFake(t, d, d)
	r := runCLI(host, "dashboard-token")
	expectOK(t, r)
	if r.stdout != "SWDASH-1-x\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(host, "dashboard-token", "--rotate")
	expectOK(t, r)
	if r.stdout != "SWDASH-1-xSWDASH-1-x\n" {
		t.Fatalf("after --rotate: stdout %q", r.stdout)
	}
	expectError(t, runCLI(host, "dashboard-token", "extra"), `"swarmctl dashboard-token" accepts no arguments`)
}
