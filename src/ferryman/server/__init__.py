"""The worker process: listener, connections, body transfer."""
