//! TODO(issue 12): usart.
