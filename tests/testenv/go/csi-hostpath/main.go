// Command csi-hostpath is the CSI driver of tidemark's test environment:
// hostpath.csi.tidemark.dev, started by `scripts/testenv csi up NAME` next to
// the real external-provisioner, snapshot-controller and csi-snapshotter.
//
// It exists because the test environment builds every component from the Go
// module proxy, and the proxy does not serve the upstream
// csi-driver-host-path nor node-driver-registrar (it answers 403 for both).
// So this small driver was written for the tests from the CSI specification
// (v1.9.0, the version Kubernetes v1.36 uses); no other project's source was
// copied. It is not meant for anything but tests.
//
// What it does:
//
//   - One process serves the CSI Identity, Controller and Node services on
//     one unix socket (--endpoint), and the kubelet's plugin registration
//     service (GetInfo / NotifyRegistrationStatus) on a second socket
//     (--registration-socket, in the kubelet's plugins_registry directory),
//     which is what node-driver-registrar would otherwise provide: a real
//     kubelet watching that directory finds the socket and registers the
//     driver (CSINode, the node's csi.volume.kubernetes.io/nodeid annotation).
//   - A volume is a directory under <state-dir>/volumes; a snapshot is a full
//     copy of a volume's directory under <state-dir>/snapshots. Each has a
//     JSON record beside its directory, written last (atomically), so a copy
//     interrupted half way never looks complete. Volumes can be created empty,
//     from a snapshot or as a clone of another volume (the data is copied in).
//   - NodePublishVolume bind-mounts the volume's directory onto the target
//     path (read-only when asked); there is no staging step. Capacity is
//     recorded, not enforced. There is no topology: every volume is usable on
//     every node (the test environment has one).
//   - Every call is idempotent as the specification requires: the same name
//     yields the same volume or snapshot, deleting what is gone succeeds.
//
// The node (kubelet) may come and go while the driver runs: the driver
// checks its sockets every second and listens again where one was removed.
// The registration socket is only made while its directory exists (the
// kubelet makes it), never the directory itself, so that removing a node's
// state does not race with the driver.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// DriverName is the CSI driver name (CSIDriver object, StorageClass
// provisioner, VolumeSnapshotClass driver).
const DriverName = "hostpath.csi.tidemark.dev"

// version is reported by GetPluginInfo.
var version = "v0.1.0"

func main() {
	endpoint := flag.String("endpoint", "", "unix://PATH (or PATH) of the socket serving the CSI services")
	nodeID := flag.String("nodeid", "", "node id reported by NodeGetInfo (the Kubernetes node name)")
	stateDir := flag.String("state-dir", "", "directory holding the volumes, snapshots and their records")
	regSock := flag.String("registration-socket", "", "socket for the kubelet's plugin registration, in its plugins_registry directory; empty: none")
	maxVolumes := flag.Int64("max-volumes-per-node", 1024, "maximum number of volumes published on the node (NodeGetInfo)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)

	if *endpoint == "" || *nodeID == "" || *stateDir == "" {
		log.Fatal("--endpoint, --nodeid and --state-dir are required")
	}
	sock := strings.TrimPrefix(*endpoint, "unix://")
	for _, p := range []string{sock, *regSock} {
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			log.Fatalf("socket path %q is not absolute", p)
		}
		// sockaddr_un holds 108 bytes including the terminating NUL.
		if len(p) > maxSocketPath {
			log.Fatalf("socket path %s is %d bytes long; unix sockets allow %d", p, len(p), maxSocketPath)
		}
	}

	st, err := openStore(*stateDir)
	if err != nil {
		log.Fatalf("state dir: %v", err)
	}
	d := &driver{store: st, nodeID: *nodeID, maxVolumes: *maxVolumes}

	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, d)
	csi.RegisterControllerServer(csiServer, d)
	csi.RegisterNodeServer(csiServer, d)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	var wg sync.WaitGroup
	servers := []*grpc.Server{csiServer}
	// The CSI socket's directory is the driver's own: made when missing.
	lis, err := listenUnix(sock, true)
	if err != nil {
		log.Fatalf("CSI endpoint: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveSocket(ctx, csiServer, sock, lis, true)
	}()
	log.Printf("%s %s serving CSI on %s (node %s, state in %s)", DriverName, version, sock, *nodeID, st.dir)

	if *regSock != "" {
		regServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
		registerapi.RegisterRegistrationServer(regServer, &registration{endpoint: sock})
		servers = append(servers, regServer)
		// The plugins_registry directory is the kubelet's: the socket waits for it.
		lis, err := listenUnix(*regSock, false)
		if err != nil {
			log.Printf("kubelet plugin registration: waiting for %s (%v)", filepath.Dir(*regSock), err)
			lis = nil
		} else {
			log.Printf("kubelet plugin registration on %s", *regSock)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveSocket(ctx, regServer, *regSock, lis, false)
		}()
	}

	<-ctx.Done()
	log.Print("stopping")
	for _, s := range servers {
		stopWithin(s, 5*time.Second)
	}
	wg.Wait()
}

// maxSocketPath is the longest path a unix socket can have on Linux.
const maxSocketPath = 107

// serveSocket serves srv on lis (nil: not listening yet) at path until ctx
// ends. Every second it checks that the socket file is still the one it
// listens on; when it is gone or replaced (a node's state removed and made
// again), it listens there again, making the directory if makeDir.
func serveSocket(ctx context.Context, srv *grpc.Server, path string, lis *net.UnixListener, makeDir bool) {
	for {
		if lis != nil {
			keepServing(ctx, srv, lis, path)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		l, err := listenUnix(path, makeDir)
		if err != nil {
			lis = nil
			continue
		}
		log.Printf("listening on %s (again)", path)
		lis = l
	}
}

// keepServing serves srv on lis until ctx ends or the socket file at path is
// no longer the one lis made; lis is closed when it returns.
func keepServing(ctx context.Context, srv *grpc.Server, lis *net.UnixListener, path string) {
	made, err := os.Stat(path)
	if err != nil {
		lis.SetUnlinkOnClose(false)
		lis.Close()
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// main stops srv, which closes lis and removes the socket file.
			<-done
			return
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				log.Printf("serving %s: %v", path, err)
			}
			return
		case <-tick.C:
			now, err := os.Stat(path)
			if err == nil && os.SameFile(made, now) {
				continue
			}
			log.Printf("socket %s was removed", path)
			// Whatever is at path now is not ours: leave it.
			lis.SetUnlinkOnClose(false)
			lis.Close()
			<-done
			return
		}
	}
}

// listenUnix listens on a unix socket at path, replacing a stale socket
// file; it makes the directory if makeDir, else fails when it is missing.
func listenUnix(path string, makeDir bool) (*net.UnixListener, error) {
	if makeDir {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

// stopWithin stops srv gracefully, or forcibly after the timeout.
func stopWithin(srv *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		srv.Stop()
	}
}

// logCalls logs every call with its outcome, for the test's log files.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	if err != nil {
		log.Printf("%s {%v} failed after %v: %s", method, req, time.Since(start).Round(time.Millisecond), status.Convert(err).Message())
	} else {
		log.Printf("%s {%v} ok in %v", method, req, time.Since(start).Round(time.Millisecond))
	}
	return resp, err
}
