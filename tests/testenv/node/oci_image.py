#!/usr/bin/env python3
"""Builds an OCI image layout tar from a root file system directory.

Used by scripts/testenv to make the test node's images (pause, busybox,
tidemark) without a registry or a container engine: the result is imported
with `ctr -n k8s.io images import`, and pods name it with
`imagePullPolicy: Never`.

Format: OCI image-spec v1.1 image layout (oci-layout, index.json,
blobs/sha256/...), one uncompressed layer (media type
application/vnd.oci.image.layer.v1.tar), the image name in the index's
`io.containerd.image.name` annotation (what `ctr images import` reads) and
`org.opencontainers.image.ref.name`. Entries are written in sorted order with
fixed owners and times, so the same rootfs gives the same image digest.

Usage: oci_image.py ROOTFS NAME OUT.tar [--entrypoint JSON] [--cmd JSON]
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0


def layer_tar(rootfs):
    """The rootfs as an uncompressed tar (bytes), deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries):
            arcname = os.path.relpath(path, rootfs)
            info = tar.gettarinfo(path, arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = EPOCH
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def blob(out, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = len(data)
    info.mtime = EPOCH
    out.addfile(info, io.BytesIO(data))
    return digest


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rootfs")
    p.add_argument("name", help="full image reference, e.g. tidemark.test/busybox:1.35")
    p.add_argument("out")
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    a = p.parse_args()

    layer = layer_tar(a.rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        layer_digest = blob(out, layer)
        config_digest = blob(out, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = blob(out, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": a.name,
                        "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index, sort_keys=True).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = EPOCH
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(manifest_digest)


if __name__ == "__main__":
    sys.exit(main())
