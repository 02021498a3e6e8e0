package stack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func plan(t *testing.T, o LoadOptions) *Plan {
	t.Helper()
	if o.Name == "" {
		o.Name = "st"
	}
	p, err := Load(context.Background(), o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	pl, err := Convert(p, o.Name)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return pl
}

func service(t *testing.T, p *Plan, key string) Service {
	t.Helper()
	for _, s := range p.Services {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no service %s in plan", key)
	return Service{}
}

func serviceKeys(p *Plan) []string {
	var out []string
	for _, s := range p.Services {
		out = append(out, s.Key)
	}
	return out
}

func equalSpec(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("spec mismatch\n got: %s\nwant: %s", protojson.Format(got), protojson.Format(want))
	}
}

var fullFiles = []string{"testdata/full/compose.yml", "testdata/full/override.yml"}

func fullPlan(t *testing.T) *Plan {
	return plan(t, LoadOptions{Files: fullFiles, Env: []string{"API_KEY=k3y"}})
}

func ns(labels ...string) map[string]string {
	m := map[string]string{NamespaceLabel: "st"}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	return m
}

func defaultUpdateConfig() *swarmpb.UpdateConfig {
	return &swarmpb.UpdateConfig{Parallelism: 1, FailureAction: "pause", MonitorNs: 5e9, Order: "stop-first"}
}

// Every key the cluster supports, on one service, mapped as Docker's
// stack deploy does.
func TestConvertMapsEverySupportedKey(t *testing.T) {
	p := fullPlan(t)
	dir, _ := filepath.Abs("testdata/full")
	web := service(t, p, "web")
	want := &swarmpb.ServiceSpec{
		Name:   "st_web",
		Labels: ns("team", "web"),
		Container: &swarmpb.ContainerSpec{
			Image:   "nginx:alpine",
			Command: []string{"/bin/sh", "-c"},
			Args:    []string{"exec nginx -g 'daemon off;'"},
			// MODE from .env (the environment does not set it), FROM_ENV_FILE from env_file.
			Env:      []string{"FROM_DOTENV=from-dotenv", "FROM_ENV_FILE=1", "MODE=dotenv-mode"},
			Labels:   ns("tier", "front"),
			Dir:      "/srv",
			User:     "101:101",
			Hostname: "web-host",
			Mounts: []*swarmpb.Mount{
				{Type: swarmpb.Mount_TYPE_BIND, Source: filepath.Join(dir, "static"), Target: "/srv/static", ReadOnly: true},
				{Type: swarmpb.Mount_TYPE_VOLUME, Source: "st_data", Target: "/data", VolumeDriver: "local",
					VolumeOptions: map[string]string{"type": "tmpfs", "device": "tmpfs"}, VolumeLabels: ns("keep", "yes")},
				{Type: swarmpb.Mount_TYPE_VOLUME, Source: "st_cache", Target: "/cache", VolumeLabels: ns(), VolumeNocopy: true},
			},
			StopGracePeriodNs: 20e9,
			Healthcheck: &swarmpb.HealthConfig{Test: []string{"CMD", "wget", "-q", "http://localhost/"},
				IntervalNs: 5e9, TimeoutNs: 2e9, StartPeriodNs: 1e9, Retries: 4},
			Secrets: []*swarmpb.SecretReference{
				{SecretName: "st_db_password", Target: "db_password", Mode: 0o444},
				{SecretName: "st_api_key", Target: "api.key", Uid: 101, Gid: 102, Mode: 0o400},
			},
			Configs: []*swarmpb.ConfigReference{
				{ConfigName: "st_nginx_conf", Target: "/etc/nginx/nginx.conf", Mode: 0o444},
			},
		},
		Mode:     swarmpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas: 3,
		Restart: &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ON_FAILURE,
			DelayNs: 2e9, MaxAttempts: 3, WindowNs: 30e9},
		Placement: &swarmpb.Placement{Constraints: []string{"node.role==worker"},
			SpreadDescriptors: []string{"node.labels.zone"}, MaxReplicasPerNode: 2},
		Resources: &swarmpb.ResourceRequirements{
			Limits:       &swarmpb.Resources{NanoCpus: 5e8, MemoryBytes: 64 << 20},
			Reservations: &swarmpb.Resources{NanoCpus: 25e7, MemoryBytes: 32 << 20},
		},
		Ports: []*swarmpb.PortConfig{
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"},
			{Protocol: "tcp", TargetPort: 443, PublishedPort: 8443, PublishMode: "host"},
			{Protocol: "udp", TargetPort: 53, PublishMode: "ingress"},
		},
		Update: &swarmpb.UpdateConfig{Parallelism: 2, DelayNs: 1e9, FailureAction: "rollback",
			MonitorNs: 10e9, MaxFailureRatio: 0.5, Order: "start-first"},
		Rollback: &swarmpb.UpdateConfig{Parallelism: 0, FailureAction: "pause", MonitorNs: 5e9, Order: "stop-first"},
		Networks: []*swarmpb.NetworkAttachmentConfig{
			{Target: "st_back", Aliases: []string{"web"}},
			{Target: "st_front", Aliases: []string{"web", "www"}},
		},
	}
	equalSpec(t, web.Spec, want)
	wantDeps := []Dependency{
		{Service: "st_api", Key: "api", Condition: ServiceHealthy},
		{Service: "st_migrate", Key: "migrate", Condition: ServiceCompletedSuccessfully},
	}
	if !slices.Equal(web.DependsOn, wantDeps) {
		t.Errorf("depends_on = %+v, want %+v", web.DependsOn, wantDeps)
	}
	if web.Build != nil {
		t.Errorf("build = %+v, want none", web.Build)
	}

	// restart: always without restart_policy; short depends_on; a later
	// file's keys override and add.
	api := service(t, p, "api")
	equalSpec(t, api.Spec, &swarmpb.ServiceSpec{
		Name: "st_api", Labels: ns(),
		Container: &swarmpb.ContainerSpec{Image: "example/api:2", Env: []string{"OVERRIDDEN=yes"}, Labels: ns()},
		Replicas:  1,
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY, DelayNs: 5e9},
		Update:    defaultUpdateConfig(), Rollback: defaultUpdateConfig(),
		Networks: []*swarmpb.NetworkAttachmentConfig{{Target: "st_back", Aliases: []string{"api"}}},
	})
	if want := []Dependency{{Service: "st_db", Key: "db", Condition: ServiceStarted}}; !slices.Equal(api.DependsOn, want) {
		t.Errorf("api depends_on = %+v, want %+v", api.DependsOn, want)
	}
	// restart: "no" and deploy.mode global; no networks: STACK_default.
	db := service(t, p, "db")
	if db.Spec.GetMode() != swarmpb.ServiceMode_SERVICE_MODE_GLOBAL || db.Spec.GetReplicas() != 0 ||
		db.Spec.GetRestart().GetCondition() != swarmpb.RestartPolicy_CONDITION_NONE {
		t.Errorf("db: %s", protojson.Format(db.Spec))
	}
	if got := db.Spec.GetNetworks(); len(got) != 1 || got[0].GetTarget() != "st_default" || !slices.Equal(got[0].GetAliases(), []string{"db"}) {
		t.Errorf("db networks = %v", got)
	}
	// deploy.restart_policy wins over the default.
	if c := service(t, p, "migrate").Spec.GetRestart().GetCondition(); c != swarmpb.RestartPolicy_CONDITION_NONE {
		t.Errorf("migrate restart condition = %v", c)
	}
}

