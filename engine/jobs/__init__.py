"""Background jobs: the queue (submit, cancel, retry), the worker, its child process and the tasks
the child runs; starting a worker when none serves the database."""
