package broker

// LogKey names the Redis key of a generation's log, so tests can look at
// its expiry without copying the naming.
var LogKey = (*Redis).logKey
