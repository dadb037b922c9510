"""Worker: claims queued runs from the server and trains them in a child process."""
