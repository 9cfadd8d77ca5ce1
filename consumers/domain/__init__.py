"""Business rules shared by several apps (pure, like the apps' transforms)."""
