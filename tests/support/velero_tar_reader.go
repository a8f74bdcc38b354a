// Reads a backup tarball the way Velero does and prints what it saw, for tests/velero_format.rs.
//
// Velero's pkg/archive/extractor.go opens the tarball with Go's compress/gzip (gzip.NewReader,
// multistream on) and archive/tar (tar.NewReader); this program does the same, reads every entry
// to its end (so gzip's CRC-32 and size trailer are checked) and prints one line per entry:
//
//	<path> TAB <mode, octal> TAB <typeflag, decimal> TAB <size> TAB <sha256 of the content, hex>
//
// then "members <n>": the gzip members the stream holds (counted with multistream off).
// Exit status 1 with the error on stderr when Go cannot read the archive.
//
// With -gzip-size, it prints instead "<tar bytes> <bytes>": the size of the tar stream inside the
// tarball and of that stream compressed the way Velero writes its tarballs (Velero's
// pkg/backup/backup.go wraps its tar writer in gzip.NewWriter, whose level is
// gzip.DefaultCompression, 6), for benches/backup_restore.rs.
//
// Usage: go run velero_tar_reader.go [-gzip-size] <tarball>
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

func main() {
	args := os.Args[1:]
	gzipSize := len(args) == 2 && args[0] == "-gzip-size"
	if gzipSize {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: velero_tar_reader [-gzip-size] <tarball>")
		os.Exit(2)
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		fail(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		fail(err)
	}
	if gzipSize {
		printGzipSize(zr)
		return
	}
	out := bufio.NewWriter(os.Stdout)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(err)
		}
		sum := sha256.New()
		n, err := io.Copy(sum, tr)
		if err != nil {
			fail(fmt.Errorf("%s: %w", h.Name, err))
		}
		fmt.Fprintf(out, "%s\t%o\t%d\t%d\t%s\n", h.Name, h.Mode, h.Typeflag, n, hex.EncodeToString(sum.Sum(nil)))
	}
	// The rest of the stream (tar's end blocks) through gzip, so its trailer is verified.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		fail(err)
	}
	fmt.Fprintf(out, "members %d\n", members(raw))
	if err := out.Flush(); err != nil {
		fail(err)
	}
}

// counter counts the bytes written to it.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// printGzipSize compresses the stream of zr (every member) again as one gzip member at Go's
// default level and prints the bytes read and written.
func printGzipSize(zr *gzip.Reader) {
	var out counter
	zw := gzip.NewWriter(&out)
	n, err := io.Copy(zw, zr)
	if err != nil {
		fail(err)
	}
	if err := zw.Close(); err != nil {
		fail(err)
	}
	fmt.Printf("%d %d\n", n, out.n)
}

// members counts the gzip members in raw, reading each to its end.
func members(raw []byte) int {
	br := bytes.NewReader(raw)
	zr, err := gzip.NewReader(br)
	if err != nil {
		fail(err)
	}
	count := 0
	for {
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, zr); err != nil {
			fail(err)
		}
		count++
		err := zr.Reset(br)
		if err == io.EOF {
			return count
		}
		if err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "velero_tar_reader:", err)
	os.Exit(1)
}
