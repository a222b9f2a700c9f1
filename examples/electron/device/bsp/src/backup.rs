//! TODO(issue 12): backup.
