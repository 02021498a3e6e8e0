// Package stack turns Compose files into what `swarmctl stack deploy`
// creates on the cluster: Load reads them with compose-go (the reference
// implementation: .env, env_file, interpolation, profiles, several files
// merged in order), Convert maps the project to a Plan of networks,
// secrets, configs, volumes and services named STACK_KEY and labelled
// com.docker.stack.namespace=STACK, as Docker's stack deploy does, with
// services in depends_on order. Every key the cluster does not support is
// one warning line. The package is pure: it reads files, never the cluster.
package stack
