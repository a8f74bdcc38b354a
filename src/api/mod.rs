//! API types: tidemark's CRDs (`tidemark.dev/v1alpha1`) and their status conditions, and the
//! `velero.io/v1` record shapes tidemark reads and writes in the store (so Velero and tidemark
//! share buckets), with tidemark's own metadata files.

pub mod conditions;
pub mod gitsource;
pub mod podvolume;
pub mod tidemark;
pub mod velero;
