package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newTestDriver(t *testing.T) *driver {
	t.Helper()
	st, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &driver{store: st, nodeID: "node-a", maxVolumes: 8}
}

var mountRW = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func createVolume(t *testing.T, d *driver, name string, size int64, src *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	resp, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: mountRW,
		CapacityRange:       &csi.CapacityRange{RequiredBytes: size},
		VolumeContentSource: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume()
}

// The life of a volume: idempotent creation, a snapshot that copies the
// data, a restore and a clone, listing, deletion twice.
func TestVolumesAndSnapshots(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)

	v := createVolume(t, d, "pvc-1", 1<<20, nil)
	if again := createVolume(t, d, "pvc-1", 1<<20, nil); again.GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("same name, new volume: %s then %s", v.GetVolumeId(), again.GetVolumeId())
	}
	_, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-1", VolumeCapabilities: mountRW, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20},
	})
	wantCode(t, err, codes.AlreadyExists)
	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "blk", VolumeCapabilities: []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: mountRW[0].AccessMode,
	}}})
	wantCode(t, err, codes.InvalidArgument)

	dir := d.store.volumeDir(v.GetVolumeId())
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	s := snap.GetSnapshot()
	if !s.GetReadyToUse() || s.GetSizeBytes() != 1<<20 || s.GetCreationTime() == nil {
		t.Fatalf("snapshot %v", s)
	}
	again, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v.GetVolumeId()})
	if err != nil || again.GetSnapshot().GetSnapshotId() != s.GetSnapshotId() {
		t.Fatalf("same name, new snapshot: %v %v", again, err)
	}
	_, err = d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: "vol-other"})
	wantCode(t, err, codes.AlreadyExists)

	// The volume changes after the snapshot; the restore has the old data.
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("changed"), 0o640); err != nil {
		t.Fatal(err)
	}
	restored := createVolume(t, d, "pvc-2", 0, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.GetSnapshotId()},
	}})
	if restored.GetCapacityBytes() != 1<<30 {
		t.Fatalf("unsized restore has %d bytes", restored.GetCapacityBytes())
	}
	rdir := d.store.volumeDir(restored.GetVolumeId())
	if b, err := os.ReadFile(filepath.Join(rdir, "link")); err != nil || string(b) != "data" {
		t.Fatalf("restored data through the link: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(rdir, "sub", "f")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored file mode: %v %v", fi, err)
	}
	clone := createVolume(t, d, "pvc-3", 1<<20, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.GetVolumeId()},
	}})
	if b, _ := os.ReadFile(filepath.Join(d.store.volumeDir(clone.GetVolumeId()), "sub", "f")); string(b) != "changed" {
		t.Fatalf("clone has %q", b)
	}
	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-4", VolumeCapabilities: mountRW,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap-missing"},
		}}})
	wantCode(t, err, codes.NotFound)

	// Listing: by id, by source, in pages.
	if _, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-2", SourceVolumeId: clone.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	list := func(req *csi.ListSnapshotsRequest) *csi.ListSnapshotsResponse {
		t.Helper()
		resp, err := d.ListSnapshots(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := list(&csi.ListSnapshotsRequest{SnapshotId: s.GetSnapshotId()}); len(r.GetEntries()) != 1 {
		t.Fatalf("by id: %v", r)
	}
	if r := list(&csi.ListSnapshotsRequest{SnapshotId: "snap-missing"}); len(r.GetEntries()) != 0 {
		t.Fatalf("missing id: %v", r)
	}
	if r := list(&csi.ListSnapshotsRequest{SourceVolumeId: clone.GetVolumeId()}); len(r.GetEntries()) != 1 {
		t.Fatalf("by source: %v", r)
	}
	page := list(&csi.ListSnapshotsRequest{MaxEntries: 1})
	if len(page.GetEntries()) != 1 || page.GetNextToken() == "" {
		t.Fatalf("first page: %v", page)
	}
	page = list(&csi.ListSnapshotsRequest{MaxEntries: 1, StartingToken: page.GetNextToken()})
	if len(page.GetEntries()) != 1 || page.GetNextToken() != "" {
		t.Fatalf("last page: %v", page)
	}
	_, err = d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "x"})
	wantCode(t, err, codes.Aborted)

	// Deletion is idempotent and removes the copy.
	for range 2 {
		if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshotId()}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{d.store.snapshotDir(s.GetSnapshotId()), dir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s still there: %v", p, err)
		}
	}
	// Ids from elsewhere never reach outside the state directory.
	if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "../snapshots"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.store.dir, snapshotsDir)); err != nil {
		t.Fatal(err)
	}
}

// NodePublishVolume bind-mounts (read-only when asked), NodeUnpublishVolume
// undoes it; both are idempotent. Needs root (mounts).
func TestPublish(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	ctx := context.Background()
	d := newTestDriver(t)
	v := createVolume(t, d, "pvc-1", 0, nil)
	if err := os.WriteFile(filepath.Join(d.store.volumeDir(v.GetVolumeId()), "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, readonly := range []bool{false, true} {
		target := filepath.Join(t.TempDir(), "pod", "mount")
		req := &csi.NodePublishVolumeRequest{
			VolumeId: v.GetVolumeId(), TargetPath: target, VolumeCapability: mountRW[0], Readonly: readonly,
		}
		for range 2 {
			if _, err := d.NodePublishVolume(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
			t.Fatalf("through the mount: %q %v", b, err)
		}
		err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644)
		if readonly != (err != nil) {
			t.Fatalf("readonly %v, write: %v", readonly, err)
		}
		for range 2 {
			if _, err := d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{
				VolumeId: v.GetVolumeId(), TargetPath: target,
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("target still there: %v", err)
		}
	}
	_, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: "vol-missing", TargetPath: filepath.Join(t.TempDir(), "m"), VolumeCapability: mountRW[0],
	})
	wantCode(t, err, codes.NotFound)
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\134c\011`); got != "/a b\\c\t" {
		t.Fatalf("got %q", got)
	}
}
