//! TODO(issue 12): flash.
