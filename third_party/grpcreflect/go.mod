module connectrpc.com/grpcreflect

go 1.26.0

require (
	connectrpc.com/connect v1.18.1
	github.com/google/go-cmp v0.7.0
	google.golang.org/protobuf v1.36.5
)
