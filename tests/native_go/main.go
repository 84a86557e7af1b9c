// Command native_go_backend is the grpc-go peer of tests/native_backend.py for the native transport
// tests: the same raw-bytes methods of service test.Echo (see that file), served by grpc-go with its
// default settings (keepalive enforcement included), through an unknown-service handler and a codec
// that passes message bytes through. Prints "ready" once listening; SIGTERM stops it gracefully.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	anypb "github.com/golang/protobuf/ptypes/any"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type frame struct{ data []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.(*frame).data, nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	v.(*frame).data = append([]byte(nil), data...)
	return nil
}
func (rawCodec) String() string { return "proto" }
func (rawCodec) Name() string   { return "proto" }

var (
	mu        sync.Mutex
	cancelled int
	active    int
	peak      int
	calls     int
)

func enter() {
	mu.Lock()
	active++
	if active > peak {
		peak = active
	}
	mu.Unlock()
}

func leave(wasCancelled bool) {
	mu.Lock()
	active--
	if wasCancelled {
		cancelled++
	}
	mu.Unlock()
}

func recvOne(stream grpc.ServerStream) ([]byte, error) {
	f := &frame{}
	if err := stream.RecvMsg(f); err != nil {
		return nil, err
	}
	return f.data, nil
}

func send(stream grpc.ServerStream, data []byte) error { return stream.SendMsg(&frame{data}) }

// ctxStatus is the status of a call whose context ended (a bare ctx.Err() would be UNKNOWN).
func ctxStatus(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	return status.Error(codes.Canceled, "cancelled")
}

func handle(srv interface{}, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	ctx := stream.Context()
	switch method {
	case "/test.Echo/Unary":
		req, err := recvOne(stream)
		if err != nil {
			return err
		}
		mu.Lock()
		calls++
		mu.Unlock()
		md, _ := metadata.FromIncomingContext(ctx)
		header, trailer := metadata.MD{}, metadata.MD{}
		for k, vs := range md {
			if strings.HasPrefix(k, "echo-") {
				header[k] = vs
				if strings.HasSuffix(k, "-bin") {
					trailer[k] = vs
				}
			}
		}
		if len(header) > 0 {
			stream.SetHeader(header)
		}
		if len(trailer) > 0 {
			stream.SetTrailer(trailer)
		}
		return send(stream, req)
	case "/test.Echo/Fail":
		req, err := recvOne(stream)
		if err != nil {
			return err
		}
		parts := strings.SplitN(string(req), ":", 2)
		code, _ := strconv.Atoi(parts[0])
		stream.SetTrailer(metadata.Pairs("extra-bin", "\x00\xff"))
		detail := &anypb.Any{TypeUrl: "type.googleapis.com/test.Detail", Value: []byte("details:" + parts[1])}
		return status.ErrorProto(&spb.Status{Code: int32(code), Message: parts[1], Details: []*anypb.Any{detail}})
	case "/test.Echo/Sleep":
		req, err := recvOne(stream)
		if err != nil {
			return err
		}
		seconds, _ := strconv.ParseFloat(string(req), 64)
		enter()
		select {
		case <-time.After(time.Duration(seconds * float64(time.Second))):
			leave(false)
			return send(stream, []byte("slept"))
		case <-ctx.Done():
			leave(true)
			return ctxStatus(ctx)
		}
	case "/test.Echo/Big":
		req, err := recvOne(stream)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(req))
		return send(stream, []byte(strings.Repeat("b", n)))
	case "/test.Echo/Stats":
		if _, err := recvOne(stream); err != nil {
			return err
		}
		mu.Lock()
		text := fmt.Sprintf("cancelled=%d active=%d peak=%d calls=%d", cancelled, active, peak, calls)
		mu.Unlock()
		return send(stream, []byte(text))
	case "/test.Echo/Deadline":
		if _, err := recvOne(stream); err != nil {
			return err
		}
		deadline, ok := ctx.Deadline()
		if !ok {
			return send(stream, []byte("none"))
		}
		return send(stream, []byte(fmt.Sprintf("%.3f", time.Until(deadline).Seconds())))
	case "/test.Echo/ServerStream":
		req, err := recvOne(stream)
		if err != nil {
			return err
		}
		parts := strings.Split(string(req), ":")
		count, _ := strconv.Atoi(parts[0])
		size, _ := strconv.Atoi(parts[1])
		delay, _ := strconv.Atoi(parts[2])
		enter()
		for i := 0; i < count; i++ {
			msg := []byte(strconv.Itoa(i) + ":")
			if len(msg) < size {
				msg = append(msg, []byte(strings.Repeat("s", size-len(msg)))...)
			}
			if err := send(stream, msg); err != nil {
				leave(true)
				return err
			}
			if delay > 0 {
				select {
				case <-time.After(time.Duration(delay) * time.Millisecond):
				case <-ctx.Done():
					leave(true)
					return ctxStatus(ctx)
				}
			}
		}
		leave(false)
		if len(parts) > 3 {
			code, _ := strconv.Atoi(parts[3])
			return status.Error(codes.Code(code), "failed after the messages")
		}
		return nil
	case "/test.Echo/ClientStream":
		count, total := 0, 0
		for {
			f := &frame{}
			err := stream.RecvMsg(f)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			count++
			total += len(f.data)
		}
		return send(stream, []byte(fmt.Sprintf("%d:%d", count, total)))
	case "/test.Echo/Bidi":
		for {
			f := &frame{}
			err := stream.RecvMsg(f)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if string(f.data) == "fail" {
				return status.Error(codes.Aborted, "asked to fail")
			}
			if err := send(stream, f.data); err != nil {
				return err
			}
		}
	}
	return status.Errorf(codes.Unimplemented, "unknown method %s", method)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	maxStreams := flag.Uint("max-concurrent-streams", 0, "MAX_CONCURRENT_STREAMS (0: grpc-go's default)")
	tlsKey := flag.String("tls-key", "", "TLS key (with -tls-cert)")
	tlsCert := flag.String("tls-cert", "", "TLS certificate")
	grace := flag.Duration("grace", 5*time.Second, "graceful stop limit")
	flag.Parse()
	opts := []grpc.ServerOption{
		grpc.CustomCodec(rawCodec{}),
		grpc.UnknownServiceHandler(handle),
		grpc.MaxRecvMsgSize(64 << 20),
		grpc.MaxSendMsgSize(64 << 20),
	}
	if *maxStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(*maxStreams)))
	}
	if *tlsCert != "" {
		creds, err := credentials.NewServerTLSFromFile(*tlsCert, *tlsKey)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer(opts...)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		done := make(chan struct{})
		go func() { server.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(*grace):
			server.Stop()
		}
	}()
	fmt.Println("ready")
	os.Stdout.Sync()
	if err := server.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
