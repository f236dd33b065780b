"""The ``bridge`` command's subcommands, one module per area. ``bridge.commands.cli`` imports a module only when
one of its commands runs (or help lists it), so each module may import what its commands need:

- ``developer``: login, roles, exec, env, console, credential-process, local-server, logout
  (standard library and click only: AWS SDKs run `credential-process` on every refresh);
- ``configure``: configure, configure --sso (standard library and click only, as ``developer``);
- ``admin``: check-config, serve, demo, metadata;
- ``rules``: explain, rules-schema;
- ``tokens``: preview, verify (what AWS is sent, checked by the strict validator);
- ``keys``: keys generate, rotate, list, prune;
- ``sessions``: sessions list, revoke;
- ``audit``: audit tail.
"""
