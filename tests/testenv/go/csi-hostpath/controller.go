package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// defaultCapacity is recorded for a volume whose request names no size.
const defaultCapacity = 1 << 30

// driver implements the CSI Identity, Controller and Node services.
type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	store      *store
	nodeID     string
	maxVolumes int64
}

// GetPluginInfo names the driver.
func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: DriverName, VendorVersion: version}, nil
}

// GetPluginCapabilities: a controller service, no topology.
func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

// Probe: the driver is ready as soon as it serves.
func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// ControllerGetCapabilities lists what the controller service does.
func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// checkCapabilities accepts filesystem (mount) volumes with any access
// mode: a directory can be shared, and the test environment has one node.
// Raw block volumes are refused.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	for _, c := range caps {
		if c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "only filesystem (mount) volumes are supported, not raw block")
		}
		if c.GetAccessMode() == nil {
			return status.Error(codes.InvalidArgument, "access mode missing")
		}
	}
	return nil
}

// capacityFor picks the capacity to record for a capacity range.
func capacityFor(r *csi.CapacityRange) (int64, error) {
	req, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || limit < 0 || (limit > 0 && req > limit) {
		return 0, status.Errorf(codes.OutOfRange, "invalid capacity range %d..%d", req, limit)
	}
	switch {
	case req > 0:
		return req, nil
	case limit > 0 && limit < defaultCapacity:
		return limit, nil
	default:
		return defaultCapacity, nil
	}
}

// fits tells whether capacity satisfies the range r.
func fits(capacity int64, r *csi.CapacityRange) bool {
	return capacity >= r.GetRequiredBytes() && (r.GetLimitBytes() == 0 || capacity <= r.GetLimitBytes())
}

// CreateVolume makes a directory: empty, a copy of a snapshot or a clone of
// a volume. A second call with the same name returns the same volume.
func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	capacity, err := capacityFor(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	var fromSnapshot, fromVolume string
	if src := req.GetVolumeContentSource(); src != nil {
		switch {
		case src.GetSnapshot() != nil:
			fromSnapshot = src.GetSnapshot().GetSnapshotId()
		case src.GetVolume() != nil:
			fromVolume = src.GetVolume().GetVolumeId()
		default:
			return nil, status.Error(codes.InvalidArgument, "unknown volume content source")
		}
	}

	d.store.mu.Lock()
	defer d.store.mu.Unlock()

	existing, err := d.store.volumeByName(req.GetName())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if existing != nil {
		if !fits(existing.CapacityBytes, req.GetCapacityRange()) ||
			existing.FromSnapshot != fromSnapshot || existing.FromVolume != fromVolume {
			return nil, status.Errorf(codes.AlreadyExists,
				"volume %q exists as %s with a different size or source", req.GetName(), existing.ID)
		}
		return &csi.CreateVolumeResponse{Volume: volumeOf(existing, req.GetVolumeContentSource())}, nil
	}

	// With no size asked for, the volume is at least as large as its source.
	unsized := req.GetCapacityRange().GetRequiredBytes() == 0 && req.GetCapacityRange().GetLimitBytes() == 0
	var from string
	switch {
	case fromSnapshot != "":
		snap, err := d.store.snapshot(fromSnapshot)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if snap == nil {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", fromSnapshot)
		}
		if unsized {
			capacity = max(capacity, snap.SizeBytes)
		}
		if snap.SizeBytes > capacity {
			return nil, status.Errorf(codes.OutOfRange,
				"snapshot %s needs %d bytes, the volume has %d", fromSnapshot, snap.SizeBytes, capacity)
		}
		from = d.store.snapshotDir(fromSnapshot)
	case fromVolume != "":
		vol, err := d.store.volume(fromVolume)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if vol == nil {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", fromVolume)
		}
		if unsized {
			capacity = max(capacity, vol.CapacityBytes)
		}
		if vol.CapacityBytes > capacity {
			return nil, status.Errorf(codes.OutOfRange,
				"volume %s needs %d bytes, the clone has %d", fromVolume, vol.CapacityBytes, capacity)
		}
		from = d.store.volumeDir(fromVolume)
	}

	rec := &volumeRecord{
		ID:            newID("vol-"),
		Name:          req.GetName(),
		CapacityBytes: capacity,
		CreatedAt:     time.Now().UTC(),
		FromSnapshot:  fromSnapshot,
		FromVolume:    fromVolume,
		Parameters:    req.GetParameters(),
	}
	if err := d.store.createData(volumesDir, rec.ID, from); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := d.store.writeRecord(volumesDir, rec.ID, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateVolumeResponse{Volume: volumeOf(rec, req.GetVolumeContentSource())}, nil
}

// volumeOf is the CSI view of a volume.
func volumeOf(rec *volumeRecord, src *csi.VolumeContentSource) *csi.Volume {
	return &csi.Volume{VolumeId: rec.ID, CapacityBytes: rec.CapacityBytes, ContentSource: src}
}

// DeleteVolume removes a volume's record and data; an unknown id succeeds.
func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if err := d.store.remove(volumesDir, req.GetVolumeId()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms filesystem capabilities of an
// existing volume.
func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	vol, err := d.store.volume(req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// CreateSnapshot copies a volume's directory. The snapshot is ready at
// once; its size is the source volume's capacity (what a restore needs).
// A second call with the same name returns the same snapshot.
func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name missing")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id missing")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()

	existing, err := d.store.snapshotByName(req.GetName())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if existing != nil {
		if existing.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists,
				"snapshot %q exists as %s of volume %s", req.GetName(), existing.ID, existing.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snapshotOf(existing)}, nil
	}
	vol, err := d.store.volume(req.GetSourceVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetSourceVolumeId())
	}
	rec := &snapshotRecord{
		ID:             newID("snap-"),
		Name:           req.GetName(),
		SourceVolumeID: vol.ID,
		SizeBytes:      vol.CapacityBytes,
		CreatedAt:      time.Now().UTC(),
		Parameters:     req.GetParameters(),
	}
	if err := d.store.createData(snapshotsDir, rec.ID, d.store.volumeDir(vol.ID)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := d.store.writeRecord(snapshotsDir, rec.ID, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: snapshotOf(rec)}, nil
}

// snapshotOf is the CSI view of a snapshot.
func snapshotOf(rec *snapshotRecord) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     rec.ID,
		SourceVolumeId: rec.SourceVolumeID,
		SizeBytes:      rec.SizeBytes,
		CreationTime:   timestamppb.New(rec.CreatedAt),
		ReadyToUse:     true,
	}
}

// DeleteSnapshot removes a snapshot's record and copy; an unknown id
// succeeds.
func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id missing")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if err := d.store.remove(snapshotsDir, req.GetSnapshotId()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists snapshots, oldest first, optionally only the one with
// an id or those of a source volume. The page token is the index of the
// next entry.
func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	all, err := d.store.sortedSnapshots()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	var matching []snapshotRecord
	for _, s := range all {
		if id := req.GetSnapshotId(); id != "" && s.ID != id {
			continue
		}
		if src := req.GetSourceVolumeId(); src != "" && s.SourceVolumeID != src {
			continue
		}
		matching = append(matching, s)
	}
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(matching) {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", tok)
		}
		start = n
	}
	end := len(matching)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csi.ListSnapshotsResponse{}
	for i := start; i < end; i++ {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshotOf(&matching[i])})
	}
	if end < len(matching) {
		resp.NextToken = fmt.Sprint(end)
	}
	return resp, nil
}
