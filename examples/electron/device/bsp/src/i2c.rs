//! TODO(issue 12): i2c.
