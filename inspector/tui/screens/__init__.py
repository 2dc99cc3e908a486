"""The TUI's screens: runs, trajectories of a run, a GRPO group, one trajectory, help."""