func TestConvertOrdersServicesByDependency(t *testing.T) {
	got := serviceKeys(fullPlan(t))
	// db before api (api depends on it), api and migrate before web.
	if want := []string{"db", "api", "migrate", "web"}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

func TestConvertNetworksVolumesSecretsConfigs(t *testing.T) {
	p := fullPlan(t)
	var nets []string
	for _, n := range p.Networks {
		nets = append(nets, n.Name)
		switch n.Key {
		case "outside":
			if !n.External || n.Spec != nil {
				t.Errorf("outside: %+v, want external without spec", n)
			}
		case "back":
			equalSpec(t, n.Spec, &swarmpb.NetworkSpec{Name: "st_back", Labels: ns(), Driver: "overlay", Internal: true, Subnet: "10.200.0.0/24"})
		case "front":
			equalSpec(t, n.Spec, &swarmpb.NetworkSpec{Name: "st_front", Labels: ns("zone", "dmz"), Driver: "overlay"})
		case "default":
			equalSpec(t, n.Spec, &swarmpb.NetworkSpec{Name: "st_default", Labels: ns(), Driver: "overlay"})
		}
	}
	// outside (external, shared-net) is used by no service: not needed.
	if want := []string{"st_back", "st_front", "st_default"}; !sameSet(nets, want) {
		t.Errorf("networks = %v, want %v", nets, want)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	writeFile(t, file, "services:\n  web:\n    image: x\n    networks: [outside]\nnetworks:\n  outside:\n    external: true\n    name: shared-net\n  unused: {}\n")
	ext := plan(t, LoadOptions{Files: []string{file}})
	if len(ext.Networks) != 1 || !ext.Networks[0].External || ext.Networks[0].Name != "shared-net" || ext.Networks[0].Spec != nil {
		t.Errorf("networks = %+v, want only the external shared-net", ext.Networks)
	}
	if got := ext.Services[0].Spec.GetNetworks(); len(got) != 1 || got[0].GetTarget() != "shared-net" {
		t.Errorf("web networks = %v", got)
	}
	vols := map[string]Volume{}
	for _, v := range p.Volumes {
		vols[v.Key] = v
	}
	if v := vols["old"]; !v.External || v.Name != "old" {
		t.Errorf("old volume = %+v", v)
	}
	if v := vols["data"]; v.Name != "st_data" || v.Driver != "local" || v.Labels["keep"] != "yes" || v.Labels[NamespaceLabel] != "st" {
		t.Errorf("data volume = %+v", v)
	}
	secrets := map[string]Data{}
	for _, d := range p.Secrets {
		secrets[d.Key] = d
	}
	if d := secrets["db_password"]; d.Name != "st_db_password" || string(d.Content) != "s3cret\n" || d.Labels[NamespaceLabel] != "st" {
		t.Errorf("db_password = %+v", d)
	}
	if d := secrets["api_key"]; string(d.Content) != "k3y" {
		t.Errorf("api_key (environment:) = %+v", d)
	}
	if d := secrets["external_one"]; !d.External || d.Name != "external_one" || d.Content != nil {
		t.Errorf("external_one = %+v", d)
	}
	configs := map[string]Data{}
	for _, d := range p.Configs {
		configs[d.Key] = d
	}
	if d := configs["nginx_conf"]; d.Name != "st_nginx_conf" || string(d.Content) != "events {}\n" {
		t.Errorf("nginx_conf = %+v", d)
	}
	if d := configs["inline"]; string(d.Content) != "hello" {
		t.Errorf("inline config = %+v", d)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestLoadEnvironmentOverridesDotEnv(t *testing.T) {
	p := plan(t, LoadOptions{Files: fullFiles, Env: []string{"API_KEY=x", "MODE=from-env", "WEB_IMAGE=custom:1"}})
	web := service(t, p, "web")
	if img := web.Spec.GetContainer().GetImage(); img != "custom:1" {
		t.Errorf("image = %q, want the ${WEB_IMAGE:-...} value custom:1", img)
	}
	if !slices.Contains(web.Spec.GetContainer().GetEnv(), "MODE=from-env") {
		t.Errorf("env = %v, want MODE=from-env", web.Spec.GetContainer().GetEnv())
	}
}

func TestLoadProfiles(t *testing.T) {
	p := fullPlan(t)
	if slices.Contains(serviceKeys(p), "debug") {
		t.Fatal("debug service (profile debug) deployed without the profile")
	}
	for _, w := range p.Warnings {
		if strings.Contains(w, "debug") {
			t.Errorf("warning about an inactive service: %q", w)
		}
	}
	p = plan(t, LoadOptions{Files: fullFiles, Env: []string{"API_KEY=x"}, Profiles: []string{"debug"}})
	if !slices.Contains(serviceKeys(p), "debug") {
		t.Fatal("debug service missing with profile debug")
	}
	if !slices.Contains(p.Warnings, "service debug: key devices is not supported by the cluster and is ignored") {
		t.Errorf("warnings = %q, want one about devices", p.Warnings)
	}
}

func TestConvertWarnsOncePerUnsupportedKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	writeFile(t, file, `services:
  web:
    image: nginx
    privileged: true
    devices: ["/dev/fuse"]
    container_name: fixed
    ports:
      - target: 80
        published: 8080
        host_ip: 127.0.0.1
    deploy:
      endpoint_mode: dnsrr
    healthcheck:
      test: ["CMD", "true"]
      start_interval: 1s
networks:
  default:
    driver_opts: {mtu: "1400"}
`)
	p := plan(t, LoadOptions{Files: []string{file}})
	want := []string{
		"service web: key devices is not supported by the cluster and is ignored",
		"service web: key container_name is not supported by the cluster and is ignored",
		"service web: key healthcheck.start_interval is not supported by the cluster and is ignored",
		"service web: key ports[].host_ip is not supported by the cluster and is ignored",
		"service web: key privileged is not supported by the cluster and is ignored",
		"network default: key driver_opts is not supported by the cluster and is ignored",
		`service web: key deploy.endpoint_mode "dnsrr" is not supported by the cluster: the service gets a virtual IP`,
	}
	for _, w := range want {
		if !slices.Contains(p.Warnings, w) {
			t.Errorf("missing warning %q in\n%s", w, strings.Join(p.Warnings, "\n"))
		}
	}
	if len(p.Warnings) != len(want) {
		t.Errorf("got %d warnings, want %d:\n%s", len(p.Warnings), len(want), strings.Join(p.Warnings, "\n"))
	}
	for _, w := range p.Warnings {
		if strings.Contains(w, "\n") {
			t.Errorf("warning spans lines: %q", w)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The tutorial's Flask + redis file (its stray tab removed, see below).
func TestTutorialComposetest(t *testing.T) {
	p := plan(t, LoadOptions{Files: []string{"testdata/composetest/docker-compose.yml"}, Name: "composetest"})
	dir, _ := filepath.Abs("testdata/composetest")
	if got := serviceKeys(p); !slices.Equal(got, []string{"redis", "web"}) {
		t.Fatalf("services = %v", got)
	}
	web := service(t, p, "web")
	if web.Build == nil || web.Build.Context != dir || web.Build.Tag != "composetest_web" {
		t.Fatalf("web build = %+v, want context %s tagged composetest_web", web.Build, dir)
	}
	if img := web.Spec.GetContainer().GetImage(); img != "composetest_web" {
		t.Errorf("web image = %q", img)
	}
	if ports := web.Spec.GetPorts(); len(ports) != 1 || ports[0].GetPublishedPort() != 5000 || ports[0].GetTargetPort() != 5000 {
		t.Errorf("web ports = %v", ports)
	}
	redis := service(t, p, "redis")
	if redis.Spec.GetContainer().GetImage() != "redis:alpine" || redis.Spec.GetName() != "composetest_redis" {
		t.Errorf("redis = %s", protojson.Format(redis.Spec))
	}
	// app.py connects to host "redis": the short name is an alias on the
	// stack's default network.
	for _, s := range p.Services {
		n := s.Spec.GetNetworks()
		if len(n) != 1 || n[0].GetTarget() != "composetest_default" || !slices.Equal(n[0].GetAliases(), []string{s.Key}) {
			t.Errorf("%s networks = %v", s.Key, n)
		}
	}
	if len(p.Networks) != 1 || p.Networks[0].Name != "composetest_default" {
		t.Errorf("networks = %+v", p.Networks)
	}
}

// The tutorial's file as printed has a tab before a comment, which YAML
// refuses: a one-line error naming the file and the line.
func TestTutorialComposetestVerbatimTab(t *testing.T) {
	_, err := Load(context.Background(), LoadOptions{Files: []string{"testdata/composetest/docker-compose.tutorial-verbatim.yml"}, Name: "composetest"})
	if err == nil {
		t.Fatal("loaded a file with a tab in its indentation")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "docker-compose.tutorial-verbatim.yml") || !strings.Contains(msg, "line 5") {
		t.Errorf("error = %q, want one line naming the file and line 5", msg)
	}
}

// The tutorial's WordPress + MySQL file, verbatim.
func TestTutorialWordpress(t *testing.T) {
	p := plan(t, LoadOptions{Files: []string{"testdata/wordpress/docker-compose.yml"}, Name: "wp"})
	if got := serviceKeys(p); !slices.Equal(got, []string{"db", "wordpress"}) {
		t.Fatalf("order = %v, want db first (wordpress depends on it)", got)
	}
	db := service(t, p, "db")
	equalSpec(t, db.Spec, &swarmpb.ServiceSpec{
		Name: "wp_db", Labels: map[string]string{NamespaceLabel: "wp"},
		Container: &swarmpb.ContainerSpec{
			Image: "mysql:5.7",
			Env: []string{"MYSQL_DATABASE=wordpress", "MYSQL_PASSWORD=wordpress",
				"MYSQL_ROOT_PASSWORD=somewordpress", "MYSQL_USER=wordpress"},
			Labels: map[string]string{NamespaceLabel: "wp"},
			Mounts: []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_VOLUME, Source: "wp_db_data", Target: "/var/lib/mysql",
				VolumeLabels: map[string]string{NamespaceLabel: "wp"}}},
		},
		Replicas: 1,
		Restart:  &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY, DelayNs: 5e9},
		Update:   defaultUpdateConfig(), Rollback: defaultUpdateConfig(),
		Networks: []*swarmpb.NetworkAttachmentConfig{{Target: "wp_default", Aliases: []string{"db"}}},
	})
	wp := service(t, p, "wordpress")
	if want := []Dependency{{Service: "wp_db", Key: "db", Condition: ServiceStarted}}; !slices.Equal(wp.DependsOn, want) {
		t.Errorf("depends_on = %+v", wp.DependsOn)
	}
	if !slices.Contains(wp.Spec.GetContainer().GetEnv(), "WORDPRESS_DB_HOST=db:3306") {
		t.Errorf("env = %v", wp.Spec.GetContainer().GetEnv())
	}
	if ports := wp.Spec.GetPorts(); len(ports) != 1 || ports[0].GetPublishedPort() != 8000 || ports[0].GetTargetPort() != 80 {
		t.Errorf("ports = %v", ports)
	}
	if len(p.Volumes) != 1 || p.Volumes[0].Name != "wp_db_data" {
		t.Errorf("volumes = %+v", p.Volumes)
	}
}

func TestBadInputIsOneLineNamingFileAndKey(t *testing.T) {
	cases := []struct {
		file  string
		stack string
		want  []string
	}{
		{"malformed.yml", "st", []string{"malformed.yml", "line 3"}},
		{"unknown-top.yml", "st", []string{"unknown-top.yml", "frobnicate"}},
		{"no-image.yml", "st", []string{"no-image.yml", "web", "image"}},
		{"missing-env.yml", "st", []string{"missing-env.yml", "missing.env"}},
		{"missing-secret.yml", "st", []string{"secrets.pw.file", "nope.txt"}},
		{"cycle.yml", "st", []string{"cycle.yml", "dependency cycle", "a -> b -> c -> a"}},
		{"../wordpress/docker-compose.yml", "Bad Name", []string{"invalid stack name", "Bad Name"}},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.stack, func(t *testing.T) {
			files := []string{filepath.Join("testdata/bad", c.file)}
			p, err := Load(context.Background(), LoadOptions{Files: files, Name: strings.ToLower(strings.ReplaceAll(c.stack, " ", ""))})
			if err == nil {
				_, err = Convert(p, c.stack)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"composetest", "wp", "a-b_c", "0x"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Upper", "-lead", "has space", "dot.ted", strings.Repeat("a", MaxNameLen+1)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConvertRejectsBadValues(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"restart":        {"    restart: sometimes\n", "services.web.restart"},
		"mode":           {"    deploy: {mode: replicated-job}\n", "services.web.deploy.mode"},
		"constraint":     {"    deploy: {placement: {constraints: [\"node.nope==x\"]}}\n", "services.web.deploy.placement.constraints[0]"},
		"secret target":  {"    secrets: [{source: s, target: /etc/x}]\n", "services.web.secrets[0].target"},
		"port range":     {"    ports: [\"8000-8001:80-81\"]\n", ""},
		"undeclared vol": {"    volumes: [\"nope:/data\"]\n", "nope"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "compose.yml")
			writeFile(t, filepath.Join(dir, "s.txt"), "x")
			writeFile(t, file, "services:\n  web:\n    image: nginx\n"+c.yaml+"secrets:\n  s:\n    file: ./s.txt\n")
			p, err := Load(context.Background(), LoadOptions{Files: []string{file}, Name: "st"})
			if err == nil {
				_, err = Convert(p, "st")
			}
			if c.want == "" {
				// Port ranges expand to one port each: accepted.
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one naming %s", err, c.want)
			}
		})
	}
}

func TestConvertContainerOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	writeFile(t, file, `services:
  web:
    image: nginx
    tty: true
    stdin_open: true
    init: true
    read_only: true
    stop_signal: SIGQUIT
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls:
      net.core.somaxconn: 1024
    group_add: [audio]
    ulimits:
      nproc: 65535
      nofile: {soft: 1024, hard: 4096}
    extra_hosts:
      - "db.local:10.0.0.5"
`)
	p := plan(t, LoadOptions{Files: []string{file}})
	ct := service(t, p, "web").Spec.GetContainer()
	want := &swarmpb.ContainerSpec{
		Image: "nginx", Labels: ns(), Tty: true, OpenStdin: true, Init: true, ReadOnly: true, StopSignal: "SIGQUIT",
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
		GroupAdd:   []string{"audio"},
		Ulimits:    []*swarmpb.Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}, {Name: "nproc", Soft: 65535, Hard: 65535}},
		ExtraHosts: []string{"db.local:10.0.0.5"},
	}
	equalSpec(t, ct, want)
	if len(p.Warnings) != 0 {
		t.Errorf("warnings = %q", p.Warnings)
	}
}

func TestConvertTmpfsAndBuildOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	writeFile(t, file, `services:
  web:
    image: example/web:dev
    build:
      context: ./src
      dockerfile: Dockerfile.dev
      args: {VERSION: "1.2"}
      target: final
    volumes:
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
`)
	p, err := Load(context.Background(), LoadOptions{Files: []string{file}, Name: "st"})
	if err != nil {
		t.Fatal(err)
	}
	c := &converter{stack: "st", project: p.Project, networks: map[string]string{"default": "st_default"}}
	s, err := c.serviceSpec(p.Services["web"])
	if err != nil {
		t.Fatal(err)
	}
	m := s.Spec.GetContainer().GetMounts()
	if len(m) != 1 || m[0].GetType() != swarmpb.Mount_TYPE_TMPFS || m[0].GetTarget() != "/scratch" || m[0].GetTmpfsSizeBytes() != 1<<20 {
		t.Errorf("mounts = %v", m)
	}
	b := s.Build
	if b == nil || b.Context != filepath.Join(dir, "src") || b.Dockerfile != "Dockerfile.dev" || b.Target != "final" ||
		b.Args["VERSION"] == nil || *b.Args["VERSION"] != "1.2" || b.Tag != "example/web:dev" {
		t.Errorf("build = %+v", b)
	}
}

