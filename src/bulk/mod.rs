//! Bulk operations over whole databases: import, export, convert, and whole realms.

pub mod convert;
pub mod export;
pub mod import;
pub mod realms;
