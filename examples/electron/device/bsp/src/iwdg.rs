//! TODO(issue 12): iwdg.
