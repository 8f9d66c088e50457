//! av
