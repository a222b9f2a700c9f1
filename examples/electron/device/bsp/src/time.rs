//! TODO(issue 12): time.
