package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestHandler(t *testing.T) {
	h := handler(identity{task: "t1", node: "n1", version: "v2"})
	if code, body := get(t, h, "/"); code != 200 || body != "task=t1 node=n1 version=v2\n" {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("GET /healthz = %d", code)
	}
	if code, _ := get(t, h, "/nope"); code != 404 {
		t.Fatalf("GET /nope = %d", code)
	}
}

func TestIdentityFromEnv(t *testing.T) {
	t.Setenv("TASK_ID", "")
	t.Setenv("NODE_ID", "n9")
	t.Setenv("VERSION", "")
	version = "baked"
	id := identityFromEnv()
	if id.task == "" || id.node != "n9" || id.version != "baked" {
		t.Fatalf("identity %+v", id)
	}
	t.Setenv("TASK_ID", "t7")
	t.Setenv("VERSION", "v9")
	if id := identityFromEnv(); id.task != "t7" || id.version != "v9" {
		t.Fatalf("identity %+v", id)
	}
}
