"""What every agent shares: environments, buffers, networks, GAE, schedules, evaluation."""
