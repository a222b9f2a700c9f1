//! TODO(issue 12): power.
