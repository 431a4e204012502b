"""What the dashboard and the command line call that needs both the database and the engine:
registering datasets, saving masks, scoring images, plain-dict views of rows."""
