// Package ca owns the cluster's public key infrastructure and everything
// derived from it:
//
//   - the root CA (an ECDSA P-256 self-signed certificate) and signing of node
//     certificates from CSRs, with the node's identity (node ID, cluster ID,
//     role) encoded in the certificate subject;
//   - join tokens ("SWMTKN-1-<digest>-<secret>"), whose digest pins the root
//     CA so a joining node can detect that it is talking to the wrong cluster
//     before it trusts anything the manager says;
//   - a node's live TLS credentials (Creds), persisted on disk and swappable
//     at runtime when the node's role changes;
//   - the TLS configurations used by servers, clients and joining nodes, and
//     the helpers that extract and authorize a gRPC peer's identity.
//
// A certificate carries identity and the role the node had when it was
// signed: only manager certificates carry the ManagerRole DNS SAN, so
// clients dial with ServerName ManagerRole and will never talk to a worker
// that pretends to be a manager; servers check the caller's role with
// RequireRole. Whether the node still holds that role is not the
// certificate's to say: package api's Authorizer decides it from the
// cluster state on every call, which is how demotion and removal revoke a
// certificate before it expires.
package ca
