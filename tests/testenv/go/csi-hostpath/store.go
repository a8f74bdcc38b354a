package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// store keeps volumes and snapshots on disk:
//
//	<dir>/volumes/<id>/        a volume's data (what pods see)
//	<dir>/volumes/<id>.json    its record (volumeRecord)
//	<dir>/snapshots/<id>/      a snapshot's data, a copy of its volume
//	<dir>/snapshots/<id>.json  its record (snapshotRecord)
//	<dir>/tmp/                 copies in progress
//
// A record is written (atomically) only once its data directory is
// complete, and removed before the data is, so only objects with a record
// exist. All changes are made under one lock: calls are few in tests.
type store struct {
	dir string
	mu  sync.Mutex
}

// volumeRecord describes one volume.
type volumeRecord struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	CapacityBytes int64             `json:"capacityBytes"`
	CreatedAt     time.Time         `json:"createdAt"`
	FromSnapshot  string            `json:"fromSnapshot,omitempty"`
	FromVolume    string            `json:"fromVolume,omitempty"`
	Parameters    map[string]string `json:"parameters,omitempty"`
}

// snapshotRecord describes one snapshot.
type snapshotRecord struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	SourceVolumeID string            `json:"sourceVolumeId"`
	SizeBytes      int64             `json:"sizeBytes"`
	CreatedAt      time.Time         `json:"createdAt"`
	Parameters     map[string]string `json:"parameters,omitempty"`
}

const (
	volumesDir   = "volumes"
	snapshotsDir = "snapshots"
	tmpDir       = "tmp"
)

// openStore prepares the state directory; copies left in tmp by a process
// that was killed are dropped.
func openStore(dir string) (*store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(abs, tmpDir)); err != nil {
		return nil, err
	}
	for _, sub := range []string{volumesDir, snapshotsDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o755); err != nil {
			return nil, err
		}
	}
	return &store{dir: abs}, nil
}

// volumeDir is the data directory of volume id.
func (s *store) volumeDir(id string) string { return filepath.Join(s.dir, volumesDir, id) }

// snapshotDir is the data directory of snapshot id.
func (s *store) snapshotDir(id string) string { return filepath.Join(s.dir, snapshotsDir, id) }

// newID returns prefix followed by 16 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// validID rejects ids that could name anything outside the state directory.
func validID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, `/\`) && len(id) <= 128
}

// readRecord reads kind/<id>.json into v; ok is false when there is none.
func (s *store) readRecord(kind, id string, v any) (ok bool, err error) {
	if !validID(id) {
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, kind, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

// writeRecord writes kind/<id>.json atomically (temporary file, fsync, rename).
func (s *store) writeRecord(kind, id string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	final := filepath.Join(s.dir, kind, id+".json")
	tmp := filepath.Join(s.dir, tmpDir, kind+"-"+id+".json")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// listRecords reads every record of a kind, in no particular order.
func listRecords[T any](s *store, kind string) ([]T, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, kind))
	if err != nil {
		return nil, err
	}
	var out []T
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		var rec T
		found, err := s.readRecord(kind, id, &rec)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, rec)
		}
	}
	return out, nil
}

// volumeByName finds the volume created under name.
func (s *store) volumeByName(name string) (*volumeRecord, error) {
	vols, err := listRecords[volumeRecord](s, volumesDir)
	if err != nil {
		return nil, err
	}
	for i := range vols {
		if vols[i].Name == name {
			return &vols[i], nil
		}
	}
	return nil, nil
}

// snapshotByName finds the snapshot created under name.
func (s *store) snapshotByName(name string) (*snapshotRecord, error) {
	snaps, err := listRecords[snapshotRecord](s, snapshotsDir)
	if err != nil {
		return nil, err
	}
	for i := range snaps {
		if snaps[i].Name == name {
			return &snaps[i], nil
		}
	}
	return nil, nil
}

// volume reads the record of volume id (nil when there is none).
func (s *store) volume(id string) (*volumeRecord, error) {
	var rec volumeRecord
	ok, err := s.readRecord(volumesDir, id, &rec)
	if !ok || err != nil {
		return nil, err
	}
	return &rec, nil
}

// snapshot reads the record of snapshot id (nil when there is none).
func (s *store) snapshot(id string) (*snapshotRecord, error) {
	var rec snapshotRecord
	ok, err := s.readRecord(snapshotsDir, id, &rec)
	if !ok || err != nil {
		return nil, err
	}
	return &rec, nil
}

// sortedSnapshots lists every snapshot, oldest first (ties by id), the
// stable order ListSnapshots pages through.
func (s *store) sortedSnapshots() ([]snapshotRecord, error) {
	snaps, err := listRecords[snapshotRecord](s, snapshotsDir)
	if err != nil {
		return nil, err
	}
	sort.Slice(snaps, func(i, j int) bool {
		if !snaps[i].CreatedAt.Equal(snaps[j].CreatedAt) {
			return snaps[i].CreatedAt.Before(snaps[j].CreatedAt)
		}
		return snaps[i].ID < snaps[j].ID
	})
	return snaps, nil
}

// createData makes the data directory for a new object of kind: a copy of
// from, or an empty directory (mode 0777 like an emptyDir, so that a pod's
// user of any uid can write) when from is "". The copy is made in tmp and
// renamed into place when complete.
func (s *store) createData(kind, id, from string) error {
	tmp := filepath.Join(s.dir, tmpDir, kind+"-"+id)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if from == "" {
		if err := os.Mkdir(tmp, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o777); err != nil { // not reduced by the umask
			return err
		}
	} else if err := copyTree(from, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("copying %s: %w", from, err)
	}
	return os.Rename(tmp, filepath.Join(s.dir, kind, id))
}

// remove deletes the record of kind/id, then its data.
func (s *store) remove(kind, id string) error {
	if !validID(id) {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, kind, id+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(filepath.Join(s.dir, kind, id))
}

// copyTree copies the directory src to dst (which must not exist): regular
// files, directories, symbolic links, FIFOs and device nodes, keeping
// modes, owners and modification times. Sockets are skipped.
func copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			// Written with owner permissions first; its own mode is set
			// after its contents (see below), in case it is read-only.
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyFile(path, target); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode&(fs.ModeNamedPipe|fs.ModeDevice|fs.ModeCharDevice) != 0:
			st := info.Sys().(*syscall.Stat_t)
			if err := unix.Mknod(target, uint32(st.Mode), int(st.Rdev)); err != nil {
				return err
			}
		default: // sockets: meaningless in a copy
			return nil
		}
		if mode.IsDir() {
			return nil
		}
		return copyMeta(target, info)
	})
	if err != nil {
		return err
	}
	// Directories' modes, owners and times last: writing their contents
	// changed their times, and a read-only one could not have been filled.
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		return copyMeta(filepath.Join(dst, rel), info)
	})
}

// copyFile copies a regular file's contents.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyMeta gives dst the owner, mode and modification time of info
// (symbolic links: owner and time only).
func copyMeta(dst string, info fs.FileInfo) error {
	st := info.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	times := []unix.Timespec{unix.NsecToTimespec(time.Now().UnixNano()), unix.NsecToTimespec(info.ModTime().UnixNano())}
	if info.Mode()&fs.ModeSymlink != 0 {
		return unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, unix.AT_SYMLINK_NOFOLLOW)
	}
	// chmod after chown: chown clears the setuid/setgid bits.
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, 0)
}
