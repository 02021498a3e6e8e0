package spec

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The update settings may come as the deprecated strings, as the enums, or
// as both when they agree; the enum form obeys the same rules.
func TestUpdateConfigEnums(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*swarmpb.ServiceSpec)
		want string // "" = accepted
	}{
		{"enums only", func(s *swarmpb.ServiceSpec) {
			s.Update = &swarmpb.UpdateConfig{OnFailure: swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK, UpdateOrder: swarmpb.UpdateOrder_UPDATE_ORDER_START_FIRST}
		}, ""},
		{"both agree", func(s *swarmpb.ServiceSpec) {
			s.Update.OnFailure = swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK
		}, ""},
		{"both disagree", func(s *swarmpb.ServiceSpec) {
			s.Update.OnFailure = swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_PAUSE
		}, "disagree"},
		{"unknown enum", func(s *swarmpb.ServiceSpec) { s.Update.UpdateOrder = 42 }, "update order 42 is not a known value"},
		{"rollback enum rollback", func(s *swarmpb.ServiceSpec) {
			s.Rollback = &swarmpb.UpdateConfig{OnFailure: swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK}
		}, "rollback failure action cannot be rollback"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.edit(s)
			err := ValidateServiceSpec(s, 100)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
