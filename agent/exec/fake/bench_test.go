package fake

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkPrepare creates one container per op, as every new task does.
func BenchmarkPrepare(b *testing.B) {
	e := New("node1")
	b.ReportAllocs()
	for i := range b.N {
		ctl, _ := e.Controller(tk("t"+strconv.Itoa(i), "img:v1"))
		if err := ctl.Prepare(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
