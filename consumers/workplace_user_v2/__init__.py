"""onUserObjectChange -> WorkplaceUsers_V2: one item per (workplace, user) membership."""
