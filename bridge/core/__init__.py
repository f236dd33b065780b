"""The use cases, free of Flask: decide, sign in, sessions, issue credentials, console, access requests."""
