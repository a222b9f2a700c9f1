//! TODO(issue 12): rtc.
