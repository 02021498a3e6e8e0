// Package listing reads Control's paged lists whole: the CLI (node ls,
// service ls, service ps, the progress watcher), tests and benchmarks all
// go through it, so none of them stops at the first page.
//
// listing imports only proto and gRPC; it must not import api, node or cli.
package listing
