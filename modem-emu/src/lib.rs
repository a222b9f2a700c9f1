//! SARA modem emulator (skeleton: being written).