func TestSpecChangedIgnoresWhatManagersFill(t *testing.T) {
	want := service(t, fullPlan(t), "web").Spec
	stored := proto.Clone(want).(*swarmpb.ServiceSpec)
	stored.Container.ImageId = "sha256:abc"
	stored.Container.Secrets[0].SecretId, stored.Container.Secrets[0].Version = "sec1", 3
	stored.Container.Configs[0].ConfigId, stored.Container.Configs[0].Version = "cfg1", 2
	stored.Update.OnFailure = swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK
	stored.Update.UpdateOrder = swarmpb.UpdateOrder_UPDATE_ORDER_START_FIRST
	stored.Update.FailureAction, stored.Update.Order = "", ""
	if SpecChanged(stored, want) {
		t.Fatal("a spec the managers only filled in counts as changed")
	}
	for name, edit := range map[string]func(s *swarmpb.ServiceSpec){
		"env":      func(s *swarmpb.ServiceSpec) { s.Container.Env = append(s.Container.Env, "X=1") },
		"replicas": func(s *swarmpb.ServiceSpec) { s.Replicas++ },
		"order":    func(s *swarmpb.ServiceSpec) { s.Update.UpdateOrder = swarmpb.UpdateOrder_UPDATE_ORDER_STOP_FIRST },
		"secret":   func(s *swarmpb.ServiceSpec) { s.Container.Secrets[0].Target = "other" },
	} {
		changed := proto.Clone(stored).(*swarmpb.ServiceSpec)
		edit(changed)
		if !SpecChanged(changed, want) {
			t.Errorf("%s: change not seen", name)
		}
	}
}

