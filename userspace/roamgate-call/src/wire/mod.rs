//! The call signalling wire formats.
