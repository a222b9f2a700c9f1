//! TODO(issue 12): pins.
