"""onUserObjectChange -> AppUsers_V2: one normalised projection per user."""
