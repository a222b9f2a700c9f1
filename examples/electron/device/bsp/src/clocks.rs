//! TODO(issue 12): clocks.
