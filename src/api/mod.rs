//! API types: the `velero.io/v1` record shapes tidemark reads and writes in the store (so Velero
//! and tidemark share buckets), and tidemark's own metadata files.

pub mod velero;
