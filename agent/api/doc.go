// Package api holds the small pieces every HTTP handler of the agent shares: the JSON
// error envelope of DESIGN.md ({"error": "...", "details": [{"field", "message"}]}),
// JSON writing, and request-body limits.
//
// It imports no project package, so agent subpackages (intents, region) can use it.
package api
