// Package ui is the dashboard every agent serves at /ui/: plain HTML, CSS and
// JavaScript embedded in the binary (no build step, no external fonts, scripts or
// CDNs), so it works on a site whose backhaul is down.
//
// The files hold no data: the page reads the agent's JSON API (/v1/status,
// /v1/members, /v1/regions, /v1/workloads, /v1/intents) and follows /v1/events with
// fetch, sending "Authorization: Bearer <token>" when the agent enforces tokens. The
// agent therefore serves /ui/ without a token, and every API call of the page needs a
// read token like any other client. The page renders everything it reads with
// textContent and attribute values, never as HTML: node names, labels, intent names
// and reasons come from whoever runs a node or pushes an intent. The answers carry a
// Content-Security-Policy that allows scripts, styles and connections to this agent
// only.
//
// Imports: agent/api (the error envelope). Only agent imports it (and the browser
// tests of cmd/murmur, which serve it with a fake API).
package ui
