// Package agent holds Parley's agent domain: durable multi-step runs that
// work on a goal in five steps (plan, research, analyze, execute,
// summarize), each its own unit of work whose result is saved before the
// next is queued. It declares the Store and the Queue it needs; the store
// (PostgreSQL) and the queues (River, QStash) implement them.
package agent
