//! Bulk operations over whole databases: import, export and convert.

pub mod convert;
pub mod export;
pub mod import;
