// Package agenttest helps tests that run real agents (in one process or as processes)
// look at what those agents run: the live instance processes under an agent's data
// dir, read from the exec driver's records and the process table. It is imported only
// by tests, imports no project package, and does no harm to a fleet it looks at.
package agenttest
