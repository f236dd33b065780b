"""The core use cases: deciding, issuing, sessions and sign-in, without Flask (the web layer maps HTTP)."""
