"""What every layer stands on: the root of the project's one exception hierarchy (`errors`) and
its one retry policy (`retry`). Standard library only; it imports nothing of the project."""
