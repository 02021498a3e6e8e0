package spec

import (
	"errors"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestValidateDataObject(t *testing.T) {
	ok := []struct {
		name string
		data []byte
	}{
		{"a", []byte("x")},
		{"db_password", make([]byte, MaxDataSize)},
		{"nginx.conf-2", []byte("x")},
		{strings.Repeat("a", 64), []byte("x")},
	}
	for _, c := range ok {
		if err := ValidateDataObject("secret", c.name, nil, c.data); err != nil {
			t.Errorf("%q: %v", c.name, err)
		}
	}
	bad := []struct {
		name   string
		labels map[string]string
		data   []byte
		want   string
	}{
		{"", nil, []byte("x"), "secret name is required"},
		{"-a", nil, []byte("x"), `secret name "-a" is invalid`},
		{"a/b", nil, []byte("x"), `secret name "a/b" is invalid`},
		{"../x", nil, []byte("x"), `secret name "../x" is invalid`},
		{strings.Repeat("a", 65), nil, []byte("x"), "is invalid: use 1-64"},
		{"a", nil, nil, "secret data is empty"},
		{"a", nil, make([]byte, MaxDataSize+1), "secret data is 512001 bytes: at most 512000 (500 KiB) allowed"},
		{"a", map[string]string{"": "x"}, []byte("x"), "secret label key is required"},
	}
	for _, c := range bad {
		err := ValidateDataObject("secret", c.name, c.labels, c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%q: got %v, want %q", c.name, err, c.want)
		}
	}
	// The content is never quoted in an error.
	if err := ValidateData("secret", make([]byte, MaxDataSize+1)); strings.Contains(err.Error(), "\\x00") {
		t.Errorf("error quotes the content: %v", err)
	}
}

func TestValidateReferences(t *testing.T) {
	s := func(refs ...*swarmpb.SecretReference) error { return ValidateSecretReferences(refs) }
	c := func(refs ...*swarmpb.ConfigReference) error { return ValidateConfigReferences(refs) }
	for i, err := range []error{
		s(&swarmpb.SecretReference{SecretName: "pw"}),
		s(&swarmpb.SecretReference{SecretId: "abc", Target: "x", Mode: 0o400, Uid: 1000, Gid: 1000}),
		s(&swarmpb.SecretReference{SecretName: "pw"}, &swarmpb.SecretReference{SecretName: "pw", Target: "pw2"}),
		c(&swarmpb.ConfigReference{ConfigName: "app"}),
		c(&swarmpb.ConfigReference{ConfigName: "app", Target: "/etc/app/app.conf", Mode: 0o777}),
	} {
		if err != nil {
			t.Errorf("valid %d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{s(&swarmpb.SecretReference{}), "secret[0] names no secret"},
		{s(&swarmpb.SecretReference{SecretName: "pw", Target: "a/b"}), `secret[0] target "a/b" is invalid`},
		{s(&swarmpb.SecretReference{SecretName: "pw", Target: ".."}), `secret[0] target ".." is invalid`},
		{s(&swarmpb.SecretReference{SecretName: "pw", Target: "."}), `secret[0] target "." is invalid`},
		{s(&swarmpb.SecretReference{SecretName: "pw", Target: "a b"}), "contains whitespace"},
		{s(&swarmpb.SecretReference{SecretName: "pw", Mode: 0o1777}), "secret[0] mode 01777 is invalid: use at most 0777"},
		{s(&swarmpb.SecretReference{SecretName: "pw"}, &swarmpb.SecretReference{SecretName: "other", Target: "pw"}), `secret[1] target "pw" is used by another secret`},
		{c(&swarmpb.ConfigReference{ConfigName: "app", Target: "etc/app"}), "absolute, clean path"},
		{c(&swarmpb.ConfigReference{ConfigName: "app", Target: "/etc/../app"}), "absolute, clean path"},
		{c(&swarmpb.ConfigReference{ConfigName: "app", Target: "/"}), "absolute, clean path"},
		{c(&swarmpb.ConfigReference{ConfigName: "a"}, &swarmpb.ConfigReference{ConfigName: "b", Target: "/a"}), `config[1] target "/a" is used by another config`},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want %q", tc.err, tc.want)
		}
	}
	// The service spec applies the same rules.
	sp := &swarmpb.ServiceSpec{Name: "web", Container: &swarmpb.ContainerSpec{Image: "x",
		Secrets: []*swarmpb.SecretReference{{SecretName: "pw", Target: "../../etc/shadow"}}}}
	if err := ValidateServiceSpec(sp, 0); err == nil || !strings.Contains(err.Error(), "target") {
		t.Errorf("service spec with a bad secret target: %v", err)
	}
}
