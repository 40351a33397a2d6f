// Package policy holds murmur's intents: the Workload and Policy kinds operators push to
// any node, and everything about them that needs no I/O.
//
// What it does (all pure functions over values):
//
//   - Parse: strict decoding of YAML (multi-document) and JSON request bodies into
//     Intents. Unknown fields, wrong types, empty documents, duplicate names and YAML
//     alias bombs are errors. Every problem is reported with its field path as a
//     Problem; Problems is the error type carrying them all.
//   - Defaults and Validate: fill defaults, then report every invalid field.
//   - Admit: check a Workload against the Policies in force (allowed drivers, image
//     globs, resource ceilings).
//   - Canonical and Hash: the deterministic JSON encoding of a normalised intent (keys
//     sorted, quantities and durations in canonical form) and its sha256. A field added
//     later is left out while it holds its default (spec.disconnect.reconcile,
//     spec.exclusive), so the bytes, hashes and signatures of intents stored before it
//     existed do not change.
//   - Version: a hybrid logical clock stamp plus node name that totally orders updates
//     to one name across the fleet. NextVersion takes `now` as an argument.
//   - Record: an intent (or a tombstone) as stored and disseminated, with its version.
//     CheckRecord verifies one received from a peer.
//   - SignIntent, SignTombstone and VerifyVersioned: ed25519 signatures over
//     SignedMessage(content, version) — the canonical encoding (or TombstoneBytes for a
//     delete) together with the version the signer chose, so a signed record cannot be
//     stored under another version and an older one never replaces a newer one; key
//     files in PEM (PKCS#8 / PKIX) or base64.
//
// Contract: no I/O, no clock reads, no goroutines, no randomness except through
// arguments (GenerateSigningKey takes an io.Reader). Same input, same output.
//
// Imports: the standard library and go.yaml.in/yaml/v3 only; no project package.
package policy
