//! TODO(issue 12): battery.
