//! TODO(issue 12): QEMU stand-ins.