func TestDependencyOrderRefusesCycles(t *testing.T) {
	svc := func(key string, deps ...string) Service {
		s := Service{Key: key}
		for _, d := range deps {
			s.DependsOn = append(s.DependsOn, Dependency{Key: d, Service: "st_" + d, Condition: ServiceStarted})
		}
		return s
	}
	order, err := dependencyOrder(map[string]Service{"web": svc("web", "api", "db"), "api": svc("api", "db"), "db": svc("db")})
	if err != nil || !slices.Equal(order, []string{"db", "api", "web"}) {
		t.Fatalf("order %v, err %v", order, err)
	}
	_, err = dependencyOrder(map[string]Service{"a": svc("a", "b"), "b": svc("b", "a")})
	if err == nil || !strings.Contains(err.Error(), "a -> b -> a") {
		t.Fatalf("err = %v, want the cycle named", err)
	}
	_, err = dependencyOrder(map[string]Service{"a": svc("a", "ghost")})
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadIncludeAndExtends(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "base.yml"), "services:\n  base:\n    image: busybox\n    environment: {FROM_BASE: \"1\"}\n")
	writeFile(t, filepath.Join(dir, "db.yml"), "services:\n  db:\n    image: mariadb:11\n")
	file := filepath.Join(dir, "compose.yml")
	writeFile(t, file, "include:\n  - db.yml\nservices:\n  web:\n    extends: {file: base.yml, service: base}\n    image: nginx\n")
	p := plan(t, LoadOptions{Files: []string{file}})
	if got := serviceKeys(p); !slices.Equal(got, []string{"db", "web"}) {
		t.Fatalf("services = %v", got)
	}
	if env := service(t, p, "web").Spec.GetContainer().GetEnv(); !slices.Equal(env, []string{"FROM_BASE=1"}) {
		t.Errorf("extended env = %v", env)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings = %q", p.Warnings)
	}
}
