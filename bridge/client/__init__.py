"""The developer's laptop client, standard library (and click) only: device login, credential_process,
the role picker, ~/.aws/config."""
